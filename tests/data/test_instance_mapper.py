"""NucleiInstanceMapper gives exactly Detectron2's DatasetMapper output, faster.

Both mappers see the same dataset dict with NumPy's global RNG seeded the same way, so they draw
the same random transform; images, boxes (values and dtype), classes and BitMasks must be equal.
Real DSB 2018 images (skipped without the zip) and small synthetic cases: no instances, crowd,
overlapping masks, masks that vanish when downscaled, non-square images, integer boxes, every
count format, crop with recomputed boxes, polygons and an unsupported transform (stock path).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from PIL import Image
from pycocotools import mask as mask_util

from coco_masks import box_mask, rle
from maskrcnnpp.data.augmentations import (
    GreyTransform,
    InvertTransform,
    RandomIntensity,
    RandomRotation90,
    TransposeTransform,
    rotation90_transforms,
)
from maskrcnnpp.data.instance_mapper import (
    InstanceAnnotationError,
    NucleiInstanceMapper,
    pil_nearest_indices,
    transform_index_maps,
)


# ----------------------------------------------------------------------------- helpers


def annotation(mask: np.ndarray, ann_id: int, *, counts: str = "str", iscrowd: int = 0, category: int = 0) -> dict:
    x, y, w, h = mask_util.toBbox(rle(mask, "bytes")).tolist()
    return {"id": ann_id, "bbox": [x, y, w, h], "bbox_mode": BoxMode.XYWH_ABS, "category_id": category,
            "iscrowd": iscrowd, "segmentation": rle(mask, counts)}


def write_record(folder: Path, name: str, height: int, width: int, annotations: List[dict], seed: int = 0) -> dict:
    """A Detectron2 dataset dict whose image is a random RGB PNG written to ``folder``."""
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path = folder / f"{name}.png"
    Image.fromarray(image).save(path)
    return {"file_name": str(path), "height": height, "width": width, "image_id": name, "annotations": annotations}


class RecordingMapper(NucleiInstanceMapper):
    """Remembers the transforms drawn for each image (to check what the tests covered)."""

    drawn: List[T.TransformList]

    def _transform_annotations(self, dataset_dict, transforms, image_shape):
        self.drawn.append(transforms)
        super()._transform_annotations(dataset_dict, transforms, image_shape)


def mapper_pair(augmentations: Sequence, **kwargs):
    args = dict(is_train=True, augmentations=list(augmentations), image_format="BGR", use_instance_mask=True,
                instance_mask_format="bitmask")
    args.update(kwargs)
    new = RecordingMapper(**args)
    new.drawn = []
    return DatasetMapper(**args), new


def map_both(stock: DatasetMapper, new: NucleiInstanceMapper, record: dict, seed: int):
    before = copy.deepcopy(record)
    np.random.seed(seed)
    expected = stock(record)
    np.random.seed(seed)
    got = new(record)
    assert record == before, "the mapper changed its input"
    return expected, got


def assert_same_output(expected: dict, got: dict) -> None:
    assert list(got) == list(expected)
    for key in expected:
        if key not in ("image", "instances"):
            assert got[key] == expected[key], key
    assert got["image"].dtype == expected["image"].dtype and torch.equal(got["image"], expected["image"])
    if "instances" not in expected:
        return
    e, g = expected["instances"], got["instances"]
    assert g.image_size == e.image_size
    assert list(g.get_fields()) == list(e.get_fields())
    assert g.gt_boxes.tensor.dtype == e.gt_boxes.tensor.dtype == torch.float32
    assert torch.equal(g.gt_boxes.tensor, e.gt_boxes.tensor), (g.gt_boxes.tensor - e.gt_boxes.tensor).abs().max()
    assert g.gt_classes.dtype == e.gt_classes.dtype and torch.equal(g.gt_classes, e.gt_classes)
    if e.has("gt_masks"):
        assert type(g.gt_masks) is type(e.gt_masks)
        assert g.gt_masks.tensor.dtype == e.gt_masks.tensor.dtype == torch.bool
        assert g.gt_masks.tensor.shape == e.gt_masks.tensor.shape
        assert torch.equal(g.gt_masks.tensor, e.gt_masks.tensor)


# ----------------------------------------------------------------------------- building blocks


def test_pil_nearest_indices_reproduce_pil_resize():
    rng = np.random.default_rng(1)
    for (h, w), (nh, nw) in [((256, 256), (768, 768)), ((603, 1272), (664, 1400)), ((1040, 1388), (512, 683)),
                             ((37, 53), (61, 83)), ((37, 53), (17, 29)), ((5, 7), (5, 7)), ((360, 360), (577, 577))]:
        mask = rng.integers(0, 256, (h, w), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(mask).resize((nw, nh), Image.NEAREST))
        assert np.array_equal(mask[pil_nearest_indices(h, nh)][:, pil_nearest_indices(w, nw)], expected)


def test_index_maps_compose_resize_flip_crop_and_refuse_other_transforms():
    rng = np.random.default_rng(2)
    mask = rng.integers(0, 2, (37, 53), dtype=np.uint8)
    transforms = T.TransformList([T.CropTransform(3, 4, 40, 30), T.ResizeTransform(30, 40, 45, 70, Image.BILINEAR),
                                  T.HFlipTransform(70), T.VFlipTransform(45), T.NoOpTransform()])
    rows, cols, transposed = transform_index_maps(transforms, 37, 53)
    assert not transposed
    assert np.array_equal(mask[rows][:, cols], transforms.apply_segmentation(mask))
    assert transform_index_maps(T.TransformList([T.RotationTransform(37, 53, 30)]), 37, 53) is None
    # A transpose anywhere (here between a crop/resize and flips) makes the maps index mask.T.
    for k in range(4):
        transforms = T.TransformList([T.CropTransform(3, 4, 40, 30), T.ResizeTransform(30, 40, 45, 70),
                                      rotation90_transforms(k, 45, 70), T.ResizeTransform(*((70, 45, 35, 50) if k % 2
                                                                                           else (45, 70, 50, 35)))])
        rows, cols, transposed = transform_index_maps(transforms, 37, 53)
        assert transposed == (k % 2 == 1)
        source = mask.T if transposed else mask
        assert np.array_equal(source[rows][:, cols], transforms.apply_segmentation(mask))
    assert transform_index_maps(T.TransformList([T.ResizeTransform(36, 53, 40, 50)]), 37, 53) is None


# ----------------------------------------------------------------------------- synthetic images


@pytest.fixture
def crowded(tmp_path) -> dict:
    """37 x 53 image: overlapping nuclei, one inside another, a 1-pixel one, crowd, str and bytes counts.

    (Not list counts: Detectron2's mapper cannot decode those; load_coco_json compresses them.)
    """
    h, w = 37, 53
    masks = [
        box_mask(h, w, 2, 20, 3, 25),      # 0: large
        box_mask(h, w, 10, 30, 15, 40),    # 1: overlaps 0
        box_mask(h, w, 5, 9, 6, 10),       # 2: entirely inside 0
        box_mask(h, w, 33, 34, 50, 51),    # 3: one pixel (vanishes on strong downscaling)
        box_mask(h, w, 30, 37, 0, 6),      # 4: touches the left and bottom borders
        box_mask(h, w, 0, 4, 45, 53),      # 5: crowd region
    ]
    anns = [annotation(masks[0], 10, counts="str"), annotation(masks[1], 11, counts="bytes", category=1),
            annotation(masks[2], 12), annotation(masks[3], 13), annotation(masks[4], 14),
            annotation(masks[5], 15, iscrowd=1)]
    anns[4]["bbox"] = [0, 30, 6, 7]  # integer box: Detectron2 truncates it when resizing
    anns[3]["bbox"] = [50.0, 33.0, 51.0, 34.0]
    anns[3]["bbox_mode"] = BoxMode.XYXY_ABS
    return write_record(tmp_path, "crowded", h, w, anns)


SYNTHETIC_AUGS = {
    "upscale-hflip": [T.Resize((61, 83)), T.RandomFlip(prob=1.0)],
    "downscale-vflip": [T.Resize((9, 13)), T.RandomFlip(prob=1.0, horizontal=False, vertical=True)],
    "shortest-edge-random-flip": [T.ResizeShortestEdge((45, 60, 75), 110, "choice"), T.RandomFlip()],
    "rotation-stock-path": [T.RandomRotation([90, 90])],
    # The nuclei augmentations (INPUT.NUCLEI_AUG) take the fast path: transposes and pixel-value changes.
    "nuclei-augmentations": [T.ResizeShortestEdge((45, 60), 110, "choice"), T.RandomFlip(),
                             T.RandomFlip(horizontal=False, vertical=True), RandomRotation90(),
                             RandomIntensity((0.7, 1.3), (0.7, 1.3), (0.7, 1.4)), T.RandomApply(InvertTransform(), 0.5),
                             T.RandomApply(GreyTransform(), 0.5)],
}


@pytest.mark.parametrize("name", sorted(SYNTHETIC_AUGS))
def test_synthetic_image_same_output(crowded, name):
    stock, new = mapper_pair(SYNTHETIC_AUGS[name])
    for seed in range(3):
        expected, got = map_both(stock, new, crowded, seed)
        assert_same_output(expected, got)
        n = len(expected["instances"])
        # The crowd region is never an instance; the 1-pixel nucleus does not survive 37 -> 9 rows.
        assert n == (4 if name == "downscale-vflip" else 5)
        assert set(expected["instances"].gt_classes.tolist()) == {0, 1}
    if name == "nuclei-augmentations":
        assert all(transform_index_maps(t, 37, 53) is not None for t in new.drawn), "stock path taken"
        assert any(isinstance(x, TransposeTransform) for t in new.drawn for x in t.transforms)
    if name == "upscale-hflip":
        masks = got["instances"].gt_masks.tensor
        assert masks.shape == (5, 61, 83)
        assert (masks[0] & masks[1]).any() and not (masks[2] & ~masks[0]).any()  # overlaps kept
        # The integer box was truncated as Detectron2 does: x1 = 6 * 83 / 53 = 9.39 -> 9.
        boxes = got["instances"].gt_boxes.tensor
        assert boxes[4].tolist() == [83 - 9, 49, 83, 61]


def test_fractional_boxes_follow_detectron2_float32_conversion(tmp_path):
    """BoxMode.convert adds x + w of a list box in float32: the last bits of gt_boxes show it."""
    rng = np.random.default_rng(4)
    mask = box_mask(30, 40, 5, 15, 8, 20)
    anns = []
    for k in range(40):
        ann = annotation(mask, k)
        ann["bbox"] = [float(v) for v in rng.uniform(0, 12, 4).round(rng.integers(1, 9))]
        anns.append(ann)
    record = write_record(tmp_path, "fractional", 30, 40, anns)
    stock, new = mapper_pair([T.Resize((47, 61)), T.RandomFlip(prob=1.0)])
    expected, got = map_both(stock, new, record, 0)
    assert_same_output(expected, got)
    # Not what float64 arithmetic gives for every box.
    boxes64 = np.array([a["bbox"] for a in anns])
    boxes64[:, 2:] += boxes64[:, :2]
    x_scale, y_scale = 61 / 40, 47 / 30
    x0, x1 = 61 - boxes64[:, 2] * x_scale, 61 - boxes64[:, 0] * x_scale
    naive = torch.as_tensor(np.stack([x0, boxes64[:, 1] * y_scale, x1, boxes64[:, 3] * y_scale], 1), dtype=torch.float32)
    assert not torch.equal(naive, got["instances"].gt_boxes.tensor)
    assert torch.allclose(naive, got["instances"].gt_boxes.tensor, atol=1e-4)


def test_random_images_same_output(tmp_path):
    """Random sizes, random (often overlapping, sometimes empty) blobs, random scales and flips."""
    rng = np.random.default_rng(3)
    augs = [T.ResizeShortestEdge((7, 16, 33, 64), 90, "choice"), T.RandomFlip(),
            T.RandomFlip(horizontal=False, vertical=True)]
    stock, new = mapper_pair(augs)
    overlapping = kept = 0
    for case in range(24):
        h, w = (int(v) for v in rng.integers(5, 48, size=2))
        masks = []
        for _ in range(int(rng.integers(1, 9))):
            y, x = rng.integers(0, h), rng.integers(0, w)
            ry, rx = rng.integers(0, max(2, h // 3)), rng.integers(0, max(2, w // 3))
            yy, xx = np.ogrid[:h, :w]
            masks.append(((yy - y) ** 2 * (rx + 1) ** 2 + (xx - x) ** 2 * (ry + 1) ** 2) <= ((ry + 1) * (rx + 1)) ** 2 / 2)
        masks.append(np.zeros((h, w), bool))  # an empty mask: dropped, as by filter_empty_instances
        overlapping += int(np.any(np.sum(masks, axis=0) > 1))
        record = write_record(tmp_path, f"random{case}", h, w, [annotation(m, k) for k, m in enumerate(masks)], seed=case)
        expected, got = map_both(stock, new, record, case)
        assert_same_output(expected, got)
        kept += len(got["instances"])
    assert overlapping > 10 and kept > 50


def test_crop_recomputes_boxes_from_masks_as_stock(crowded):
    augs = [T.RandomCrop("absolute", (25, 30)), T.ResizeShortestEdge((40, 60), 90, "choice"), T.RandomFlip()]
    stock, new = mapper_pair(augs, recompute_boxes=True)
    counts = set()
    for seed in range(6):
        expected, got = map_both(stock, new, crowded, seed)
        assert_same_output(expected, got)
        counts.add(len(expected["instances"]))
    assert len(counts) > 1, "the random crops should keep different numbers of nuclei"
    assert all(isinstance(t, T.CropTransform) for t in (tl.transforms[0] for tl in new.drawn))


def test_no_instances_crowd_only_and_polygons(tmp_path):
    stock, new = mapper_pair([T.ResizeShortestEdge(30, 100), T.RandomFlip(prob=1.0)])
    h, w = 20, 28
    crowd = annotation(box_mask(h, w, 3, 9, 4, 12), 1, iscrowd=1)
    polygon = {"id": 2, "bbox": [4.0, 3.0, 8.0, 6.0], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0,
               "iscrowd": 0, "segmentation": [[4.0, 3.0, 12.0, 3.0, 12.0, 9.0, 4.0, 9.0]]}
    cases = {
        "empty": write_record(tmp_path, "empty", h, w, []),
        "crowd_only": write_record(tmp_path, "crowd_only", h, w, [crowd]),
        "polygon": write_record(tmp_path, "polygon", h, w, [polygon, crowd]),
        "polygon_and_rle": write_record(tmp_path, "mixed", h, w, [polygon, annotation(box_mask(h, w, 12, 18, 2, 9), 3)]),
    }
    no_annotations = {k: v for k, v in cases["empty"].items() if k != "annotations"}
    for name, record in list(cases.items()) + [("no_annotations_key", no_annotations)]:
        expected, got = map_both(stock, new, record, 0)
        assert_same_output(expected, got)
        if name == "no_annotations_key":
            assert "instances" not in got
        elif name in ("empty", "crowd_only"):
            assert len(got["instances"]) == 0 and not got["instances"].has("gt_masks")
        else:
            assert len(got["instances"]) == (1 if name == "polygon" else 2)
            assert got["instances"].gt_masks.tensor.sum() > 0


def test_crop_on_an_image_without_instances_gives_empty_instances(tmp_path):
    # INPUT.CROP with FILTER_EMPTY_ANNOTATIONS False: stock DatasetMapper raises AttributeError
    # (gt_masks) here; ours gives what stock gives for the same image without cropping.
    h, w = 20, 28
    crowd = annotation(box_mask(h, w, 3, 9, 4, 12), 1, iscrowd=1)
    _, cropping = mapper_pair([T.RandomCrop("absolute", (12, 16))], recompute_boxes=True)
    stock, _ = mapper_pair([T.RandomCrop("absolute", (12, 16))], recompute_boxes=False)
    for record in (write_record(tmp_path, "empty", h, w, []), write_record(tmp_path, "crowd_only", h, w, [crowd])):
        with pytest.raises(AttributeError, match="gt_masks"):
            map_both(*mapper_pair([T.RandomCrop("absolute", (12, 16))], recompute_boxes=True), record, 0)
        expected, got = map_both(stock, cropping, record, 0)
        assert_same_output(expected, got)
        assert got["image"].shape == (3, 12, 16) and len(got["instances"]) == 0


def test_bad_rle_error_names_file_and_annotation(crowded):
    _, new = mapper_pair([T.Resize((40, 60))])
    record = copy.deepcopy(crowded)
    record["annotations"][1]["segmentation"] = rle(np.zeros((36, 53), bool))
    with pytest.raises(InstanceAnnotationError, match=r"crowded\.png: annotation #1 of 6 \(id 11\): RLE size \[36, 53\]"):
        new(record)
    record["annotations"][1]["segmentation"] = {"size": [37, 53], "counts": "0a"}
    del record["annotations"][1]["id"]
    with pytest.raises(InstanceAnnotationError, match=r"crowded\.png: annotation #1 of 6: .*truncated"):
        new(record)


# ----------------------------------------------------------------------------- real DSB 2018


@pytest.fixture(scope="module")
def dsb_train_records(dsb2018_prepared) -> List[Dict]:
    """dsb2018_train as the project registers it, with the default registration restored after."""
    from maskrcnnpp.data import register_dsb2018

    register_dsb2018(str(dsb2018_prepared))
    try:
        return DatasetCatalog.get("dsb2018_train")
    finally:
        register_dsb2018()


@pytest.mark.realdata
def test_real_dsb2018_images_same_output(dsb_train_records):
    from maskrcnnpp.config import setup_cfg

    cfg = setup_cfg("maskrcnnpp_r101_scratch", device="cpu")
    stock = DatasetMapper(cfg, is_train=True)
    new = RecordingMapper(cfg, is_train=True)
    new.drawn = []
    # Every image size of the split (the image with the fewest nuclei of each, to stay fast) and
    # the most crowded 256 x 256 image.
    by_size: Dict[tuple, dict] = {}
    for r in sorted(dsb_train_records, key=lambda r: (len(r["annotations"]), r["image_id"])):
        by_size.setdefault((r["height"], r["width"]), r)
    square = [r for r in dsb_train_records if (r["height"], r["width"]) == (256, 256)]
    records = list(by_size.values()) + [max(square, key=lambda r: len(r["annotations"]))]
    assert len(records) == 9
    total = 0
    for seed, record in enumerate(records):
        expected, got = map_both(stock, new, record, seed)
        assert_same_output(expected, got)
        assert len(got["instances"]) == len(record["annotations"])  # DSB has no crowd, no tiny nuclei
        total += len(got["instances"])
    assert total > 100
    flips = [any(isinstance(t, T.HFlipTransform) for t in tl.transforms) for tl in new.drawn]
    sizes = {tl.transforms[0].new_h * 10000 + tl.transforms[0].new_w for tl in new.drawn}
    assert any(flips) and not all(flips) and len(sizes) > 3, "seeds must cover flips and several scales"
