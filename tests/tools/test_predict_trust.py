"""tools/predict.py says which images not to trust: one warning line per flagged image and the
image_summary.csv columns (kind, nucleus size, mean score, flags), here by image kind."""
from __future__ import annotations

import csv

import numpy as np
from PIL import Image

from tool_helpers import FAST_OPTS, disk_labels, nuclei_image, run_tool, save_tiny_weights


def test_an_he_like_image_is_warned_about_and_a_fluorescence_one_is_not(tmp_path):
    weights = save_tiny_weights(tmp_path / "weights")
    images = tmp_path / "images"
    images.mkdir()
    labels = disk_labels((96, 96), [(25, 25, 9), (60, 60, 10)])
    Image.fromarray(nuclei_image(labels)).save(images / "fluo.png")
    he = np.empty((96, 96, 3), np.uint8)
    he[:] = (230, 150, 200)
    he[labels > 0] = (90, 60, 150)
    Image.fromarray(he).save(images / "he.png")
    out = tmp_path / "out"
    res = run_tool("predict.py", ["--input", str(images), "--config", "maskrcnnpp_tiny", "--weights", weights,
                                  "--output", str(out), "--device", "cpu", "--score-thresh", "0.0", *FAST_OPTS,
                                  "TEST.NUCLEI.TRUST.WEAK_KINDS", '["stained tissue"]'])
    assert res.returncode == 0, res.stderr[-3000:]
    warnings = [line for line in res.stdout.splitlines() if line.startswith("WARNING predict:")]
    assert warnings == ["WARNING predict: he.png: check its nuclei: stained tissue is a weak image kind of this model"]
    assert "1 of 2 image(s) are unlike the model's training images" in res.stdout
    with open(out / "image_summary.csv", newline="") as f:
        rows = {r["image"]: r for r in csv.DictReader(f)}
    assert list(rows) == ["fluo", "he"]
    assert rows["he"]["image_kind"] == "stained tissue" and rows["fluo"]["image_kind"] == "fluorescence"
    assert rows["fluo"]["flags"] == "" and rows["he"]["flags"] == "stained tissue is a weak image kind of this model"
    assert (rows["he"]["height"], rows["he"]["width"], rows["he"]["diameter_source"]) == ("96", "96", "none")
    assert int(rows["fluo"]["nuclei"]) > 0 and 0 <= float(rows["fluo"]["mean_score"]) <= 1
