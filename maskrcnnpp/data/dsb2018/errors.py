"""The error of input that cannot be converted."""
from __future__ import annotations

from typing import Optional

from ...errors import UserError

__all__ = ["DatasetError"]


class DatasetError(UserError, ValueError):
    """Input that cannot be converted; the message names the file (and line) at fault.

    ``argument`` names the :func:`~maskrcnnpp.data.dsb2018.prepare_dsb2018` argument to change
    (``"labels"``, ``"out"``) when the fix is to pass another one, so that a command can name its option.
    """

    def __init__(self, message: str, argument: Optional[str] = None):
        super().__init__(message)
        self.argument = argument
