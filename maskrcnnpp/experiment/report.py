"""The experiment's Markdown table (one row per run, failed runs included) beside the paper's Table V."""
from __future__ import annotations

from typing import Dict, List, Optional

__all__ = ["PAPER_TABLE_V", "TABLE_FIELDS", "TABLE_HEADER", "experiment_markdown"]

# The paper's Table V (IoU and Dice in %, leaderboard score as a fraction), for reference only.
PAPER_TABLE_V = {
    "Mask R-CNN R-101": {"iou": 93.28, "dice": 87.91, "score": 0.401},
    "Mask RCNN++ R-101": {"iou": 95.10, "dice": 91.36, "score": 0.414},
    "U-Net R-101": {"iou": 91.03, "dice": 75.73, "score": 0.244},
    "UNet++ R-101": {"iou": 92.55, "dice": 89.74, "score": 0.327},
}
TABLE_FIELDS = ("iou", "dice", "score", "aji", "pq", "ap", "params", "latency_ms_median")
TABLE_HEADER = ("model", "iterations", "IoU %", "Dice %", "score", "AJI", "PQ", "mask AP", "params M",
                "latency ms (size)")


def _fmt(v: Optional[float], fmt: str) -> str:
    return "n/a" if v is None else fmt.format(v)


def _row_line(r: Dict) -> str:
    """The table line of one result row."""
    pre = f" ({r['pretrain_synthetic_iters']} synthetic + {r['train_iters']})" if r["pretrain_synthetic_iters"] else ""
    return "| " + " | ".join([
        r["model"], f"{r['train_iters']}{pre}" if not pre else pre.strip(" ()"),
        _fmt(r["iou"], "{:.2f}"), _fmt(r["dice"], "{:.2f}"), _fmt(r["score"], "{:.3f}"), _fmt(r["aji"], "{:.3f}"),
        _fmt(r["pq"], "{:.3f}"), _fmt(r["ap"], "{:.1f}"), f"{r['params'] / 1e6:.2f}",
        f"{_fmt(r['latency_ms_median'], '{:.1f}')} ({r['latency_size']})",
    ]) + " |"


def _failed_line(name: str, error: str) -> str:
    """The table line of a run that failed or has not finished: its name and why."""
    # every row has the header's cells, and a '|' or line break in the message does not end one
    cell = " ".join(error.split()).replace("|", "\\|")
    return "| " + " | ".join([name, cell] + [""] * (len(TABLE_HEADER) - 2)) + " |"


def _paper_lines(paper: Dict[str, Dict[str, float]]) -> List[str]:
    """The paper's Table V, labelled as a reference."""
    lines = ["", "Paper Table V (for reference; not measured here):", "", "| model | IoU % | Dice % | score |",
             "|---|---|---|---|"]
    return lines + [f"| {name} | {v['iou']:.2f} | {v['dice']:.2f} | {v['score']:.3f} |" for name, v in paper.items()]


def experiment_markdown(report: Dict, command: Optional[str] = None) -> str:
    """The experiment's table (IoU, Dice, score, AJI, PQ, AP, params, latency) and Table V beside."""
    lines = []
    if command:
        report_only = report.get("plan", {}).get("report_only")
        lines.append(f"{'Report of the finished runs (nothing trained)' if report_only else 'Command'}: `{command}`\n")
    lines += ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    lines += [_row_line(r) for r in report["rows"]]
    lines += [_failed_line(name, error) for name, error in report.get("failed", {}).items()]
    differ = report.get("options_differ", {})
    if differ:
        lines += ["", "Rows made with other options than this command's (each row is as it was made; its options are "
                      "in its result.json, `budget.signature`):", ""]
        lines += [f"- {name}: {'; '.join(diff)}" for name, diff in differ.items()]
    lines += _paper_lines(report["paper_table_v"])
    return "\n".join(lines) + "\n"
