"""tools/gpu_table5.sh --rehearse: the GPU comparison's exact steps on the CPU with the tiny configs,
from a small Kaggle-layout zip (prepared by the script), and its deadline."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "tools" / "gpu_table5.sh")
CONFIGS = ("maskrcnn_tiny", "maskrcnnpp_tiny")


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def write_zip(path: Path, n: int = 10, size: int = 64) -> Path:
    """``n`` grey images in the Kaggle layout, each with three bright disks (one mask file each)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    with zipfile.ZipFile(path, "w") as z:
        for i in range(n):
            image = rng.integers(0, 40, (size, size), dtype=np.uint8)
            for k, (cy, cx) in enumerate(rng.integers(10, size - 10, (3, 2))):
                disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= 36
                image[disk] = 200
                z.writestr(f"im{i}/masks/m{k}.png", _png(disk.astype(np.uint8) * 255))
            z.writestr(f"im{i}/images/im{i}.png", _png(np.dstack([image] * 3 + [np.full_like(image, 255)])))
    return path


def run_script(tmp: Path, mark: str, **env) -> subprocess.CompletedProcess:
    settings = dict(os.environ, PY=sys.executable, ZIP=str(tmp / "src.zip"), DSB=str(tmp / "dsb"), RUNS=str(tmp / "runs"),
                    RESULTS=str(tmp / "results"), MASKRCNNPP_CACHE=str(tmp / "cache"), GPU_TABLE5_TEST_MARK=mark)
    settings.pop("OUT", None)
    settings.update(env)
    return subprocess.run(["bash", SCRIPT, "--rehearse"], capture_output=True, text=True, env=settings, timeout=900)


def processes_with(mark: str) -> list:
    """PIDs of live processes whose environment holds ``mark`` (the script's children inherit it)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"GPU_TABLE5_TEST_MARK={mark}".encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            pass
    return found


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rehearsal")
    write_zip(tmp / "src.zip")
    res = run_script(tmp, uuid.uuid4().hex)
    return tmp, res


def test_rehearsal_prepares_trains_every_config_and_seed_and_tables_them(rehearsal):
    tmp, res = rehearsal
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp / "dsb" / "manifest.json").is_file()  # prepared from ZIP by the script
    table = json.loads((tmp / "results" / "table5.json").read_text())
    assert sorted((r["model"], r["seed"]) for r in table["rows"]) == [(c, s) for c in CONFIGS for s in (0, 1)]
    for row in table["rows"]:
        assert row["finished"] and row["iterations"] == 4 and row["device"] == "cpu"
        assert 0.0 <= row["score"] <= 1.0 and row["seconds_per_iter"] > 0
        result = json.loads((tmp / "runs" / f"seed{row['seed']}" / row["model"] / "result.json").read_text())
        assert result["budget"]["signature"]["opts"] == ["SEED", str(row["seed"])]
        assert result["test_dataset"] == "dsb2018_test" and result["train_iters"] == 4
        # the test split of the 10 prepared images: 3 images, 3 nuclei each
        assert result["test_results"]["nuclei"]["num_gt"] == 9 and result["test_results"]["nuclei"]["num_images"] == 3
        assert row["val_iteration"] == 4  # one validation, at the end: the scored checkpoint
    for config in CONFIGS:
        scores = [r["score"] for r in table["rows"] if r["model"] == config]
        assert table["means"][config]["score"]["n"] == 2
        assert table["means"][config]["score"]["mean"] == pytest.approx(sum(scores) / 2)
    markdown = (tmp / "results" / "table5.md").read_text()
    assert res.stdout.endswith(markdown)
    assert sum(line.startswith(f"| {c} | ") for c in CONFIGS for line in markdown.splitlines()) == 6


def test_rehearsal_leaves_logs_and_status_beside_the_table(rehearsal):
    tmp, _ = rehearsal
    assert sorted(p.name for p in (tmp / "results").iterdir()) == ["logs.tar.gz", "status.txt", "table5.json", "table5.md"]
    with tarfile.open(tmp / "results" / "logs.tar.gz") as tar:
        names = set(tar.getnames())
    for seed in (0, 1):
        assert f"./seed{seed}.log" in names and f"./seed{seed}/experiment.md" in names
        for config in CONFIGS:
            for leaf in ("log.txt", "result.json", "budget.json", "train/metrics.json", "train/model_best.json"):
                assert f"./seed{seed}/{config}/{leaf}" in names
    status = (tmp / "results" / "status.txt").read_text()
    assert "preflight:" in status and status.count("tools/experiment.py exited with status 0") == 2


def test_deadline_stops_every_training_process_and_still_writes_the_table(tmp_path):
    write_zip(tmp_path / "src.zip")
    mark = uuid.uuid4().hex
    res = run_script(tmp_path, mark, ITERS="100000", DEADLINE="60", REFRESH="5")
    assert res.returncode == 124, res.stdout[-3000:] + res.stderr[-3000:]
    assert "deadline 60 s reached" in (tmp_path / "results" / "status.txt").read_text()
    deadline = time.time() + 20
    while processes_with(mark) and time.time() < deadline:
        time.sleep(0.5)
    assert processes_with(mark) == []  # no training process outlives the command
    table = json.loads((tmp_path / "results" / "table5.json").read_text())
    assert not any(r["finished"] for r in table["rows"])
    assert "unfinished" in (tmp_path / "results" / "table5.md").read_text()


def test_bad_settings_are_one_line_errors_with_status_2(tmp_path):
    for env, message in (({"ITERS": "0"}, "ITERS must be a whole number >= 1"),
                         ({"SEEDS": "a"}, "SEEDS must be whole numbers"),
                         ({"ZIP": str(tmp_path / "none.zip")}, "no prepared DSB 2018 at DSB=")):
        res = run_script(tmp_path, uuid.uuid4().hex, **env)
        assert res.returncode == 2, (env, res.stderr)
        assert message in res.stdout + res.stderr
