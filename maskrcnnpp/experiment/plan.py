"""What an experiment runs: the checked :class:`ExperimentPlan`, its :class:`Run` rows, and the
helpers for its KEY VALUE override lists.

Errors name the plan's fields (``evals``, ``budget_iters``, ...) and carry them in ``fields``
(:func:`plan_error`), so a command line can name its own options for them instead.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

from ..config import resolve_config_path
from ..errors import UserError

__all__ = [
    "CHECKPOINT_PERIOD_KEY", "DATA_SPLITS", "SCHEDULED_KEYS", "ExperimentPlan", "Run", "override_values",
    "plan_error", "plan_runs", "without_override",
]

DATA_SPLITS = {
    "synthetic": ("nuclei_synth_train", "nuclei_synth_val", "nuclei_synth_test"),
    "dsb2018": ("dsb2018_train", "dsb2018_val", "dsb2018_test"),
}
CHECKPOINT_PERIOD_KEY = "SOLVER.CHECKPOINT_PERIOD"
# Overrides the experiment's schedule replaces (schedule_opts), with the plan field that sets each
# instead: given as KEY VALUE they would be silently ignored.
SCHEDULED_KEYS = {"TEST.EVAL_PERIOD": "evals", "OUTPUT_DIR": "out_dir"}
# Counts checked up front, with their least value (latency_size: tools/benchmark.py's least size).
_LEAST = (("jobs", 1), ("checkpoint_period", 1), ("latency_iters", 1), ("calibration_iters", 1), ("latency_size", 32))


def plan_error(message: str, *fields: str) -> UserError:
    """A UserError about the plan ``fields`` its ``message`` names (kept in its ``fields`` attribute)."""
    error = UserError(message)
    error.fields = fields  # pickled with the error, so it survives a worker process
    return error


def looks_like_override(token: str) -> bool:
    """Whether a configs entry is rather a config key (``SEED``, ``SOLVER.BASE_LR``) or a value."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*|[-+.\d]+", token))


def override_values(opts: Sequence[str], key: str) -> List[str]:
    """The values ``key`` is given in the KEY VALUE list ``opts`` (in order)."""
    return [opts[k + 1] for k in range(0, len(opts) - 1, 2) if opts[k] == key]


def without_override(opts: Sequence[str], key: str) -> List[str]:
    """``opts`` (KEY VALUE ...) without the pairs setting ``key``."""
    pairs = [(opts[k], opts[k + 1]) for k in range(0, len(opts) - 1, 2) if opts[k] != key]
    return [item for pair in pairs for item in pair] + list(opts[len(opts) - len(opts) % 2:])


@dataclass
class ExperimentPlan:
    """What to run; see ``tools/experiment.py --help`` for each field."""

    configs: Sequence[str]
    out_dir: str
    data: str = "synthetic"
    budget_iters: Optional[int] = None
    budget_minutes: Optional[float] = None
    evals: int = 4
    pretrain_iters: int = 0
    pretrain_opts: Sequence[str] = ()
    test_root: Optional[str] = None
    test_split: Optional[str] = None
    dsb_root: Optional[str] = None
    device: Optional[str] = None
    opts: Sequence[str] = ()
    latency_size: int = 512
    latency_iters: int = 5
    calibration_iters: int = 5
    force: bool = False
    pretrain_configs: Sequence[str] = ()  # configs that also get a pretrained run (empty: all)
    jobs: int = 1  # runs trained concurrently, each in its own process
    report_only: bool = False  # table of the finished runs only: nothing is trained
    # iterations between checkpoints (None: one per validation); a SOLVER.CHECKPOINT_PERIOD
    # override in ``opts`` is taken out of ``opts`` into this field
    checkpoint_period: Optional[int] = None

    def __post_init__(self) -> None:
        # every field is checked here, so a bad one fails before the first run trains, not after
        self._take_checkpoint_period()
        self._check_data_and_budget()
        self._check_counts()
        self._check_overrides()
        self._check_pretraining_and_test()
        self._check_configs()

    def _check_data_and_budget(self) -> None:
        if self.data not in DATA_SPLITS:
            raise plan_error(f"data must be one of {list(DATA_SPLITS)}, got {self.data!r}", "data")
        if (self.budget_iters is None) == (self.budget_minutes is None):
            raise plan_error("give exactly one budget: budget_iters (iterations) or budget_minutes (minutes)",
                             "budget_iters", "budget_minutes")
        if self.budget_iters is not None and self.budget_iters < 1:
            raise plan_error(f"budget_iters must be >= 1, got {self.budget_iters}", "budget_iters")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise plan_error(f"budget_minutes must be > 0, got {self.budget_minutes}", "budget_minutes")
        if self.evals < 1:
            raise plan_error(f"evals (validations per run) must be >= 1, got {self.evals}", "evals")
        if self.pretrain_iters < 0:
            raise plan_error(f"pretrain_iters (synthetic pretraining) must be >= 0, got {self.pretrain_iters}",
                             "pretrain_iters")
        if self.budget_iters is not None and self.pretrain_iters >= self.budget_iters:
            raise plan_error(f"pretrain_iters {self.pretrain_iters} leaves no iterations of the budget_iters "
                             f"{self.budget_iters}", "pretrain_iters", "budget_iters")

    def _check_counts(self) -> None:
        for field, least in _LEAST:
            value = getattr(self, field)
            if value is not None and value < least:
                raise plan_error(f"{field} must be >= {least}, got {value}", field)

    def _check_overrides(self) -> None:
        for field, what, opts in (("opts", "config override", self.opts),
                                  ("pretrain_opts", "pretrain_opts override", self.pretrain_opts)):
            for key, instead in SCHEDULED_KEYS.items():
                if override_values(opts, key):
                    raise plan_error(f"{what} {key}: the experiment sets it (from {instead}); set {instead} instead",
                                     field, instead)
        if override_values(self.pretrain_opts, CHECKPOINT_PERIOD_KEY):
            raise plan_error(f"pretrain_opts override {CHECKPOINT_PERIOD_KEY}: set checkpoint_period instead (it "
                             "applies to the pretraining too)", "pretrain_opts", "checkpoint_period")

    def _check_pretraining_and_test(self) -> None:
        unknown = [c for c in self.pretrain_configs if c not in self.configs]
        if unknown:
            raise plan_error(f"pretrain_configs {' '.join(unknown)}: not among configs {' '.join(self.configs)}",
                             "pretrain_configs", "configs")
        if self.pretrain_configs and not self.pretrain_iters:
            raise plan_error("pretrain_configs needs pretrain_iters > 0", "pretrain_configs", "pretrain_iters")
        if self.test_split and not self.test_root:
            raise plan_error("test_split needs test_root (it names a split of that folder; the splits of data "
                             "are fixed)", "test_split", "test_root")

    def _check_configs(self) -> None:
        for name in self.configs:
            try:
                resolve_config_path(name)
            except FileNotFoundError as e:
                # a KEY VALUE override given among the configs: say so
                if looks_like_override(name):
                    raise plan_error(f"configs entry {name}: {e} (it looks like a config override KEY VALUE, not "
                                     "a config)", "configs", "opts") from None
                raise plan_error(f"configs entry {name}: {e}", "configs") from None

    def _take_checkpoint_period(self) -> None:
        """Honour a ``SOLVER.CHECKPOINT_PERIOD N`` override as ``checkpoint_period`` N.

        The schedule sets the period itself, so the override would be silently replaced; kept in
        ``opts`` it would also enter the run signature, and a resume with another period (which
        changes no result) would be refused.
        """
        values = override_values(self.opts, CHECKPOINT_PERIOD_KEY)
        if not values:
            return
        periods = set()
        for value in values:
            try:
                periods.add(int(value))
            except ValueError:
                raise plan_error(f"config override {CHECKPOINT_PERIOD_KEY} {value}: give a number of iterations "
                                 "(or set checkpoint_period)", "opts", "checkpoint_period") from None
        if self.checkpoint_period is not None:
            periods.add(self.checkpoint_period)
        if len(periods) > 1:
            raise plan_error(f"checkpoint_period and config override {CHECKPOINT_PERIOD_KEY} disagree "
                             f"({sorted(periods)}): set checkpoint_period only", "checkpoint_period", "opts")
        self.checkpoint_period = periods.pop()
        self.opts = without_override(self.opts, CHECKPOINT_PERIOD_KEY)


@dataclass
class Run:
    """One row of the table: a config trained from scratch, or after synthetic pretraining."""

    config: str
    pretrain_iters: int = 0

    @property
    def name(self) -> str:
        """The run's folder and row name: the config's base name, ``+synthpre<N>`` when pretrained."""
        base = os.path.splitext(os.path.basename(self.config))[0]
        return f"{base}+synthpre{self.pretrain_iters}" if self.pretrain_iters else base


def plan_runs(plan: ExperimentPlan) -> List[Run]:
    """Every config from scratch and, with pretraining asked for, every config (or every one of
    ``pretrain_configs``) pretrained too."""
    runs = [Run(c) for c in plan.configs]
    if plan.pretrain_iters:
        runs += [Run(c, plan.pretrain_iters) for c in plan.configs
                 if not plan.pretrain_configs or c in plan.pretrain_configs]
    return runs
