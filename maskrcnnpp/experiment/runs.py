"""One run of an experiment: pretrain (optionally), train under its budget, test the selected
checkpoint, measure its latency, and store its result row in ``<out_dir>/<run>/result.json``."""
from __future__ import annotations

import logging
import os
import time
from typing import Dict, List, Optional, Tuple

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode

from ..benchmark.inputs import SyntheticBatches
from ..benchmark.measure import count_parameters, inference_call
from ..benchmark.timing import time_calls
from ..engine import NucleiTrainer
from ..engine.hooks import KeepNewestCheckpoint
from ..errors import UserError
from ..utils.files import atomic_path
from .budget import resolve_budget, schedule_opts
from .configs import build_run_cfg, pretrain_cfg
from .datasets import register_experiment_datasets
from .plan import ExperimentPlan, Run
from .processes import exclusive_lock
from .signature import check_same_experiment, run_signature
from .store import RUN_LOCK_FILE, read_stored, result_path, run_dir, write_stored

__all__ = [
    "finished_row", "measure_latency", "measure_row_latency", "pretrain_backbone", "run_one", "table_values",
    "train_resuming",
]

logger = logging.getLogger(__name__)


def train_resuming(cfg: CfgNode) -> Tuple[NucleiTrainer, int, float]:
    """Train ``cfg`` (resuming from OUTPUT_DIR's last checkpoint); return trainer, start iteration, seconds."""
    trainer = NucleiTrainer(cfg)
    trainer.register_hooks([KeepNewestCheckpoint(trainer.checkpointer, cfg.SOLVER.CHECKPOINT_PERIOD)])
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


def pretrain_backbone(cfg: CfgNode, iters: int, pre_dir: str) -> str:
    """Train ``cfg`` on the synthetic nuclei set for ``iters`` iterations; return a weights file
    holding only its backbone (what the main training starts from)."""
    out = os.path.join(pre_dir, "backbone.pth")
    if os.path.isfile(out):
        return out
    trainer, _, _ = train_resuming(cfg)
    state = {k: v.detach().cpu() for k, v in trainer.model.state_dict().items() if k.startswith("backbone.")}
    if not state:
        raise RuntimeError(f"{cfg.MODEL.META_ARCHITECTURE} has no 'backbone.' parameters to transfer")
    # through a Python file, as NucleiCheckpointer.save does: torch's own path writer reports a full
    # disk as a RuntimeError without errno, a file object as the OSError it is
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        torch.save({"model": state, "__source__": f"synthetic pretraining, {iters} iterations"}, f)
    return out


def measure_latency(cfg: CfgNode, model: torch.nn.Module, size: int, iters: int) -> Dict[str, float]:
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

    def pct(v: Optional[float]) -> Optional[float]:
        return None if v is None else 100.0 * v

    return {
        "iou": pct(nuclei.get("iou")), "dice": pct(nuclei.get("dice")), "score": nuclei.get("score"),
        "aji": nuclei.get("aji"), "pq": nuclei.get("pq"), "ap": segm.get("AP"),
    }


def finished_row(plan: ExperimentPlan, run: Run, signature: Dict) -> Optional[Dict]:
    """``run``'s stored result row, or None; checked against ``signature`` (``run_signature``: a
    mismatch is an error, or with ``report_only`` a warning: ``check_same_experiment``)."""
    path = result_path(plan, run)
    row = read_stored(path)
    if row is not None:
        check_same_experiment(path, row["budget"], signature, strict=not plan.report_only)
    return row


def run_one(plan: ExperimentPlan, run: Run, latency: bool = True) -> Dict:
    """Train, select, test and measure one run; returns (and stores) its result row.

    With ``latency`` False the row's latency fields stay None (``measure_row_latency`` fills
    them later, when no other run shares the device)."""
    signature = run_signature(plan, run)  # builds the run's config: once per run
    done = finished_row(plan, run, signature)
    if done is not None and not plan.force:
        logger.info("%s: result exists (%s), skipped", run.name, result_path(plan, run))
        # a row whose latency a stopped concurrent experiment left out gets it here too
        return measure_row_latency(plan, run, done) if latency else done
    # one process trains a run folder: e.g. a worker of a killed concurrent experiment may still be training it
    folder = run_dir(plan, run)
    with exclusive_lock(os.path.join(folder, RUN_LOCK_FILE), f"{folder} (run {run.name})"):
        return _train_test_measure(plan, run, latency, signature)


def _trained(plan: ExperimentPlan, run: Run, signature: Dict) -> Tuple[CfgNode, NucleiTrainer, int, float, Dict]:
    """``run`` pretrained (if it is) and trained under its budget: config, trainer, start iteration,
    seconds of this session, budget."""
    folder = run_dir(plan, run)
    probe = build_run_cfg(plan, run)
    register_experiment_datasets(probe, plan)
    pre_dir = os.path.join(folder, "pretrain")
    pre_probe = pretrain_cfg(plan, run, run.pretrain_iters, pre_dir) if run.pretrain_iters else None
    budget = resolve_budget(plan, run, probe, pre_probe, folder, signature)
    extra: List[str] = []
    if run.pretrain_iters:
        pre = pretrain_cfg(plan, run, budget["pretrain_iters"], pre_dir, budget["pretrain_checkpoint_period"])
        register_experiment_datasets(pre, plan)
        extra += ["MODEL.WEIGHTS", pretrain_backbone(pre, budget["pretrain_iters"], pre_dir)]
    schedule = schedule_opts(probe, budget["train_iters"], plan.evals, os.path.join(folder, "train"),
                             budget["checkpoint_period"])
    cfg = build_run_cfg(plan, run, schedule + extra)
    register_experiment_datasets(cfg, plan)
    trainer, start_iter, seconds = train_resuming(cfg)
    return cfg, trainer, start_iter, seconds, budget


def _train_test_measure(plan: ExperimentPlan, run: Run, latency: bool, signature: Dict) -> Dict:
    """``run_one``'s work once the run is known to be unfinished and its folder is ours."""
    cfg, trainer, start_iter, seconds, budget = _trained(plan, run, signature)
    test_name = cfg.DATASETS.TEST[0]  # dataset_opts sets exactly one
    test = trainer.final_test()[test_name]
    best = os.path.join(run_dir(plan, run), "train", "model_best.pth")
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
    write_stored(result_path(plan, run), row)
    return read_stored(result_path(plan, run))  # the stored row, so a fresh and a skipped run return the same


def measure_row_latency(plan: ExperimentPlan, run: Run, row: Dict) -> Dict:
    """Fill a stored row's latency from its selected checkpoint (model rebuilt here); returns the row."""
    if row.get("latency_ms_median") is not None:
        return row
    cfg = build_run_cfg(plan, run)
    model = NucleiTrainer.build_model(cfg)
    DetectionCheckpointer(model).load(os.path.join(run_dir(plan, run), "train", row["selected_checkpoint"]))
    row = {**row, **measure_latency(cfg, model, plan.latency_size, plan.latency_iters)}
    write_stored(result_path(plan, run), row)
    return read_stored(result_path(plan, run))
