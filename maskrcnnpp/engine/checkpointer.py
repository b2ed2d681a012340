"""Detectron2's checkpointer with complete files only, and a resume that survives a damaged one.

``DetectionCheckpointer.save`` writes ``model_XXXXXXX.pth`` in place and then tags it in
``last_checkpoint``: a full disk or a kill mid-write left a truncated file (23.7 of 49.6 MB seen)
that ``--resume`` then failed on with ``PytorchStreamReader failed reading zip archive`` and no
file name. :class:`NucleiCheckpointer` writes the checkpoint and the tag through temporary files
renamed into place (:mod:`maskrcnnpp.utils.files`), so the tag always names a complete file; and
when the tagged checkpoint cannot be read anyway (damaged later, or written by an older version),
a resume warns with its name and falls back to the newest periodic checkpoint that loads.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import signal
import threading
from typing import Any, Dict, List, Optional

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.engine import HookBase

from ..utils.files import atomic_path
from ..errors import UserError

__all__ = ["NucleiCheckpointer", "PERIODIC_CHECKPOINT", "SaveOnStopSignal"]

logger = logging.getLogger(__name__)

PERIODIC_CHECKPOINT = re.compile(r"model_(\d{7})\.pth")  # fvcore's PeriodicCheckpointer names


class NucleiCheckpointer(DetectionCheckpointer):
    """DetectionCheckpointer whose saves are atomic and whose resume skips unreadable checkpoints."""

    @classmethod
    def like(cls, other: DetectionCheckpointer) -> "NucleiCheckpointer":
        """The same model, folder and checkpointables as ``other``."""
        return cls(other.model, other.save_dir, save_to_disk=other.save_to_disk, **other.checkpointables)

    def save(self, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        # through a Python file: torch's own path writer reports a full disk as a RuntimeError
        # without errno ("unexpected pos"), a file object as the OSError it is
        with atomic_path(save_file) as tmp, open(tmp, "wb") as f:
            torch.save(data, f)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_path(os.path.join(self.save_dir, "last_checkpoint")) as tmp, open(tmp, "w") as f:
            f.write(last_filename_basename)

    def _older_periodic_checkpoints(self, than: str) -> List[str]:
        """Periodic checkpoints of ``save_dir`` other than ``than``, newest first."""
        found = []
        for name in os.listdir(self.save_dir):
            match = PERIODIC_CHECKPOINT.fullmatch(name)
            if match and os.path.join(self.save_dir, name) != than:
                found.append((int(match.group(1)), os.path.join(self.save_dir, name)))
        return [path for _, path in sorted(found, reverse=True)]

    def resume_or_load(self, path: str, *, resume: bool = True) -> Dict[str, Any]:
        for stale in (glob.glob(os.path.join(self.save_dir, ".partial-*.pth")) if self.save_dir else []):
            os.remove(stale)  # a save cut by a kill -9 (an R-101 one is ~0.5 GB)
            logger.info("Removed %s, a checkpoint whose writing was cut off", stale)
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        last = self.get_checkpoint_file()
        try:
            return self.load(last)
        except Exception as e:  # noqa: BLE001  (torch/zip/pickle/IO errors come in many types)
            problem = f"{type(e).__name__}: {e}".splitlines()[0]
        for older in self._older_periodic_checkpoints(last):
            try:
                loaded = self.load(older)
            except Exception:  # noqa: BLE001
                logger.warning("Cannot read checkpoint %s either; trying an older one", older)
                continue
            logger.warning("Cannot read the last checkpoint %s (%s): resumed from %s instead, the newest one "
                           "that reads", last, problem, older)
            self.tag_last_checkpoint(os.path.basename(older))
            return loaded
        raise UserError(f"cannot resume from {last}: the checkpoint is damaged ({problem}) and {self.save_dir} "
                        "holds no older checkpoint that reads; start afresh (do not resume) or restore the file")


class SaveOnStopSignal(HookBase):
    """SIGTERM or Ctrl-C during training: finish the iteration, save a checkpoint, exit quietly.

    Without it a stop lost everything since the last periodic checkpoint (up to
    ``SOLVER.CHECKPOINT_PERIOD`` iterations) and printed tracebacks. The checkpoint is the one
    ``--resume`` continues from; the process exits with status 128 + the signal number. A second
    signal stops at once (the signal's default action).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, checkpointer: DetectionCheckpointer):
        self._checkpointer = checkpointer
        self._signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}
        self._pid = os.getpid()
        self._in_iterations = False  # between the first before_step and the end of the loop

    def _restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:  # a data-loader worker forked while the handler was set: the trainer stops it
            return
        name = signal.Signals(signum).name
        if self._signum is not None:  # a second signal: stop now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if not self._in_iterations:  # before the first or after the last step (the final validation): nothing to save
            self._restore()
            logger.warning("%s received outside the training iterations: stopping now; the checkpoints written "
                           "so far are kept", name)
            raise SystemExit(128 + signum)
        self._signum = signum
        logger.warning("%s received: stopping after this iteration, with a checkpoint", name)

    def before_train(self) -> None:
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            return
        self._pid = os.getpid()
        for signum in self.SIGNALS:
            if signal.getsignal(signum) is signal.SIG_IGN:  # e.g. SIGINT of a job started in the background
                continue
            self._previous[signum] = signal.signal(signum, self._handle)

    def before_step(self) -> None:
        self._in_iterations = True

    def after_step(self) -> None:
        if self.trainer.iter + 1 >= self.trainer.max_iter:
            self._in_iterations = False  # what follows (the final validation) is stopped at once
        if self._signum is None:
            return
        iteration = self.trainer.iter
        name = f"model_{iteration:07d}"
        self._checkpointer.save(name, iteration=iteration)
        logger.warning("Stopped by %s after iteration %d; saved %s: resuming in the same OUTPUT_DIR continues "
                       "from iteration %d", signal.Signals(self._signum).name, iteration,
                       os.path.join(self._checkpointer.save_dir, name + ".pth"), iteration + 1)
        # SystemExit passes Detectron2's `except Exception` in TrainerBase.train (no traceback logged)
        raise SystemExit(128 + self._signum)

    def after_train(self) -> None:
        self._in_iterations = False
        self._restore()
