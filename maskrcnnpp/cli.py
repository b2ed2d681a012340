"""What only ``tools/`` use: the mistakes users make turned into one clear message and exit code 2
(not a traceback), and checks of output folders given on a command line."""
from __future__ import annotations

import errno
import functools
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Optional, Tuple, TypeVar

from .errors import UserError, check_probability

__all__ = ["DISK_ERRNOS", "UserError", "check_threshold", "disk_error_message", "ensure_output_dir",
           "exit_on_user_error", "report_disk_error", "add_preparation_options", "run_preparation",
           "ModelChoice", "add_model_options", "choose_model"]

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


@dataclass(frozen=True)
class ModelChoice:
    """The model a command line chose: ``config`` (name or file) with ``weights`` (None: its
    MODEL.WEIGHTS), ``name`` to use in messages, ``opts`` (a shipped model's card overrides, e.g. its
    nominal nucleus diameter, to go before the user's) and ``shipped`` (the shipped model's name, or
    None for one's own config)."""

    config: str
    weights: Optional[str]
    name: str
    opts: Tuple[str, ...] = ()
    shipped: Optional[str] = None


def add_model_options(group, short: bool = True) -> None:
    """The ``--model`` / ``--config`` / ``--weights`` options of a tool that applies a model, on the
    argparse ``group`` (or parser); :func:`choose_model` reads them. ``short`` adds -m, -c and -w."""
    def names(long: str, letter: str):
        return [long, letter] if short else [long]

    group.add_argument(*names("--model", "-m"), default=None, metavar="NAME",
                       help="a shipped model (tools/model_zoo.py list); the default shipped model when neither "
                            "--model nor --config is given")
    group.add_argument(*names("--config", "-c"), default=None, metavar="NAME_OR_FILE",
                       help="config file or a bare name in configs/ (your own training; with --weights)")
    group.add_argument(*names("--weights", "-w"), default=None,
                       help="checkpoint (.pth/.pkl) of --config; default: the config's MODEL.WEIGHTS")


def choose_model(model: Optional[str], config: Optional[str], weights: Optional[str]) -> ModelChoice:
    """The model of ``--model`` / ``--config`` / ``--weights``: one's own config (and weights), else
    the shipped model ``model``, the default shipped model when neither is given. A UserError for
    both kinds at once, ``--weights`` without ``--config``, or an unknown or damaged shipped model."""
    from . import model_zoo

    if model and (config or weights):
        raise UserError("give either --model (a shipped model) or --config/--weights (your own), not both")
    if config:
        return ModelChoice(config, weights, config)
    if weights:
        raise UserError("--weights needs the --config it was trained with")
    zoo_model = model_zoo.get(model)
    return ModelChoice(zoo_model.config, model_zoo.weights_path(zoo_model),
                       f"{zoo_model.config} (shipped model {zoo_model.name})",
                       tuple(zoo_model.config_overrides()), zoo_model.name)


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
