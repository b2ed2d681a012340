"""Acquisition groups and leave-group-out splits (maskrcnnpp.data.groups), on hand-made statistics."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from maskrcnnpp.data.groups import (
    acquisition_groups, group_folds, holdout_annotations, image_signal, signal_level,
)
from maskrcnnpp.errors import UserError


def stats_of(spec):
    """``{id: (kind, h, w, signal)}`` from ``[(count, kind, h, w, signal), ...]``, ids from 1."""
    out, ids = {}, itertools.count(1)
    for count, kind, h, w, signal in spec:
        for _ in range(count):
            out[next(ids)] = (kind, h, w, signal)
    return out


SPEC = [
    (30, "fluorescence", 256, 256, 60.0),     # mid
    (12, "fluorescence", 256, 256, 150.0),    # bright
    (3, "fluorescence", 256, 256, 10.0),      # dim, too few: joins mid
    (16, "bright-field", 1024, 1024, 130.0),  # under 40 images in its kind x size: not split
    (2, "stained tissue", 256, 320, 90.0),
]


def test_groups_by_kind_size_and_signal():
    groups = acquisition_groups(stats_of(SPEC))
    counts = {g: list(groups.values()).count(g) for g in set(groups.values())}
    assert counts == {"fluorescence-256x256-mid": 33, "fluorescence-256x256-bright": 12,
                      "bright-field-1024x1024": 16, "stained tissue-256x320": 2}
    assert groups[43] == "fluorescence-256x256-mid"  # the first of the 3 dim images


def test_signal_of_a_fluorescence_and_a_bright_field_image():
    dark = np.full((10, 10), 20, np.uint8)
    dark[:2, :] = 220  # 20 % bright nuclei
    assert image_signal(dark) == ("fluorescence", pytest.approx(200.0))
    bright = 255 - dark
    kind, signal = image_signal(bright)
    assert kind == "bright-field" and signal == pytest.approx(200.0)  # inverted first
    assert [signal_level(s) for s in (39.9, 40.0, 119.9, 120.0)] == ["dim", "mid", "mid", "bright"]


@pytest.mark.parametrize("k", [2, 3, 4])
def test_folds_never_put_a_group_in_two_folds(k):
    groups = acquisition_groups(stats_of(SPEC))
    folds = group_folds(groups, k)
    members = [g for fold in folds for g in fold]
    assert len(members) == len(set(members)) == len(set(groups.values()))
    assert all(folds), "every fold holds a group"
    for fold in folds:  # every image of a group lies in the fold of its group
        ids = {i for i, g in groups.items() if g in fold}
        assert all(groups[i] in fold for i in ids)


def test_folds_balance_image_counts_largest_first():
    groups = acquisition_groups(stats_of(SPEC))
    assert group_folds(groups, 2) == [["fluorescence-256x256-mid"],
                                      ["bright-field-1024x1024", "fluorescence-256x256-bright", "stained tissue-256x320"]]
    with pytest.raises(ValueError, match="at most 4"):
        group_folds(groups, 5)


def test_holdout_split_puts_whole_groups_in_test():
    stats = stats_of(SPEC)
    groups = acquisition_groups(stats)
    coco = {"info": {"x": 1}, "categories": [{"id": 1}], "images": [{"id": i} for i in stats],
            "annotations": [{"id": 10 * i, "image_id": i} for i in stats]}
    val_ids = [1, 2, 50]  # 50 is bright-field: held out, so not in val
    split = holdout_annotations(coco, val_ids, groups, ["bright-field-1024x1024"])
    test_ids = {im["id"] for im in split["test"]["images"]}
    assert test_ids == set(range(46, 62))
    assert {im["id"] for im in split["val"]["images"]} == {1, 2}
    assert {im["id"] for im in split["train"]["images"]} == set(stats) - test_ids - {1, 2}
    assert {a["image_id"] for a in split["test"]["annotations"]} == test_ids
    assert split["train"]["categories"] == coco["categories"] and split["test"]["info"] == {"x": 1}
    with pytest.raises(UserError, match="unknown group.*nope.*the groups are: bright-field-1024x1024"):
        holdout_annotations(coco, val_ids, groups, ["nope"])


def test_holdout_of_every_val_image_validates_on_every_fifth_training_image():
    stats = stats_of(SPEC)
    groups = acquisition_groups(stats)
    coco = {"images": [{"id": i} for i in stats], "annotations": []}
    split = holdout_annotations(coco, [46, 47], groups, ["bright-field-1024x1024"])  # both val images held out
    others = sorted(set(stats) - set(range(46, 62)))
    assert [im["id"] for im in split["val"]["images"]] == others[::5]
    assert {im["id"] for im in split["train"]["images"]} == set(others) - set(others[::5])
