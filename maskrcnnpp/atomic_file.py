"""Files written through a temporary name beside them and renamed into place when complete.

One implementation for every output file of the package (label images, CSVs, JSON, plots,
evaluation summaries): an interrupted or failed write (a full disk, a killed process) never
leaves a half-written file under the final name, nor damages an earlier file of that name. The
file gets the mode an ordinary ``open()`` gives under the current umask: ``tempfile.mkstemp``
creates 0600, which made results unreadable to colleagues on a shared server.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Iterator

__all__ = ["atomic_path", "default_file_mode"]


def default_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """A temporary path in ``path``'s folder, renamed to ``path`` if the block succeeds, removed otherwise."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".partial-", suffix=os.path.splitext(path)[1], dir=folder)
    os.close(fd)
    try:
        os.chmod(tmp, default_file_mode())
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        if not e.filename:  # a failed write() or close() (a full disk) names no file: name the one written
            e.filename = path
        raise
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
