"""One table over seeds: every run's test-split row from ``tools/experiment.py`` folders, and each
model's mean over its seeds.

``tools/gpu_table5.sh`` runs one ``tools/experiment.py`` per seed, each into ``<root>/seed<S>``
(``SEED S`` among its overrides), at the same time. This module reads what those folders hold
now, so it can be called while they train: a run with a ``result.json`` is a row; a run without
one is listed as unfinished with the last iteration its ``train/metrics.json`` reached.

Beside the experiment's metrics, each row has the training wall time
(``train_seconds_this_session``: the iterations and the validations, the last one included) and the
seconds per iteration, the mean of Detectron2's ``time`` entries in ``metrics.json`` (each the
median of the 20 iterations before it: training alone, validations left out), and the
validation value of the checkpoint that was scored (``model_best.json``).
"""
from __future__ import annotations

import json
import math
import os
import re
from typing import Any, Dict, List, Optional

__all__ = ["SEED_FOLDER", "seed_table", "seed_table_markdown"]

SEED_FOLDER = re.compile(r"seed(\d+)")
METRICS = ("score", "iou", "dice", "aji", "pq", "ap")  # as runs.table_values names them
HEADER = ("model", "seed", "iterations", "score", "IoU %", "Dice %", "AJI", "PQ", "mask AP", "val score (iter)",
          "train+val wall s", "s/iter")


def _json(path: str) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):  # absent, or being replaced right now
        return None


def _metrics_lines(path: str) -> List[dict]:
    lines = []
    try:
        with open(path) as f:
            for line in f:
                try:
                    lines.append(json.loads(line))
                except ValueError:  # the line being written
                    pass
    except OSError:
        pass
    return lines


def _seconds_per_iteration(lines: List[dict]) -> Optional[float]:
    times = [entry["time"] for entry in lines if isinstance(entry.get("time"), (int, float))]
    return sum(times) / len(times) if times else None


def _run_row(run_dir: str, seed: int) -> Dict:
    train = os.path.join(run_dir, "train")
    lines = _metrics_lines(os.path.join(train, "metrics.json"))
    best = _json(os.path.join(train, "model_best.json")) or {}
    result = _json(os.path.join(run_dir, "result.json"))
    row = {
        "model": os.path.basename(run_dir), "seed": seed, "finished": result is not None,
        "last_iteration": max((e["iteration"] for e in lines if "iteration" in e), default=None),
        "seconds_per_iter": _seconds_per_iteration(lines),
        "val_value": best.get("value"), "val_iteration": best.get("iteration"), "val_metric": best.get("metric"),
    }
    if result is not None:
        row.update({k: result.get(k) for k in METRICS})
        row.update(iterations=result.get("train_iters"), train_seconds=result.get("train_seconds_this_session"),
                   selected_checkpoint=result.get("selected_checkpoint"), device=result.get("device"))
    return row


def _mean_std(values: List[float]) -> Dict[str, Optional[float]]:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    return {"mean": mean, "std": std, "n": len(values)}


def seed_table(root: str) -> Dict:
    """``{"rows": [...], "means": {model: {metric: {mean, std, n}}}}`` of the seed folders in ``root``.

    Rows are sorted by model, then seed; means (and sample standard deviations) are over the
    finished runs of each model.
    """
    rows = []
    for seed_dir in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        match = SEED_FOLDER.fullmatch(seed_dir)
        if not match or not os.path.isdir(os.path.join(root, seed_dir)):
            continue
        for run in sorted(os.listdir(os.path.join(root, seed_dir))):
            run_dir = os.path.join(root, seed_dir, run)
            if os.path.isdir(os.path.join(run_dir, "train")) or os.path.isfile(os.path.join(run_dir, "result.json")):
                rows.append(_run_row(run_dir, int(match.group(1))))
    rows.sort(key=lambda r: (r["model"], r["seed"]))
    means: Dict[str, Dict] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        done = [r for r in rows if r["model"] == model and r["finished"]]
        means[model] = {k: _mean_std([r[k] for r in done if r.get(k) is not None])
                        for k in METRICS + ("seconds_per_iter", "train_seconds")}
    return {"rows": rows, "means": means}


def _cell(value: Any, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


FORMATS = {"score": "{:.3f}", "iou": "{:.2f}", "dice": "{:.2f}", "aji": "{:.3f}", "pq": "{:.3f}", "ap": "{:.1f}"}


def seed_table_markdown(table: Dict) -> str:
    """Markdown of :func:`seed_table`: one line per run (unfinished ones say how far they got),
    then one per model with mean ± sample standard deviation over its finished seeds."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for r in table["rows"]:
        if not r["finished"]:
            reached = "no iteration logged" if r["last_iteration"] is None else f"reached iteration {r['last_iteration']}"
            lines.append("| " + " | ".join([r["model"], str(r["seed"]), f"unfinished ({reached})"]
                                           + [""] * (len(HEADER) - 3)) + " |")
            continue
        val = "n/a" if r["val_value"] is None else f"{r['val_value']:.3f} ({r['val_iteration']})"
        lines.append("| " + " | ".join(
            [r["model"], str(r["seed"]), str(r["iterations"])] + [_cell(r.get(k), FORMATS[k]) for k in METRICS]
            + [val, _cell(r.get("train_seconds"), "{:.0f}"), _cell(r["seconds_per_iter"], "{:.3f}")]) + " |")
    lines += ["", "Mean ± sample standard deviation over the finished seeds (n):", "",
              "| model | n | " + " | ".join(HEADER[3:9]) + " | s/iter |", "|" + "---|" * 9]
    for model, stats in table["means"].items():
        def pm(key: str, fmt: str) -> str:
            s = stats[key]
            if s["mean"] is None:
                return "n/a"
            return fmt.format(s["mean"]) + ("" if s["std"] is None else " ± " + fmt.format(s["std"]))
        lines.append("| " + " | ".join([model, str(stats["score"]["n"])] + [pm(k, FORMATS[k]) for k in METRICS]
                                        + [pm("seconds_per_iter", "{:.3f}")]) + " |")
    return "\n".join(lines) + "\n"
