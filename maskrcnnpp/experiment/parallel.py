"""Several runs of an experiment trained at once, each in its own worker process sharing the
device; SIGTERM or SIGINT to the parent terminates the workers before it exits."""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from typing import Dict, NoReturn, Sequence, Tuple

import torch
from detectron2.utils.logger import setup_logger

from .plan import ExperimentPlan, Run
from .processes import Stopped, stop_signals_raise, terminate_workers
from .runs import run_one
from .store import run_dir

__all__ = ["run_concurrently"]

logger = logging.getLogger(__name__)


def _run_in_child(plan: ExperimentPlan, run: Run, threads: int) -> Dict:
    """One run in a worker process: its own log file, a share of the CPU threads, no latency."""
    folder = run_dir(plan, run)
    os.makedirs(folder, exist_ok=True)
    torch.set_num_threads(threads)
    for name in ("detectron2", "maskrcnnpp"):
        setup_logger(output=os.path.join(folder, "log.txt"), name=name, abbrev_name=run.name)
    logging.getLogger("maskrcnnpp").setLevel(logging.INFO)
    return run_one(plan, run, latency=False)


def _collect(plan: ExperimentPlan, futures: Dict[Future, Run]) -> Tuple[Dict[str, Dict], Dict[str, str]]:
    """Rows and errors (by run name) of ``futures`` as they complete."""
    rows: Dict[str, Dict] = {}
    errors: Dict[str, str] = {}
    for future in as_completed(futures):
        run = futures[future]
        try:
            rows[run.name] = future.result()
            logger.info("%s: finished (score %s)", run.name, rows[run.name].get("score"))
        except Exception as e:  # noqa: BLE001  (a failed run must not stop the others)
            log = os.path.join(run_dir(plan, run), "log.txt")
            errors[run.name] = f"failed: {type(e).__name__}: {e} (log: {log})"
            logger.error("%s %s", run.name, errors[run.name])
    return rows, errors


def _stop(pool: ProcessPoolExecutor, stop: Stopped) -> NoReturn:
    """Terminate ``pool``'s training processes after the signal of ``stop``, then exit 128 + its number."""
    for s in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the clean-up short
        signal.signal(s, signal.SIG_IGN)
    # the workers would otherwise go on training into <out_dir>/<run>/train with no parent
    stopped = terminate_workers(pool)
    name = signal.Signals(stop.signum).name
    logger.error("%s: %d training process(es) terminated; rerun the same command to resume the runs "
                 "from their last checkpoints", name, stopped)
    raise SystemExit(128 + stop.signum) from None


def run_concurrently(plan: ExperimentPlan, runs: Sequence[Run]) -> Tuple[Dict[str, Dict], Dict[str, str]]:
    """Rows (by run name) of ``runs`` trained in ``plan.jobs`` processes, and the errors of failed ones.

    SIGTERM or SIGINT to this process terminates the training processes (a rerun resumes them
    from their last checkpoints), then exits with status 128 + the signal number.
    """
    threads = max(1, (os.cpu_count() or 1) // min(plan.jobs, len(runs)))
    # "spawn": CUDA cannot be used in a forked child
    pool = ProcessPoolExecutor(plan.jobs, mp_context=multiprocessing.get_context("spawn"))
    try:
        with stop_signals_raise():
            try:
                return _collect(plan, {pool.submit(_run_in_child, plan, run, threads): run for run in runs})
            except Stopped as stop:
                _stop(pool, stop)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
