"""maskrcnnpp.experiment.scale_check with a stand-in predictor: resizing, the rows per factor and mode, and the
'resampled' pseudo-mode (the original-size prediction resized like the ground truth), on hand-worked masks."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from maskrcnnpp.evaluation import score_image
from maskrcnnpp.experiment.scale_check import RESAMPLED, mosaic_image, mosaic_labels, resize_labels, scale_check


class ShiftedSquares:
    """Predicts the true square (rows/cols 4..11 of 16, scaled with the image) two pixels to the right
    at every size, so a smaller image loses more of it; records every call."""

    def __init__(self):
        self.calls = []

    def predict(self, image, diameter=None):
        self.calls.append((image.shape[:2], diameter))
        size = image.shape[0]
        labels = np.zeros(image.shape[:2], np.int32)
        unit = size / 16
        top, shift = int(round(4 * unit)), 2
        labels[top:top + int(round(8 * unit)), top + shift:top + shift + int(round(8 * unit))] = 1
        return SimpleNamespace(labels=labels, info={"diameter_source": "none" if diameter is None else "given"})


@pytest.fixture
def split(tmp_path):
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(tmp_path / "a.png")
    truth = np.zeros((16, 16), np.uint8)
    truth[4:12, 4:12] = 1
    rle = mask_utils.encode(np.asfortranarray(truth))
    rle["counts"] = rle["counts"].decode("ascii")
    gt = {"images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": rle, "area": 64, "bbox": [4, 4, 8, 8],
                           "iscrowd": 0}],
          "categories": [{"id": 1, "name": "nucleus"}]}
    return gt, str(tmp_path), truth


def test_resize_labels_takes_the_label_under_each_output_pixel_centre():
    labels = np.arange(16).reshape(4, 4)
    np.testing.assert_array_equal(resize_labels(labels, 0.5), [[5, 7], [13, 15]])
    np.testing.assert_array_equal(resize_labels(labels, 2)[:2, :2], [[0, 0], [0, 0]])
    assert resize_labels(labels, 2).shape == (8, 8)


def test_rows_per_factor_and_mode_and_the_resampled_original(split):
    gt, folder, truth = split
    predictor = ShiftedSquares()
    report = scale_check(predictor, gt, folder, factors=(1.0, 0.5), modes=(None, 10.0, RESAMPLED), progress=False)
    results = {(r["factor"], r["diameter"]): r for r in report["results"]}
    assert report["images"] == 1 and len(results) == 6
    # x1: the 8 x 8 square at columns 6..13 against 4..11: IoU 48 / 80
    assert results[1.0, "none"]["iou"] == pytest.approx(48 / 80)
    assert results[1.0, "none"]["score"] == pytest.approx(2 / 10)  # a match at thresholds 0.50 and 0.55 only
    # x0.5: the predictor sees the 8 x 8 image; its 4 x 4 square at columns 4..7 against 2..5: IoU 8 / 24
    assert results[0.5, "none"]["iou"] == pytest.approx(8 / 24)
    assert results[0.5, "none"]["score"] == 0
    # 'resampled' at x0.5: the x1 prediction sampled at the pixel centres 1, 3, ..., 15, like the truth:
    # columns 7, 9, 11, 13 -> 3..6 against 2..5, IoU 12 / 20
    x1 = ShiftedSquares().predict(np.zeros((16, 16, 3), np.uint8)).labels
    expected = score_image(resize_labels(truth, 0.5), resize_labels(x1, 0.5))
    assert results[0.5, "resampled"]["iou"] == pytest.approx(float(expected["iou"]))
    assert results[0.5, "resampled"]["iou"] == pytest.approx(12 / 20)
    assert results[1.0, "resampled"]["iou"] == results[1.0, "none"]["iou"]
    # a diameter in pixels at the original size is multiplied by the factor; the x1 prediction is made once
    assert predictor.calls == [((16, 16), None), ((16, 16), 10.0), ((8, 8), None), ((8, 8), 5.0)]


def test_a_mosaic_repeats_the_image_and_gives_every_copy_of_a_nucleus_its_own_id():
    labels = np.array([[0, 1], [2, 2]])
    np.testing.assert_array_equal(mosaic_labels(labels, 2), [[0, 1, 0, 3], [2, 2, 4, 4], [0, 5, 0, 7], [6, 6, 8, 8]])
    image = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    tiled = mosaic_image(image, 3)
    assert tiled.shape == (6, 6, 3) and np.array_equal(tiled[4:6, 2:4], image)
    assert mosaic_image(image[..., 0], 2).shape == (4, 4)


def test_a_mosaic_check_scores_the_repeated_image_against_the_repeated_truth(split):
    from scipy import ndimage

    gt, folder, truth = split
    seen = []

    def oracle(image, diameter=None):  # the four true squares of the mosaic, each its own nucleus
        seen.append(image.shape[:2])
        return SimpleNamespace(labels=ndimage.label(np.tile(truth, (2, 2)))[0], info={})

    report = scale_check(SimpleNamespace(predict=oracle), gt, folder, factors=(1.0,), modes=(None,), progress=False,
                         mosaic=2)
    assert seen == [(32, 32)] and report["results"][0]["score"] == 1.0
    merged = scale_check(SimpleNamespace(predict=lambda image, diameter=None: SimpleNamespace(
        labels=np.tile(truth, (2, 2)).astype(np.int32), info={})), gt, folder, (1.0,), (None,), progress=False, mosaic=2)
    assert merged["results"][0]["score"] == 0  # one label for the four squares: IoU 64 / 256 with each
