"""HoVer-Net style MATLAB annotations: the instance map under ``inst_map`` (0 = background, k = object k)."""
from __future__ import annotations

import io
from typing import List

import numpy as np

from ..dsb2018.errors import DatasetError
from .labels import check_labels

__all__ = ["INST_MAP_KEY", "mat_labels"]

INST_MAP_KEY = "inst_map"


def mat_labels(data: bytes, display: str, image_id: str, image_display: str, height: int, width: int,
               corrections: List[dict]) -> np.ndarray:
    """The (height, width) labels a .mat file holds under ``inst_map``, checked as a label image's are."""
    import scipy.io

    try:
        contents = scipy.io.loadmat(io.BytesIO(data), variable_names=[INST_MAP_KEY])
    except NotImplementedError:  # scipy's answer to a v7.3 file, which is HDF5
        raise DatasetError(f"{display}: MATLAB v7.3 (HDF5) file, which scipy cannot read; "
                           f"save {INST_MAP_KEY!r} with save(..., '-v7')") from None
    except Exception as e:  # noqa: BLE001  (scipy raises many types for damaged files)
        raise DatasetError(f"{display}: cannot read the MATLAB file (corrupt or truncated?): {e}") from None
    if INST_MAP_KEY not in contents:
        held = [name for name, _, _ in scipy.io.whosmat(io.BytesIO(data))]
        raise DatasetError(f"{display}: no variable {INST_MAP_KEY!r} (the file holds "
                           f"{', '.join(held) if held else 'no variable'}); expected the instance map there, "
                           "0 = background, k = object k")
    # Messages and corrections name the variable too: a .mat may hold several maps.
    labels = check_labels(np.asarray(contents[INST_MAP_KEY]), f"{display}[{INST_MAP_KEY!r}]", image_id, corrections)
    if labels.shape != (height, width):
        raise DatasetError(f"{display}: {INST_MAP_KEY!r} is {labels.shape[0]}x{labels.shape[1]} but its image "
                           f"{image_display} is {height}x{width}")
    return labels
