"""The own-folder converter on real DSB 2018 images: a handful of stage1_train folders laid out as
label images (layout "labels") and as they come (layout "masks") give one annotation per DSB mask,
with the mask's pixels. Skipped without the zip."""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools import mask as mask_util

from maskrcnnpp.data.folder import prepare_folder

pytestmark = pytest.mark.realdata
N_IMAGES = 4


@pytest.fixture(scope="module")
def dsb_sample(dsb2018_zip, tmp_path_factory) -> dict:
    """``{image id: (image PNG bytes, [binary masks])}`` of the first images of the zip (sorted ids)."""
    with zipfile.ZipFile(dsb2018_zip) as z:
        names = z.namelist()
        ids = sorted({n.split("/")[0] for n in names if "/images/" in n})[:N_IMAGES]
        out = {}
        for i in ids:
            masks = [np.asarray(Image.open(io.BytesIO(z.read(n)))) > 0
                     for n in sorted(n for n in names if n.startswith(f"{i}/masks/") and n.endswith(".png"))]
            out[i] = (z.read(f"{i}/images/{i}.png"), masks)
    return out


def _annotations_by_stem(out: Path) -> dict:
    coco = json.loads((out / "annotations" / "all.json").read_text())
    stems = {im["id"]: im["stem"] for im in coco["images"]}
    by_stem = {s: [] for s in stems.values()}
    for ann in coco["annotations"]:
        by_stem[stems[ann["image_id"]]].append(ann)
    return by_stem


def test_label_image_layout_gives_the_dsb_nuclei(dsb_sample, tmp_path):
    src = tmp_path / "labels"
    src.mkdir()
    for image_id, (png, masks) in dsb_sample.items():
        (src / f"{image_id}.png").write_bytes(png)
        labels = np.zeros(masks[0].shape, np.uint16)
        for k, mask in enumerate(masks, start=1):
            labels[mask] = k
        tifffile.imwrite(src / f"{image_id}_labels.tif", labels, compression="zlib")
    result = prepare_folder(src, tmp_path / "out", split="train", workers=1, progress=False)
    assert result.manifest["identity"]["layout"] == "labels"
    by_stem = _annotations_by_stem(tmp_path / "out")
    for image_id, (_, masks) in dsb_sample.items():
        anns = sorted(by_stem[image_id], key=lambda a: a["label"])
        assert len(anns) == len(masks), image_id
        for ann, mask in zip(anns, masks):
            np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]).astype(bool), mask)


def test_mask_file_layout_gives_the_dsb_nuclei(dsb_sample, tmp_path):
    src = tmp_path / "masks"
    for image_id, (png, masks) in dsb_sample.items():
        (src / image_id / "images").mkdir(parents=True)
        (src / image_id / "masks").mkdir()
        (src / image_id / "images" / f"{image_id}.png").write_bytes(png)
        for k, mask in enumerate(masks):
            Image.fromarray(mask.astype(np.uint8) * 255).save(src / image_id / "masks" / f"m{k:04d}.png")
    result = prepare_folder(src, tmp_path / "out", split="train", workers=1, progress=False)
    assert result.manifest["identity"]["layout"] == "masks"
    counts = {i: len(a) for i, a in _annotations_by_stem(tmp_path / "out").items()}
    assert counts == {i: len(m) for i, (_, m) in dsb_sample.items()}
    assert result.manifest["counts"]["annotations"] == sum(len(m) for _, m in dsb_sample.values())
