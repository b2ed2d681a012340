"""A run's budget: its time budget resolved to iterations (from measured seconds per iteration),
the schedule overrides fitting a config's LR schedule to them, and its checkpoint periods.

The resolved budget is stored in ``<run>/budget.json`` so a resumed run keeps its schedule.
"""
from __future__ import annotations

import logging
import math
import os
from typing import Dict, List, Optional

from detectron2.config import CfgNode
from detectron2.engine import AMPTrainer, SimpleTrainer

from ..engine import NucleiTrainer
from ..engine.hooks import IterationTimer
from .datasets import register_experiment_datasets
from .plan import CHECKPOINT_PERIOD_KEY, ExperimentPlan, Run, plan_error
from .signature import check_same_experiment, run_signature
from .store import read_stored, write_stored

__all__ = ["resolve_budget", "schedule_opts", "seconds_per_iteration"]

logger = logging.getLogger(__name__)


def schedule_opts(cfg: CfgNode, iters: int, evals: int, out_dir: str,
                  checkpoint_period: Optional[int] = None) -> List[str]:
    """Overrides fitting the config's LR schedule to ``iters`` iterations with ``evals`` validations.

    Step milestones and warm-up are scaled by ``iters / SOLVER.MAX_ITER``; checkpoints are
    written every ``checkpoint_period`` iterations, by default at every validation, so a stopped
    run resumes close to where it was.
    """
    scale = iters / cfg.SOLVER.MAX_ITER
    # milestones that fall on iteration 0 or past the end have no effect and break fvcore's scheduler
    steps = tuple(sorted({int(s * scale) for s in cfg.SOLVER.STEPS} & set(range(1, iters))))
    period = max(1, iters // evals)
    return [
        "SOLVER.MAX_ITER", str(iters),
        "SOLVER.STEPS", str(steps),
        "SOLVER.WARMUP_ITERS", str(min(cfg.SOLVER.WARMUP_ITERS, max(0, int(cfg.SOLVER.WARMUP_ITERS * scale)))),
        CHECKPOINT_PERIOD_KEY, str(checkpoint_period or period),
        "TEST.EVAL_PERIOD", str(period),
        "OUTPUT_DIR", out_dir,
    ]


def seconds_per_iteration(cfg: CfgNode, iters: int) -> float:
    """Median seconds of one training iteration of ``cfg`` (model, optimizer and loader as the
    trainer builds them), from ``iters`` + 1 throw-away iterations; nothing is written to disk."""
    model = NucleiTrainer.build_model(cfg)
    optimizer = NucleiTrainer.build_optimizer(cfg, model)
    loader = NucleiTrainer.build_train_loader(cfg)
    trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, loader, optimizer)
    timer = IterationTimer()
    trainer.register_hooks([timer])
    trainer.train(0, iters + 1)
    times = sorted(timer.times)
    return times[len(times) // 2]


def _minutes_budget(plan: ExperimentPlan, pre: int, cfg: CfgNode, pre_cfg: Optional[CfgNode]) -> Dict:
    """The budget of ``plan.budget_minutes``: iterations from the measured seconds per iteration
    of the pretraining (``pre`` iterations of ``pre_cfg``) and of the training (``cfg``)."""
    seconds = plan.budget_minutes * 60.0
    s_pre = 0.0
    if pre:
        register_experiment_datasets(pre_cfg, plan)
        s_pre = seconds_per_iteration(pre_cfg, plan.calibration_iters)
    register_experiment_datasets(cfg, plan)
    s_train = seconds_per_iteration(cfg, plan.calibration_iters)
    left = seconds - pre * s_pre
    if left < s_train:
        raise plan_error(f"pretrain_iters {pre} takes ~{pre * s_pre / 60:.1f} min of the budget_minutes "
                         f"{plan.budget_minutes} min budget; nothing is left for training",
                         "pretrain_iters", "budget_minutes")
    budget = {"kind": "minutes", "minutes": plan.budget_minutes, "seconds_per_iter": s_train,
              "pretrain_seconds_per_iter": s_pre if pre else None, "pretrain_iters": pre,
              "train_iters": max(1, int(math.floor(left / s_train)))}
    budget["total_iters"] = budget["train_iters"] + pre
    return budget


def resolve_budget(plan: ExperimentPlan, run: Run, cfg: CfgNode, pre_cfg: Optional[CfgNode], run_dir: str,
                   signature: Optional[Dict] = None) -> Dict:
    """Iterations for pretraining and for the main training of ``run`` under the plan's budget.

    Minutes are turned into iterations with measured seconds/iteration (evaluation time not
    counted); the result is stored in ``budget.json`` so a resumed run keeps the same schedule.
    ``signature`` is ``run_signature(plan, run)`` when the caller has it already.
    """
    path = os.path.join(run_dir, "budget.json")
    stored = read_stored(path)
    signature = signature if signature is not None else run_signature(plan, run)
    if stored is not None:
        check_same_experiment(path, stored, signature)
        return _with_checkpoint_periods(plan, path, stored)
    pre = run.pretrain_iters
    if plan.budget_iters is not None:  # ExperimentPlan checked that pretraining leaves iterations
        budget = {"kind": "iterations", "total_iters": plan.budget_iters, "pretrain_iters": pre,
                  "train_iters": plan.budget_iters - pre}
    else:
        budget = _minutes_budget(plan, pre, cfg, pre_cfg)
    budget["signature"] = signature
    return _with_checkpoint_periods(plan, path, budget)


def _with_checkpoint_periods(plan: ExperimentPlan, path: str, budget: Dict) -> Dict:
    """``budget`` with this plan's checkpoint periods (training, pretraining), stored in ``path``.

    Not part of the signature: a resumed run takes the period of the command resuming it (e.g.
    more frequent checkpoints where each command is stopped after a few minutes).
    """
    periods = {
        "checkpoint_period": plan.checkpoint_period or max(1, budget["train_iters"] // plan.evals),
        # pretraining validates once, at its end: by default it checkpoints only there
        "pretrain_checkpoint_period": (plan.checkpoint_period or budget["pretrain_iters"]) if budget["pretrain_iters"] else None,
    }
    if all(budget.get(k) == v for k, v in periods.items()) and os.path.isfile(path):
        return budget
    if "checkpoint_period" in budget and budget["checkpoint_period"] != periods["checkpoint_period"]:
        logger.info("%s: checkpoints every %d iterations now (%d when stored)", path, periods["checkpoint_period"],
                    budget["checkpoint_period"])
    budget = {**budget, **periods}
    write_stored(path, budget)
    return budget
