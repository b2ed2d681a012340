"""Acquisition groups of a prepared nuclei set, and splits that hold whole groups out.

Images of one experiment look alike (same microscope, stain, size and exposure), so a test split
drawn at random from the same experiments as training says little about a user's own images.
Here each image gets an *acquisition group* from what it holds:

* its kind (:func:`maskrcnnpp.utils.image_kind.image_type`: fluorescence, bright-field, stained tissue);
* its size in pixels (height x width);
* where a kind x size holds at least :data:`SPLIT_MIN_IMAGES` images, its signal level: the 99th
  percentile of the image minus its median, on the grey image with dark nuclei inverted, binned
  at :data:`SIGNAL_BINS` into dim / mid / bright. A level with fewer than :data:`MIN_GROUP_IMAGES`
  images joins that kind x size's "mid" group, so no group is a stray image or two.

The group is named ``<kind>-<height>x<width>[-<level>]``, e.g. ``fluorescence-256x256-dim``. On DSB
2018 stage1_train this gives the 15 groups listed in ``docs/DATA.md``.

:func:`group_folds` deals whole groups into k folds; :func:`holdout_annotations` makes the
train / val / test annotations of a leave-group-out protocol: the held-out groups are the test
split, every other image is training data (its original val images stay the validation split).
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple

import numpy as np

from ..errors import UserError
from ..utils.image_kind import image_type

__all__ = [
    "GROUPS_FILE", "MIN_GROUP_IMAGES", "SIGNAL_BINS", "SPLIT_MIN_IMAGES", "acquisition_groups", "group_folds",
    "holdout_annotations", "image_signal", "signal_level",
]

# (upper bound, name) of the signal levels, in 8-bit grey values.
SIGNAL_BINS: Tuple[Tuple[float, str], ...] = ((40.0, "dim"), (120.0, "mid"), (float("inf"), "bright"))
SPLIT_MIN_IMAGES = 40
MIN_GROUP_IMAGES = 5
GROUPS_FILE = "groups.json"
VAL_EVERY = 5


def image_signal(rgb: np.ndarray) -> Tuple[str, float]:
    """``(kind, signal)`` of an 8-bit image: the 99th percentile minus the median of its grey values,
    inverted first unless it is fluorescence (so nuclei are the bright objects)."""
    kind = image_type(rgb)
    grey = np.asarray(rgb, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2)
    if kind != "fluorescence":
        grey = 255.0 - grey
    return kind, float(np.percentile(grey, 99) - np.median(grey))


def signal_level(signal: float) -> str:
    """The :data:`SIGNAL_BINS` name of a signal value."""
    return next(name for bound, name in SIGNAL_BINS if signal < bound)


def acquisition_groups(stats: Mapping[int, Tuple[str, int, int, float]]) -> Dict[int, str]:
    """``{image_id: group}`` from ``{image_id: (kind, height, width, signal)}`` by the rule of this module."""
    base = {i: f"{kind}-{h}x{w}" for i, (kind, h, w, _) in stats.items()}
    sizes = Counter(base.values())
    levels = {i: signal_level(stats[i][3]) for i in stats}
    counts = Counter((base[i], levels[i]) for i in stats)
    groups = {}
    for i in stats:
        if sizes[base[i]] < SPLIT_MIN_IMAGES:
            groups[i] = base[i]
        else:
            level = levels[i] if counts[(base[i], levels[i])] >= MIN_GROUP_IMAGES else "mid"
            groups[i] = f"{base[i]}-{level}"
    return groups


def image_stats(coco: Mapping, image_dir: str) -> Dict[int, Tuple[str, int, int, float]]:
    """``{image_id: (kind, height, width, signal)}`` of the images of a COCO dict, read from ``image_dir``."""
    from PIL import Image

    stats = {}
    for image in coco["images"]:
        path = os.path.join(image_dir, image["file_name"])
        try:
            with Image.open(path) as f:
                rgb = np.asarray(f.convert("RGB"))
        except OSError as e:
            raise UserError(f"cannot read image {path}: {e}") from None
        kind, signal = image_signal(rgb)
        stats[int(image["id"])] = (kind, rgb.shape[0], rgb.shape[1], signal)
    return stats


def group_folds(groups: Mapping[int, str], k: int) -> List[List[str]]:
    """Whole groups dealt into ``k`` folds of about equal image counts (largest group first, each to
    the fold with the fewest images; ties by name, so the folds are the same on every machine)."""
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    sizes = Counter(groups.values())
    if k > len(sizes):
        raise ValueError(f"{k} folds of {len(sizes)} groups: at most {len(sizes)}")
    folds: List[List[str]] = [[] for _ in range(k)]
    totals = [0] * k
    for name in sorted(sizes, key=lambda g: (-sizes[g], g)):
        j = min(range(k), key=lambda f: (totals[f], f))
        folds[j].append(name)
        totals[j] += sizes[name]
    return folds


def _subset(coco: Mapping, ids: Iterable[int]) -> Dict:
    keep = set(ids)
    out = {key: value for key, value in coco.items() if key not in ("images", "annotations")}
    out["images"] = [im for im in coco["images"] if im["id"] in keep]
    out["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep]
    return out


def holdout_annotations(all_coco: Mapping, val_ids: Iterable[int], groups: Mapping[int, str],
                        holdout: Sequence[str]) -> Dict[str, Dict]:
    """``{"train", "val", "test"}`` COCO dicts of a leave-group-out split: test holds every image of the
    ``holdout`` groups, val the images of ``val_ids`` outside them (when none is left, every
    :data:`VAL_EVERY`-th other image by id), train all others.

    Raises UserError naming an unknown group (and the groups there are)."""
    known = sorted(set(groups.values()))
    unknown = [g for g in holdout if g not in known]
    if unknown:
        raise UserError(f"unknown group(s) {', '.join(unknown)}; the groups are: {', '.join(known)}")
    held = {i for i, g in groups.items() if g in set(holdout)}
    val = {int(i) for i in val_ids} - held
    train = set(groups) - held - val
    if not val:  # every val image was held out: every VAL_EVERY-th training image validates instead
        val = set(sorted(train)[::VAL_EVERY])
        train -= val
    return {"train": _subset(all_coco, train), "val": _subset(all_coco, val), "test": _subset(all_coco, held)}
