"""Markdown rendering of a benchmark report (``run_benchmark``'s dict)."""
from __future__ import annotations

from typing import Dict, List, Optional


def _num(value: Optional[float], fmt: str = "{:.1f}") -> str:
    return "n/a" if value is None else fmt.format(value)


def _with_ratio(row: Dict, key: str, fmt: str = "{:.1f}", scale: float = 1.0) -> str:
    value = row.get(key)
    if value is None:
        return "n/a"
    text = fmt.format(value * scale)
    ratio = (row.get("ratios") or {}).get(key)
    return f"{text} (x{ratio:.2f})" if ratio is not None else text


def benchmark_table(rows: List[Dict]) -> str:
    """One Markdown table row per (model, size); ratios to the first model in parentheses."""
    head = ("| model | size | params M (used) | GFLOPs | network ms | latency ms median | p90 | images/s (batch) "
            "| infer peak MB | train ms/iter (batch) | train peak MB | loader images/s |")
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        used = r.get("params_used")
        params = _with_ratio(r, "params", "{:.2f}", 1e-6)
        if used is not None and used != r.get("params"):
            params += f" ({used / 1e6:.2f})"
        thr = r.get("throughput_images_per_s")
        thr_text = "n/a" if thr is None else f"{_with_ratio(r, 'throughput_images_per_s', '{:.2f}')} ({r['throughput_batch']})"
        train = _with_ratio(r, "train_iter_ms")
        if r.get("train_batch"):
            train += f" ({r['train_batch']})"
        loader = _num(r.get("loader_images_per_s"))
        if r.get("loader_error"):
            loader = "not measured"
        lines.append("| " + " | ".join([
            r["label"], str(r["size"]), params, _with_ratio(r, "gflops"), _with_ratio(r, "network_ms"),
            _with_ratio(r, "latency_median_ms"), _with_ratio(r, "latency_p90_ms"), thr_text,
            _with_ratio(r, "infer_peak_mb", "{:.0f}"), train, _with_ratio(r, "train_peak_mb", "{:.0f}"), loader,
        ]) + " |")
    return "\n".join(lines)


def report_markdown(report: Dict, command: Optional[str] = None) -> str:
    """The benchmark table with where/how it was measured and the notes on each figure."""
    env, st = report["environment"], report["settings"]
    where = f"{env['cpu']} ({env['cpu_cores']} cores, {env['torch_threads']} torch threads)"
    if env.get("gpu"):
        where += f", GPU {env['gpu']}"
    out = [
        f"Measured {env['date_utc']} on {where}; torch {env['torch']}, Detectron2 {env['detectron2']}.",
        f"Device {st['device']}, AMP {'on' if st['amp'] else 'off'}, channels_last {'on' if st['channels_last'] else 'off'}, "
        f"{st['iters']} timed iterations after {st['warmup']} warm-up.",
    ]
    if "load_average_start" in env:
        out.append(f"Load average at start {env['load_average_start'][0]:.2f}, at end "
                   f"{env.get('load_average_end', [float('nan')])[0]:.2f} (other processes share the machine when > 0).")
    if command:
        out.append(f"\nCommand: `{command}`")
    if not report.get("complete", True):
        out.append("\n**Partial: the run has not measured every config yet (or was stopped); the rows below are "
                   "those measured so far.**")
    out += ["", benchmark_table(report["rows"]), ""]
    out += [f"- {k}: {v}" for k, v in report["notes"].items()]
    for s in report.get("skipped", []):
        out.append(f"- skipped {s['config']} mode {s['mode']}: {s['reason']}")
    errors = {r["loader_dataset"]: r["loader_error"] for r in report["rows"] if r.get("loader_error")}
    for name, err in errors.items():
        out.append(f"- loader not measured on {name}: {err}")
    return "\n".join(out) + "\n"
