"""Training hooks beyond Detectron2's: keep only the newest periodic checkpoint, time iterations."""
from __future__ import annotations

import os
import time
from typing import List

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase

from .checkpointer import PERIODIC_CHECKPOINT

__all__ = ["IterationTimer", "KeepNewestCheckpoint"]


class KeepNewestCheckpoint(HookBase):
    """Deletes the periodic checkpoints older than the newest complete one, after each save.

    A rerun resumes from the newest; the experiment tests ``model_best.pth`` (or ``model_final.pth``),
    so older ones are dead weight, and with a short checkpoint period over a long budget they
    would fill the disk (an R-101 Mask R-CNN checkpoint with its optimizer state is ~0.5 GB).
    """

    def __init__(self, checkpointer: DetectionCheckpointer, period: int):
        self._checkpointer = checkpointer
        self._period = period

    def after_step(self) -> None:
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


class IterationTimer(HookBase):
    """Records the wall-clock time of every training iteration after the first."""

    def __init__(self) -> None:
        self.times: List[float] = []
        self._t0 = 0.0

    def before_step(self) -> None:
        self._t0 = time.perf_counter()

    def after_step(self) -> None:
        if self.trainer.iter > self.trainer.start_iter:
            self.times.append(time.perf_counter() - self._t0)
