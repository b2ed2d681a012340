"""Build-then-rename output folders: readers never see a half-written dataset.

A dataset is written into a hidden sibling ``.<name>.partial-<pid>-<random>`` and renamed to
``<name>`` when complete (a rename within one filesystem is atomic). Partial folders left by
killed processes are removed by the next build of the same output.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from pathlib import Path

__all__ = ["partial_dir", "remove_stale_partials"]

logger = logging.getLogger(__name__)


def partial_dir(out: Path) -> Path:
    """A fresh hidden sibling of ``out`` to build into (not created)."""
    return out.with_name(f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_partials(out: Path) -> int:
    """Delete partial folders of ``out`` whose building process is gone; return how many."""
    removed = 0
    if not out.parent.is_dir():
        return 0
    for path in out.parent.glob(f".{out.name}.partial-*"):
        try:
            pid = int(path.name.rsplit(".partial-", 1)[1].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            logger.info("removed %s left by an interrupted run", path)
            removed += 1
    return removed
