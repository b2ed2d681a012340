"""What only ``tools/`` use: the mistakes users make turned into one clear message and exit code 2
(not a traceback), and checks of output folders given on a command line."""
from __future__ import annotations

import errno
import functools
import sys
import tempfile
from typing import Any, Callable, Optional, TypeVar

from .errors import UserError, check_probability

__all__ = ["DISK_ERRNOS", "UserError", "check_threshold", "disk_error_message", "ensure_output_dir",
           "exit_on_user_error", "report_disk_error", "add_preparation_options", "run_preparation"]

T = TypeVar("T")



# A full or read-only disk is the user's machine, not a defect: one line, not a traceback.
DISK_ERRNOS = {errno.ENOSPC: "the disk is full: free space and run the same command again",
               errno.EDQUOT: "the disk quota is used up: free space and run the same command again",
               errno.EROFS: "the file system is read-only: choose another output folder",
               errno.EACCES: "no permission: check the permissions of the file or folder"}


def disk_error_message(e: OSError) -> str:
    """One line for an OSError of :data:`DISK_ERRNOS`: the file, the system's words, what to do."""
    where = f"{e.filename}: " if e.filename else ""
    return f"{where}{e.strerror or e} ({DISK_ERRNOS[e.errno]})"


def report_disk_error(e: OSError, prefix: str = "error: ") -> int:
    """Print the one line of an OSError of :data:`DISK_ERRNOS` and return exit status 2; re-raise any other."""
    if e.errno not in DISK_ERRNOS:
        raise e
    print(f"{prefix}{disk_error_message(e)}", file=sys.stderr)
    return 2


def exit_on_user_error(fn: Optional[Callable[..., T]] = None, *, prefix: str = "error: ") -> Any:
    """Decorator for CLI entry points: a :class:`UserError`, or a full / read-only disk, prints
    ``error: <message>`` and exits 2 (files being written are removed by their atomic writers).

    ``@exit_on_user_error(prefix="evaluate.py: error: ")`` starts the line with ``prefix`` instead.
    """
    if fn is None:
        return functools.partial(exit_on_user_error, prefix=prefix)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"{prefix}{e}", file=sys.stderr)
            sys.exit(2)
        except OSError as e:
            sys.exit(report_disk_error(e, prefix))

    return wrapper


def _check_writable(folder: str, option: str, path: str, exists: bool = True) -> None:
    try:  # before any work: a read-only folder would otherwise fail after inference or scoring
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        where = "in the folder" if exists else f"in {folder} to create it"
        raise UserError(f"{option} {path}: cannot write {where} ({e.strerror})") from None


def ensure_output_dir(path: str, option: str, create: bool = True) -> str:
    """Create the output folder ``path`` (given by ``option``) or raise a UserError saying why not.

    Called before any model is built, so a wrong path costs nothing: the folder must be writable
    (a file is created and removed there). With ``create`` False nothing is created yet: ``path``
    must not be a file, and it (or, while it does not exist, the folder it would be made in) must
    be writable.
    """
    import os

    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path}: exists and is not a folder")
    if not create:
        existing = os.path.abspath(path)
        while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
            if os.path.exists(existing):
                raise UserError(f"{option} {path}: {existing} exists and is not a folder")
            existing = os.path.dirname(existing)
        _check_writable(existing, option, path, exists=existing == os.path.abspath(path))
        return path
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create the folder ({e.strerror})") from None
    _check_writable(path, option, path)
    return path


# A threshold given on a command line is checked as the library checks its config keys.
check_threshold = check_probability


def add_preparation_options(parser, src_help: str) -> None:
    """The options every dataset-preparation command takes (``--src``, ``--out``, ``--split``, ``--seed``,
    ``--workers``, ``--no-progress``); each command adds its own after them."""
    parser.add_argument("--src", required=True, help=src_help)
    parser.add_argument("--out", required=True, help="output folder (created; must be absent, empty, or hold this same dataset)")
    parser.add_argument("--split", default="0.5,0.2,0.3",
                        help="train,val,test fractions of the images summing to 1; train, val or test to keep "
                             "every image in that split; or 'none' (default: 0.5,0.2,0.3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split permutation (default: 0)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: os.cpu_count())")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_preparation(prepare: Callable[[], Any], out: str, option_of: Callable[[Optional[str]], Optional[str]],
                    workers: Optional[int] = None) -> int:
    """Run a dataset preparation (``datasets/prepare_*.py``) and return its exit status: 0 with the
    result's ``summary()`` printed; 2 with one error line for bad ``workers`` or a ``DatasetError``
    (``option_of`` maps the library's argument name to the option to name); 130 on Ctrl-C or SIGTERM
    (the partial folder is removed, ``out`` left as it was); a full or read-only disk as one line."""
    import signal

    from .data.dsb2018 import DatasetError

    if workers is not None and workers < 1:
        print(f"error: --workers must be >= 1, got {workers}", file=sys.stderr)
        return 2

    def stop(signum, frame):  # SIGTERM like Ctrl-C: the pool is terminated and the partial folder removed
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        result = prepare()
    except DatasetError as e:
        option = option_of(getattr(e, "argument", None))
        print(f"error: {e}{f' (option {option})' if option else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: {out} is left as it was (the partial conversion is removed)", file=sys.stderr)
        return 130
    except OSError as e:  # a full or read-only disk: the partial output is already removed
        return report_disk_error(e)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.summary())
    return 0
