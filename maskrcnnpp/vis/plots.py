"""Figures of training and results (``tools/plot.py``), drawn with matplotlib's Agg backend.

* :func:`plot_training_curves` -- losses and validation metrics against iteration, from the
  ``metrics.json`` (one JSON object per line) Detectron2's ``JSONWriter`` writes in OUTPUT_DIR.
* :func:`plot_speed_accuracy` -- the paper's Fig. 5: segmentation quality (IoU, score) of the pruned
  UNet++ levels L1..L4 (and other models) against inference time, one line per model and image
  size. Input rows need a time (``latency_ms``, else ``latency_median_ms`` or ``network_ms`` as
  ``tools/benchmark.py`` writes) and the metrics, either in the row or joined from an evaluator
  ``summary.json`` keyed by the row's name (``unetpp_r101[L2]``; a bare mode where unambiguous).
* :func:`plot_size_buckets` -- the paper's Fig. 7: for two (or more) models, the DSB score
  restricted to nuclei of each size bucket (:mod:`maskrcnnpp.evaluation.size_buckets`).

The inputs are read by :mod:`.plot_inputs`.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..evaluation.size_buckets import bucket_names
from ..utils.files import atomic_path
from .plot_inputs import METRIC_KEYS, PlotInputError, curve, default_curve_keys, read_metrics_json, speed_series

__all__ = ["image_formats", "plot_size_buckets", "plot_speed_accuracy", "plot_training_curves"]


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=os.path.splitext(path)[1].lstrip(".") or "png")
    _matplotlib().close(fig)


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


def plot_speed_accuracy(rows: Sequence[dict], output: str) -> Dict[str, int]:
    """Fig. 5: IoU and score (two panels) against inference time; one line per :func:`speed_series`
    (colour per model, marker and dash per image size), each point labelled with its mode.

    Returns the number of points drawn per metric.
    """
    plt = _matplotlib()
    series = speed_series(rows)
    # one colour per model, and per benchmark file too where a model comes from several (else its lines look alike)
    files_of: Dict[str, set] = defaultdict(set)
    for r in rows:
        files_of[r["model"]].add(r.get("source"))

    def colour_key(r: dict) -> Tuple[str, Optional[str]]:
        return r["model"], (r.get("source") if len(files_of[r["model"]]) > 1 else None)

    colour_keys = list(dict.fromkeys(colour_key(r) for r in rows))
    sizes = list(dict.fromkeys(r.get("size") for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    drawn = {}
    for ax, metric in zip(axes, METRIC_KEYS):
        count = 0
        for label, group in series.items():
            group = [r for r in group if not math.isnan(r[metric])]
            if not group:
                continue
            first = group[0]
            s = sizes.index(first.get("size"))
            c = colour_keys.index(colour_key(first))
            ax.plot([r["time_ms"] for r in group], [r[metric] for r in group], label=label,
                    color=f"C{c % 10}", marker="os^Dv"[s % 5], linestyle=("-", "--", ":", "-.")[s % 4])
            for r in group:
                if r["mode"] is not None:
                    ax.annotate(r["mode"], (r["time_ms"], r[metric]), textcoords="offset points", xytext=(4, 4), fontsize=8)
            count += len(group)
        times = [r["time_ms"] for r in rows if not math.isnan(r[metric]) and r["time_ms"] > 0]
        if times and max(times) > 20 * min(times):  # e.g. Mask R-CNN beside pruned UNet++: linear squashes the fast ones
            ax.set_xscale("log")
        ax.set_xlabel("inference time (ms)")
        ax.set_ylabel({"iou": "IoU", "score": "DSB score"}[metric])
        ax.grid(alpha=0.3)
        if count:
            ax.legend(fontsize=8)
        drawn[metric] = count
    _save(fig, output)
    return drawn


def image_formats() -> List[str]:
    """File extensions (without the dot) matplotlib can write a figure as."""
    _matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    return sorted(FigureCanvasBase.get_supported_filetypes())


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
