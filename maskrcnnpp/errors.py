"""Errors the library raises for the user's input; their messages name config keys and files.

Each error class of a module that describes bad input (``DatasetError``, ``ImageReadError``,
``NucleiEvaluationInputError``, ...) subclasses :class:`UserError` (keeping its ``ValueError`` or
``FileNotFoundError`` base), so no tool has to catch it to re-raise it. Only ``tools/`` (through
:mod:`maskrcnnpp.cli`) turns them into ``error: ...`` and exit status 2; the library never speaks of
command-line flags.
"""
from __future__ import annotations

__all__ = ["UserError", "check_probability"]


class UserError(Exception):
    """An error caused by the user's input (config, data, paths); its message says what to do."""


def check_probability(value: float, name: str) -> float:
    """``value`` as a float, or a UserError naming ``name`` (a config key or option) unless in [0, 1]."""
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise UserError(f"{name} must be in [0, 1] (a score/probability), got {value:g}")
    return value
