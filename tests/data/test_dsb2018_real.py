"""The converter on the real DSB 2018 stage1_train zip (skipped when the zip is absent).

The zip is converted once per session (and cached across sessions) by the ``dsb2018_prepared``
fixture; the checks read the zip independently with Pillow and pycocotools.
"""
from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from maskrcnnpp.data.dsb2018 import prepare_dsb2018, split_image_ids
from maskrcnnpp.utils.kaggle_rle import write_kaggle_csv

pytestmark = pytest.mark.realdata

# Published figures of the release (see shared/data/dsb2018/README.md).
ZIP_SHA256 = "abf4229169ca3ded2ce28ffff3e6639ebc72efd0227b59c6372592aeda301e4f"
N_IMAGES, N_MASKS = 670, 29461
# sha256 of "\n".join(sorted train ids) of the default split (0.5/0.2/0.3, seed 0). It pins the
# split (NumPy's PCG64 permutation) so that results stay comparable across machines and versions.
TRAIN_IDS_SHA256 = "b7eef29866b2223a5ee76dddc0d0f4c6681266113df2524e9f815bb5f723a81a"


def load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"{split}.json").read_text())


def test_all_images_and_annotations(dsb2018_prepared):
    coco = load(dsb2018_prepared, "all")
    assert len(coco["images"]) == N_IMAGES and len(coco["annotations"]) == N_MASKS
    manifest = json.loads((dsb2018_prepared / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == ZIP_SHA256
    # The release has no empty, non-binary, overlapping or repeated masks: the only corrections
    # are the RGBA -> RGB conversions of its 670 RGBA images (alpha fully opaque).
    assert manifest["counts"]["corrections"] == {"alpha_removed": N_IMAGES}
    assert manifest["source_formats"] == {"RGBA 8-bit": N_IMAGES}
    areas = [a["area"] for a in coco["annotations"]]
    assert (min(areas), max(areas)) == (21, 11037)
    sizes = {(im["width"], im["height"]) for im in coco["images"]}
    assert (256, 256) in sizes and (1388, 1040) in sizes and len(sizes) == 9
    assert len({a["id"] for a in coco["annotations"]}) == N_MASKS
    assert sorted(os.listdir(dsb2018_prepared / "images")) == sorted(im["file_name"] for im in coco["images"])


_ZIP = {}


def _zip(path: str) -> zipfile.ZipFile:
    # One handle per process: opening reads the 30,131-entry directory, and handles must not be
    # shared across fork.
    key = (os.getpid(), path)
    if key not in _ZIP:
        _ZIP[key] = zipfile.ZipFile(path)
    return _ZIP[key]


def _check_image(args):
    """Mask ids of one image whose RLE differs from the mask PNG in the zip."""
    zip_path, dsb_id, anns = args
    mismatched = []
    z = _zip(zip_path)
    for ann in anns:
        png = np.asarray(Image.open(io.BytesIO(z.read(f"{dsb_id}/masks/{ann['mask_id']}.png"))))
        decoded = mask_util.decode(ann["segmentation"])
        if png.shape != decoded.shape or not np.array_equal(png > 0, decoded > 0) or int(decoded.sum()) != ann["area"]:
            mismatched.append(ann["mask_id"])
    return dsb_id, mismatched


def test_every_rle_reproduces_its_mask_png(dsb2018_zip, dsb2018_prepared):
    coco = load(dsb2018_prepared, "all")
    per_image = {im["id"]: (im["dsb_id"], []) for im in coco["images"]}
    for ann in coco["annotations"]:
        per_image[ann["image_id"]][1].append(ann)
    jobs = [(str(dsb2018_zip), dsb_id, anns) for dsb_id, anns in per_image.values()]
    mask_files = {n for n in _zip(str(dsb2018_zip)).namelist() if "/masks/" in n}
    # Every mask file of the zip is one annotation.
    assert {f"{d}/masks/{a['mask_id']}.png" for d, anns in per_image.values() for a in anns} == mask_files
    with mp.get_context("fork").Pool(os.cpu_count()) as pool:
        bad = {dsb_id: m for dsb_id, m in pool.imap_unordered(_check_image, jobs, chunksize=8) if m}
    assert bad == {}


def test_split_is_deterministic_disjoint_and_complete(dsb2018_prepared):
    all_ids = sorted(im["dsb_id"] for im in load(dsb2018_prepared, "all")["images"])
    splits = {s: load(dsb2018_prepared, s) for s in ("train", "val", "test")}
    ids = {s: [im["dsb_id"] for im in c["images"]] for s, c in splits.items()}
    assert [len(ids[s]) for s in ("train", "val", "test")] == [335, 134, 201]
    assert sorted(ids["train"] + ids["val"] + ids["test"]) == all_ids  # disjoint and complete
    assert ids == split_image_ids(all_ids, (0.5, 0.2, 0.3), seed=0)
    assert sum(len(c["annotations"]) for c in splits.values()) == N_MASKS
    assert hashlib.sha256("\n".join(ids["train"]).encode()).hexdigest() == TRAIN_IDS_SHA256


def test_rle_csv_round_trip_gives_identical_annotations(dsb2018_zip, dsb2018_prepared, tmp_path):
    coco = load(dsb2018_prepared, "all")
    label_images = {}
    for im in coco["images"]:
        label_images[im["id"]] = (im["dsb_id"], np.zeros((im["height"], im["width"]), np.int32))
    counter = {}
    for ann in coco["annotations"]:
        dsb_id, labels = label_images[ann["image_id"]]
        counter[ann["image_id"]] = counter.get(ann["image_id"], 0) + 1
        x, y, w, h = (int(v) for v in ann["bbox"])
        inside = mask_util.decode(ann["segmentation"])[y : y + h, x : x + w].view(bool)
        labels[y : y + h, x : x + w][inside] = counter[ann["image_id"]]  # label k = k-th annotation
    csv_path = tmp_path / "stage1_train_labels.csv"
    assert write_kaggle_csv(csv_path, dict(label_images.values())) == N_MASKS

    out = tmp_path / "from_csv"
    result = prepare_dsb2018(dsb2018_zip, out, labels=csv_path, progress=False)
    assert result.manifest["counts"]["corrections"] == {"alpha_removed": N_IMAGES}
    strip = lambda anns: [{k: v for k, v in a.items() if k not in ("mask_id", "csv_line")} for a in anns]  # noqa: E731
    for split in ("all", "train", "val", "test"):
        ours, reference = load(out, split), load(dsb2018_prepared, split)
        assert ours["images"] == reference["images"]
        assert strip(ours["annotations"]) == strip(reference["annotations"])
