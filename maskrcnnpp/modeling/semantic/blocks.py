"""Small building blocks shared by the semantic decoders."""
from __future__ import annotations

from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import conv_norm_relu

class ConvStack(nn.Sequential):
    """``num_convs`` x (3x3 conv + norm + ReLU): the node function H(.) of U-Net / UNet++."""

    def __init__(self, in_channels: int, out_channels: int, norm: str, num_convs: int = 2):
        if num_convs < 1:
            raise ValueError(f"MODEL.SEMANTIC_UNET.NODE_CONVS must be >= 1, got {num_convs}")
        layers = [conv_norm_relu(in_channels, out_channels, norm)]
        layers += [conv_norm_relu(out_channels, out_channels, norm) for _ in range(num_convs - 1)]
        super().__init__(*layers)


def resample_to(x: torch.Tensor, size: Tuple[int, int], upsample: str) -> torch.Tensor:
    """Bring ``x`` to spatial ``size``: interpolation when upsampling, max-pooling when downsampling.

    Max-pooling (kernel = stride = the integer ratio, ceil mode) is UNet 3+'s way of sending a
    finer encoder map to a coarser decoder node; sizes here are powers-of-two multiples because
    inputs are padded to the encoder's size divisibility.
    """
    h, w = x.shape[-2:]
    if (h, w) == tuple(size):
        return x
    if h >= size[0] and w >= size[1]:
        kh, kw = -(-h // size[0]), -(-w // size[1])
        return F.max_pool2d(x, kernel_size=(kh, kw), stride=(kh, kw), ceil_mode=True)
    if upsample == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return F.interpolate(x, size=size, mode="nearest")


def upsample_logits(logits: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinear upsampling of head logits to the input resolution (the final 2x..32x step)."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
