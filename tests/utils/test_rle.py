"""COCO RLE decoding of maskrcnnpp.utils.rle against pycocotools, every count format, malformed counts."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_util

from coco_masks import box_mask, rle
from maskrcnnpp.utils.rle import rle_foreground_runs, rle_pixel_indices, rle_run_lengths


def test_rle_runs_equal_pycocotools_decode_for_every_count_format():
    rng = np.random.default_rng(0)
    masks = [rng.random((h, w)) < p for h, w, p in [(7, 5, 0.5), (1, 9, 0.3), (9, 1, 0.7), (40, 31, 0.02), (40, 31, 0.97)]]
    masks += [np.ones((6, 4), bool), np.zeros((6, 4), bool), box_mask(6, 4, 0, 1, 0, 1), box_mask(6, 4, 5, 6, 3, 4)]
    big = np.zeros((300, 200), bool)
    big[10:290, 5:195] = True  # runs of tens of thousands of pixels: multi-character counts
    big[150, 100] = False
    masks.append(big)
    for fmt in ("str", "bytes", "list"):
        for mask in masks:
            h, w = mask.shape
            index, start, length = rle_foreground_runs([rle(mask, fmt)], h, w)
            flat = np.zeros(h * w, bool)
            for s, n in zip(start, length):
                flat[s : s + n] = True
            assert np.array_equal(flat.reshape((h, w), order="F"), mask_util.decode(rle(mask, "bytes")).astype(bool))
            assert (index == 0).all() and (length > 0).all()
    # Several masks at once (mixed formats): runs grouped by mask, in pixel order.
    segms = [rle(m, f) for m, f in zip([masks[3], masks[4], np.zeros((40, 31), bool)], ["str", "list", "bytes"])]
    index, start, length = rle_foreground_runs(segms, 40, 31)
    assert list(np.unique(index)) == [0, 1] and (np.diff(index) >= 0).all()  # the empty mask has no run
    for k, mask in enumerate([masks[3], masks[4]]):
        assert length[index == k].sum() == mask.sum()


@pytest.mark.parametrize("segm, message", [
    ({"size": [5, 4], "counts": "02"}, "RLE size"),
    ({"size": [6, 4], "counts": "0"}, "sum to 0 pixels"),
    ({"size": [6, 4], "counts": "0h"}, "truncated"),
    ({"size": [6, 4], "counts": "0 2"}, "cannot occur"),
    ({"size": [6, 4], "counts": [3, -1, 22]}, "negative"),
    ({"size": [6, 4], "counts": [3.0, 21.0]}, "must be integers"),
    ({"counts": "02"}, "not a COCO RLE dict"),
])
def test_malformed_rles_are_rejected(segm, message):
    ok = rle(box_mask(6, 4, 1, 2, 1, 2))
    with pytest.raises(ValueError, match=message) as info:
        rle_foreground_runs([ok, segm], 6, 4)
    assert info.value.annotation_index == 1




def test_run_lengths_and_pixel_indices_of_one_rle_equal_pycocotools():
    rng = np.random.default_rng(5)
    for h, w, p in [(7, 5, 0.5), (40, 31, 0.02), (300, 200, 0.999)]:
        mask = rng.random((h, w)) < p
        for fmt in ("str", "bytes", "list"):
            runs = rle_run_lengths(rle(mask, fmt))
            assert runs.sum() == h * w and (runs >= 0).all()
            flat = np.zeros(h * w, np.uint8)
            flat[rle_pixel_indices(rle(mask, fmt), h * w)] = 1
            assert np.array_equal(flat.reshape((h, w), order="F"), mask_util.decode(rle(mask, "bytes")))
    with pytest.raises(ValueError, match="cover 20 pixels, not 21"):
        rle_pixel_indices(rle(np.ones((5, 4), bool), "list"), 21)
    with pytest.raises(ValueError, match="truncated"):
        rle_run_lengths({"size": [5, 4], "counts": "0a"})
