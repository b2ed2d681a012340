"""Checksums of files and of the converter's own code."""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

__all__ = ["converter_digest"]

_PACKAGE = Path(__file__).resolve().parent
# The shared code whose changes can change a prepared dataset, besides this package.
_SHARED = ("images.py", "kaggle_rle.py", "files.py")


@functools.lru_cache(maxsize=None)
def converter_digest() -> str:
    """sha256 of this converter's source code (keys caches of converted data)."""
    h = hashlib.sha256()
    files = sorted(_PACKAGE.glob("*.py")) + [_PACKAGE.parents[1] / "utils" / name for name in _SHARED]
    for path in files:
        h.update(path.name.encode("utf-8") + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()
