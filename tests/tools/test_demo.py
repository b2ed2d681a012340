"""tools/demo.py (behind `make demo`) end to end in miniature: both models, the table, the PNGs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_trains_scores_and_draws_both_models(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, MASKRCNNPP_CACHE=str(tmp_path / "cache"))
    res = subprocess.run(
        [sys.executable, str(REPO / "tools" / "demo.py"), "--output", str(out), "--iters", "4", "--max-images", "2",
         "--device", "cpu", "DATASETS.NUCLEI.SYNTH_IMAGES", "[4, 2, 2]", "SOLVER.IMS_PER_BATCH", "2"],
        capture_output=True, text=True, env=env, timeout=900, cwd=REPO,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    def no_nan(constant):
        raise AssertionError(f"comparison.json is not strict JSON: {constant}")

    rows = json.loads((out / "comparison.json").read_text(), parse_constant=no_nan)
    assert list(rows) == ["maskrcnnpp_tiny", "maskrcnn_tiny"]
    for name, result in rows.items():
        for key in ("score", "iou", "dice", "aji", "pq"):
            assert 0.0 <= result["nuclei"][key] <= 1.0
        assert result["nuclei"]["num_images"] == 2
        for mode in ("errors", "overlay"):
            pngs = sorted((out / name / "vis" / mode).glob("*.png"))
            assert len(pngs) == 2, (name, mode, pngs)
    table = (out / "comparison.md").read_text().splitlines()
    assert table[0].startswith("| model | score | IoU | Dice |") and len(table) == 4
    assert table[2].startswith("| maskrcnnpp_tiny |") and table[3].startswith("| maskrcnn_tiny |")
    assert "\n".join(table) in res.stdout
