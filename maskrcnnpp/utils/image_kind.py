"""The kind of a microscopy image from its pixels: fluorescence, bright-field or stained tissue.

DSB 2018 holds three kinds that models find unequally hard: fluorescence (grey, bright nuclei on a
dark background; most of the set), bright-field (grey, dark nuclei on a bright background) and
stained tissue (coloured, e.g. H&E). The rule lives here, below data, evaluation and inference,
so that the training augmentations, the per-kind scores and the predictor's trust report agree.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BRIGHT_BACKGROUND", "COLOUR_SPREAD", "IMAGE_TYPES", "colour_spread", "image_type", "is_coloured"]

IMAGE_TYPES = ("fluorescence", "bright-field", "stained tissue")
# Mean spread between the channels of a pixel (0..255) above which an image counts as coloured:
# DSB's grey images stored as RGB have 0, its stained-tissue images 20 and more.
COLOUR_SPREAD = 8.0
# A median intensity (0..255) above this is a bright background: the nuclei are the dark objects.
BRIGHT_BACKGROUND = 100.0


def colour_spread(image: np.ndarray) -> float:
    """Mean over pixels of (largest - smallest channel) of an H x W x C image; 0 for a grey one."""
    if image.ndim < 3 or image.shape[2] < 3:
        return 0.0
    channels = np.asarray(image[..., :3], dtype=np.float32)
    return float((channels.max(axis=2) - channels.min(axis=2)).mean())


def is_coloured(image: np.ndarray) -> bool:
    """Whether an 8-bit image's channels differ by more than :data:`COLOUR_SPREAD` on average."""
    return colour_spread(image) > COLOUR_SPREAD


def image_type(rgb: np.ndarray) -> str:
    """One of :data:`IMAGE_TYPES` for an 8-bit image (H x W grey or H x W x 3)."""
    if is_coloured(rgb):
        return "stained tissue"
    pixels = np.asarray(rgb, dtype=np.float32)
    if pixels.ndim == 3:
        pixels = pixels[..., :3].mean(axis=2)
    return "bright-field" if float(np.median(pixels)) > BRIGHT_BACKGROUND else "fluorescence"
