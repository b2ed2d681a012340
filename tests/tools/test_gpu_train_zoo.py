"""tools/gpu_train_zoo.sh --rehearse: the GPU training command's exact steps on the CPU (the shipped
model's architecture and weights, 4 iterations), from a small Kaggle-layout zip: fp16 weights in
parts that join back to a loadable model, the out-of-distribution table and the prediction speed."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_gpu_table5 import write_zip  # noqa: E402  (same folder)

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "tools" / "gpu_train_zoo.sh")


def run_script(tmp: Path, *args: str, **env) -> subprocess.CompletedProcess:
    settings = dict(os.environ, PY=sys.executable, ZIP=str(tmp / "src.zip"), DSB=str(tmp / "dsb"), RUNS=str(tmp / "runs"),
                    RESULTS=str(tmp / "results"), MASKRCNNPP_CACHE=str(tmp / "cache"), SETS=f"--set tiny={tmp / 'dsb'}:test")
    settings.pop("OUT", None)
    settings.update(env)
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, env=settings, timeout=900)


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train_zoo")
    write_zip(tmp / "src.zip", n=10, size=96)
    return tmp, run_script(tmp, "--rehearse")


def test_rehearsal_trains_exports_checks_and_times(rehearsal):
    tmp, res = rehearsal
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    results = tmp / "results"
    assert "training finished" in res.stdout
    parts = sorted(results.glob("weights_fp16.pth.part-*"))
    assert parts and all(p.stat().st_size <= 15 * 2**20 for p in parts)
    joined = b"".join(p.read_bytes() for p in parts)
    assert hashlib.sha256(joined).hexdigest() == (results / "weights_fp16.sha256").read_text().strip()
    state = torch.load(__import__("io").BytesIO(joined), map_location="cpu", weights_only=False)["model"]
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    assert (tmp / "runs" / "train" / "model_final.pth").is_file()
    assert "| tiny |" in (results / "ood_check.md").read_text()
    speed = (results / "predict_speed.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in speed] == ["batch 1", "batch 8"] and all("images/s" in s for s in speed)
    assert len(list(results.iterdir())) <= 8, "at most 8 files come back from a device call"


def test_a_rerun_resumes_past_the_budget_and_bad_settings_exit_2(rehearsal):
    tmp, _ = rehearsal
    stamp = (tmp / "runs" / "train" / "model_final.pth").stat().st_mtime_ns
    again = run_script(tmp, "--rehearse", SPEED_IMAGES="1", SETS=" ")  # SETS blank: no table this time
    assert "no check set here" in again.stdout
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert (tmp / "runs" / "train" / "model_final.pth").stat().st_mtime_ns == stamp  # nothing trained again
    for env, message in (({"BATCH": "0"}, "BATCH must be a whole number >= 1"),
                         ({"TRAIN_SECONDS": "900", "DEADLINE": "600"}, "TRAIN_SECONDS (900) must be below DEADLINE")):
        bad = run_script(tmp, "--rehearse", **env)
        assert bad.returncode == 2 and message in bad.stderr
    assert run_script(tmp, "--bogus").returncode == 2
