"""The whole experiment: every run of a plan, one after another or several at once, and the
report of their rows (finished runs read back, failed and unfinished ones named)."""
from __future__ import annotations

from dataclasses import asdict
from typing import Dict, List

from .parallel import run_concurrently
from .plan import ExperimentPlan, Run, plan_runs
from .report import PAPER_TABLE_V
from .runs import finished_row, measure_row_latency, run_one
from .signature import run_signature, signature_diff

__all__ = ["run_experiment"]


def _report(plan: ExperimentPlan, rows: List[Dict], failed: Dict[str, str]) -> Dict:
    return {"plan": asdict(plan), "rows": rows, "failed": failed, "paper_table_v": PAPER_TABLE_V}


def run_experiment(plan: ExperimentPlan) -> Dict:
    """Every run of ``plan`` (finished ones read back); returns ``{"plan", "rows", "failed", "paper_table_v"}``.

    ``failed`` maps the name of each run that raised (only with ``jobs`` > 1; otherwise the
    error propagates) or, with ``report_only``, has not finished, to why; the other runs' rows
    are still returned. A report-only plan also returns ``options_differ``: the rows made with
    other options than ``plan``'s, and how they differ.
    """
    runs = plan_runs(plan)
    if plan.jobs == 1 and not plan.report_only:
        return _report(plan, [run_one(plan, run) for run in runs], {})
    signatures = {r.name: run_signature(plan, r) for r in runs}
    stored = {r.name: finished_row(plan, r, signatures[r.name]) for r in runs}
    if plan.report_only:
        errors = {name: "not finished (no result.json)" for name, row in stored.items() if row is None}
    else:
        pending: List[Run] = [r for r in runs if plan.force or stored[r.name] is None]
        done, errors = run_concurrently(plan, pending) if pending else ({}, {})
        stored.update(done)
    report = _report(plan, [measure_row_latency(plan, r, stored[r.name]) for r in runs if r.name not in errors], errors)
    if plan.report_only:  # rows of other commands are tabled as made: say how they differ from this one
        diffs = {r.name: signature_diff(stored[r.name]["budget"], signatures[r.name]) for r in runs if r.name not in errors}
        report["options_differ"] = {name: diff for name, diff in diffs.items() if diff}
    return report
