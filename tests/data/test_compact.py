"""datasets/compact_copy.py and maskrcnnpp.data.compact: a smaller prepared folder that Detectron2
reads to the same pixels and the same annotations."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from detectron2.data import detection_utils

from data_testutils import box_mask, rgba, write_kaggle_source
from maskrcnnpp.data.compact import COMPACT_RECORD, compact_copy
from maskrcnnpp.data.datasets import load_coco_json
from maskrcnnpp.data.dsb2018 import DatasetError, prepare_dsb2018

REPO = Path(__file__).resolve().parents[2]
H, W = 24, 32


def grey_rgba(seed: int) -> np.ndarray:
    image = rgba(H, W, seed)
    image[..., 1] = image[..., 0]
    image[..., 2] = image[..., 0]
    return image


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    """10 images, 6 grey (R = G = B) and 4 colour, split 50/20/30."""
    samples = {f"img{i:02d}": (grey_rgba(i) if i % 5 < 3 else rgba(H, W, i),
                               [box_mask(H, W, 2, 8, 3 + i, 9 + i), box_mask(H, W, 12, 20, 20, 27)]) for i in range(10)}
    src = write_kaggle_source(tmp_path_factory.mktemp("src") / "kaggle", samples, as_zip=True)
    out = tmp_path_factory.mktemp("prepared") / "dsb"
    prepare_dsb2018(src, out, workers=1, progress=False)
    return out


def test_images_read_back_identical_and_grey_ones_are_single_channel(prepared, tmp_path):
    record = compact_copy(prepared, tmp_path / "compact")
    out = tmp_path / "compact"
    assert record["images"] == 10 and record["grey_as_single_channel"] == 6
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["test.json", "train.json", "val.json"]
    assert not (out / "manifest.json").exists()  # its files are not the converter's
    assert json.loads((out / COMPACT_RECORD).read_text())["source_identity"] == \
        json.loads((prepared / "manifest.json").read_text())["identity"]
    singles = 0
    for path in sorted((prepared / "images").iterdir()):
        original = detection_utils.read_image(str(path), format="BGR")
        copy = detection_utils.read_image(str(out / "images" / path.name), format="BGR")
        np.testing.assert_array_equal(copy, original)  # what the mapper gets, bit for bit
        singles += detection_utils.read_image(str(out / "images" / path.name)).ndim == 2  # PIL mode L
    assert singles == 6


def test_the_datasets_load_the_same_records(prepared, tmp_path):
    compact_copy(prepared, tmp_path / "compact")
    for split in ("train", "val", "test"):
        a = load_coco_json(str(prepared / "annotations" / f"{split}.json"), str(prepared / "images"), f"a_{split}")
        b = load_coco_json(str(tmp_path / "compact" / "annotations" / f"{split}.json"),
                           str(tmp_path / "compact" / "images"), f"b_{split}")
        assert [(r["image_id"], Path(r["file_name"]).name, r["annotations"]) for r in a] == \
            [(r["image_id"], Path(r["file_name"]).name, r["annotations"]) for r in b]


def test_only_the_images_of_the_splits_asked_for(prepared, tmp_path):
    record = compact_copy(prepared, tmp_path / "val_only", splits=["val"])
    names = {i["file_name"] for i in json.loads((prepared / "annotations" / "val.json").read_text())["images"]}
    assert record["images"] == len(names) == 2
    assert {p.name for p in (tmp_path / "val_only" / "images").iterdir()} == names


def test_bad_source_and_existing_output_are_errors_and_leave_nothing(prepared, tmp_path):
    with pytest.raises(DatasetError, match="missing: nosuch"):
        compact_copy(prepared, tmp_path / "a", splits=["train", "nosuch"])
    with pytest.raises(DatasetError, match="missing: images/"):
        compact_copy(tmp_path, tmp_path / "b", splits=[])
    (tmp_path / "exists").mkdir()
    with pytest.raises(DatasetError, match="exists"):
        compact_copy(prepared, tmp_path / "exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists"]  # no partial folder left


def test_cli_error_is_one_line_and_status_2(prepared, tmp_path):
    res = subprocess.run([sys.executable, str(REPO / "datasets" / "compact_copy.py"), "--src", str(prepared),
                          "--out", str(tmp_path / "c"), "--splits", "nosuch"], capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr == (f"error: {prepared} is not a folder prepared by datasets/prepare_dsb2018.py with the splits "
                          "nosuch (missing: nosuch)\n")
    res = subprocess.run([sys.executable, str(REPO / "datasets" / "compact_copy.py"), "--src", str(prepared),
                          "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "10 images (6 grey as single channel)" in res.stdout


def test_cli_missing_image_is_one_line_and_leaves_nothing(prepared, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(prepared, broken)
    victim = sorted((broken / "images").iterdir())[0]
    victim.unlink()
    res = subprocess.run([sys.executable, str(REPO / "datasets" / "compact_copy.py"), "--src", str(broken),
                          "--out", str(tmp_path / "c")], capture_output=True, text=True)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr == f"error: [Errno 2] No such file or directory: '{victim}'\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken"]
