"""maskrcnnpp.experiment.seed_table and tools/seed_table.py on hand-made experiment folders."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from maskrcnnpp.experiment import seed_table, seed_table_markdown

REPO = Path(__file__).resolve().parents[2]


def write_run(root: Path, seed: int, model: str, times, result=None, best=None) -> None:
    train = root / f"seed{seed}" / model / "train"
    train.mkdir(parents=True)
    lines = [{"iteration": 19 + 20 * k, "time": t, "total_loss": 1.0} for k, t in enumerate(times)]
    lines.append({"iteration": 19 + 20 * len(times), "dsb2018_val/nuclei/score": 0.3})  # a validation: no time
    (train / "metrics.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"iteration\": 9")  # torn last line
    if best is not None:
        (train / "model_best.json").write_text(json.dumps({"metric": "nuclei/score", "value": best[0], "iteration": best[1]}))
    if result is not None:
        (root / f"seed{seed}" / model / "result.json").write_text(json.dumps(result))


def result(score, iou, train_seconds) -> dict:
    return {"model": "m", "train_iters": 60, "score": score, "iou": iou, "dice": iou + 5, "aji": 0.5, "pq": 0.4,
            "ap": 30.0, "train_seconds_this_session": train_seconds, "selected_checkpoint": "model_best.pth",
            "device": "cuda"}


@pytest.fixture()
def root(tmp_path) -> Path:
    write_run(tmp_path, 0, "maskrcnn", [0.5, 0.7], result(0.40, 70.0, 100.0), best=(0.38, 59))
    write_run(tmp_path, 1, "maskrcnn", [0.6, 0.6, 0.9], result(0.50, 72.0, 120.0), best=(0.41, 60))
    write_run(tmp_path, 1, "maskrcnnpp", [0.8], best=None)  # still training
    (tmp_path / "results").mkdir()  # not a seed folder
    (tmp_path / "seed0.log").write_text("log")
    (tmp_path / "seedx").mkdir()
    return tmp_path


def test_rows_and_means_over_seeds(root):
    table = seed_table(str(root))
    rows = table["rows"]
    assert [(r["model"], r["seed"], r["finished"]) for r in rows] == [
        ("maskrcnn", 0, True), ("maskrcnn", 1, True), ("maskrcnnpp", 1, False)]
    assert rows[0]["seconds_per_iter"] == pytest.approx(0.6)  # mean of 0.5 and 0.7; validations left out
    assert rows[1]["seconds_per_iter"] == pytest.approx(0.7)
    assert (rows[0]["val_value"], rows[0]["val_iteration"]) == (0.38, 59)
    assert rows[2]["last_iteration"] == 39 and "score" not in rows[2]
    mean = table["means"]["maskrcnn"]
    assert mean["score"] == pytest.approx({"mean": 0.45, "std": math.sqrt(0.005), "n": 2})
    assert mean["iou"]["mean"] == pytest.approx(71.0) and mean["train_seconds"]["mean"] == pytest.approx(110.0)
    assert table["means"]["maskrcnnpp"]["score"] == {"mean": None, "std": None, "n": 0}


def test_markdown_rows_unfinished_runs_and_means(root):
    text = seed_table_markdown(seed_table(str(root)))
    assert "| maskrcnn | 0 | 60 | 0.400 | 70.00 | 75.00 | 0.500 | 0.400 | 30.0 | 0.380 (59) | 100 | 0.600 |" in text
    assert "| maskrcnnpp | 1 | unfinished (reached iteration 39) |" in text
    assert "| maskrcnn | 2 | 0.450 ± 0.071 | 71.00 ± 1.41 |" in text
    assert "| maskrcnnpp | 0 | n/a |" in text


def test_an_empty_or_missing_root_gives_an_empty_table(tmp_path):
    assert seed_table(str(tmp_path)) == {"rows": [], "means": {}}
    assert seed_table(str(tmp_path / "absent")) == {"rows": [], "means": {}}


def test_cli_writes_both_files_and_refuses_a_missing_root(root, tmp_path):
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, str(REPO / "tools" / "seed_table.py"), str(root), "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "table5.json").read_text()) == seed_table(str(root))
    assert (out / "table5.md").read_text() == res.stdout.rstrip("\n") + "\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left
    res = subprocess.run([sys.executable, str(REPO / "tools" / "seed_table.py"), str(tmp_path / "absent")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr == f"error: {tmp_path / 'absent'} is not a folder\n"
