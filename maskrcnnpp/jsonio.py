"""Read a user-supplied JSON file with an error that names it; make values strict JSON (NaN -> null)."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Type


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
