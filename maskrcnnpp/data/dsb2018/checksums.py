"""Checksums of files and of the converter's own code."""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Union

__all__ = ["converter_digest", "sha256_of_file"]

_PACKAGE = Path(__file__).resolve().parent
# The shared code whose changes can change a prepared dataset, besides this package.
_SHARED = ("images.py", "kaggle_rle.py", "files.py")


def sha256_of_file(path: Union[str, os.PathLike], chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


@functools.lru_cache(maxsize=None)
def converter_digest() -> str:
    """sha256 of this converter's source code (keys caches of converted data)."""
    h = hashlib.sha256()
    files = sorted(_PACKAGE.glob("*.py")) + [_PACKAGE.parents[1] / "utils" / name for name in _SHARED]
    for path in files:
        h.update(path.name.encode("utf-8") + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()
