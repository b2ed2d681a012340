"""Detectron2's checkpointer with complete files only, and a resume that survives a damaged one.

``DetectionCheckpointer.save`` writes ``model_XXXXXXX.pth`` in place and then tags it in
``last_checkpoint``: a full disk or a kill mid-write left a truncated file (23.7 of 49.6 MB seen)
that ``--resume`` then failed on with ``PytorchStreamReader failed reading zip archive`` and no
file name. :class:`NucleiCheckpointer` writes the checkpoint and the tag through temporary files
renamed into place (:mod:`maskrcnnpp.atomic_file`), so the tag always names a complete file; and
when the tagged checkpoint cannot be read anyway (damaged later, or written by an older version),
a resume warns with its name and falls back to the newest periodic checkpoint that loads.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Dict, List

import torch

from detectron2.checkpoint import DetectionCheckpointer

from ..atomic_file import atomic_path
from .cli import UserError

__all__ = ["NucleiCheckpointer", "PERIODIC_CHECKPOINT"]

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
        with atomic_path(save_file) as tmp:
            torch.save(data, tmp)
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
                        "holds no older checkpoint that reads; start afresh without --resume")
