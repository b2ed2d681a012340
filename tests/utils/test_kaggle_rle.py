"""Kaggle run-length codec, CSV reader/writer and the COCO RLE encoders, on hand-worked cases."""
from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_util

from maskrcnnpp.utils.kaggle_rle import (
    KaggleCsvError,
    RLEError,
    coco_rle_from_crop,
    kaggle_to_coco_rle,
    label_image_rles,
    read_kaggle_csv,
    rle_decode,
    rle_encode,
    write_kaggle_csv,
)

# 3 x 4 mask. Column-major, 1-indexed pixel numbers:
#   1 4 7 10        . X . .
#   2 5 8 11        . X X .
#   3 6 9 12        . . X X
# Foreground pixels 4, 5, 8, 9, 12 -> runs "4 2 8 2 12 1".
HAND_MASK = np.array([[0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=bool)
HAND_RLE = "4 2 8 2 12 1"


def test_hand_worked_example_both_directions():
    assert rle_encode(HAND_MASK) == HAND_RLE
    np.testing.assert_array_equal(rle_decode(HAND_RLE, (3, 4)), HAND_MASK)


def test_kaggle_documentation_example():
    # The competition's example: "1 3 10 5" covers pixels 1,2,3 and 10..14. On a 5 x 4 image
    # (column-major) these are column 0 rows 0-2, column 1 row 4, column 2 rows 0-3.
    expected = np.zeros((5, 4), bool)
    expected[0:3, 0] = True
    expected[4, 1] = True
    expected[0:4, 2] = True
    np.testing.assert_array_equal(rle_decode("1 3 10 5", (5, 4)), expected)
    assert rle_encode(expected) == "1 3 10 5"


def test_empty_and_full_masks():
    assert rle_encode(np.zeros((4, 5), bool)) == ""
    assert not rle_decode("", (4, 5)).any()
    assert rle_encode(np.ones((4, 5), bool)) == "1 20"
    assert rle_encode(np.array([[0, 0], [0, 7]])) == "4 1"  # nonzero counts as foreground


def test_touching_runs_decode_as_one():
    mask = rle_decode("1 2 3 2", (2, 3))
    np.testing.assert_array_equal(mask, np.array([[1, 1, 0], [1, 1, 0]], bool))
    assert rle_encode(mask) == "1 4"
    assert kaggle_to_coco_rle("1 2 3 2", (2, 3))["counts"] == mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))["counts"]


@pytest.mark.parametrize(
    "rle, message",
    [
        ("1 2 5", "odd number"),
        ("1 x", "non-integer"),
        ("0 3", "below 1"),
        ("2 0", "length 0 is below 1"),
        ("5 2 3 1", "not sorted"),
        ("1 3 2 2", "overlapping"),
        ("11 3", "beyond the 3x4 image"),
    ],
)
def test_bad_rle_strings(rle, message):
    with pytest.raises(RLEError, match=message):
        rle_decode(rle, (3, 4))
    with pytest.raises(RLEError):
        kaggle_to_coco_rle(rle, (3, 4))


def test_coco_encoders_match_pycocotools_reference():
    rng = np.random.default_rng(7)
    for _ in range(60):
        height, width = (int(v) for v in rng.integers(1, 30, size=2))
        mask = rng.random((height, width)) < rng.uniform(0.05, 0.95)
        mask[:, : int(rng.integers(0, width))] = False  # crops that do not start at 0
        reference = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        ys, xs = np.nonzero(mask)
        if ys.size:
            crop = mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
            ours = coco_rle_from_crop(crop, int(ys.min()), int(xs.min()), height, width)
        else:
            ours = coco_rle_from_crop(np.zeros((0, 0), bool), 0, 0, height, width)
        assert ours == reference
        assert kaggle_to_coco_rle(rle_encode(mask), (height, width)) == reference
        np.testing.assert_array_equal(rle_decode(rle_encode(mask), (height, width)), mask)


def test_label_image_rles_in_label_order():
    labels = np.array([[0, 2, 2], [1, 2, 0], [1, 0, 3]])
    # Column-major pixel numbers: 1 4 7 / 2 5 8 / 3 6 9.
    assert label_image_rles(labels) == ["2 2", "4 2 7 1", "9 1"]


def _write(tmp_path, text: str):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_read_csv_released_formats(tmp_path):
    train_style = _write(tmp_path, "ImageId,EncodedPixels\nabc,4 2 8 2\nabc,12 1\ndef,\n")
    labels = read_kaggle_csv(train_style)
    assert dict(labels) == {"abc": ["4 2 8 2", "12 1"], "def": []}
    assert labels.lines["abc"] == [2, 3] and labels.sizes == {}

    solution_style = _write(tmp_path, "ImageId,EncodedPixels,Height,Width,Usage\nabc,4 2 8 2 12 1,3,4,Public\n")
    labels = read_kaggle_csv(solution_style)
    assert labels["abc"] == [HAND_RLE] and labels.sizes == {"abc": (3, 4)} and labels.usage == {"abc": "Public"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("ImageId,Pixels\na,1 1\n", "wrong header"),
        ("Id,EncodedPixels\na,1 1\n", "wrong header"),
        ("ImageId,EncodedPixels,Color\na,1 1,red\n", "wrong header"),
        ("", "empty file"),
        ("ImageId,EncodedPixels\na,1 1,3\n", r"labels.csv:2: 3 fields"),
        ("ImageId,EncodedPixels\na,1 1\na,4 x\n", r"labels.csv:3: image a: non-integer"),
        ("ImageId,EncodedPixels,Height,Width\na,11 3,3,4\n", r"labels.csv:2: image a: run-length out of bounds"),
        ("ImageId,EncodedPixels,Height,Width\na,1 1,3,4\na,2 1,4,4\n", r"labels.csv:3: image a is 4x4 here"),
    ],
)
def test_read_csv_errors_name_file_and_line(tmp_path, text, message):
    with pytest.raises(KaggleCsvError, match=message):
        read_kaggle_csv(_write(tmp_path, text))


def test_writer_removes_overlaps_and_round_trips(tmp_path):
    first = np.zeros((3, 4), bool)
    first[0:2, 1] = True  # pixels 4, 5
    second = HAND_MASK.copy()  # 4, 5, 8, 9, 12: 4 and 5 belong to `first`
    inside = np.zeros((3, 4), bool)
    inside[0, 1] = True  # entirely inside `first`: dropped
    path = tmp_path / "submission.csv"
    rows = write_kaggle_csv(path, {"a": [first, second, inside], "empty": [], "lab": np.array([[0, 1], [2, 2]])})
    assert rows == 4
    assert path.read_text() == "ImageId,EncodedPixels\na,4 2\na,8 2 12 1\nempty,\nlab,3 1\nlab,2 1 4 1\n"
    back = read_kaggle_csv(path)
    assert back["a"] == ["4 2", "8 2 12 1"] and back["empty"] == []


def test_writer_sorts_instances_by_score(tmp_path):
    from detectron2.structures import Instances
    import torch

    low = np.zeros((3, 4), bool)
    low[:, 1] = True  # 4, 5, 6
    high = np.zeros((3, 4), bool)
    high[1:, 1:3] = True  # 5, 6, 8, 9
    inst = Instances((3, 4), pred_masks=torch.tensor(np.stack([low, high])), scores=torch.tensor([0.2, 0.9]))
    path = tmp_path / "sub.csv"
    write_kaggle_csv(path, {"x": inst}, with_size=True)
    assert path.read_text() == "ImageId,EncodedPixels,Height,Width\nx,5 2 8 2,3,4\nx,4 1,3,4\n"
