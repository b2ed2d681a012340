"""Output files and folders written through a temporary name and renamed into place when complete;
JSON files read with errors that name them.

One implementation for every output of the package (label images, CSVs, JSON, plots, evaluation
summaries, checkpoints, prepared datasets): an interrupted or failed write (a full disk, a killed
process) never leaves a half-written file or folder under the final name, nor damages an earlier
one of that name.

* Files (:func:`atomic_path`): written as a ``.partial-*`` sibling, renamed over the target. The
  file gets the mode an ordinary ``open()`` gives under the current umask (``tempfile.mkstemp``
  creates 0600, which made results unreadable to colleagues on a shared server).
* Folders (:func:`partial_dir`): built in a hidden sibling ``.<name>.partial-<pid>-<random>`` and
  renamed to ``<name>`` when complete (a rename within one filesystem is atomic). Partial folders
  left by killed processes are removed by the next build of the same output
  (:func:`remove_stale_partials`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Type, Union

__all__ = [
    "atomic_path",
    "commit_partial_dir",
    "default_file_mode",
    "finite_or_none",
    "partial_dir",
    "read_json",
    "remove_stale_partials",
    "sha256_of_file",
    "write_json",
    "write_text",
]

logger = logging.getLogger(__name__)


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


def partial_dir(out: Path) -> Path:
    """A fresh hidden sibling of ``out`` to build into (not created)."""
    return out.with_name(f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def commit_partial_dir(tmp: Path, out: Path, holds_same: Callable[[Path], bool],
                       conflict: Optional[Callable[[], Exception]] = None) -> bool:
    """Rename the finished partial folder ``tmp`` (:func:`partial_dir`) to ``out``; True if it was.

    An empty ``out`` folder is replaced. When the rename fails (``out`` appeared meanwhile: another
    process may have finished the same build first) and ``holds_same(out)``, ``tmp`` is removed
    and False returned; otherwise ``conflict()`` is raised, or the OSError when ``conflict`` is None.
    """
    try:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.rename(tmp, out)
        return True
    except OSError:
        if not holds_same(out):
            if conflict is None:
                raise
            raise conflict() from None
    shutil.rmtree(tmp, ignore_errors=True)
    return False


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


def read_json(path: str, what: str, error: Type[Exception] = ValueError) -> Any:
    """Parsed contents of ``path``; ``error("<what> <path> does not exist | is a folder | is not valid JSON: ...")``."""
    if os.path.isdir(path):
        raise error(f"{what} {path} is a folder, not a JSON file")
    if not os.path.isfile(path):
        raise error(f"{what} {path} does not exist")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{what} {path} is not valid JSON: {e}") from None


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN/Inf float (e.g. COCO's AP of an absent size range) replaced by None.

    Nested dicts, lists and tuples are walked; the result is writable with ``allow_nan=False``.
    """
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def sha256_of_file(path: Union[str, os.PathLike], chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


def write_json(path: str, obj: Any, *, indent: int | None = 2, allow_nan: bool = True,
               separators: tuple[str, str] | None = None, newline: bool = True) -> None:
    """Write ``obj`` as JSON to ``path`` through :func:`atomic_path` (with a trailing newline unless ``newline`` is False)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=indent, allow_nan=allow_nan, separators=separators)
        if newline:
            f.write("\n")


def write_text(path: str, text: str) -> None:
    """Write ``text`` (UTF-8, exactly as given) to ``path`` through :func:`atomic_path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
