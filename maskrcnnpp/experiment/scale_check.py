"""The image-scale check of ``--diameter``: a test split resized by a few factors, scored with and without a diameter.

Each image of a COCO test split and its ground-truth label image are resized by every factor
(images with OpenCV, area averaging down and bilinear up; labels nearest-neighbour, so every
nucleus keeps its id), in memory: nothing derived from the data is written. Each resized image is
predicted by one :class:`~maskrcnnpp.inference.NucleiPredictor` under every diameter mode (None:
the config's fixed test resize; ``"auto"``; or a number of pixels *at the original size*,
multiplied by the factor) and scored against its resized ground truth with
:func:`maskrcnnpp.evaluation.score_image`; the DSB leaderboard score (and IoU, Dice, AJI, PQ) is
averaged over the images, overall and per image kind (of the original image).

The pseudo-mode ``"resampled"`` is no prediction of its own: the original-size prediction (no
diameter) resized to each factor nearest-neighbour, exactly as the ground truth is. It scores what a
model that lost no detail to the smaller image would score on that size's pixel grid, so the gap
between it and the original size is the cost of the coarser grid to the metric, not to the model.
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..evaluation import gt_label_image, score_image, summarize_images
from ..evaluation.coco_results import coco_records
from ..evaluation.image_types import image_type, scores_by_image_type
from ..inference import NucleiPredictor, read_image, to_uint8_rgb
from ..inference.scale import Diameter

__all__ = ["RESAMPLED", "markdown_table", "mosaic_image", "mosaic_labels", "read_rows", "resize_image", "resize_labels", "scale_check", "summarize_rows"]

logger = logging.getLogger(__name__)
METRICS = ("score", "iou", "dice", "aji", "pq")
RESAMPLED = "resampled"  # the pseudo-mode: the original-size prediction resized like the ground truth


def resized_shape(height: int, width: int, factor: float) -> tuple:
    return max(1, int(round(height * factor))), max(1, int(round(width * factor)))


def resize_image(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resized by ``factor`` (OpenCV: area averaging when shrinking, bilinear when enlarging)."""
    import cv2

    if factor == 1:
        return image
    height, width = resized_shape(*image.shape[:2], factor)
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=interpolation)


def resize_labels(labels: np.ndarray, factor: float) -> np.ndarray:
    """A label image resized by ``factor``, nearest neighbour (each output pixel takes the label under its centre)."""
    if factor == 1:
        return labels
    height, width = labels.shape
    new_h, new_w = resized_shape(height, width, factor)
    rows = np.minimum(((np.arange(new_h) + 0.5) * height / new_h).astype(np.int64), height - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * width / new_w).astype(np.int64), width - 1)
    return labels[rows[:, None], cols[None, :]]


def mosaic_image(image: np.ndarray, n: int) -> np.ndarray:
    """``image`` repeated ``n`` x ``n`` times: a wider field of view of nuclei of the same size in pixels."""
    return np.tile(image, (n, n) + (1,) * (image.ndim - 2))


def mosaic_labels(labels: np.ndarray, n: int) -> np.ndarray:
    """A label image repeated ``n`` x ``n`` times, every copy of a nucleus its own id (copy k adds k x the max id)."""
    top = int(labels.max())
    copies = [[np.where(labels > 0, labels + (row * n + col) * top, 0) for col in range(n)] for row in range(n)]
    return np.block(copies)


def _mode_name(mode: Diameter) -> str:  # None, "auto", RESAMPLED or pixels
    return "none" if mode is None else str(mode)


def scale_check(
    predictor: NucleiPredictor,
    gt: Mapping[str, Any],
    image_dir: str,
    factors: Sequence[float] = (1.0, 0.5, 2.0),
    modes: Sequence[Diameter] = (None, "auto"),
    limit: Optional[int] = None,
    progress: bool = True,
    rows_path: Optional[str] = None,
    mosaic: int = 1,
) -> Dict[str, Any]:
    """Scores of ``predictor`` on the COCO ground truth ``gt`` (images in ``image_dir``) per factor and mode
    (:func:`summarize_rows` of every image's rows); ``limit`` takes the first images only; ``mosaic``
    n > 1 first repeats every image and its ground truth n x n times (:func:`mosaic_image`). With
    ``rows_path`` each image's rows are appended there as one JSON line as soon as it is done, so an
    interrupted run can still be summarized (:func:`read_rows`)."""
    records = coco_records(dict(gt))
    records = records[:limit] if limit else records
    rows: List[Dict[str, Any]] = []
    iterator = records
    if progress:
        from tqdm import tqdm

        iterator = tqdm(records, desc="images", unit="img")
    for record in iterator:
        image = read_image(os.path.join(image_dir, record["file_name"]))
        gt_labels = gt_label_image(record)[0]
        kind = image_type(to_uint8_rgb(image))
        if mosaic > 1:
            image, gt_labels = mosaic_image(image, mosaic), mosaic_labels(gt_labels, mosaic)
        image_rows = []
        original = None  # the no-diameter prediction at factor 1, made once
        for factor in factors:
            resized, resized_gt = resize_image(image, factor), resize_labels(gt_labels, factor)
            for mode in modes:
                if mode == RESAMPLED or (mode is None and factor == 1):
                    if original is None:
                        original = predictor.predict(image, diameter=None)
                    prediction = original
                    labels = resize_labels(original.labels, factor) if mode == RESAMPLED else original.labels
                else:
                    diameter = mode if mode is None or mode == "auto" else float(mode) * factor
                    prediction = predictor.predict(resized, diameter=diameter)
                    labels = prediction.labels
                row = {k: float(v) for k, v in score_image(resized_gt, labels).items()}
                row.update(image_id=record["image_id"], image_type=kind, factor=factor, diameter=_mode_name(mode),
                           diameter_source=prediction.info.get("diameter_source", "none"),
                           estimate=prediction.info.get("diameter"))
                image_rows.append(row)
        if rows_path:
            with open(rows_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(image_rows) + "\n")
        rows.extend(image_rows)
    return summarize_rows(rows)


def read_rows(rows_path: str) -> List[Dict[str, Any]]:
    """The rows :func:`scale_check` appended to ``rows_path`` (complete lines only)."""
    rows = []
    with open(rows_path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n"):
                rows.extend(json.loads(line))
    return rows


def summarize_rows(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """``{"images": n, "results": [{"factor", "diameter", "score", "iou", "dice", "aji", "pq",
    "by_image_type", "diameter_sources"}, ...]}`` of per-image rows, in the order first seen."""
    groups: Dict[tuple, List[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["factor"], row["diameter"]), []).append(row)
    types = {row["image_id"]: row["image_type"] for row in rows}
    results = []
    for (factor, mode), image_rows in groups.items():
        summary = summarize_images(image_rows)
        sources: Dict[str, int] = {}
        for row in image_rows:
            sources[row["diameter_source"]] = sources.get(row["diameter_source"], 0) + 1
        results.append({"factor": factor, "diameter": mode, **{m: summary[m] for m in METRICS},
                        "by_image_type": scores_by_image_type(image_rows, types, METRICS),
                        "diameter_sources": sources})
    return {"images": len(types), "results": results}


def markdown_table(report: Mapping[str, Any]) -> str:
    """The report of :func:`scale_check` as a Markdown table: one row per factor and diameter mode."""
    kinds = []
    for r in report["results"]:
        kinds += [k for k in r["by_image_type"] if k not in kinds]
    lines = ["| image size | --diameter | score | " + " | ".join(f"{k} ({report['results'][0]['by_image_type'].get(k, {}).get('images', 0)})"
                                                             for k in kinds) + " | AJI | PQ |",
             "|---|---|---|" + "---|" * len(kinds) + "---|---|"]
    for r in report["results"]:
        per_kind = " | ".join(f"{r['by_image_type'][k]['score']:.3f}" if k in r["by_image_type"] else "-" for k in kinds)
        lines.append(f"| x{r['factor']:g} | {r['diameter']} | {r['score']:.3f} | {per_kind} | {r['aji']:.3f} | {r['pq']:.3f} |")
    return "\n".join(lines)
