"""The out-of-distribution augmentations (stain jitter, blur, noise): hand-worked values, masks that
stay aligned with the image, and the config keys that switch them on."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from detectron2.data import transforms as T

from maskrcnnpp.config import get_maskrcnnpp_cfg
from maskrcnnpp.data.augmentations import (
    BlurTransform,
    HedJitterTransform,
    NoiseTransform,
    RandomBlur,
    RandomHedJitter,
    RandomNoise,
    RandomRotation90,
    build_nuclei_augmentations,
)

from test_augmentations import STEP, labelled_image, mapper_with, record_of  # noqa: E402


def stained(height: int = 6, width: int = 8) -> np.ndarray:
    """A pink (eosin-like) field with a purple (haematoxylin-like) block, RGB uint8."""
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = (230, 150, 200)
    rgb[2:4, 3:6] = (90, 60, 150)
    return rgb


def test_hed_identity_keeps_the_image_and_bgr_is_rgb_reversed():
    rgb = stained()
    same = HedJitterTransform([1.0, 1.0, 1.0], [0.0, 0.0, 0.0], bgr=False).apply_image(rgb)
    assert np.abs(same.astype(int) - rgb.astype(int)).max() <= 1  # rgb2hed / hed2rgb round trip
    jitter = HedJitterTransform([1.3, 0.8, 1.0], [0.01, 0.0, 0.0], bgr=False)
    bgr_out = HedJitterTransform([1.3, 0.8, 1.0], [0.01, 0.0, 0.0], bgr=True).apply_image(rgb[..., ::-1].copy())
    assert np.array_equal(bgr_out[..., ::-1], jitter.apply_image(rgb))


def test_hed_more_haematoxylin_darkens_the_nucleus_more_than_the_background():
    rgb = stained().astype(np.float32)
    out = HedJitterTransform([1.5, 1.0, 1.0], [0.0, 0.0, 0.0], bgr=False).apply_values(rgb)
    nucleus_drop = (rgb[2, 4] - out[2, 4]).mean()
    background_drop = (rgb[0, 0] - out[0, 0]).mean()
    assert nucleus_drop > 5 and nucleus_drop > 2 * abs(background_drop)


def test_hed_jitter_leaves_grey_images_alone():
    grey = np.repeat(np.arange(48, dtype=np.uint8).reshape(6, 8)[..., None], 3, axis=2)
    np.random.seed(0)
    assert isinstance(RandomHedJitter(0.3, bgr=True).get_transform(grey), T.NoOpTransform)
    assert isinstance(RandomHedJitter(0.3, bgr=True).get_transform(stained()), HedJitterTransform)


def test_blur_hand_worked_and_noise_reproducible():
    impulse = np.zeros((9, 9), np.float32)
    impulse[4, 4] = 255.0
    out = BlurTransform(1.0).apply_values(impulse)
    assert out.sum() == pytest.approx(255.0, rel=1e-4)  # a blur keeps the total
    assert out[4, 4] == pytest.approx(255.0 / (2 * np.pi), abs=0.05)  # (1 / sqrt(2 pi))^2 for sigma 1
    assert np.allclose(out, out.T)
    assert np.array_equal(BlurTransform(0.0).apply_values(impulse), impulse)
    flat = np.full((64, 64, 3), 100, np.uint8)
    a, b = NoiseTransform(5.0, seed=3).apply_image(flat), NoiseTransform(5.0, seed=3).apply_image(flat)
    assert np.array_equal(a, b)
    assert np.array_equal(a[..., 0], a[..., 2])  # the same noise in each channel: a grey image stays grey
    assert a.astype(float).std() == pytest.approx(5.0, rel=0.1)


def test_new_augmentations_leave_masks_and_boxes_alone(tmp_path):
    record = record_of(tmp_path, labelled_image())
    plain = mapper_with([RandomRotation90()])
    photometric = mapper_with([RandomRotation90(), T.RandomApply(RandomHedJitter(0.2, bgr=True), 1.0),
                               T.RandomApply(RandomBlur((0.3, 0.6)), 1.0), T.RandomApply(RandomNoise((1.0, 4.0)), 1.0)])
    for seed in range(4):
        np.random.seed(seed)
        expected = plain(record)
        np.random.seed(seed)
        got = photometric(record)
        assert torch.equal(got["instances"].gt_masks.tensor, expected["instances"].gt_masks.tensor)
        assert torch.equal(got["instances"].gt_boxes.tensor, expected["instances"].gt_boxes.tensor)
        # blurred and noisy, yet each nucleus is still brighter on average than the background
        masks = expected["instances"].gt_masks.tensor
        background = got["image"][0][~masks.any(0)].float().mean()
        for k in range(3):
            assert got["image"][0][masks[k]].float().mean() > background + STEP / 4


def test_config_switches_the_new_augmentations_in_order_and_names_bad_keys():
    cfg = get_maskrcnnpp_cfg()
    aug = cfg.INPUT.NUCLEI_AUG
    aug.HED_PROB, aug.BLUR_PROB, aug.NOISE_PROB, aug.INVERT_PROB = 0.5, 0.3, 0.2, 0.1
    augs = build_nuclei_augmentations(cfg, True)
    names = [type(a.aug.get_transform(None) if a.aug.__class__.__name__ == "_TransformToAug" else a.aug).__name__
             for a in augs]
    assert names == ["RandomHedJitter", "InvertTransform", "RandomBlur", "RandomNoise"]
    assert [a.prob for a in augs] == [0.5, 0.1, 0.3, 0.2]
    assert augs[0].aug.sigma == 0.05 and augs[0].aug.bgr  # Detectron2's default INPUT.FORMAT is BGR
    assert augs[2].aug.sigmas == [0.0, 1.5] and augs[3].aug.stds == [0.0, 8.0]
    assert build_nuclei_augmentations(cfg, False) == []
    aug.HED_SIGMA = 1.5
    with pytest.raises(ValueError, match=r"INPUT\.NUCLEI_AUG\.HED_SIGMA"):
        build_nuclei_augmentations(cfg, True)
    aug.HED_SIGMA = 0.05
    aug.NOISE_STD = [-1.0, 2.0]
    with pytest.raises(ValueError, match=r"INPUT\.NUCLEI_AUG\.NOISE_STD must be \[low, high\] with 0 <= low <= high"):
        build_nuclei_augmentations(cfg, True)
