"""Turn the mistakes users make into one clear message and exit code 2, not a traceback."""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """An error caused by the user's input (config, data, paths); its message says what to do."""


def exit_on_user_error(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator for CLI entry points: a :class:`UserError` prints ``error: <message>`` and exits 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    return wrapper


def ensure_output_dir(path: str, option: str, create: bool = True) -> str:
    """Create the output folder ``path`` (given by ``option``) or raise a UserError saying why not.

    Called before any model is built, so a wrong path costs nothing; with ``create`` False it only
    checks that ``path`` is not a file, and nothing is created yet.
    """
    import os

    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{option} {path}: exists and is not a folder")
    if not create:
        return path
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{option} {path}: cannot create the folder ({e.strerror})") from None
    return path


def check_threshold(value: float, name: str) -> float:
    """``value`` as a float, or a UserError naming ``name`` unless it is a probability in [0, 1]."""
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise UserError(f"{name} must be in [0, 1] (a score/probability), got {value:g}")
    return value
