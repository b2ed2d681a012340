"""The files of a run folder ``<out_dir>/<run>``: where they are, and ``result.json`` /
``budget.json`` read and written (atomically, NaN stored as null)."""
from __future__ import annotations

import os
from typing import Any, Optional

from ..utils.files import finite_or_none, read_json, write_json
from .plan import ExperimentPlan, Run

__all__ = ["RUN_LOCK_FILE", "read_stored", "result_path", "run_dir", "write_stored"]

RUN_LOCK_FILE = ".run.lock"  # in <out_dir>/<run>: held by the process training that run


def run_dir(plan: ExperimentPlan, run: Run) -> str:
    """The folder of ``run``'s files: ``<out_dir>/<run name>``."""
    return os.path.join(plan.out_dir, run.name)


def result_path(plan: ExperimentPlan, run: Run) -> str:
    """``run``'s result row file, written once it is tested."""
    return os.path.join(run_dir(plan, run), "result.json")


def read_stored(path: str) -> Optional[dict]:
    """The JSON stored in ``path``, or None when there is none yet."""
    if not os.path.isfile(path):
        return None
    return read_json(path, "stored run file")


def write_stored(path: str, obj: Any) -> None:
    """Store ``obj`` in ``path`` as indented JSON, non-finite floats as null; a crash never leaves half a file."""
    # without a trailing newline: the bytes these files have always had
    write_json(path, finite_or_none(obj), indent=2, allow_nan=False, newline=False)
