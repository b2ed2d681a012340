"""Figures of training and results (``tools/plot.py``), drawn with matplotlib's Agg backend.

* :func:`plot_training_curves` -- losses and validation metrics against iteration, from the
  ``metrics.json`` (one JSON object per line) Detectron2's ``JSONWriter`` writes in OUTPUT_DIR.
* :func:`plot_speed_accuracy` -- the paper's Fig. 5: segmentation quality (IoU, score) of the pruned
  UNet++ levels L1..L4 (and other models) against inference time, one line per model and image
  size. Input rows need a time (``latency_ms``, else ``latency_median_ms`` or ``network_ms`` as
  ``tools/benchmark.py`` writes) and the metrics, either in the row or joined from an evaluator
  ``summary.json`` keyed by the row's name (``unetpp_r101[L2]``; a bare mode where unambiguous).
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
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .evaluation.metrics import DSB_THRESHOLD_TWENTIETHS, overlap_matrix
from .utils.files import read_json


class PlotInputError(ValueError):
    """An input file of a plot that cannot be used; the message names the file and what is wrong."""


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    from .utils.files import atomic_path

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
METRIC_KEYS = ("iou", "score")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_benchmark_rows(path: str) -> List[dict]:
    """Rows ``{source, index, name, model, mode, size, time_ms, iou, score}`` of one benchmark JSON.

    The file is a list of rows, or an object with ``rows`` as ``tools/benchmark.py`` writes. ``name``
    is the row's ``label`` (tools/benchmark.py: ``CONFIG`` or ``CONFIG[MODE]``), else ``MODEL[MODE]``
    / ``MODEL`` from ``model`` or ``config`` and ``mode``; ``mode`` and ``size`` may be None.
    Metrics the row lacks are NaN (see :func:`join_summaries`).
    """
    doc = read_json(path, "benchmark file", PlotInputError)
    rows = doc.get("rows") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise PlotInputError(f"{path}: expected a list of rows (or an object with 'rows'), each with a time and metrics")
    out: List[dict] = []
    seen: Dict[Tuple[str, object], int] = {}
    for k, row in enumerate(rows):
        if not isinstance(row, dict):
            raise PlotInputError(f"{path}: row {k} is not an object")
        mode = None if row.get("mode") in (None, "") else str(row["mode"])
        label = row.get("label") if isinstance(row.get("label"), str) and row.get("label") else None
        model = str(row.get("model") or row.get("config") or (label.split("[")[0] if label else "")
                    or os.path.splitext(os.path.basename(path))[0])
        name = label or (f"{model}[{mode}]" if mode else model)
        time_key = next((t for t in TIME_KEYS if _is_number(row.get(t))), None)
        if time_key is None:
            raise PlotInputError(f"{path}: row {k} ({name}) has none of the time keys {TIME_KEYS}")
        size = row.get("size")
        # two points of one row name at one size would be drawn as one line zig-zagging between them
        if (name, size) in seen:
            raise PlotInputError(f"{path}: rows {seen[name, size]} and {k} are both {name}"
                                 + (f" at size {size}" if size is not None else "") + "; give each once")
        seen[name, size] = k
        out.append({
            "source": path, "index": k, "name": name, "model": model, "mode": mode, "size": size,
            "time_ms": float(row[time_key]),
            **{m: float(row[m]) if _is_number(row.get(m)) else math.nan for m in METRIC_KEYS},
        })
    return out


def summary_targets(rows: Sequence[dict], keys: Iterable[str]) -> Dict[str, str]:
    """``{row name: summary key}``: which rows each ``--summary`` key names.

    A key is a row name (``unetpp_r101[L2]``, ``maskrcnn_r101``), or a bare inference mode (``L2``)
    when exactly one row name has that mode; anything else raises :class:`PlotInputError`.
    """
    names = list(dict.fromkeys(r["name"] for r in rows))
    by_mode: Dict[str, List[str]] = defaultdict(list)
    for r in rows:
        if r["mode"] is not None and r["name"] not in by_mode[r["mode"]]:
            by_mode[r["mode"]].append(r["name"])
    targets: Dict[str, str] = {}
    for key in keys:
        if key in names:
            name = key
        elif len(by_mode.get(key, ())) == 1:
            name = by_mode[key][0]
        elif key in by_mode:
            raise PlotInputError(
                f"--summary {key}=...: mode {key} is in several rows ({', '.join(by_mode[key])}); "
                f"key it by the row name, e.g. --summary '{by_mode[key][0]}=PATH'")
        else:
            unique = sorted(m for m, named in by_mode.items() if len(named) == 1)
            raise PlotInputError(f"--summary {key}=...: no benchmark row is named {key}; row names: {', '.join(names)}"
                                 + (f" (or a mode only one of them has: {', '.join(unique)})" if unique else ""))
        if name in targets:
            raise PlotInputError(f"--summary {targets[name]}=... and --summary {key}=... both name row {name}")
        targets[name] = key
    return targets


def join_summaries(rows: Sequence[dict], summaries: Mapping[str, str]) -> List[dict]:
    """``rows`` with ``iou``/``score`` taken from ``{key: summary.json}`` (keys as :func:`summary_targets`)
    where the row has none; raises :class:`PlotInputError` for a row left with neither."""
    values: Dict[str, dict] = {}
    for key, path in summaries.items():
        doc = read_json(path, f"--summary {key}: file", PlotInputError)
        if not isinstance(doc, dict) or not any(_is_number(doc.get(m)) for m in METRIC_KEYS):
            raise PlotInputError(f"--summary {key}: {path} has no numeric 'iou' or 'score' (expected an evaluator summary.json)")
        values[key] = doc
    targets = summary_targets(rows, summaries)
    out = []
    for r in rows:
        doc = values.get(targets.get(r["name"], ""), {})
        r = dict(r)
        for m in METRIC_KEYS:
            if math.isnan(r[m]) and _is_number(doc.get(m)):
                r[m] = float(doc[m])
        out.append(r)
    missing = list(dict.fromkeys(r["name"] for r in out if all(math.isnan(r[m]) for m in METRIC_KEYS)))
    if missing:
        first = next(r for r in out if r["name"] == missing[0])
        raise PlotInputError(
            f"{first['source']}: row {first['index']} ({missing[0]}) has no 'iou'/'score'; add them to the row or pass "
            f"its evaluator summary.json (--summary '{missing[0]}=PATH')"
            + (f"; also without metrics: {', '.join(missing[1:])}" if len(missing) > 1 else ""))
    return out


def read_speed_rows(paths: Union[str, Sequence[str]], summaries: Optional[Mapping[str, str]] = None) -> List[dict]:
    """:func:`read_benchmark_rows` of every benchmark JSON, metrics joined by :func:`join_summaries`.

    Summary keys are resolved over the rows of all files together, so a bare mode is ambiguous
    as soon as any two models have it.
    """
    rows = [r for path in ([paths] if isinstance(paths, str) else paths) for r in read_benchmark_rows(path)]
    return join_summaries(rows, summaries or {})


def speed_series(rows: Sequence[dict]) -> Dict[str, List[dict]]:
    """``{legend label: rows by time}``: one line per model and image size (and benchmark file, when the
    same model and size come from several); points measured at different sizes are never joined."""
    groups: Dict[Tuple, List[dict]] = defaultdict(list)
    for r in rows:
        groups[r["model"], r.get("size"), r.get("source")].append(r)
    sources: Dict[Tuple, set] = defaultdict(set)
    for model, size, source in groups:
        sources[model, size].add(source)
    basenames = [os.path.basename(str(s)) for s in {r.get("source") for r in rows}]
    series: Dict[str, List[dict]] = {}
    for (model, size, source), group in groups.items():
        label = model if size is None else f"{model} @ {size}px"
        if len(sources[model, size]) > 1:
            shown = os.path.basename(str(source))
            label += f" ({shown if basenames.count(shown) == 1 else source})"
        series[label] = sorted(group, key=lambda r: r["time_ms"])
    return series


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
