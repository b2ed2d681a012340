"""Losses of the semantic baselines: UNet++'s hybrid BCE + soft Dice and UNet 3+'s focal + MS-SSIM + IoU.

All take logits and binary targets of shape [N, 1, H, W] and an optional boolean ``valid`` mask
of the same shape (False = ignored pixel, e.g. batch padding); per-image terms (Dice, IoU,
MS-SSIM) are averaged over the batch, per-pixel terms over the valid pixels of the batch.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

# Wang, Simoncelli & Bovik 2003: exponents of scales 1..5 (finest first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _valid_or_ones(target: torch.Tensor, valid: Optional[torch.Tensor]) -> torch.Tensor:
    if valid is None:
        return torch.ones_like(target)
    if valid.shape != target.shape:
        raise ValueError(f"valid mask shape {tuple(valid.shape)} != target shape {tuple(target.shape)}")
    return valid.to(target.dtype)


def _masked_pixel_mean(per_pixel: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    return (per_pixel * weights).sum() / weights.sum().clamp_min(1.0)


def soft_dice(prob: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, smooth: float) -> torch.Tensor:
    """Per-image soft Dice (2 sum(y p) + s) / (sum(y) + sum(p) + s) over valid pixels, shape [N]."""
    p = (prob * weights).flatten(1)
    y = (target * weights).flatten(1)
    return (2 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)


def bce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    *,
    bce_weight: float = 1.0,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
) -> torch.Tensor:
    """UNet++'s hybrid loss (Eq. 2): pixel-wise binary cross-entropy plus soft Dice.

    L = bce_weight * mean_valid BCE(y, p) + dice_weight * mean_n (1 - Dice_n(y, p)), p = sigmoid(logits).
    Eq. 2 writes -(BCE' + Dice); using 1 - Dice only adds a constant. The smoothing ``s`` keeps an
    empty target with an empty prediction at Dice 1.
    """
    target = target.to(logits.dtype)
    weights = _valid_or_ones(target, valid)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    dice = soft_dice(torch.sigmoid(logits), target, weights, smooth)
    return bce_weight * _masked_pixel_mean(bce, weights) + dice_weight * (1 - dice).mean()


def iou_loss(prob: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """UNet 3+'s IoU loss: mean_n 1 - (sum(y p) + s) / (sum(y) + sum(p) - sum(y p) + s)."""
    p = (prob * weights).flatten(1)
    y = (target * weights).flatten(1)
    inter = (p * y).sum(1)
    return (1 - (inter + smooth) / (p.sum(1) + y.sum(1) - inter + smooth)).mean()


def gaussian_window(size: int, sigma: float, device=None, dtype=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of ``size`` taps (odd), as SSIM's 11-tap, sigma 1.5 window."""
    coords = torch.arange(size, device=device, dtype=dtype or torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float):
    """Mean SSIM and mean contrast-structure term per image, with 'valid' Gaussian filtering."""
    c = x.shape[1]
    k = window.numel()
    wx = window.view(1, 1, 1, k).expand(c, 1, 1, k)
    wy = window.view(1, 1, k, 1).expand(c, 1, k, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cov = blur(x * y) - mx * my
    cs = (2 * cov + c2) / (vx + vy + c2)
    lum = (2 * mx * my + c1) / (mx * mx + my * my + c1)
    return (lum * cs).flatten(1).mean(1), cs.flatten(1).mean(1)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
) -> torch.Tensor:
    """Multi-scale SSIM per image (Wang et al. 2003), shape [N].

    MS-SSIM = prod_{j<M} cs_j^{w_j} * SSIM_M^{w_M}, 2x average-pooling between scales, Gaussian
    window with 'valid' filtering (as skimage's ``structural_similarity`` with gaussian weights).
    Small inputs use the scales whose side still fits the window (96 px crops: 4 scales), with the
    weights renormalised to sum to 1; inputs smaller than the window shrink the window. Negative
    terms are clamped to a tiny positive value before the fractional powers.
    """
    side = min(x.shape[-2:])
    if side < window_size:
        window_size = side if side % 2 else side - 1
        scales = 1
    else:
        scales = 1
        while scales < len(weights) and side // 2**scales >= window_size:
            scales += 1
    w = torch.tensor(weights[:scales], device=x.device, dtype=x.dtype)
    w = w / w.sum()
    window = gaussian_window(window_size, sigma, device=x.device, dtype=x.dtype)
    result = torch.ones(x.shape[0], device=x.device, dtype=x.dtype)
    for s in range(scales):
        ssim, cs = _ssim_terms(x, y, window, data_range)
        term = ssim if s == scales - 1 else cs
        result = result * term.clamp_min(1e-6) ** w[s]
        if s < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return result


def unet3p_hybrid_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    valid: Optional[torch.Tensor] = None,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    smooth: float = 1.0,
) -> torch.Tensor:
    """UNet 3+'s hybrid loss: focal + (1 - MS-SSIM) + IoU loss on p = sigmoid(logits).

    Focal loss is torchvision's ``sigmoid_focal_loss`` averaged over valid pixels; ignored pixels
    are set to 0 in both maps for MS-SSIM and left out of the IoU sums.
    """
    target = target.to(logits.dtype)
    weights = _valid_or_ones(target, valid)
    prob = torch.sigmoid(logits)
    focal = _masked_pixel_mean(sigmoid_focal_loss(logits, target, alpha=alpha, gamma=gamma, reduction="none"), weights)
    ssim_term = 1 - ms_ssim(prob * weights, target * weights).mean()
    return focal + ssim_term + iou_loss(prob, target, weights, smooth)
