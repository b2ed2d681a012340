"""Overlap-tile inference for images larger than a tile (U-Net paper, Ronneberger et al. 2015, Fig. 2).

The image is mirrored by ``margin`` pixels at its borders, cut into ``tile_size`` tiles whose
centres (``tile_size - 2 * margin`` pixels) tile the image exactly, and every output pixel is
taken from the centre of exactly one tile, where the network saw ``margin`` pixels of context on
every side (mirrored context at the image borders).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pad a [N, C, H, W] tensor by mirroring (no edge repeat), repeating the mirror for large pads."""
    while top or bottom or left or right:
        h, w = x.shape[-2:]
        t, b = min(top, h - 1), min(bottom, h - 1)
        l, r = min(left, w - 1), min(right, w - 1)
        if (t, b, l, r) == (0, 0, 0, 0):  # a 1-pixel side cannot be mirrored: repeat it instead
            return F.pad(x, (left, right, top, bottom), mode="replicate")
        x = F.pad(x, (l, r, t, b), mode="reflect")
        top, bottom, left, right = top - t, bottom - b, left - l, right - r
    return x


def overlap_tile_predict(
    image: torch.Tensor,
    predict: Callable[[torch.Tensor], torch.Tensor],
    tile_size: int,
    margin: int,
    batch_size: int = 4,
) -> torch.Tensor:
    """Predict a [C, H, W] image tile by tile; ``predict`` maps [B, C, t, t] to [B, K, t, t].

    Returns [K, H, W]. ``margin`` is the context discarded on each side of a tile (adjacent input
    tiles overlap by ``2 * margin``); tiles are fed ``batch_size`` at a time.
    """
    core = tile_size - 2 * margin
    if margin < 0 or core <= 0:
        raise ValueError(
            f"overlap-tile needs 0 <= MODEL.SEMANTIC_UNET.TILE_OVERLAP ({margin}) < TILE_SIZE / 2 ({tile_size} / 2)"
        )
    _, h, w = image.shape
    ny, nx = -(-h // core), -(-w // core)
    padded = mirror_pad(image[None], margin, margin + ny * core - h, margin, margin + nx * core - w)[0]
    corners = [(ty * core, tx * core) for ty in range(ny) for tx in range(nx)]
    out = None
    for start in range(0, len(corners), batch_size):
        chunk = corners[start : start + batch_size]
        tiles = torch.stack([padded[:, y : y + tile_size, x : x + tile_size] for y, x in chunk])
        pred = predict(tiles)
        if out is None:
            out = pred.new_zeros((pred.shape[1], ny * core, nx * core))
        for (y, x), p in zip(chunk, pred):
            out[:, y : y + core, x : x + core] = p[:, margin : margin + core, margin : margin + core]
    return out[:, :h, :w]
