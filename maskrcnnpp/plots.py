"""Figures of training and results (``tools/plot.py``), drawn with matplotlib's Agg backend.

* :func:`plot_training_curves` -- losses and validation metrics against iteration, from the
  ``metrics.json`` (one JSON object per line) Detectron2's ``JSONWriter`` writes in OUTPUT_DIR.
* :func:`plot_speed_accuracy` -- the paper's Fig. 5: segmentation quality (IoU, score) of the pruned
  UNet++ levels L1..L4 (and other models) against inference time. Input rows need ``mode``, a time
  (``latency_ms``, else ``latency_median_ms`` or ``network_ms`` as ``tools/benchmark.py`` writes)
  and the metrics, either in the row or joined from an evaluator ``summary.json`` per mode.
* :func:`size_bucket_scores` / :func:`plot_size_buckets` -- the paper's Fig. 7: for two (or more)
  models, the DSB score restricted to nuclei of each size bucket. For a bucket b and threshold t
  (0.50, 0.55, ..., 0.95), ground-truth nucleus g belongs to b by its area, a prediction by the
  area of the ground-truth nucleus it matches (IoU > t), or by its own area when unmatched; pooled
  over all images, precision_b(t) = TP_b / (TP_b + FP_b + FN_b) and score_b = mean over t.
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .evaluation.metrics import DSB_THRESHOLD_TWENTIETHS, overlap_matrix
from .jsonio import read_json


class PlotInputError(ValueError):
    """An input file of a plot that cannot be used; the message names the file and what is wrong."""


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    from .inference.writers import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=os.path.splitext(path)[1].lstrip(".") or "png")
    _matplotlib().close(fig)


# ---------------------------------------------------------------------- training curves
def read_metrics_json(path: str) -> List[dict]:
    """The records of a Detectron2 ``metrics.json`` (JSON lines), in file order."""
    if not os.path.isfile(path):
        raise PlotInputError(f"metrics file {path} does not exist")
    records = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise PlotInputError(f"{path}:{n}: not a JSON object per line (Detectron2 metrics.json): {e}") from None
            if not isinstance(record, dict) or "iteration" not in record:
                raise PlotInputError(f"{path}:{n}: record without 'iteration'")
            records.append(record)
    if not records:
        raise PlotInputError(f"{path} holds no records")
    return records


def curve(records: Iterable[dict], key: str) -> Tuple[np.ndarray, np.ndarray]:
    """(iterations, values) of ``key`` in the records that have it (last value per iteration)."""
    points = {}
    for r in records:
        if key in r and isinstance(r[key], (int, float)) and not isinstance(r[key], bool):
            points[int(r["iteration"])] = float(r[key])
    its = np.array(sorted(points), dtype=np.int64)
    return its, np.array([points[i] for i in its], dtype=np.float64)


def default_curve_keys(records: Sequence[dict]) -> Tuple[List[str], List[str]]:
    """(loss keys, validation keys) present: every ``*loss*`` key; ``nuclei/{score,iou,dice,aji}`` and ``segm/AP``."""
    keys = {k for r in records for k in r}
    losses = sorted(k for k in keys if "loss" in k)
    wanted = ["nuclei/score", "nuclei/iou", "nuclei/dice", "nuclei/aji", "nuclei/pq", "segm/AP"]
    val = [k for k in wanted if k in keys] or sorted(k for k in keys if k.startswith("nuclei/"))
    return losses, val


def plot_training_curves(runs: Mapping[str, str], output: str, keys: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, int]]:
    """Plot ``{run name: metrics.json path}``: losses (left) and validation metrics (right) by iteration.

    ``keys`` limits the curves (a key with "loss" goes left, others right). Returns, per run, the
    number of points drawn per key. Raises :class:`PlotInputError` if a requested key is in no run.
    """
    plt = _matplotlib()
    data = {name: read_metrics_json(path) for name, path in runs.items()}
    if keys:
        present = {k for recs in data.values() for r in recs for k in r}
        absent = [k for k in keys if k not in present]
        if absent:
            raise PlotInputError(f"keys {absent} are in none of {list(runs.values())}; present: {sorted(present)}")
        loss_keys = [k for k in keys if "loss" in k]
        val_keys = [k for k in keys if "loss" not in k]
    else:
        loss_keys, val_keys = set(), set()
        for recs in data.values():
            lk, vk = default_curve_keys(recs)
            loss_keys.update(lk)
            val_keys.update(vk)
        loss_keys, val_keys = sorted(loss_keys), sorted(val_keys)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    drawn: Dict[str, Dict[str, int]] = defaultdict(dict)
    for ax, group, title in ((axes[0], loss_keys, "training losses"), (axes[1], val_keys, "validation")):
        for name, recs in data.items():
            for key in group:
                its, values = curve(recs, key)
                if its.size:
                    label = key if len(data) == 1 else f"{name}: {key}"
                    ax.plot(its, values, marker="o" if its.size < 30 else None, ms=3, label=label)
                    drawn[name][key] = int(its.size)
        ax.set_title(title)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    axes[0].set_yscale("log" if any(v > 0 for recs in data.values() for k in loss_keys for v in curve(recs, k)[1]) else "linear")
    _save(fig, output)
    return dict(drawn)


# ---------------------------------------------------------------------- speed vs accuracy (Fig. 5)
TIME_KEYS = ("latency_ms", "latency_median_ms", "network_ms")


def read_speed_rows(path: str, summaries: Optional[Mapping[str, str]] = None) -> List[dict]:
    """Rows ``{model, mode, time_ms, iou, score}`` from a benchmark JSON (a list of rows, or an object
    with ``rows`` as ``tools/benchmark.py`` writes), metrics joined from ``{mode: summary.json}``."""
    doc = read_json(path, "benchmark file", PlotInputError)
    rows = doc.get("rows") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise PlotInputError(f"{path}: expected a list of rows (or an object with 'rows'), each with 'mode', a time and metrics")
    extra = {}
    for mode, summary_path in (summaries or {}).items():
        extra[mode] = read_json(summary_path, f"summary for mode {mode}:", PlotInputError)
    out = []
    for k, row in enumerate(rows):
        if not isinstance(row, dict) or "mode" not in row:
            raise PlotInputError(f"{path}: row {k} has no 'mode'")
        time_key = next((t for t in TIME_KEYS if isinstance(row.get(t), (int, float))), None)
        if time_key is None:
            raise PlotInputError(f"{path}: row {k} (mode {row['mode']}) has none of the time keys {TIME_KEYS}")
        mode = str(row["mode"])
        values = dict(extra.get(mode, {}))
        values.update({m: row[m] for m in ("iou", "score") if m in row})
        if not any(isinstance(values.get(m), (int, float)) for m in ("iou", "score")):
            raise PlotInputError(
                f"{path}: row {k} (mode {mode}) has no 'iou'/'score'; add them to the row or pass its summary.json "
                f"(--summary {mode}=PATH)"
            )
        out.append({
            "model": str(row.get("model") or row.get("config") or row.get("label") or os.path.basename(path)),
            "mode": mode,
            "time_ms": float(row[time_key]),
            "iou": float(values["iou"]) if isinstance(values.get("iou"), (int, float)) else math.nan,
            "score": float(values["score"]) if isinstance(values.get("score"), (int, float)) else math.nan,
        })
    return out


def plot_speed_accuracy(rows: Sequence[dict], output: str) -> Dict[str, int]:
    """Fig. 5: IoU and score (two panels) against inference time, one line per model through its modes.

    Returns the number of points drawn per metric.
    """
    plt = _matplotlib()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = {}
    for ax, metric in zip(axes, ("iou", "score")):
        count = 0
        by_model: Dict[str, List[dict]] = defaultdict(list)
        for r in rows:
            if not math.isnan(r[metric]):
                by_model[r["model"]].append(r)
        for model, group in by_model.items():
            group = sorted(group, key=lambda r: r["time_ms"])
            xs, ys = [r["time_ms"] for r in group], [r[metric] for r in group]
            ax.plot(xs, ys, marker="o", label=model)
            for r in group:
                ax.annotate(r["mode"], (r["time_ms"], r[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
            count += len(group)
        ax.set_xlabel("inference time (ms)")
        ax.set_ylabel({"iou": "IoU", "score": "DSB score"}[metric])
        ax.grid(alpha=0.3)
        if count:
            ax.legend(fontsize=8)
        drawn[metric] = count
    _save(fig, output)
    return drawn


# ---------------------------------------------------------------------- size buckets (Fig. 7)
DEFAULT_EDGES = (0, 64, 128, 256, 512, 1024, math.inf)


def bucket_names(edges: Sequence[float]) -> List[str]:
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


def plot_size_buckets(results: Mapping[str, Mapping[str, np.ndarray]], edges: Sequence[float], output: str) -> None:
    """Fig. 7: grouped bars of ``score`` per size bucket, one colour per model; n = ground-truth nuclei per bucket."""
    plt = _matplotlib()
    names = bucket_names(edges)
    x = np.arange(len(names))
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(names)), 4.2))
    for k, (model, values) in enumerate(results.items()):
        scores = np.asarray(values["score"], dtype=np.float64)
        bars = ax.bar(x + (k - (len(results) - 1) / 2) * width, np.nan_to_num(scores, nan=0.0), width, label=model)
        # a bucket without nuclei or predictions has no score: say so rather than draw a 0
        ax.bar_label(bars, labels=["n/a" if np.isnan(v) else f"{v:.2f}" for v in scores], fontsize=7)
    num_gt = next(iter(results.values()))["num_gt"] if results else np.zeros(len(names))
    ax.set_xticks(x, [f"{n}\n(n={int(c)})" for n, c in zip(names, num_gt)])
    ax.set_xlabel("nucleus area (pixels)")
    ax.set_ylabel("DSB score within bucket")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    _save(fig, output)
