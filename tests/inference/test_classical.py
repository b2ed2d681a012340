"""The Otsu + watershed baseline: separate and touching disks on fluorescence, bright-field and
H&E-like images of the same nuclei give the same nuclei."""
from __future__ import annotations

import numpy as np

from maskrcnnpp.evaluation import score_image
from maskrcnnpp.inference.classical import OtsuWatershed

from tool_helpers import disk_labels, partition

# two lone disks and two touching ones (centres 18 px apart, radius 10)
LABELS = disk_labels((96, 112), [(25, 25, 9), (25, 80, 8), (70, 40, 10), (70, 58, 10)])


def fluorescence() -> np.ndarray:
    return np.where(LABELS > 0, 200, 20).astype(np.uint8)


def test_lone_and_touching_nuclei_are_found_one_each():
    prediction = OtsuWatershed(sigma=0).predict(fluorescence())
    assert prediction.num_instances == 4
    # every nucleus matched at IoU 0.95 (the pair's dividing line may differ from the disks' by a pixel)
    assert score_image(LABELS, prediction.labels)["score"] == 1.0
    assert prediction.scores.tolist() == [1.0] * 4
    assert prediction.info["trust"]["image_kind"] == "fluorescence"


def test_bright_field_and_he_like_images_give_the_same_nuclei():
    baseline = OtsuWatershed(sigma=0)
    expected = partition(baseline.predict(fluorescence()).labels)
    bright_field = 255 - fluorescence()
    he = np.empty(LABELS.shape + (3,), np.uint8)
    he[:] = (230, 150, 200)
    he[LABELS > 0] = (90, 60, 150)
    for image, kind in ((bright_field, "bright-field"), (he, "stained tissue")):
        prediction = baseline.predict(image)
        assert partition(prediction.labels) == expected, kind
        assert prediction.info["trust"]["image_kind"] == kind


def test_a_flat_image_has_no_nucleus():
    prediction = OtsuWatershed().predict(np.full((32, 32), 7, np.uint8))
    assert prediction.num_instances == 0 and prediction.labels.shape == (32, 32)
