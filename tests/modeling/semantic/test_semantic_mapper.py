"""SemanticNucleiMapper and the semantic train loader on hand-made COCO-style nuclei."""
from __future__ import annotations

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image
from skimage.segmentation import find_boundaries

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from maskrcnnpp.data.semantic import (
    SemanticNucleiMapper,
    _target_code,
    annotations_to_label_image,
    build_semantic_train_loader,
)
from semantic_testutils import disk_labels, make_cfg, write_dataset


def _rle(mask: np.ndarray, compressed: bool = True) -> dict:
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    if compressed:
        rle["counts"] = rle["counts"].decode("ascii")
        return rle
    # Uncompressed COCO RLE: alternating run lengths in column-major order, starting with zeros.
    flat = mask.T.ravel().astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    return {"size": list(mask.shape), "counts": counts}


@pytest.fixture
def mixed_dict(tmp_path):
    """A 40x50 image with four nuclei in three encodings (two touching) and one crowd region."""
    labels = disk_labels((40, 50), [(12, 12, 6), (12, 23, 6), (30, 35, 5), (30, 10, 4)])
    ys, xs = np.nonzero(labels == 4)
    x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
    polygon = [[x0, y0, x1, y0, x1, y1, x0, y1]]
    crowd = np.zeros((40, 50), bool)
    crowd[0:4, 40:50] = True
    box = np.zeros((40, 50), bool)  # nucleus 4 is given as the polygon of its bounding box
    box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
    expected = labels.copy()
    expected[expected == 4] = 0
    expected[box] = 4
    image = np.zeros((40, 50, 3), np.uint8)
    image[..., 0] = 10  # R
    image[..., 2] = 200 * (expected > 0)  # B carries the mask, so transforms can be checked
    path = tmp_path / "mixed.png"
    Image.fromarray(image).save(path)
    annos = [
        {"segmentation": _rle(labels == 1), "iscrowd": 0},
        {"segmentation": _rle(labels == 2, compressed=False), "iscrowd": 0},
        {"segmentation": _rle(labels == 3), "iscrowd": 0},
        {"segmentation": polygon, "iscrowd": 0},
        {"segmentation": _rle(crowd), "iscrowd": 1},
    ]
    for a in annos:
        a.update(bbox=[0, 0, 1, 1], bbox_mode=0, category_id=0)
    return {"file_name": str(path), "image_id": 0, "height": 40, "width": 50, "annotations": annos}, expected, crowd


def test_label_image_from_every_encoding(mixed_dict):
    record, expected, crowd = mixed_dict
    labels, crowd_mask = annotations_to_label_image(record["annotations"], 40, 50)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(crowd_mask, crowd)


def test_test_mode_keeps_whole_image_and_exact_targets(mixed_dict):
    record, expected, crowd = mixed_dict
    cfg = make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__BOUNDARY=True)
    out = SemanticNucleiMapper(cfg, is_train=False)(record)
    assert "annotations" not in out and out["image"].shape == (3, 40, 50) and out["image"].dtype == torch.uint8
    assert int(out["image"][0].max()) == 200 and int(out["image"][2].max()) == 10, "BGR channel order"
    fg = (expected > 0).astype(np.uint8)
    fg[crowd] = 255
    np.testing.assert_array_equal(out["sem_seg"].numpy(), fg)
    boundary = find_boundaries(expected, mode="inner").astype(np.uint8)
    boundary[crowd] = 255
    np.testing.assert_array_equal(out["boundary"].numpy(), boundary)
    # The two touching discs are separated by boundary pixels in the boundary target.
    assert out["boundary"][12, 15:20].tolist() == [0, 1, 1, 0, 0]


def test_train_crops_and_flips_move_image_and_target_together(mixed_dict):
    record, _, _ = mixed_dict
    cfg = make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__TRAIN_CROP=24, MODEL__SEMANTIC_UNET__BOUNDARY=True)
    mapper = SemanticNucleiMapper(cfg, is_train=True)
    np.random.seed(0)
    seen = set()
    for _ in range(12):
        out = mapper(record)
        assert out["image"].shape == (3, 24, 24) and out["sem_seg"].shape == out["boundary"].shape == (24, 24)
        valid = out["sem_seg"] != 255
        assert torch.equal((out["image"][0] > 100)[valid], (out["sem_seg"] == 1)[valid])
        assert bool(((out["boundary"] == 1) <= (out["sem_seg"] == 1)).all()), "boundary pixels are nucleus pixels"
        seen.add(out["sem_seg"].numpy().tobytes())
    assert len(seen) > 6, "crops are random"


def test_small_images_are_mirror_padded_to_the_crop(mixed_dict):
    record, _, _ = mixed_dict
    mapper = SemanticNucleiMapper(make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__TRAIN_CROP=64), is_train=True)
    out = mapper(record)
    assert out["image"].shape == (3, 64, 64) and out["sem_seg"].shape == (64, 64)
    valid = out["sem_seg"] != 255
    assert torch.equal((out["image"][0] > 100)[valid], (out["sem_seg"] == 1)[valid])


def test_missing_segmentation_names_the_file(mixed_dict):
    record, _, _ = mixed_dict
    record["annotations"][2] = {"bbox": [0, 0, 1, 1], "bbox_mode": 0, "category_id": 0}
    with pytest.raises(ValueError, match=r"mixed\.png, annotation 2"):
        SemanticNucleiMapper(make_cfg("unetpp_tiny.yaml"), is_train=True)(record)


def test_train_loader_batches(tmp_path):
    dicts = write_dataset(tmp_path, num_images=3, size=96)
    name = "semantic_loader_test"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: dicts)
        MetadataCatalog.get(name).set(thing_classes=["nucleus"])
    cfg = make_cfg("unetpp_tiny.yaml", DATASETS__TRAIN=(name,), SOLVER__IMS_PER_BATCH=3)
    batch = next(iter(build_semantic_train_loader(cfg)))
    assert len(batch) == 3
    for x in batch:
        assert x["image"].shape == (3, 64, 64) and x["sem_seg"].shape == (64, 64)
        assert set(torch.unique(x["sem_seg"]).tolist()) <= {0, 1}


def _whole_image_reference(mapper: SemanticNucleiMapper, record: dict, seed: int):
    """Image and targets the slow way: targets of the whole image, then the same random transforms."""
    np.random.seed(seed)
    image = utils.read_image(record["file_name"], format="BGR")
    h, w = image.shape[:2]
    aug = T.AugInput(image, sem_seg=_target_code(record["annotations"], h, w, "reference"))
    mapper.augmentations(aug)
    code = aug.sem_seg
    ignore = code == 255
    return aug.image, np.where(ignore, 255, code & 1), np.where(ignore, 255, (code >> 1) & 1)


def _assert_crop_targets_match_whole_image(mapper: SemanticNucleiMapper, record: dict, seeds) -> int:
    nonempty = 0
    for seed in seeds:
        np.random.seed(seed)
        out = mapper(record)
        image, fg, boundary = _whole_image_reference(mapper, record, seed)
        np.testing.assert_array_equal(out["image"].numpy(), image.transpose(2, 0, 1))
        np.testing.assert_array_equal(out["sem_seg"].numpy(), fg)
        np.testing.assert_array_equal(out["boundary"].numpy(), boundary)
        nonempty += int((fg == 1).any())
    return nonempty


def test_crop_targets_equal_the_whole_image_targets(mixed_dict):
    """Targets built for the crop window alone (a margin of one pixel, only the masks whose box
    meets it) are those of the whole image cropped: touching nuclei, crowd, polygon, edges."""
    record, _, _ = mixed_dict
    mapper = SemanticNucleiMapper(make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__TRAIN_CROP=17,
                                           MODEL__SEMANTIC_UNET__BOUNDARY=True), is_train=True)
    assert _assert_crop_targets_match_whole_image(mapper, record, range(60)) > 30


@pytest.mark.realdata
def test_crop_targets_equal_the_whole_image_targets_on_dsb2018():
    from detectron2.data.datasets import load_coco_json

    from dsb2018_data import dsb2018_zip_path, prepared_dsb2018

    if dsb2018_zip_path() is None:
        pytest.skip("real DSB 2018 zip not found (set MASKRCNNPP_DSB2018_ZIP)")
    root = prepared_dsb2018(zip_path=dsb2018_zip_path())
    records = load_coco_json(str(root / "annotations" / "val.json"), str(root / "images"))
    crowded = sorted(records, key=lambda r: -len(r["annotations"]))[:3]
    mapper = SemanticNucleiMapper(make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__TRAIN_CROP=96,
                                           MODEL__SEMANTIC_UNET__BOUNDARY=True), is_train=True)
    for record in crowded:
        assert len(record["annotations"]) > 150
        assert _assert_crop_targets_match_whole_image(mapper, record, range(8)) >= 6
