"""Segmentation losses shared by Mask RCNN++'s deep supervision and the semantic baselines."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - Dice`` with soft predictions, per sample then averaged over the batch.

    Dice = (2 * sum(y * p) + eps) / (sum(y) + sum(p) + eps) with p = sigmoid(logits), summed over
    all pixels (and channels) of a sample; ``eps`` keeps an empty target with an empty prediction
    at loss 0.
    """
    p = torch.sigmoid(logits).flatten(1)
    y = target.flatten(1).to(p.dtype)
    dice = (2 * (p * y).sum(1) + eps) / (p.sum(1) + y.sum(1) + eps)
    return (1 - dice).mean()


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, bce_weight: float = 1.0, dice_weight: float = 1.0) -> torch.Tensor:
    """The UNet++ paper's hybrid loss (Eq. 2): pixel-wise binary cross-entropy plus soft Dice.

    L(Y, P) = BCE(Y, P) + (1 - Dice(Y, P)), BCE averaged over pixels, Dice as in
    :func:`soft_dice_loss`; ``target`` may be soft (e.g. an area-downsampled mask).
    """
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))
    return bce_weight * bce + dice_weight * soft_dice_loss(logits, target)
