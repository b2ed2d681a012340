"""The split of the images into train / val / test: parsing the fractions, assigning the images."""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .errors import DatasetError

__all__ = ["DEFAULT_SPLIT", "SPLIT_NAMES", "parse_split", "split_image_ids"]

DEFAULT_SPLIT = (0.5, 0.2, 0.3)  # train / val / test fractions of the images, as in the paper
SPLIT_NAMES = ("train", "val", "test")


def parse_split(text: Union[str, Sequence[float], None]) -> Optional[Tuple[float, float, float]]:
    """Validated (train, val, test) fractions from ``"0.5,0.2,0.3"``/a sequence, None for ``"none"``;
    a split's name (``"train"``) puts every image in it (for folders too small to split)."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "none"):
        return None
    if isinstance(text, str) and text.strip().lower() in SPLIT_NAMES:
        return tuple(float(name == text.strip().lower()) for name in SPLIT_NAMES)  # type: ignore[return-value]
    if isinstance(text, str):
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise DatasetError(f"split {text!r}: expected three numbers like 0.5,0.2,0.3, a split's name "
                               "(train, val, test: all images in it) or 'none'") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3:
        raise DatasetError(f"split {text!r}: expected three fractions (train, val, test), got {len(values)}")
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise DatasetError(f"split {text!r}: fractions must be finite and non-negative")
    if abs(sum(values) - 1.0) > 1e-6:
        raise DatasetError(f"split {text!r}: fractions must sum to 1, they sum to {sum(values):.6g}")
    return tuple(values)  # type: ignore[return-value]


def split_image_ids(image_ids: Sequence[str], fractions: Sequence[float], seed: int) -> Dict[str, List[str]]:
    """Deterministic disjoint split of ``image_ids`` by a seeded permutation.

    Counts are ``floor(f * n)`` with the remaining images given to the largest fractional parts
    (ties to the earlier split); each split is returned sorted.
    """
    ids = sorted(image_ids)
    n = len(ids)
    exact = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(exact + 1e-9).astype(int)
    remainder = n - int(counts.sum())
    for i in sorted(range(len(counts)), key=lambda k: (-(exact[k] - counts[k]), k))[:remainder]:
        counts[i] += 1
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, count in zip(SPLIT_NAMES, counts):
        out[name] = sorted(ids[j] for j in order[start : start + count])
        start += count
    return out
