"""The worker processes that convert the images, and the progress bar."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
from pathlib import Path
from typing import Callable, List, Optional, Sequence

from .convert import convert_image
from .scan import ImageTask
from .source import Source

__all__ = ["run_tasks"]

# What every task of a worker shares, set once per process by _init_worker.
_WORKER: dict = {}


# (task, source, images folder, PNG compress level) -> the image's record
Converter = Callable[[object, Source, str, int], dict]


def _init_worker(source: Source, images_dir: str, compress_level: int, convert: Converter = convert_image) -> None:
    # Ctrl-C reaches the whole process group: the parent alone stops the pool, instead of every
    # worker printing a KeyboardInterrupt traceback; the pool's terminate() (SIGTERM) then ends
    # the workers quietly, whatever handler a forked worker inherited from its parent
    if mp.current_process().name != "MainProcess":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _WORKER.update(source=source, images_dir=images_dir, compress_level=compress_level, convert=convert)


def _convert(task: ImageTask) -> dict:
    return _WORKER["convert"](task, _WORKER["source"], _WORKER["images_dir"], _WORKER["compress_level"])


def run_tasks(source: Source, tasks: Sequence[ImageTask], images_dir: Path, workers: Optional[int],
              progress: bool, compress_level: int, convert: Converter = convert_image,
              desc: str = "dsb2018") -> List[dict]:
    """Convert every task with ``convert`` (a module-level function, so that workers can be sent it;
    ``workers`` processes, default one per CPU); the results in completion order."""
    from tqdm import tqdm

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    # Biggest images first so that no worker is left with a large one at the end.
    ordered = sorted(tasks, key=lambda t: -t.work)
    bar = tqdm(total=len(tasks), unit="image", desc=desc, disable=not progress, dynamic_ncols=True)
    results = []
    try:
        if workers == 1:
            _init_worker(source, str(images_dir), compress_level, convert)
            try:
                for task in ordered:
                    results.append(_convert(task))
                    bar.update()
            finally:
                _WORKER.clear()
        else:
            source.close()  # children open their own zip handle
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers, _init_worker,
                                             (source, str(images_dir), compress_level, convert)) as pool:
                for result in pool.imap_unordered(_convert, ordered, chunksize=1):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results
