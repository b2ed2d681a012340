"""The configs of one run: its training config (the plan's overrides and datasets) and its
synthetic pretraining config."""
from __future__ import annotations

from typing import Optional, Sequence

from detectron2.config import CfgNode

from ..config import setup_cfg
from .budget import schedule_opts
from .datasets import dataset_opts
from .plan import DATA_SPLITS, ExperimentPlan, Run

__all__ = ["build_run_cfg", "pretrain_cfg"]


def build_run_cfg(plan: ExperimentPlan, run: Run, extra: Sequence[str] = ()) -> CfgNode:
    """``run``'s config with the plan's overrides, its datasets, then ``extra`` (KEY VALUE ...)."""
    return setup_cfg(run.config, list(plan.opts) + dataset_opts(plan) + list(extra), device=plan.device)


def pretrain_cfg(plan: ExperimentPlan, run: Run, iters: int, pre_dir: str,
                 checkpoint_period: Optional[int] = None) -> CfgNode:
    """The run's config on the synthetic splits for ``iters`` iterations (validated on the
    synthetic val split only at the end; the experiment's own val/test sets are not touched)."""
    base = build_run_cfg(plan, run)
    train, val, test = DATA_SPLITS["synthetic"]
    opts = list(plan.opts) + list(plan.pretrain_opts) + schedule_opts(base, max(1, iters), 1, pre_dir, checkpoint_period)
    opts += ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.VAL", f"('{val}',)", "DATASETS.TEST", f"('{test}',)",
             "TEST.EVAL_PERIOD", "0"]
    return setup_cfg(run.config, opts, device=plan.device)
