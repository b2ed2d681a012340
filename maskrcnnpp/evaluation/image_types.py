"""The kind of microscopy image, so scores can be reported per kind (users' images are not DSB's mix).

DSB 2018 holds three kinds that models find unequally hard: fluorescence (grey, bright nuclei on a
dark background; most of the set), bright-field (grey, dark nuclei on a bright background) and
stained tissue (coloured, e.g. H&E). :func:`image_type` tells them apart from pixel statistics;
:func:`scores_by_image_type` averages per-image metric rows within each kind.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, Mapping

import os

import numpy as np

from ..utils.images import to_uint8_rgb

__all__ = ["IMAGE_TYPES", "image_type", "image_type_of_file", "scores_by_image_type"]

IMAGE_TYPES = ("fluorescence", "bright-field", "stained tissue")
# Mean spread between the channels of a pixel (0..255) above which an image counts as coloured:
# DSB's grey images stored as RGB have 0, its stained-tissue images 20 and more.
COLOUR_SPREAD = 8.0
# A median intensity (0..255) above this is a bright background: the nuclei are the dark objects.
BRIGHT_BACKGROUND = 100.0


def image_type(rgb: np.ndarray) -> str:
    """One of :data:`IMAGE_TYPES` for an 8-bit image (H x W grey or H x W x 3)."""
    pixels = np.asarray(rgb, dtype=np.float32)
    if pixels.ndim == 3 and pixels.shape[2] >= 3:
        spread = float((pixels[..., :3].max(axis=2) - pixels[..., :3].min(axis=2)).mean())
        if spread > COLOUR_SPREAD:
            return "stained tissue"
        pixels = pixels[..., :3].mean(axis=2)
    return "bright-field" if float(np.median(pixels)) > BRIGHT_BACKGROUND else "fluorescence"


def image_type_of_file(path: str) -> str:
    """:func:`image_type` of the image file at ``path``; "unknown" when there is no readable file."""
    if not path or not os.path.isfile(path):
        return "unknown"
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image if image.mode in ("L", "RGB", "RGBA", "LA", "I;16", "I", "F") else image.convert("RGB"))
        # as prediction sees it: 16-bit and float images scaled to 8 bits by 255 / max
        return image_type(to_uint8_rgb(pixels, "max"))
    except (OSError, UnidentifiedImageError, ValueError):
        return "unknown"


def scores_by_image_type(rows: Iterable[Mapping], types: Mapping, metrics=("score", "iou", "dice", "aji", "pq")
                         ) -> Dict[str, Dict[str, float]]:
    """``{kind: {"images": n, metric: mean}}`` of per-image ``rows`` (with ``image_id``), ``types`` mapping
    each image id to its kind; kinds without images are left out."""
    grouped: Dict[str, list] = defaultdict(list)
    for row in rows:
        grouped[types[row["image_id"]]].append(row)
    return {kind: {"images": len(grouped[kind]), **{m: float(np.mean([float(r[m]) for r in grouped[kind]]))
                                                     for m in metrics}}
            for kind in IMAGE_TYPES if grouped.get(kind)}
