"""NucleiPredictor.predict_batch: inputs of one size share a forward pass; results equal one-by-one prediction."""
from __future__ import annotations

import numpy as np
import pytest

from maskrcnnpp.errors import UserError
from maskrcnnpp.inference import NucleiPredictor

from tool_helpers import FAST_OPTS, disk_labels, nuclei_image, save_tiny_weights


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    from maskrcnnpp.config import setup_cfg

    weights = save_tiny_weights(tmp_path_factory.mktemp("weights"))
    cfg = setup_cfg("maskrcnnpp_tiny", FAST_OPTS + ["INPUT.MIN_SIZE_TEST", "0"], device="cpu")
    return NucleiPredictor(cfg, weights, score_thresh=0.3, rescale="none")


@pytest.fixture()
def forward_batches(predictor, monkeypatch):
    """The number of images of every forward pass the model makes."""
    sizes = []
    inference = predictor.model.inference

    def counting(batched_inputs, *args, **kwargs):
        sizes.append(len(batched_inputs))
        return inference(batched_inputs, *args, **kwargs)

    monkeypatch.setattr(predictor.model, "inference", counting)
    return sizes


def _images():
    a = nuclei_image(disk_labels((96, 112), [(25, 25, 9), (25, 60, 8), (70, 80, 10)]), seed=0)
    b = nuclei_image(disk_labels((96, 112), [(40, 40, 11), (70, 20, 7), (20, 90, 8), (75, 85, 9)]), seed=1)
    c = nuclei_image(disk_labels((80, 128), [(30, 30, 9), (50, 100, 10)]), seed=2)  # another size
    d = nuclei_image(disk_labels((96, 112), [(50, 50, 12)]), seed=3)
    return [a, c, b, d]


def test_same_sized_images_share_a_pass_and_equal_single_prediction(predictor, forward_batches):
    images = _images()
    singles = [predictor.predict(image) for image in images]
    assert forward_batches == [1, 1, 1, 1]
    assert sum(p.num_instances for p in singles) > 0, "the random-init model should predict something at 0.3"
    forward_batches.clear()
    batched = predictor.predict_batch(images, batch_size=4)
    # a, b, d are 96 x 112: one pass of 3; c (80 x 128) alone
    assert sorted(forward_batches) == [1, 3]
    for single, together in zip(singles, batched):
        assert np.array_equal(together.labels, single.labels)
        assert np.allclose(together.scores, single.scores, atol=1e-5)
    forward_batches.clear()
    predictor.predict_batch(images, batch_size=2)
    assert sorted(forward_batches) == [1, 1, 2]


def test_tiles_of_a_large_image_go_batch_size_at_a_time(predictor, forward_batches):
    labels = disk_labels((150, 170), [(30, 30, 9), (40, 120, 10), (110, 50, 8), (120, 140, 11), (75, 85, 9)])
    image = nuclei_image(labels, seed=4)
    one_by_one = predictor.predict(image, tile_size=80, tile_overlap=24)
    assert forward_batches == [1] * one_by_one.info["tiles"] and one_by_one.info["tiles"] == 9
    forward_batches.clear()
    batched = predictor.predict(image, tile_size=80, tile_overlap=24, batch_size=4)
    assert forward_batches == [4, 4, 1]
    # Batched convolutions round differently (scores within 1e-6); where two overlapping candidates of
    # this random-weight model score within that, a pixel may go to either (1 of 25,500 here).
    assert batched.num_instances == one_by_one.num_instances > 100
    assert np.allclose(np.sort(batched.scores), np.sort(one_by_one.scores), atol=1e-6)
    assert np.count_nonzero(batched.labels != one_by_one.labels) <= 5
    assert batched.info == one_by_one.info


def test_batch_size_below_one_is_an_error(predictor):
    with pytest.raises(UserError, match="batch size must be at least 1, got 0"):
        predictor.predict_batch(_images(), batch_size=0)
