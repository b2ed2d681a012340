"""What the figures of :mod:`maskrcnnpp.vis.plots` read: Detectron2's ``metrics.json`` (training
curves) and the benchmark JSON of ``tools/benchmark.py`` joined with evaluator ``summary.json``
files (speed vs accuracy). Errors name the file and what is wrong (:class:`PlotInputError`).
"""
from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from ..utils.files import read_json

__all__ = ["METRIC_KEYS", "PlotInputError", "TIME_KEYS", "curve", "default_curve_keys", "join_summaries", "read_benchmark_rows",
           "read_metrics_json", "read_speed_rows", "speed_series", "summary_targets"]


class PlotInputError(UserError, ValueError):
    """An input file of a plot that cannot be used; the message names the file and what is wrong."""


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
