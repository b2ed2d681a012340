"""Hybrid losses against hand-computed values and scikit-image's SSIM."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from maskrcnnpp.modeling.semantic import bce_dice_loss, ms_ssim, unet3p_hybrid_loss

TARGET = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])


def test_bce_dice_hand_computed_at_p_half():
    # p = 0.5 everywhere: BCE = ln 2; Dice = (2 * 1 + 1) / (2 + 2 + 1) = 0.6 (smooth 1).
    loss = bce_dice_loss(torch.zeros(1, 1, 2, 2), TARGET)
    assert float(loss) == pytest.approx(math.log(2) + (1 - 0.6), abs=1e-6)


def test_bce_dice_hand_computed_confident():
    # p = 0.75 on the two positives, 0.25 on the two negatives: every pixel has BCE -ln 0.75;
    # sum(y p) = 1.5, sum(y) = 2, sum(p) = 2 -> Dice = (3 + 1) / (4 + 1) = 0.8.
    logits = torch.log(torch.tensor(3.0)) * (2 * TARGET - 1)
    assert float(bce_dice_loss(logits, TARGET)) == pytest.approx(-math.log(0.75) + 0.2, abs=1e-6)
    # The weights scale the two terms.
    weighted = bce_dice_loss(logits, TARGET, bce_weight=0.5, dice_weight=2.0)
    assert float(weighted) == pytest.approx(-0.5 * math.log(0.75) + 0.4, abs=1e-6)


def test_bce_dice_two_images_average_per_image_dice():
    # Image 2 is empty with an all-negative prediction p = 0.25: Dice = (0 + 1) / (0 + 1 + 1) = 0.5.
    logits = torch.cat([torch.log(torch.tensor(3.0)) * (2 * TARGET - 1), torch.full((1, 1, 2, 2), -math.log(3))])
    target = torch.cat([TARGET, torch.zeros(1, 1, 2, 2)])
    expected = -math.log(0.75) + ((1 - 0.8) + (1 - 0.5)) / 2
    assert float(bce_dice_loss(logits, target)) == pytest.approx(expected, abs=1e-6)


def test_ignored_pixels_are_left_out():
    logits = torch.randn(1, 1, 4, 4)
    target = (torch.rand(1, 1, 4, 4) > 0.5).float()
    valid = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    valid[..., :2, :] = True
    masked = bce_dice_loss(logits, target, valid)
    assert float(masked) == pytest.approx(float(bce_dice_loss(logits[..., :2, :], target[..., :2, :])), abs=1e-6)


def test_unet3p_hybrid_hand_computed():
    # 4x4 all-nucleus target, p = 0.5 everywhere.
    # focal: alpha * (1 - p_t)^gamma * -ln p_t = 0.25 * 0.25 * ln 2 per pixel;
    # MS-SSIM: a 4x4 map fits one scale (window shrunk to 3); constant maps have contrast-structure
    #   (0 + C2) / (0 + C2) = 1 and luminance (2 * 0.5 * 1 + C1) / (0.25 + 1 + C1), C1 = 1e-4;
    # IoU: sum(y p) = 8, sum(y) + sum(p) - sum(y p) = 16 + 8 - 8 = 16 -> (8 + 1) / (16 + 1).
    focal = 0.25 * 0.25 * math.log(2)
    ssim = (1.0 + 1e-4) / (1.25 + 1e-4)
    iou = 9 / 17
    loss = unet3p_hybrid_loss(torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4))
    assert float(loss) == pytest.approx(focal + (1 - ssim) + (1 - iou), abs=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_single_scale_ssim_matches_scikit_image(seed):
    rng = np.random.default_rng(seed)
    x = rng.random((32, 40))
    y = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1)
    ref = structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    ours = ms_ssim(torch.from_numpy(x)[None, None], torch.from_numpy(y)[None, None], weights=(1.0,))
    assert float(ours[0]) == pytest.approx(ref, abs=1e-6)


def test_ms_ssim_is_one_for_identical_maps_and_drops_with_noise():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 96, 96)
    torch.testing.assert_close(ms_ssim(x, x), torch.ones(2, dtype=x.dtype))
    light = ms_ssim(x, (x + 0.05 * torch.randn_like(x)).clamp(0, 1))
    heavy = ms_ssim(x, (x + 0.3 * torch.randn_like(x)).clamp(0, 1))
    assert bool((heavy < light).all()) and bool((light < 1).all())


def test_losses_have_gradients():
    logits = torch.randn(2, 1, 64, 64, requires_grad=True)
    target = (torch.rand(2, 1, 64, 64) > 0.5).float()
    (bce_dice_loss(logits, target) + unet3p_hybrid_loss(logits, target)).backward()
    assert torch.isfinite(logits.grad).all() and float(logits.grad.abs().sum()) > 0
