"""Read a user-supplied JSON file, with an error that names the file instead of a traceback."""
from __future__ import annotations

import json
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
