"""The INPUT.NUCLEI_AUG augmentations: masks, boxes and semantic targets follow the image exactly.

Hand-made images whose pixel values name the nucleus they belong to: after any augmentation,
each instance mask must be exactly the pixels of its value, and its box the mask's extent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T
from detectron2.structures import BoxMode
from PIL import Image
from pycocotools import mask as mask_util

from maskrcnnpp.config import get_maskrcnnpp_cfg
from maskrcnnpp.data.augmentations import (
    DetailLossTransform,
    GreyTransform,
    IntensityTransform,
    InvertTransform,
    RandomDetailLoss,
    RandomIntensity,
    RandomRotation90,
    build_nuclei_augmentations,
    rotation90_transforms,
)
from maskrcnnpp.data.instance_mapper import NucleiInstanceMapper
from maskrcnnpp.data.semantic import SemanticNucleiMapper

STEP = 40  # nucleus k has pixel value 40 * k in every channel


def labelled_image() -> np.ndarray:
    """A 9 x 14 label image: three nuclei of different shapes, none symmetric under rotation."""
    labels = np.zeros((9, 14), dtype=np.uint8)
    labels[1:3, 1:6] = 1      # wide bar near the top-left corner
    labels[4:9, 2:4] = 2      # tall bar touching the bottom border
    labels[5:7, 9:14] = 3     # touches the right border
    labels[4, 12] = 3
    return labels


def record_of(tmp_path: Path, labels: np.ndarray) -> dict:
    image = np.repeat((labels * STEP)[:, :, None], 3, axis=2).astype(np.uint8)
    path = tmp_path / "nuclei.png"
    Image.fromarray(image).save(path)
    annotations = []
    for k in range(1, int(labels.max()) + 1):
        encoded = mask_util.encode(np.asfortranarray((labels == k).astype(np.uint8)))
        annotations.append({"bbox": mask_util.toBbox(encoded).tolist(), "bbox_mode": BoxMode.XYWH_ABS,
                            "category_id": 0, "iscrowd": 0,
                            "segmentation": {"size": encoded["size"], "counts": encoded["counts"].decode()}})
    h, w = labels.shape
    return {"file_name": str(path), "height": h, "width": w, "image_id": 1, "annotations": annotations}


# ----------------------------------------------------------------------------- transforms


@pytest.mark.parametrize("k", range(4))
def test_rotation90_transforms_equal_numpy_rot90_for_images_masks_and_points(k):
    image = np.arange(9 * 14 * 3, dtype=np.uint8).reshape(9, 14, 3)
    transforms = rotation90_transforms(k, 9, 14)
    assert np.array_equal(transforms.apply_image(image), np.rot90(image, k))
    assert np.array_equal(transforms.apply_segmentation(image[:, :, 0]), np.rot90(image[:, :, 0], k))
    # The centre of pixel (y, x) lands on the centre of the pixel that now holds its value.
    ys, xs = np.mgrid[:9, :14]
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1).astype(np.float64)
    moved = transforms.apply_coords(centres.copy())
    rotated = np.rot90(image[:, :, 0], k)
    values = rotated[(moved[:, 1] - 0.5).astype(int), (moved[:, 0] - 0.5).astype(int)]
    assert np.array_equal(values, image[:, :, 0].ravel())


def test_photometric_transforms_hand_worked_values():
    pixels = np.array([[[10, 200, 0], [100, 255, 50]]], dtype=np.uint8)  # 1 x 2 BGR
    assert IntensityTransform(2.0, 1.0, 1.0).apply_image(pixels).tolist() == [[[20, 255, 0], [200, 255, 100]]]
    grey = np.array([[0, 100]], dtype=np.uint8)  # mean 50: contrast 0.5 halves the distance to it
    assert IntensityTransform(1.0, 0.5, 1.0).apply_image(grey).tolist() == [[25, 75]]
    # gamma 2: 255 * (v / 255) ** 2; 128 -> 64.25 -> 64, 255 stays.
    assert IntensityTransform(1.0, 1.0, 2.0).apply_image(np.array([[128, 255, 0]], np.uint8)).tolist() == [[64, 255, 0]]
    assert InvertTransform().apply_image(pixels).tolist() == [[[245, 55, 255], [155, 0, 205]]]
    assert GreyTransform().apply_image(np.array([[[30, 60, 90]]], np.uint8)).tolist() == [[[60, 60, 60]]]
    # detail loss: a 1-pixel checkerboard shrunk by 2 averages to 127.5 everywhere, enlarged back it stays so
    board = (np.indices((6, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    assert DetailLossTransform(0.5).apply_image(board).tolist() == np.full((6, 8), 128).tolist()
    assert np.array_equal(DetailLossTransform(1.0).apply_image(board), board)  # factor 1: unchanged
    flat = np.full((5, 7, 3), 77, np.uint8)
    assert np.array_equal(DetailLossTransform(0.4).apply_image(flat), flat)  # no detail to lose
    seg = np.array([[1, 2]])
    for t in (IntensityTransform(1.5, 0.8, 1.2), InvertTransform(), GreyTransform(), DetailLossTransform(0.5)):
        assert t.apply_segmentation(seg) is seg
        assert np.array_equal(t.apply_coords(np.array([[1.5, 2.5]])), [[1.5, 2.5]])


# ----------------------------------------------------------------------------- mappers


def mapper_with(augmentations) -> NucleiInstanceMapper:
    return NucleiInstanceMapper(is_train=True, augmentations=augmentations, image_format="BGR",
                                use_instance_mask=True, instance_mask_format="bitmask")


@pytest.mark.parametrize("name, augs", [
    ("vertical flip", [T.RandomFlip(prob=1.0, horizontal=False, vertical=True)]),
    ("rotation 90", [RandomRotation90()]),
    ("upscale + all orientations", [T.Resize((18, 28), Image.NEAREST), T.RandomFlip(), T.RandomFlip(horizontal=False, vertical=True),
                                    RandomRotation90()]),
])
def test_instance_masks_and_boxes_follow_each_geometric_augmentation(tmp_path, name, augs):
    record = record_of(tmp_path, labelled_image())
    mapper = mapper_with(augs)
    shapes = set()
    for seed in range(8):
        np.random.seed(seed)
        out = mapper(record)
        image = out["image"][0].numpy()
        shapes.add(image.shape)
        instances = out["instances"]
        assert len(instances) == 3
        for k in range(3):
            expected = image == STEP * (k + 1)
            assert torch.equal(instances.gt_masks.tensor[k], torch.from_numpy(expected)), (name, seed, k)
            ys, xs = np.nonzero(expected)
            assert instances.gt_boxes.tensor[k].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    if name != "vertical flip":
        assert len(shapes) == 2, "both orientations of the non-square image should have been drawn"


def test_photometric_augmentations_leave_masks_and_boxes_alone(tmp_path):
    record = record_of(tmp_path, labelled_image())
    plain = mapper_with([RandomRotation90()])
    photometric = mapper_with([RandomRotation90(), RandomIntensity((0.5, 1.5), (0.5, 1.5), (0.5, 2.0)),
                               T.RandomApply(InvertTransform(), 1.0), T.RandomApply(GreyTransform(), 1.0),
                               T.RandomApply(RandomDetailLoss((0.5, 0.9)), 1.0)])
    for seed in range(4):
        np.random.seed(seed)
        expected = plain(record)
        np.random.seed(seed)
        got = photometric(record)
        assert torch.equal(got["instances"].gt_masks.tensor, expected["instances"].gt_masks.tensor)
        assert torch.equal(got["instances"].gt_boxes.tensor, expected["instances"].gt_boxes.tensor)
        # Inverted: the background (0) is now the brightest value, the nuclei darker.
        background = ~expected["instances"].gt_masks.tensor.any(0)
        assert got["image"][0][background].float().mean() > got["image"][0][~background].float().mean()


def test_semantic_mapper_targets_follow_the_rotation(tmp_path):
    cfg = get_maskrcnnpp_cfg()
    cfg.MODEL.SEMANTIC_UNET.TRAIN_CROP = 8
    cfg.INPUT.NUCLEI_AUG.ROTATE_90 = True
    cfg.INPUT.NUCLEI_AUG.VERTICAL_FLIP = True  # the semantic mapper flips both ways already: not twice
    mapper = SemanticNucleiMapper(cfg, is_train=True)
    kinds = [type(a).__name__ for a in mapper.augmentations.augs]
    assert kinds == ["RandomCrop", "RandomFlip", "RandomFlip", "RandomRotation90"]
    record = record_of(tmp_path, labelled_image())
    for seed in range(6):
        np.random.seed(seed)
        out = mapper(record)
        foreground = out["image"][0].numpy() > 0
        assert out["sem_seg"].shape == (8, 8)
        assert np.array_equal(out["sem_seg"].numpy() == 1, foreground)


# ----------------------------------------------------------------------------- config


def test_config_switches_each_augmentation_and_names_bad_keys():
    cfg = get_maskrcnnpp_cfg()
    assert build_nuclei_augmentations(cfg, True) == []  # all off by default: Detectron2's behaviour
    aug = cfg.INPUT.NUCLEI_AUG
    aug.VERTICAL_FLIP, aug.ROTATE_90, aug.GAMMA, aug.INVERT_PROB, aug.GREY_PROB = True, True, [0.8, 1.25], 0.3, 0.2
    augs = build_nuclei_augmentations(cfg, True)
    assert [type(a).__name__ for a in augs] == ["RandomFlip", "RandomRotation90", "RandomIntensity", "RandomApply",
                                                "RandomApply"]
    assert augs[2].gamma == [0.8, 1.25] and augs[2].brightness == [1.0, 1.0]
    assert (augs[3].prob, type(augs[3].aug.get_transform(None)).__name__) == (0.3, "InvertTransform")
    assert (augs[4].prob, type(augs[4].aug.get_transform(None)).__name__) == (0.2, "GreyTransform")
    assert build_nuclei_augmentations(cfg, False) == []
    aug.INVERT_PROB = 1.5
    with pytest.raises(ValueError, match=r"INPUT\.NUCLEI_AUG\.INVERT_PROB"):
        build_nuclei_augmentations(cfg, False)
    aug.INVERT_PROB = 0.0
    aug.CONTRAST = [1.2, 0.8]
    with pytest.raises(ValueError, match=r"INPUT\.NUCLEI_AUG\.CONTRAST"):
        build_nuclei_augmentations(cfg, True)
    aug.CONTRAST = [1.0, 1.0]
    aug.DETAIL_LOSS_PROB = 0.5
    detail = build_nuclei_augmentations(cfg, True)[-1]
    assert detail.prob == 0.5 and type(detail.aug).__name__ == "RandomDetailLoss" and detail.aug.factors == [0.5, 1.0]
    aug.DETAIL_LOSS = [0.5, 1.2]  # enlarging would add no detail: refused
    with pytest.raises(ValueError, match=r"INPUT\.NUCLEI_AUG\.DETAIL_LOSS must be \[low, high\] with 0 < low <= high <= 1"):
        build_nuclei_augmentations(cfg, True)


def test_non_numeric_values_name_their_key():
    cfg = get_maskrcnnpp_cfg()
    cfg.INPUT.NUCLEI_AUG.GAMMA = ["a", 1.0]
    with pytest.raises(ValueError, match=r"INPUT\.NUCLEI_AUG\.GAMMA must be \[low, high\].*'a'"):
        build_nuclei_augmentations(cfg, True)
    cfg.INPUT.NUCLEI_AUG.GAMMA = [1.0, 1.0]
    cfg.INPUT.NUCLEI_AUG.GREY_PROB = "often"
    with pytest.raises(ValueError, match=r"INPUT\.NUCLEI_AUG\.GREY_PROB must be a probability"):
        build_nuclei_augmentations(cfg, True)
