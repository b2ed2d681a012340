"""Nucleus sizes of a dataset as a model sees them: the *nominal diameter* a model was trained at.

The equivalent diameter of a nucleus is that of the disc of its area, ``sqrt(4 A / pi)``. A
Mask R-CNN model is trained on images resized by Detectron2's ``ResizeShortestEdge``
(``INPUT.MIN_SIZE_TRAIN`` / ``INPUT.MAX_SIZE_TRAIN``), so it sees each nucleus at its diameter
times its image's resize factor. The nominal diameter of a model (config key
``TEST.NUCLEI.NOMINAL_DIAMETER``) is the median, over the training images, of the median
resized equivalent diameter of each image's nuclei: the typical nucleus of a typical image, the
same statistic ``--diameter auto`` measures on one image (:mod:`maskrcnnpp.inference.scale`), so
that an image is rescaled to the middle of what the model was trained on. Its training *range*
(``TEST.NUCLEI.AUTO_DIAMETER_RANGE``) is a low and a high percentile of the same per-image medians.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

__all__ = ["equivalent_diameter", "nominal_diameter", "training_resize_factor"]


def equivalent_diameter(area) -> np.ndarray:
    """Diameter of the disc of ``area`` pixels (array or scalar in, float array out)."""
    return np.sqrt(4.0 * np.asarray(area, dtype=np.float64) / np.pi)


def training_resize_factor(height: int, width: int, min_sizes: Sequence[int], max_size: int) -> float:
    """The factor Detectron2's ``ResizeShortestEdge(min_sizes, max_size)`` scales a ``height x width``
    image by: the short side to the middle of ``min_sizes`` (one value: that value; a ``choice``
    list or ``range`` pair is sampled, the middle is its typical value), the long side capped at
    ``max_size``. ``min_sizes`` of 0 means no resize (factor 1)."""
    short_target = float(np.median(np.asarray(min_sizes, dtype=np.float64)))
    if short_target <= 0:
        return 1.0
    scale = short_target / min(height, width)
    if max_size > 0 and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return scale


def nominal_diameter(coco: Mapping, min_sizes: Sequence[int], max_size: int,
                     range_percentiles: Sequence[float] = (10.0, 90.0)) -> Dict[str, Any]:
    """The nominal diameter and training range (module doc) of a COCO dataset trained with ``min_sizes`` / ``max_size``.

    Uses each annotation's ``area`` (crowd annotations skipped). Returns ``{"pixels": the nominal
    diameter, "range": [low, high], the ``range_percentiles`` of the per-image medians,
    "range_percentiles", "all_nuclei_median": the median over all nuclei instead, "images": images
    with nuclei, "nuclei": nuclei counted}``. Raises ValueError when no image has an annotated nucleus.
    """
    sizes = {img["id"]: (int(img["height"]), int(img["width"])) for img in coco["images"]}
    per_image: Dict[int, List[float]] = defaultdict(list)
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0) or ann["image_id"] not in sizes:
            continue
        per_image[ann["image_id"]].append(float(ann["area"]))
    if not per_image:
        raise ValueError("no image of the dataset has an annotated nucleus")
    medians, everything = [], []
    for image_id, areas in per_image.items():
        factor = training_resize_factor(*sizes[image_id], min_sizes, max_size)
        diameters = equivalent_diameter(areas) * factor
        medians.append(float(np.median(diameters)))
        everything.append(diameters)
    low, high = (float(v) for v in np.percentile(medians, list(range_percentiles)))
    return {"pixels": float(np.median(medians)), "range": [low, high], "range_percentiles": list(range_percentiles),
            "all_nuclei_median": float(np.median(np.concatenate(everything))),
            "images": len(per_image), "nuclei": int(sum(len(a) for a in per_image.values()))}
