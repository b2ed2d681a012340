"""Test-suite helpers: find the real DSB 2018 zip and convert it once into the cache; hand-made
label images.

Tests anywhere in the suite use :func:`prepared_dsb2018` so that the whole session (and later
sessions) convert the real zip only once; the cache folder is keyed by the zip's sha256 and the
converter's code, so a changed converter never serves stale data.
"""
from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from maskrcnnpp.data.datasets import cache_dir
from maskrcnnpp.data.dsb2018 import converter_digest, prepare_dsb2018, sha256_of_file

__all__ = ["disk_labels", "dsb2018_zip_path", "prepared_dsb2018"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def dsb2018_zip_path() -> Optional[Path]:
    """The real stage1_train.zip: ``$MASKRCNNPP_DSB2018_ZIP`` or ``<repo>/../shared/data/dsb2018/stage1_train.zip``; None if absent."""
    path = Path(os.environ.get("MASKRCNNPP_DSB2018_ZIP") or REPO_ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train.zip")
    return path if path.is_file() else None


@functools.lru_cache(maxsize=None)
def _prepared(zip_path: str, cache_root: str) -> Path:
    zip_key = sha256_of_file(zip_path)[:12]
    out = Path(cache_root) / "dsb2018" / f"{zip_key}-{converter_digest()[:12]}"
    prepare_dsb2018(zip_path, out, progress=False)  # a no-op when already there
    for older in out.parent.glob(f"{zip_key}-*"):  # conversions by earlier versions of the code
        if older != out and (older / "manifest.json").is_file():
            shutil.rmtree(older, ignore_errors=True)
    return out


def prepared_dsb2018(cache_root: Optional[Union[str, os.PathLike]] = None,
                     zip_path: Optional[Union[str, os.PathLike]] = None) -> Path:
    """Root of the real zip converted with the default split (seed 0), converting on first use.

    ``cache_root`` defaults to :func:`maskrcnnpp.data.cache_dir` (``$MASKRCNNPP_CACHE``).
    Raises FileNotFoundError when the zip is not available (tests skip on it).
    """
    zip_path = Path(zip_path) if zip_path else dsb2018_zip_path()
    if zip_path is None or not zip_path.is_file():
        raise FileNotFoundError("DSB 2018 stage1_train.zip not found: set MASKRCNNPP_DSB2018_ZIP")
    return _prepared(str(zip_path.resolve()), str(Path(cache_root or cache_dir()).resolve()))


def disk_labels(shape: Tuple[int, int], disks: Sequence[Tuple[float, float, float]]) -> np.ndarray:
    """int32 label image with disk k+1 = (centre row, centre col, radius) of ``disks[k]``; later
    disks win overlaps."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    for k, (cy, cx, r) in enumerate(disks, start=1):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return labels
