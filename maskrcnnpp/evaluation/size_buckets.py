"""The DSB score by nucleus size (the paper's Fig. 7): for a size bucket b and threshold t (0.50,
0.55, ..., 0.95), ground-truth nucleus g belongs to b by its area, a prediction by the area of the
ground-truth nucleus it matches (IoU > t), or by its own area when unmatched; pooled over all
images, precision_b(t) = TP_b / (TP_b + FP_b + FN_b) and score_b = mean over t.
"""
from __future__ import annotations

import math
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from .metrics import DSB_THRESHOLD_TWENTIETHS, overlap_matrix

__all__ = ["DEFAULT_EDGES", "SizeBucketCounts", "bucket_names", "size_bucket_scores"]

DEFAULT_EDGES = (0, 64, 128, 256, 512, 1024, math.inf)


def bucket_names(edges: Sequence[float]) -> List[str]:
    """Labels of the buckets between ``edges``: "lo-hi", the last ">= lo" when open-ended."""
    names = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        names.append(f">= {lo:g}" if math.isinf(hi) else f"{lo:g}-{hi:g}")
    return names


def _bucket(areas: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    # bucket k holds edges[k] <= area < edges[k + 1]
    return np.searchsorted(np.asarray(edges[1:-1], dtype=np.float64), areas, side="right")


class SizeBucketCounts:
    """TP/FP/FN per size bucket and DSB threshold, pooled over images (:meth:`add`)."""

    def __init__(self, edges: Sequence[float] = DEFAULT_EDGES):
        edges = [float(e) for e in edges]
        if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
            raise ValueError(f"bucket edges must be increasing, at least two: {edges}")
        self.edges = edges
        n, t = len(edges) - 1, len(DSB_THRESHOLD_TWENTIETHS)
        self.tp = np.zeros((n, t), dtype=np.int64)
        self.fp = np.zeros((n, t), dtype=np.int64)
        self.fn = np.zeros((n, t), dtype=np.int64)
        self.num_gt = np.zeros(n, dtype=np.int64)

    def add(self, gt_labels: np.ndarray, pred_labels: np.ndarray) -> None:
        """Count one image (label images, 0 = background)."""
        ov = overlap_matrix(gt_labels, pred_labels)
        n = len(self.edges) - 1
        gt_bucket = _bucket(ov.gt_areas, self.edges)
        pred_bucket = _bucket(ov.pred_areas, self.edges)
        self.num_gt += np.bincount(gt_bucket, minlength=n)
        gi, pj, inter, union = ov.nonzero_pairs()
        for k, twentieths in enumerate(DSB_THRESHOLD_TWENTIETHS):
            match = 20 * inter > twentieths * union  # unique for IoU > 0.5 on label images
            gt_matched = np.zeros(ov.num_gt, dtype=bool)
            pred_matched = np.zeros(ov.num_pred, dtype=bool)
            gt_matched[gi[match]] = True
            pred_matched[pj[match]] = True
            self.tp[:, k] += np.bincount(gt_bucket[gt_matched], minlength=n)
            self.fn[:, k] += np.bincount(gt_bucket[~gt_matched], minlength=n)
            self.fp[:, k] += np.bincount(pred_bucket[~pred_matched], minlength=n)

    def scores(self) -> np.ndarray:
        """score_b (NaN for a bucket with no nucleus and no prediction)."""
        denom = self.tp + self.fp + self.fn
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(denom > 0, self.tp / np.maximum(denom, 1), np.nan)
        return precision.mean(axis=1)

    def recall_at_50(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.num_gt > 0, self.tp[:, 0] / np.maximum(self.num_gt, 1), np.nan)


def size_bucket_scores(
    pairs: Iterable[Tuple[np.ndarray, np.ndarray]], edges: Sequence[float] = DEFAULT_EDGES
) -> Dict[str, np.ndarray]:
    """Per-bucket ``score``, ``recall@0.5``, ``num_gt`` of (gt, prediction) label-image pairs (module doc)."""
    counts = SizeBucketCounts(edges)
    for gt, pred in pairs:
        counts.add(gt, pred)
    return {"score": counts.scores(), "recall@0.5": counts.recall_at_50(), "num_gt": counts.num_gt}
