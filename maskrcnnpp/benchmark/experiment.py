"""The paper's Table V protocol: train each model with one budget, select on val, score on test.

For every model (config) of an experiment: train on the TRAIN split for the same number of
iterations (``budget_iters``, or a wall-clock ``budget_minutes`` converted to iterations from
the model's measured training speed), validate periodically on VAL keeping the best checkpoint
by ``SOLVER.BEST_CHECKPOINT_METRIC`` (``NucleiTrainer``), score that checkpoint on TEST with the
nuclei evaluator, and measure parameters and inference latency. Each model's row is written
to ``<out>/<model>/result.json`` as soon as it is known; a rerun skips finished models and
resumes a partly trained one from its last checkpoint (``<out>/<model>/train``, written every
``checkpoint_period`` iterations, by default at every validation; only the newest is kept, beside
``model_best.pth`` and ``model_final.pth``), provided they were made with
the same options (``run_signature``: data and DSB root, test set, budget, validations,
overrides; not the checkpoint period, which changes no result); a folder made with other options
is an error (with ``report_only``, a logged warning), never a silently mixed table. Several
commands may work in one ``<out>`` at once (e.g. the R-CNN family at one budget and the U-Nets at
another, sharing a GPU), but one process at a time trains a run (``<out>/<run>/.run.lock``).

Optional synthetic pretraining (``pretrain_iters`` > 0) first trains the model on the
synthetic nuclei set, then starts the real training from its backbone weights; the pretraining
iterations (or minutes) are taken out of the same total budget.

With ``jobs`` > 1 the runs train concurrently in separate processes (one GPU is shared; a
single R-101 Mask R-CNN training leaves an H100 partly idle). Iteration budgets and accuracy do
not depend on this; wall-clock budgets do (calibrated under the same sharing), and latency is
then measured afterwards, one model at a time, so it is never taken under contention. SIGTERM
or SIGINT to the parent terminates the training processes before it exits.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing
import os
import re
import signal
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import AMPTrainer, HookBase, SimpleTrainer
from detectron2.utils.logger import setup_logger

from ..modeling import semantic as _semantic  # noqa: F401  (registers SemanticUNet)
from ..config import resolve_config_path
from ..config import setup_cfg
from ..engine import NucleiTrainer
from ..errors import UserError
from ..engine.checkpointer import PERIODIC_CHECKPOINT
from ..utils.files import finite_or_none
from .inputs import SyntheticBatches
from .processes import Stopped, exclusive_lock, stop_signals_raise, terminate_workers
from .measure import count_parameters, inference_call
from .timing import time_calls

logger = logging.getLogger(__name__)

DATA_SPLITS = {
    "synthetic": ("nuclei_synth_train", "nuclei_synth_val", "nuclei_synth_test"),
    "dsb2018": ("dsb2018_train", "dsb2018_val", "dsb2018_test"),
}
EXTERNAL_TEST_NAME = "experiment_external_test"
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
CHECKPOINT_PERIOD_KEY = "SOLVER.CHECKPOINT_PERIOD"
# Overrides the runner's schedule replaces (schedule_opts), with the option that sets each instead:
# given as KEY VALUE they would be silently ignored.
SCHEDULED_KEYS = {"TEST.EVAL_PERIOD": "--evals", "OUTPUT_DIR": "--out"}
RUN_LOCK_FILE = ".run.lock"  # in --out/<run>: held by the process training that run


def _looks_like_override(token: str) -> bool:
    """Whether a --configs entry is rather a config key (``SEED``, ``SOLVER.BASE_LR``) or a value."""
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)*|[-+.\d]+", token))


def _override_values(opts: Sequence[str], key: str) -> List[str]:
    """The values ``key`` is given in the KEY VALUE list ``opts`` (in order)."""
    return [opts[k + 1] for k in range(0, len(opts) - 1, 2) if opts[k] == key]


def _without_override(opts: Sequence[str], key: str) -> List[str]:
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

    def __post_init__(self):
        self._take_checkpoint_period()
        if self.data not in DATA_SPLITS:
            raise UserError(f"--data must be one of {list(DATA_SPLITS)}, got {self.data!r}")
        if (self.budget_iters is None) == (self.budget_minutes is None):
            raise UserError("give exactly one budget: --budget-iters N or --budget-minutes M")
        if self.budget_iters is not None and self.budget_iters < 1:
            raise UserError(f"--budget-iters must be >= 1, got {self.budget_iters}")
        if self.budget_minutes is not None and self.budget_minutes <= 0:
            raise UserError(f"--budget-minutes must be > 0, got {self.budget_minutes}")
        if self.evals < 1:
            raise UserError(f"--evals must be >= 1, got {self.evals}")
        if self.pretrain_iters < 0:
            raise UserError(f"--pretrain-synthetic must be >= 0, got {self.pretrain_iters}")
        if self.budget_iters is not None and self.pretrain_iters >= self.budget_iters:
            raise UserError(f"--pretrain-synthetic {self.pretrain_iters} leaves no iterations of the "
                            f"--budget-iters {self.budget_iters}")
        # every count is checked here, so a bad one fails before the first run trains, not after
        for option, value, least in (("--jobs", self.jobs, 1), ("--checkpoint-period", self.checkpoint_period, 1),
                                     ("--latency-iters", self.latency_iters, 1),
                                     ("--calibration-iters", self.calibration_iters, 1),
                                     ("--latency-size", self.latency_size, 32)):  # tools/benchmark.py's least size
            if value is not None and value < least:
                raise UserError(f"{option} must be >= {least}, got {value}")
        for option, opts in (("config override", self.opts), ("--pretrain-opts", self.pretrain_opts)):
            for key, instead in SCHEDULED_KEYS.items():
                if _override_values(opts, key):
                    raise UserError(f"{option} {key}: the experiment sets it (from {instead}); use {instead}")
        if _override_values(self.pretrain_opts, CHECKPOINT_PERIOD_KEY):
            raise UserError(f"--pretrain-opts {CHECKPOINT_PERIOD_KEY}: use --checkpoint-period N (it applies to the "
                            "pretraining too)")
        unknown = [c for c in self.pretrain_configs if c not in self.configs]
        if unknown:
            raise UserError(f"--pretrain-configs {' '.join(unknown)}: not among --configs {' '.join(self.configs)}")
        if self.pretrain_configs and not self.pretrain_iters:
            raise UserError("--pretrain-configs needs --pretrain-synthetic N")
        if self.test_split and not self.test_root:
            raise UserError("--test-split needs --test-root (the split of the test folder; the --data test split is fixed)")
        for name in self.configs:
            try:
                resolve_config_path(name)
            except FileNotFoundError as e:
                # a KEY VALUE override given before --out is swallowed by --configs: say so
                hint = " (config overrides KEY VALUE go last, after every option)" if _looks_like_override(name) else ""
                raise UserError(f"--configs {name}: {e}{hint}") from None

    def _take_checkpoint_period(self) -> None:
        """Honour a ``SOLVER.CHECKPOINT_PERIOD N`` override as ``--checkpoint-period N``.

        The schedule sets the period itself, so the override would be silently replaced; kept in
        ``opts`` it would also enter the run signature, and a resume with another period (which
        changes no result) would be refused.
        """
        values = _override_values(self.opts, CHECKPOINT_PERIOD_KEY)
        if not values:
            return
        periods = set()
        for value in values:
            try:
                periods.add(int(value))
            except ValueError:
                raise UserError(f"config override {CHECKPOINT_PERIOD_KEY} {value}: give a number of iterations "
                                "(or use --checkpoint-period N)") from None
        if self.checkpoint_period is not None:
            periods.add(self.checkpoint_period)
        if len(periods) > 1:
            raise UserError(f"--checkpoint-period and config override {CHECKPOINT_PERIOD_KEY} disagree "
                            f"({sorted(periods)}): give --checkpoint-period N only")
        self.checkpoint_period = periods.pop()
        self.opts = _without_override(self.opts, CHECKPOINT_PERIOD_KEY)


@dataclass
class Run:
    """One row of the table: a config trained from scratch, or after synthetic pretraining."""

    config: str
    pretrain_iters: int = 0

    @property
    def name(self) -> str:
        base = os.path.splitext(os.path.basename(self.config))[0]
        return f"{base}+synthpre{self.pretrain_iters}" if self.pretrain_iters else base


def run_signature(plan: ExperimentPlan, run: Run) -> Dict:
    """The options ``run``'s budget and result depend on (beyond its name), as stored in JSON.

    A run folder made with other values belongs to another experiment: skipping to its result or
    resuming its checkpoints under this command would silently mix the two. The test split is
    the one resolved in ``test_root`` (an omitted ``--test-split`` and the split it defaults to
    are the same set), and DSB 2018 runs record the real path of the DSB root they train on.
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


def resolved_test_split(plan: ExperimentPlan) -> Optional[str]:
    """The split of ``test_root`` the runs are scored on (None without ``test_root``, where
    ``test_split`` has no effect); with ``report_only`` an unreadable folder gives the option as
    given (a report trains and tests nothing)."""
    if not plan.test_root:
        return None
    try:
        json_file, _ = external_test_json(plan.test_root, plan.test_split)
    except UserError:
        if plan.report_only:
            return plan.test_split
        raise
    return os.path.splitext(os.path.basename(json_file))[0]


def dsb_root_in_effect(plan: ExperimentPlan, run: Run) -> str:
    """Real path of the DSB 2018 folder ``run`` trains on: ``--dsb-root``, else the config's
    DATASETS.NUCLEI.DSB2018_ROOT, else $MASKRCNNPP_DSB2018 or the default (``dsb2018_root``)."""
    from ..data import dsb2018_root, register_dsb2018

    # device "cpu": the root does not depend on it, and a report on a machine without CUDA still works
    cfg = setup_cfg(run.config, list(plan.opts) + dataset_opts(plan), device="cpu")
    register_dsb2018(cfg.DATASETS.NUCLEI.DSB2018_ROOT or None)  # as the run's setup_datasets does
    return os.path.realpath(dsb2018_root())


def _unrecorded(key: str, made_with: Dict, signature: Dict) -> bool:
    """Whether a stored signature ``made_with`` (possibly of an older version) does not record
    ``key`` comparably with ``signature``: such a key is not a difference."""
    if key not in made_with:
        return True
    # versions before the split was resolved stored an omitted --test-split as None
    return key == "test_split" and made_with[key] is None and signature.get("test_root") is not None


def _comparable(key: str, value):
    """A stored signature value as this version records it."""
    if key == "opts" and isinstance(value, list):  # older versions kept the override in opts
        return _without_override(value, CHECKPOINT_PERIOD_KEY)
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
    ``path``, otherwise a logged warning (``--report-only`` tables rows of several commands, e.g.
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
            raise UserError(f"{message}: give another --out, or delete {os.path.dirname(path)} to redo this run "
                            "with these options")
        logger.warning("%s; reported as it was made", message)
    return diff


def plan_runs(plan: ExperimentPlan) -> List[Run]:
    """Every config from scratch and, with pretraining asked for, every config (or every one of
    ``pretrain_configs``) pretrained too."""
    runs = [Run(c) for c in plan.configs]
    if plan.pretrain_iters:
        runs += [Run(c, plan.pretrain_iters) for c in plan.configs if not plan.pretrain_configs or c in plan.pretrain_configs]
    return runs


# --------------------------------------------------------------------------- datasets


def external_test_json(test_root: str, split: Optional[str]) -> Tuple[str, str]:
    """(json, image root) of a folder prepared by ``datasets/prepare_dsb2018.py``.

    ``split`` names ``annotations/<split>.json``; by default "test" when present, else "all".
    """
    ann_dir = os.path.join(test_root, "annotations")
    images = os.path.join(test_root, "images")
    if not os.path.isdir(ann_dir) or not os.path.isdir(images):
        raise UserError(f"--test-root {test_root} is not a folder prepared by datasets/prepare_dsb2018.py "
                        "(it needs images/ and annotations/<split>.json)")
    candidates = [split] if split else ["test", "all"]
    for name in candidates:
        path = os.path.join(ann_dir, f"{name}.json")
        if os.path.isfile(path):
            return path, images
    found = sorted(f[:-5] for f in os.listdir(ann_dir) if f.endswith(".json"))
    raise UserError(f"--test-root {test_root}: no annotations/{candidates[0]}.json (splits there: {', '.join(found) or 'none'}); "
                    "choose one with --test-split")


def dataset_opts(plan: ExperimentPlan) -> List[str]:
    """Overrides selecting the experiment's train/val/test datasets."""
    train, val, test = DATA_SPLITS[plan.data]
    if plan.test_root:
        test = EXTERNAL_TEST_NAME
    opts = ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.VAL", f"('{val}',)", "DATASETS.TEST", f"('{test}',)"]
    if plan.dsb_root:
        opts += ["DATASETS.NUCLEI.DSB2018_ROOT", plan.dsb_root]
    return opts


def register_experiment_datasets(cfg: CfgNode, plan: ExperimentPlan) -> None:
    """Register the configured nuclei datasets (and the external test folder) and check they load."""
    from ..data import register_nuclei_coco, setup_datasets
    from ..engine.trainer import check_datasets

    setup_datasets(cfg)
    if plan.test_root:
        json_file, image_root = external_test_json(plan.test_root, plan.test_split)
        registered = MetadataCatalog.get(EXTERNAL_TEST_NAME) if EXTERNAL_TEST_NAME in DatasetCatalog.list() else None
        wanted = (str(json_file), str(image_root))
        if registered is not None and (registered.get("json_file"), registered.get("image_root")) != wanted:
            # the runner's own name: an earlier experiment of this process scored another folder
            DatasetCatalog.remove(EXTERNAL_TEST_NAME)
            MetadataCatalog.remove(EXTERNAL_TEST_NAME)
        register_nuclei_coco(EXTERNAL_TEST_NAME, json_file, image_root)
    check_datasets(cfg)


# --------------------------------------------------------------------------- schedule


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


class _IterationTimer(HookBase):
    """Records the wall-clock time of every training iteration after the first."""

    def __init__(self):
        self.times: List[float] = []
        self._t0 = 0.0

    def before_step(self):
        self._t0 = time.perf_counter()

    def after_step(self):
        if self.trainer.iter > self.trainer.start_iter:
            self.times.append(time.perf_counter() - self._t0)


def seconds_per_iteration(cfg: CfgNode, iters: int) -> float:
    """Median seconds of one training iteration of ``cfg`` (model, optimizer and loader as the
    trainer builds them), from ``iters`` + 1 throw-away iterations; nothing is written to disk."""
    model = NucleiTrainer.build_model(cfg)
    optimizer = NucleiTrainer.build_optimizer(cfg, model)
    loader = NucleiTrainer.build_train_loader(cfg)
    trainer = (AMPTrainer if cfg.SOLVER.AMP.ENABLED else SimpleTrainer)(model, loader, optimizer)
    timer = _IterationTimer()
    trainer.register_hooks([timer])
    trainer.train(0, iters + 1)
    times = sorted(timer.times)
    return times[len(times) // 2]


def _json_load(path: str) -> Optional[dict]:
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _json_dump(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(finite_or_none(obj), f, indent=2, allow_nan=False)
    os.replace(tmp, path)  # a crash never leaves a half-written result


def resolve_budget(plan: ExperimentPlan, run: Run, cfg: CfgNode, pre_cfg: Optional[CfgNode], run_dir: str,
                   signature: Optional[Dict] = None) -> Dict:
    """Iterations for pretraining and for the main training of ``run`` under the plan's budget.

    Minutes are turned into iterations with measured seconds/iteration (evaluation time not
    counted); the result is stored in ``budget.json`` so a resumed run keeps the same schedule.
    ``signature`` is ``run_signature(plan, run)`` when the caller has it already.
    """
    path = os.path.join(run_dir, "budget.json")
    stored = _json_load(path)
    signature = signature if signature is not None else run_signature(plan, run)
    if stored is not None:
        check_same_experiment(path, stored, signature)
        return _with_checkpoint_periods(plan, path, stored)
    pre = run.pretrain_iters
    if plan.budget_iters is not None:  # ExperimentPlan checked that pretraining leaves iterations
        budget = {"kind": "iterations", "total_iters": plan.budget_iters, "pretrain_iters": pre,
                  "train_iters": plan.budget_iters - pre}
    else:
        seconds = plan.budget_minutes * 60.0
        s_pre = 0.0
        if pre:
            register_experiment_datasets(pre_cfg, plan)
            s_pre = seconds_per_iteration(pre_cfg, plan.calibration_iters)
        register_experiment_datasets(cfg, plan)
        s_train = seconds_per_iteration(cfg, plan.calibration_iters)
        left = seconds - pre * s_pre
        if left < s_train:
            raise UserError(f"--pretrain-synthetic {pre} takes ~{pre * s_pre / 60:.1f} min of the {plan.budget_minutes} min budget; "
                            "nothing is left for training")
        budget = {"kind": "minutes", "minutes": plan.budget_minutes, "seconds_per_iter": s_train,
                  "pretrain_seconds_per_iter": s_pre if pre else None, "pretrain_iters": pre,
                  "train_iters": max(1, int(math.floor(left / s_train)))}
        budget["total_iters"] = budget["train_iters"] + pre
    budget["signature"] = signature
    return _with_checkpoint_periods(plan, path, budget)


def _with_checkpoint_periods(plan: ExperimentPlan, path: str, budget: Dict) -> Dict:
    """``budget`` with this command's checkpoint periods (training, pretraining), stored in ``path``.

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
    _json_dump(path, budget)
    return budget


# --------------------------------------------------------------------------- one run




class _KeepNewestCheckpoint(HookBase):
    """Deletes the periodic checkpoints older than the newest complete one, after each save.

    A rerun resumes from the newest; the runner tests ``model_best.pth`` (or ``model_final.pth``),
    so older ones are dead weight, and with a short ``checkpoint_period`` over a long budget they
    would fill the disk (an R-101 Mask R-CNN checkpoint with its optimizer state is ~0.5 GB).
    """

    def __init__(self, checkpointer: DetectionCheckpointer, period: int):
        self._checkpointer = checkpointer
        self._period = period

    def after_step(self):
        done = self.trainer.iter + 1
        if done % self._period and done < self.trainer.max_iter:
            return
        if not self._checkpointer.has_checkpoint():
            return
        folder = self._checkpointer.save_dir
        periodic = {int(m.group(1)): m.group(0) for m in map(PERIODIC_CHECKPOINT.fullmatch, os.listdir(folder)) if m}
        tagged = PERIODIC_CHECKPOINT.fullmatch(os.path.basename(self._checkpointer.get_checkpoint_file()))
        # complete: the tag is written after its file; model_final (tagged at the end) follows them all
        newest = int(tagged.group(1)) if tagged else max(periodic, default=-1)
        for iteration, name in periodic.items():
            if iteration < newest:
                os.remove(os.path.join(folder, name))


def _train(cfg: CfgNode) -> Tuple[NucleiTrainer, int, float]:
    """Train ``cfg`` (resuming from OUTPUT_DIR's last checkpoint); return trainer, start iteration, seconds."""
    trainer = NucleiTrainer(cfg)
    trainer.register_hooks([_KeepNewestCheckpoint(trainer.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD)])
    try:
        trainer.resume_or_load(resume=True)
    except Exception as e:  # noqa: BLE001  (download / IO errors come in many types)
        weights = cfg.MODEL.WEIGHTS
        if "://" in weights and not os.path.exists(weights):
            raise UserError(f"cannot load MODEL.WEIGHTS={weights} ({type(e).__name__}: {e}); offline, use the "
                            "*_scratch.yaml configs") from None
        raise
    start = trainer.start_iter
    t0 = time.perf_counter()
    if start < cfg.SOLVER.MAX_ITER:
        trainer.train()
    return trainer, start, time.perf_counter() - t0


def pretrain_backbone(cfg: CfgNode, plan: ExperimentPlan, iters: int, pre_dir: str) -> str:
    """Train ``cfg`` on the synthetic nuclei set for ``iters`` iterations; return a weights file
    holding only its backbone (what the main training starts from)."""
    out = os.path.join(pre_dir, "backbone.pth")
    if os.path.isfile(out):
        return out
    trainer, _, _ = _train(cfg)
    state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items() if k.startswith("backbone.")}
    if not state:
        raise RuntimeError(f"{cfg.MODEL.META_ARCHITECTURE} has no 'backbone.' parameters to transfer")
    tmp = out + ".tmp"
    torch.save({"model": state, "__source__": f"synthetic pretraining, {iters} iterations"}, tmp)
    os.replace(tmp, out)
    return out


def build_run_cfg(plan: ExperimentPlan, run: Run, extra: Sequence[str] = ()) -> CfgNode:
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


def measure_latency(cfg: CfgNode, model, size: int, iters: int) -> Dict[str, float]:
    """Median/p90 end-to-end inference latency of the trained ``model`` on a synthetic ``size`` image."""
    device = torch.device(cfg.MODEL.DEVICE)
    model.eval()
    with SyntheticBatches(cfg, size, pool=1) as data:
        stats = time_calls(inference_call(model, data.inference(1), amp=False), device, warmup=1, iters=iters)
    return {"latency_ms_median": stats.median_ms, "latency_ms_p90": stats.p90_ms, "latency_size": size}


def table_values(test_results: Dict) -> Dict[str, Optional[float]]:
    """IoU/Dice (%), leaderboard score, AJI, PQ (fractions) and mask AP (%) from evaluator output."""
    nuclei = test_results.get("nuclei", {})
    segm = test_results.get("segm", {})

    def pct(v):
        return None if v is None else 100.0 * v

    return {
        "iou": pct(nuclei.get("iou")), "dice": pct(nuclei.get("dice")), "score": nuclei.get("score"),
        "aji": nuclei.get("aji"), "pq": nuclei.get("pq"), "ap": segm.get("AP"),
    }


def _result_path(plan: ExperimentPlan, run: Run) -> str:
    return os.path.join(plan.out_dir, run.name, "result.json")


def finished_row(plan: ExperimentPlan, run: Run, signature: Dict) -> Optional[Dict]:
    """``run``'s stored result row, or None; checked against ``signature`` (``run_signature``: a
    mismatch is an error, or with ``report_only`` a warning: ``check_same_experiment``)."""
    path = _result_path(plan, run)
    row = _json_load(path)
    if row is not None:
        check_same_experiment(path, row["budget"], signature, strict=not plan.report_only)
    return row


def run_one(plan: ExperimentPlan, run: Run, latency: bool = True) -> Dict:
    """Train, select, test and measure one run; returns (and stores) its result row.

    With ``latency`` False the row's latency fields stay None (``measure_row_latency`` fills
    them later, when no other run shares the device)."""
    run_dir = os.path.join(plan.out_dir, run.name)
    result_path = _result_path(plan, run)
    signature = run_signature(plan, run)  # builds the run's config: once per run
    done = finished_row(plan, run, signature)
    if done is not None and not plan.force:
        logger.info("%s: result exists (%s), skipped", run.name, result_path)
        # a row whose latency a stopped --jobs N command left out gets it here too
        return measure_row_latency(plan, run, done) if latency else done
    # one process trains a run folder: e.g. a child of a killed --jobs N command may still be training it
    with exclusive_lock(os.path.join(run_dir, RUN_LOCK_FILE), f"{run_dir} (run {run.name})"):
        return _train_test_measure(plan, run, latency, signature)


def _train_test_measure(plan: ExperimentPlan, run: Run, latency: bool, signature: Dict) -> Dict:
    """``run_one``'s work once the run is known to be unfinished and its folder is ours."""
    run_dir = os.path.join(plan.out_dir, run.name)
    result_path = _result_path(plan, run)
    probe = build_run_cfg(plan, run)
    register_experiment_datasets(probe, plan)
    pre_dir = os.path.join(run_dir, "pretrain")
    pre_probe = pretrain_cfg(plan, run, run.pretrain_iters, pre_dir) if run.pretrain_iters else None
    budget = resolve_budget(plan, run, probe, pre_probe, run_dir, signature)
    extra: List[str] = []
    if run.pretrain_iters:
        pre = pretrain_cfg(plan, run, budget["pretrain_iters"], pre_dir, budget["pretrain_checkpoint_period"])
        register_experiment_datasets(pre, plan)
        extra += ["MODEL.WEIGHTS", pretrain_backbone(pre, plan, budget["pretrain_iters"], pre_dir)]
    train_dir = os.path.join(run_dir, "train")
    schedule = schedule_opts(probe, budget["train_iters"], plan.evals, train_dir, budget["checkpoint_period"])
    cfg = build_run_cfg(plan, run, schedule + extra)
    register_experiment_datasets(cfg, plan)
    trainer, start_iter, seconds = _train(cfg)
    test = trainer.final_test()
    test_name = cfg.DATASETS.TEST[0]
    test = test.get(test_name, test)  # DefaultTrainer.test unwraps a single dataset's results
    best = os.path.join(train_dir, "model_best.pth")
    row = {
        "model": run.name, "config": run.config, "data": plan.data, "test_dataset": test_name,
        "test_root": plan.test_root, "device": cfg.MODEL.DEVICE,
        "initial_weights": cfg.MODEL.WEIGHTS or "none (from scratch)",
        "pretrain_synthetic_iters": run.pretrain_iters, "budget": budget,
        "train_iters": cfg.SOLVER.MAX_ITER, "start_iter": start_iter, "train_seconds_this_session": seconds,
        "selected_checkpoint": os.path.basename(best) if os.path.isfile(best) else "model_final.pth",
        "selection_metric": cfg.SOLVER.BEST_CHECKPOINT_METRIC,
        **table_values(test),
        "params": count_parameters(trainer.model),
        **(measure_latency(cfg, trainer.model, plan.latency_size, plan.latency_iters) if latency else
           {"latency_ms_median": None, "latency_ms_p90": None, "latency_size": plan.latency_size}),
        "test_results": test,
    }
    _json_dump(result_path, row)
    return _json_load(result_path)  # the stored row, so a fresh and a skipped run return the same


def measure_row_latency(plan: ExperimentPlan, run: Run, row: Dict) -> Dict:
    """Fill a stored row's latency from its selected checkpoint (model rebuilt here); returns the row."""
    if row.get("latency_ms_median") is not None:
        return row
    cfg = build_run_cfg(plan, run)
    model = NucleiTrainer.build_model(cfg)
    DetectionCheckpointer(model).load(os.path.join(plan.out_dir, run.name, "train", row["selected_checkpoint"]))
    row = {**row, **measure_latency(cfg, model, plan.latency_size, plan.latency_iters)}
    _json_dump(_result_path(plan, run), row)
    return _json_load(_result_path(plan, run))


def _run_in_child(plan: ExperimentPlan, run: Run, threads: int) -> Dict:
    """One run in a worker process: its own log file, a share of the CPU threads, no latency."""
    run_dir = os.path.join(plan.out_dir, run.name)
    os.makedirs(run_dir, exist_ok=True)
    torch.set_num_threads(threads)
    for name in ("detectron2", "maskrcnnpp"):
        setup_logger(output=os.path.join(run_dir, "log.txt"), name=name, abbrev_name=run.name)
    logging.getLogger("maskrcnnpp").setLevel(logging.INFO)
    return run_one(plan, run, latency=False)


def _run_concurrently(plan: ExperimentPlan, runs: Sequence[Run]) -> Tuple[Dict[str, Dict], Dict[str, str]]:
    """Rows (by run name) of ``runs`` trained in ``plan.jobs`` processes, and the errors of failed ones.

    SIGTERM or SIGINT to this process terminates the training processes (a rerun resumes them
    from their last checkpoints), then exits with status 128 + the signal number.
    """
    threads = max(1, (os.cpu_count() or 1) // min(plan.jobs, len(runs)))
    rows: Dict[str, Dict] = {}
    errors: Dict[str, str] = {}
    # "spawn": CUDA cannot be used in a forked child
    pool = ProcessPoolExecutor(plan.jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        with stop_signals_raise():
            try:
                futures = {pool.submit(_run_in_child, plan, run, threads): run for run in runs}
                for future in as_completed(futures):
                    run = futures[future]
                    try:
                        rows[run.name] = future.result()
                        logger.info("%s: finished (score %s)", run.name, rows[run.name].get("score"))
                    except Exception as e:  # noqa: BLE001  (a failed run must not stop the others)
                        log = os.path.join(plan.out_dir, run.name, "log.txt")
                        errors[run.name] = f"failed: {type(e).__name__}: {e} (log: {log})"
                        logger.error("%s %s", run.name, errors[run.name])
            except Stopped as stop:
                for s in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the clean-up short
                    signal.signal(s, signal.SIG_IGN)
                # the children would otherwise go on training into OUT/<run>/train with no parent
                stopped = terminate_workers(pool)
                name = signal.Signals(stop.signum).name
                logger.error("%s: %d training process(es) terminated; rerun the same command to resume the runs "
                             "from their last checkpoints", name, stopped)
                raise SystemExit(128 + stop.signum) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return rows, errors


def run_experiment(plan: ExperimentPlan) -> Dict:
    """Every run of ``plan`` (finished ones read back); returns ``{"plan", "rows", "failed", "paper_table_v"}``.

    ``failed`` maps the name of each run that raised (only with ``jobs`` > 1; otherwise the
    error propagates) or, with ``report_only``, has not finished, to why; the other runs' rows
    are still returned.
    """
    runs = plan_runs(plan)
    if plan.jobs == 1 and not plan.report_only:
        rows = [run_one(plan, run) for run in runs]
        return {"plan": asdict(plan), "rows": rows, "failed": {}, "paper_table_v": PAPER_TABLE_V}
    signatures = {r.name: run_signature(plan, r) for r in runs}
    stored = {r.name: finished_row(plan, r, signatures[r.name]) for r in runs}
    if plan.report_only:
        errors = {name: "not finished (no result.json)" for name, row in stored.items() if row is None}
    else:
        pending = [r for r in runs if plan.force or stored[r.name] is None]
        done, errors = _run_concurrently(plan, pending) if pending else ({}, {})
        stored.update(done)
    rows = [measure_row_latency(plan, r, stored[r.name]) for r in runs if r.name not in errors]
    report = {"plan": asdict(plan), "rows": rows, "failed": errors, "paper_table_v": PAPER_TABLE_V}
    if plan.report_only:  # rows of other commands are tabled as made: say how they differ from this one
        diffs = {r.name: signature_diff(stored[r.name]["budget"], signatures[r.name]) for r in runs if r.name not in errors}
        report["options_differ"] = {name: diff for name, diff in diffs.items() if diff}
    return report


def _fmt(v, fmt):
    return "n/a" if v is None else fmt.format(v)


def experiment_markdown(report: Dict, command: Optional[str] = None) -> str:
    """The experiment's table (IoU, Dice, score, AJI, PQ, AP, params, latency) and Table V beside."""
    lines = []
    if command:
        report_only = report.get("plan", {}).get("report_only")
        lines.append(f"{'Report of the finished runs (nothing trained)' if report_only else 'Command'}: `{command}`\n")
    lines += ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    for r in report["rows"]:
        pre = f" ({r['pretrain_synthetic_iters']} synthetic + {r['train_iters']})" if r["pretrain_synthetic_iters"] else ""
        lines.append("| " + " | ".join([
            r["model"], f"{r['train_iters']}{pre}" if not pre else pre.strip(" ()"),
            _fmt(r["iou"], "{:.2f}"), _fmt(r["dice"], "{:.2f}"), _fmt(r["score"], "{:.3f}"), _fmt(r["aji"], "{:.3f}"),
            _fmt(r["pq"], "{:.3f}"), _fmt(r["ap"], "{:.1f}"), f"{r['params'] / 1e6:.2f}",
            f"{_fmt(r['latency_ms_median'], '{:.1f}')} ({r['latency_size']})",
        ]) + " |")
    for name, error in report.get("failed", {}).items():
        # every row has the header's cells, and a '|' or line break in the message does not end one
        cell = " ".join(error.split()).replace("|", "\\|")
        lines.append("| " + " | ".join([name, cell] + [""] * (len(TABLE_HEADER) - 2)) + " |")
    differ = report.get("options_differ", {})
    if differ:
        lines += ["", "Rows made with other options than this command's (each row is as it was made; its options are "
                      "in its result.json, `budget.signature`):", ""]
        lines += [f"- {name}: {'; '.join(diff)}" for name, diff in differ.items()]
    lines += ["", "Paper Table V (for reference; not measured here):", "", "| model | IoU % | Dice % | score |", "|---|---|---|---|"]
    for name, v in report["paper_table_v"].items():
        lines.append(f"| {name} | {v['iou']:.2f} | {v['dice']:.2f} | {v['score']:.3f} |")
    return "\n".join(lines) + "\n"
