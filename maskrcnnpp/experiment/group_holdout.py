"""The leave-group-out protocol: train without whole acquisition groups, score on them, per group.

A random test split shares its experiments with training and overstates what a user sees on new
images. Here the test split is made of whole acquisition groups (:mod:`maskrcnnpp.data.groups`) of a
prepared DSB 2018 folder, chosen by name or as fold I of K (:func:`~maskrcnnpp.data.groups.group_folds`);
every other image trains (its val images still select the checkpoint). :func:`write_holdout_root`
writes such a folder (annotations only; ``images`` links to the source's) for ``tools/experiment.py``
to train and test on unchanged, and :func:`scores_by_group` reads the test evaluation back per group.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..data.groups import GROUPS_FILE, acquisition_groups, group_folds, holdout_annotations, image_stats
from ..errors import UserError
from ..utils.files import read_json, write_json

__all__ = ["DEFAULT_HOLDOUT", "dsb_groups", "fold_groups", "group_counts_markdown", "scores_by_group",
           "write_holdout_root"]

# The default held-out groups of DSB 2018 stage1_train: one of each kind, the bright-field
# microscope, the bright stained-tissue fields, two fluorescence experiments of their own sizes and
# the brightest 520 x 696 fluorescence fields (143 images in all).
DEFAULT_HOLDOUT = ("bright-field-1024x1024", "stained tissue-256x320-bright", "fluorescence-360x360-dim",
                   "fluorescence-260x347", "fluorescence-520x696-bright")


def dsb_groups(root: str) -> Tuple[Dict, Dict[int, str]]:
    """(``all.json`` of the prepared folder ``root``, ``{image_id: group}`` of its images)."""
    all_coco = read_json(os.path.join(root, "annotations", "all.json"), "prepared annotations", UserError)
    return all_coco, acquisition_groups(image_stats(all_coco, os.path.join(root, "images")))


def fold_groups(groups: Mapping[int, str], fold: str) -> List[str]:
    """The groups of fold ``"I/K"`` (I from 1) of :func:`group_folds`; UserError naming ``fold`` when malformed."""
    try:
        index, k = (int(v) for v in fold.split("/"))
        if not 1 <= index <= k:
            raise ValueError
        return group_folds(groups, k)[index - 1]
    except ValueError as e:
        detail = f": {e}" if str(e) else ""
        raise UserError(f"group fold {fold!r} must be I/K with 1 <= I <= K and 2 <= K <= the number of groups{detail}") from None


def write_holdout_root(root: str, holdout: Sequence[str], out_dir: str,
                       grouped: Optional[Tuple[Dict, Dict[int, str]]] = None) -> str:
    """Write ``out_dir`` as a prepared folder whose test split is the ``holdout`` groups of ``root``
    (:func:`~maskrcnnpp.data.groups.holdout_annotations`), with ``groups.json`` (every image's group and
    the held-out ones) and ``images`` linking to ``root``'s; returns ``out_dir``. Files whose contents
    are unchanged are left as they are, so a rerun changes nothing. ``grouped``: :func:`dsb_groups` of
    ``root`` when the caller has it already (it reads every image)."""
    all_coco, groups = grouped or dsb_groups(root)
    val = read_json(os.path.join(root, "annotations", "val.json"), "prepared annotations", UserError)
    splits = holdout_annotations(all_coco, [im["id"] for im in val["images"]], groups, holdout)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    for name, coco in {"all": all_coco, **splits}.items():
        _write_if_changed(os.path.join(out_dir, "annotations", f"{name}.json"), coco)
    _write_if_changed(os.path.join(out_dir, GROUPS_FILE), {
        "source": os.path.realpath(root), "holdout": list(holdout),
        "images": {str(i): g for i, g in sorted(groups.items())}})
    link = os.path.join(out_dir, "images")
    target = os.path.realpath(os.path.join(root, "images"))
    if os.path.islink(link) and os.path.realpath(link) != target:
        os.remove(link)
    if not os.path.lexists(link):
        os.symlink(target, link)
    elif os.path.realpath(link) != target:
        raise UserError(f"{link} exists and is not a link to {target}; use another experiment folder")
    return out_dir


def _write_if_changed(path: str, data) -> None:
    if os.path.isfile(path) and read_json(path, "file", UserError) == data:
        return
    write_json(path, data)


def scores_by_group(per_image_csv: str, groups: Mapping[int, str],
                    metrics: Sequence[str] = ("score", "iou", "dice", "aji", "pq")) -> Dict[str, Dict[str, float]]:
    """``{group: {"images": n, metric: mean}}`` of an evaluator's ``per_image.csv`` (rows with ``image_id``)."""
    if not os.path.isfile(per_image_csv):
        raise UserError(f"no test evaluation at {per_image_csv}")
    with open(per_image_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    grouped: Dict[str, List[Mapping[str, str]]] = {}
    for row in rows:
        grouped.setdefault(groups.get(int(row["image_id"]), "unknown"), []).append(row)
    return {g: {"images": len(r), **{m: float(np.mean([float(x[m]) for x in r])) for m in metrics}}
            for g, r in sorted(grouped.items())}


def group_counts_markdown(groups: Mapping[int, str], holdout: Optional[Sequence[str]] = None) -> str:
    """A Markdown table of the groups with their image counts (and which are held out)."""
    counts = Counter(groups.values())
    lines = ["| acquisition group | images |" + (" held out |" if holdout is not None else ""),
             "|---|---|" + ("---|" if holdout is not None else "")]
    for name in sorted(counts, key=lambda g: (-counts[g], g)):
        held = (" yes |" if name in holdout else " |") if holdout is not None else ""
        lines.append(f"| {name} | {counts[name]} |{held}")
    return "\n".join(lines)
