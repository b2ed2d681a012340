"""A run's signature (the options its budget and result depend on) and its comparison with the
signature stored by a finished or interrupted run, so a run folder of another experiment is never
resumed or tabled as this one's."""
from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional

from .datasets import dsb_root_in_effect, resolved_test_split
from .plan import CHECKPOINT_PERIOD_KEY, ExperimentPlan, Run, plan_error, without_override

__all__ = ["check_same_experiment", "run_signature", "signature_diff", "unrecorded_options"]

logger = logging.getLogger(__name__)


def run_signature(plan: ExperimentPlan, run: Run) -> Dict:
    """The options ``run``'s budget and result depend on (beyond its name), as stored in JSON.

    A run folder made with other values belongs to another experiment: skipping to its result or
    resuming its checkpoints under this plan would silently mix the two. The test split is the
    one resolved in ``test_root`` (an omitted ``test_split`` and the split it defaults to are the
    same set), and DSB 2018 runs record the real path of the DSB root they train on.
    ``checkpoint_period`` is left out: how often checkpoints are written changes no result.
    """
    signature = {
        "data": plan.data, "test_root": os.path.realpath(plan.test_root) if plan.test_root else None,
        "test_split": resolved_test_split(plan), "budget_iters": plan.budget_iters,
        "budget_minutes": plan.budget_minutes, "evals": plan.evals,
        "pretrain_opts": list(plan.pretrain_opts) if run.pretrain_iters else [], "opts": list(plan.opts),
    }
    if plan.data == "dsb2018":
        signature["dsb_root"] = dsb_root_in_effect(plan, run)
    return json.loads(json.dumps(signature))  # tuples become lists, as when read back


def _unrecorded(key: str, made_with: Dict, signature: Dict) -> bool:
    """Whether a stored signature ``made_with`` (possibly of an older version) does not record
    ``key`` comparably with ``signature``: such a key is not a difference."""
    if key not in made_with:
        return True
    # versions before the split was resolved stored an omitted test split as None
    return key == "test_split" and made_with[key] is None and signature.get("test_root") is not None


def _comparable(key: str, value: Any) -> Any:
    """A stored signature value as this version records it."""
    if key == "opts" and isinstance(value, list):  # older versions kept the override in opts
        return without_override(value, CHECKPOINT_PERIOD_KEY)
    return value


def signature_diff(budget: Dict, signature: Dict) -> Optional[List[str]]:
    """``"<option> <stored> there, <value> now"`` for each option in which the stored ``budget``'s
    signature differs from ``signature``; None when the run records no options (older version).
    Options the stored signature does not record (``unrecorded_options``) are not differences."""
    made_with = budget.get("signature")
    if made_with is None:
        return None
    # without a test root the test split had no effect (older versions stored it anyway)
    irrelevant = {"test_split"} if signature.get("test_root") is None else set()
    return [f"{k} {made_with.get(k)!r} there, {v!r} now" for k, v in signature.items()
            if k not in irrelevant and not _unrecorded(k, made_with, signature) and _comparable(k, made_with[k]) != v]


def unrecorded_options(budget: Dict, signature: Dict) -> List[str]:
    """The options of ``signature`` that the stored ``budget``'s signature does not record."""
    made_with = budget.get("signature")
    return [] if made_with is None else [k for k in signature if _unrecorded(k, made_with, signature)]


def check_same_experiment(path: str, budget: Dict, signature: Dict, strict: bool = True) -> List[str]:
    """The options in which the stored ``budget`` (of a ``budget.json``, or a ``result.json``
    row's) differs from ``signature``; with ``strict``, any difference is a UserError naming
    ``path``, otherwise a logged warning (a report-only plan tables rows of several commands, e.g.
    one budget for the R-CNN family and another for the U-Nets). Options an older version did not
    record are logged, not differences, so its folders stay usable."""
    diff = signature_diff(budget, signature)
    if diff is None:
        logger.warning("%s records no options (made by an older version): not checked against this command", path)
        return []
    unrecorded = unrecorded_options(budget, signature)
    if unrecorded:
        logger.warning("%s does not record %s (made by an older version): not checked against this command",
                       path, ", ".join(unrecorded))
    if diff:
        message = f"{path} belongs to another experiment ({'; '.join(diff)})"
        if strict:
            raise plan_error(f"{message}: choose another experiment folder (out_dir), or delete "
                             f"{os.path.dirname(path)} to redo this run with these options", "out_dir")
        logger.warning("%s; reported as it was made", message)
    return diff
