"""The kind of microscopy image, so scores can be reported per kind (users' images are not DSB's mix).

DSB 2018 holds three kinds that models find unequally hard: fluorescence, bright-field and stained
tissue. :func:`image_type` (:mod:`maskrcnnpp.utils.image_kind`) tells them apart from pixel
statistics; :func:`scores_by_image_type` averages per-image metric rows within each kind.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, Mapping

import os

import numpy as np

from ..utils.image_kind import BRIGHT_BACKGROUND, COLOUR_SPREAD, IMAGE_TYPES, image_type
from ..utils.images import to_uint8_rgb

__all__ = ["BRIGHT_BACKGROUND", "COLOUR_SPREAD", "IMAGE_TYPES", "image_type", "image_type_of_file", "scores_by_image_type"]

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
