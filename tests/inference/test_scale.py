"""maskrcnnpp.inference.scale and NucleiPredictor(diameter=...): the factor, masks back at the original
pixels, tiles counted in rescaled pixels, and "auto" (two passes, kept first pass, nothing found)."""
from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from maskrcnnpp.errors import UserError
from maskrcnnpp.inference import NucleiPredictor
from maskrcnnpp.inference.instances import crops_from_masks
from maskrcnnpp.inference.scale import (
    auto_scale, check_diameter, check_diameter_range, diameter_scale, estimate_diameter, needs_second_pass,
    parse_diameter,
)
from maskrcnnpp.modeling.meta_arch import NucleiRCNN

from tool_helpers import disk_labels


# ---------------------------------------------------------------------------- the numbers
def test_the_factor_brings_the_diameter_to_the_nominal_one():
    assert diameter_scale(10, 20) == 2.0
    assert diameter_scale(40.0, 20.0) == 0.5
    assert diameter_scale(18.444, 18.444) == 1.0
    with pytest.raises(UserError, match=r"nominal nucleus diameter is unknown \(TEST.NUCLEI.NOMINAL_DIAMETER is 0\)"):
        diameter_scale(10, 0.0)


@pytest.mark.parametrize("text, expected", [("auto", "auto"), ("AUTO", "auto"), ("12", 12.0), ("7.5", 7.5), ("1e1", 10.0)])
def test_diameters_parse(text, expected):
    assert parse_diameter(text) == expected


@pytest.mark.parametrize("bad", ["0", "-3", "nan", "inf", "big", ""])
def test_bad_diameters_are_refused(bad):
    with pytest.raises(UserError, match="nucleus diameter must be a positive number of pixels, 'auto' or 'none'"):
        parse_diameter(bad)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), True, "12"])
def test_check_diameter_refuses_what_is_not_a_positive_number(bad):
    with pytest.raises(UserError):
        check_diameter(bad)
    assert check_diameter(None) is None and check_diameter(3) == 3.0


def test_auto_keeps_the_first_pass_inside_the_training_range_and_clips_to_it_outside():
    # found 10 px at the first pass's x1.25: seen at 12.5, inside (6, 45): the factor stays 1.25
    assert auto_scale(10.0, 1.25, 18.0, (6.0, 45.0)) == pytest.approx(1.25)
    # found 4 px at x1.25: seen at 5 px, below 6: enlarged to 6 px, factor 1.5
    assert auto_scale(4.0, 1.25, 18.0, (6.0, 45.0)) == pytest.approx(1.5)
    # found 50 px at x1: above 45: shrunk to 45 px
    assert auto_scale(50.0, 1.0, 18.0, (6.0, 45.0)) == pytest.approx(0.9)
    # no range: always to the nominal diameter, whatever the first pass
    assert auto_scale(10.0, 1.25, 18.0, (0.0, 0.0)) == pytest.approx(1.8)


@pytest.mark.parametrize("bad", [(5.0, 4.0), (0.0, 4.0), (-1.0, 4.0), (3.0, float("inf")), (1.0,), "big"])
def test_bad_diameter_ranges_name_the_key(bad):
    with pytest.raises(UserError, match=r"TEST.NUCLEI.AUTO_DIAMETER_RANGE must be \(low, high\)"):
        check_diameter_range(bad)
    assert check_diameter_range((0, 0)) == (0.0, 0.0) and check_diameter_range([6, 45]) == (6.0, 45.0)


def test_second_pass_only_beyond_the_tolerance():
    assert not needs_second_pass(1.25, 1.25 * 1.09, 0.1) and not needs_second_pass(1.25, 1.25 * 0.91, 0.1)
    assert needs_second_pass(1.25, 1.25 * 1.11, 0.1) and needs_second_pass(1.25, 1.25 * 0.89, 0.1)


def test_estimate_is_the_median_equivalent_diameter_of_disks_and_of_synthetic_nuclei():
    from skimage.measure import regionprops

    from maskrcnnpp.data.synthetic import generate_nuclei_image

    disks = disk_labels((200, 200), [(30, 30, 10), (30, 90, 10), (100, 100, 10), (150, 40, 4), (160, 160, 25)])
    found = estimate_diameter(crops_from_masks(np.stack([disks == k for k in range(1, 6)]), np.ones(5)))
    assert found == pytest.approx(20.0, rel=0.03)  # the median disk: radius 10
    assert estimate_diameter([]) is None
    for seed, radii in ((0, (6.0, 8.0)), (1, (14.0, 18.0))):
        _, labels = generate_nuclei_image(seed, 192, radius_range=radii)
        ids = np.unique(labels)[1:]
        crops = crops_from_masks(np.stack([labels == k for k in ids]), np.ones(len(ids)))
        reference = np.median([r.equivalent_diameter_area for r in regionprops(labels)])
        assert estimate_diameter(crops) == pytest.approx(reference, rel=1e-9)
        assert 2 * radii[0] * 0.8 < estimate_diameter(crops) < 2 * radii[1] * 1.1  # the drawn sizes


# ---------------------------------------------------------------------------- the predictor
class SquareDetector(NucleiRCNN):
    """Stands in for a trained NucleiRCNN: finds the bright squares of the image it is given (at the
    predictor's resize), returns their boxes in that image's pixels with all-ones 28x28 masks, as
    ``inference(..., do_postprocess=False)`` does; the predictor maps them back to the original."""

    def __init__(self):
        torch.nn.Module.__init__(self)
        self.seen = []

    def inference(self, batched_inputs, do_postprocess=True):
        from detectron2.structures import Boxes, Instances
        from scipy import ndimage

        image = batched_inputs[0]["image"]
        self.seen.append(tuple(image.shape[1:]))
        components, _ = ndimage.label(image[0].numpy() >= 128)
        boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(components)]
        result = Instances(tuple(image.shape[1:]))
        result.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        result.scores = torch.full((len(boxes),), 0.9)
        result.pred_classes = torch.zeros(len(boxes), dtype=torch.long)
        result.pred_masks = torch.ones(len(boxes), 1, 28, 28)
        return [result]


def squares(shape, corners, side):
    labels = np.zeros(shape, np.int32)
    for k, (y, x) in enumerate(corners, start=1):
        labels[y:y + side, x:x + side] = k
    return labels


def stub_predictor(nominal: float, diameter=None, min_size_test: int = 0, auto_range=(0.0, 0.0),
                   config_diameter: str = "") -> NucleiPredictor:
    """A predictor of :class:`SquareDetector`; ``diameter="config"`` leaves it to ``TEST.NUCLEI.DIAMETER``."""
    from maskrcnnpp.config import setup_cfg

    cfg = setup_cfg("maskrcnnpp_tiny", ["INPUT.MIN_SIZE_TEST", str(min_size_test), "INPUT.MAX_SIZE_TEST", "1000",
                                        "TEST.NUCLEI.NOMINAL_DIAMETER", str(nominal),
                                        "TEST.NUCLEI.AUTO_DIAMETER_RANGE", str(tuple(auto_range)),
                                        "TEST.NUCLEI.DIAMETER", config_diameter], device="cpu")
    if diameter == "config":
        return NucleiPredictor(cfg, model=SquareDetector())
    return NucleiPredictor(cfg, model=SquareDetector(), diameter=diameter)


CORNERS = [(10, 10), (10, 60), (60, 100), (80, 20), (40, 130)]


@pytest.mark.parametrize("diameter, model_input", [(20, (120, 160)), (10, (240, 320)), (40, (60, 80))])
def test_a_diameter_sets_the_model_input_and_masks_come_back_at_the_original_pixels(diameter, model_input):
    labels = squares((120, 160), CORNERS, 20)
    predictor = stub_predictor(nominal=20.0, diameter=diameter)
    pred = predictor.predict(np.where(labels > 0, 255, 0).astype(np.uint8))
    assert predictor.model.seen == [model_input]  # x1, x2, x0.5: nominal / diameter
    assert pred.info["scale"] == 20.0 / diameter and pred.info["diameter_source"] == "given"
    assert pred.labels.shape == (120, 160)
    assert {frozenset(zip(*np.nonzero(pred.labels == k))) for k in range(1, 6)} == \
        {frozenset(zip(*np.nonzero(labels == k))) for k in range(1, 6)}


def test_without_a_diameter_the_config_test_resize_is_kept():
    predictor = stub_predictor(nominal=20.0, min_size_test=240)
    predictor.predict(np.zeros((120, 160), np.uint8))
    assert predictor.model.seen == [(240, 320)]


def test_with_a_diameter_tiles_count_pixels_of_the_rescaled_image():
    labels = squares((120, 160), CORNERS, 20)
    image = np.where(labels > 0, 255, 0).astype(np.uint8)
    predictor = stub_predictor(nominal=20.0, diameter=10)  # x2: the image is 240 x 320 for the model
    untiled = predictor.predict(image)
    predictor.model.seen.clear()
    tiled = predictor.predict(image, tile_size=160, tile_overlap=60)  # 80 px tiles, 30 px overlap originally
    assert tiled.info["tiles"] == 6 and set(predictor.model.seen) == {(160, 160)}
    assert np.array_equal(tiled.labels > 0, untiled.labels > 0) and tiled.num_instances == 5


def test_auto_measures_a_first_pass_and_predicts_again_at_the_nominal_size(caplog):
    labels = squares((120, 160), CORNERS, 10)
    image = np.where(labels > 0, 255, 0).astype(np.uint8)
    found = math.sqrt(4 * 100 / math.pi)  # equivalent diameter of a 10 x 10 square
    predictor = stub_predictor(nominal=2 * found, diameter="auto")
    pred = predictor.predict(image)
    assert predictor.model.seen == [(120, 160), (240, 320)]  # default resize (none here), then x2
    assert pred.info["diameter"] == pytest.approx(found) and pred.info["scale"] == pytest.approx(2.0)
    assert pred.info["diameter_source"] == "auto"
    assert np.array_equal(pred.labels > 0, labels > 0) and pred.num_instances == 5

    close = stub_predictor(nominal=found * 1.05, diameter="auto")  # within AUTO_DIAMETER_TOLERANCE 0.1
    pred = close.predict(image)
    assert close.model.seen == [(120, 160)] and pred.info["diameter_source"] == "auto: first pass kept"
    assert pred.info["scale"] == 1.0 and pred.num_instances == 5

    # with a training range the first pass is kept while its nuclei lie in it, else they go to its nearer end
    inside = stub_predictor(nominal=2 * found, diameter="auto", auto_range=(found / 2, 3 * found))
    pred = inside.predict(image)
    assert inside.model.seen == [(120, 160)] and pred.info["diameter_source"] == "auto: first pass kept"
    below = stub_predictor(nominal=4 * found, diameter="auto", auto_range=(1.5 * found, 5 * found))
    pred = below.predict(image)
    assert below.model.seen == [(120, 160), (180, 240)] and pred.info["scale"] == pytest.approx(1.5)
    assert np.array_equal(pred.labels > 0, labels > 0)

    blank = stub_predictor(nominal=20.0, diameter="auto")
    with caplog.at_level(logging.WARNING, logger="maskrcnnpp.inference.predictor"):
        pred = blank.predict(np.zeros((120, 160), np.uint8))
    assert blank.model.seen == [(120, 160)] and pred.num_instances == 0
    assert pred.info["diameter"] is None and pred.info["diameter_source"] == "auto: no nucleus found, default resize kept"
    assert "the nucleus diameter cannot be estimated" in caplog.text


def test_the_predictors_diameter_defaults_to_the_configs():
    labels = squares((120, 160), CORNERS, 10)
    image = np.where(labels > 0, 255, 0).astype(np.uint8)
    found = math.sqrt(4 * 100 / math.pi)
    auto = stub_predictor(nominal=2 * found, diameter="config", config_diameter="auto")
    assert auto.diameter == "auto" and auto.predict(image).info["scale"] == pytest.approx(2.0)
    assert stub_predictor(nominal=20.0, diameter="config", config_diameter="'40'").diameter == 40.0  # yacs: quoted
    assert stub_predictor(nominal=20.0, diameter="config", config_diameter="none").diameter is None
    assert stub_predictor(nominal=20.0, diameter="config").diameter is None  # "": no diameter
    assert stub_predictor(nominal=20.0, diameter=None, config_diameter="auto").diameter is None  # explicit none wins
    with pytest.raises(UserError, match=r"^TEST.NUCLEI.DIAMETER: nucleus diameter must be a positive number"):
        stub_predictor(nominal=20.0, diameter="config", config_diameter="big")


def test_auto_first_passes_share_forward_passes_and_only_out_of_range_images_get_a_second():
    from maskrcnnpp.config import setup_cfg

    small = np.where(squares((120, 160), CORNERS, 10) > 0, 255, 0).astype(np.uint8)  # nuclei of 11.3 px
    large = np.where(squares((120, 160), [(10, 10), (10, 80)], 40) > 0, 255, 0).astype(np.uint8)  # 45.1 px
    cfg = setup_cfg("maskrcnnpp_tiny", ["INPUT.MIN_SIZE_TEST", "0", "INPUT.MAX_SIZE_TEST", "1000",
                                        "TEST.NUCLEI.NOMINAL_DIAMETER", "20.0",
                                        "TEST.NUCLEI.AUTO_DIAMETER_RANGE", "(10.0, 30.0)"], device="cpu")
    calls = []
    predictor = NucleiPredictor(cfg, model=SquareDetector(), diameter="auto")
    predictor.predict_instances_batch = lambda rgb8s, scale=None, batch_size=1: (
        calls.append((len(rgb8s), scale)) or [NucleiPredictor.predict_instances_batch(predictor, [x], scale)[0]
                                              for x in rgb8s])
    first, second = predictor.predict_batch([small, large], batch_size=2)
    assert calls[0] == (2, None)  # both first passes in one call
    assert calls[1] == (1, pytest.approx(30 / math.sqrt(6400 / math.pi)))  # the large image, to the range's top
    assert first.info["diameter_source"] == "auto: first pass kept" and first.info["scale"] == 1.0
    assert second.info["diameter_source"] == "auto" and second.info["scale"] == pytest.approx(30 / math.sqrt(6400 / math.pi))
    assert len(calls) == 2 and first.num_instances == 5 and second.num_instances == 2


class LargeSquareDetector(SquareDetector):
    """Finds only squares of at least 12 px in the model input, as a model misses nuclei shrunk too far."""

    def inference(self, batched_inputs, do_postprocess=True):
        result = super().inference(batched_inputs, do_postprocess)[0]
        sides = result.pred_boxes.tensor[:, 2] - result.pred_boxes.tensor[:, 0]
        return [result[sides >= 12]]


def test_auto_looks_again_at_larger_factors_when_the_shrunk_field_shows_no_nucleus(caplog):
    from maskrcnnpp.config import setup_cfg

    image = np.where(squares((400, 400), [(40, 40), (200, 120), (300, 300)], 20) > 0, 255, 0).astype(np.uint8)
    cfg = setup_cfg("maskrcnnpp_tiny", ["INPUT.MIN_SIZE_TEST", "100", "INPUT.MAX_SIZE_TEST", "1000",
                                        "TEST.NUCLEI.NOMINAL_DIAMETER", "20.0",
                                        "TEST.NUCLEI.AUTO_DIAMETER_RANGE", "(10.0, 30.0)"], device="cpu")
    model = LargeSquareDetector()
    pred = NucleiPredictor(cfg, model=model, diameter="auto").predict(image)
    # x0.25: 5 px squares, missed; x0.5: 10 px, missed; x1: 20 px (22.6 px equivalent), found and inside the range
    assert model.seen == [(100, 100), (200, 200), (400, 400)]
    assert pred.info["diameter_source"] == "auto: found at x1" and pred.info["scale"] == 1.0
    assert pred.num_instances == 3 and pred.info["diameter"] == pytest.approx(math.sqrt(1600 / math.pi))

    blank = LargeSquareDetector()
    with caplog.at_level(logging.WARNING, logger="maskrcnnpp.inference.predictor"):
        pred = NucleiPredictor(cfg, model=blank, diameter="auto").predict(np.zeros((400, 400), np.uint8))
    assert blank.seen == [(100, 100), (200, 200), (400, 400)] and pred.num_instances == 0  # never beyond x1
    assert pred.info["diameter_source"] == "auto: no nucleus found, x1 kept"
    assert "at the default resize (x0.25) nor at larger factors up to x1" in caplog.text


def test_predict_can_override_the_predictors_diameter():
    predictor = stub_predictor(nominal=20.0)
    predictor.predict(np.zeros((120, 160), np.uint8), diameter=40)
    predictor.predict(np.zeros((120, 160), np.uint8))
    assert predictor.model.seen == [(60, 80), (120, 160)]


def test_a_diameter_needs_the_models_nominal_diameter():
    with pytest.raises(UserError, match=r"TEST.NUCLEI.NOMINAL_DIAMETER is 0"):
        stub_predictor(nominal=0.0, diameter=12)
    with pytest.raises(UserError, match="nucleus diameter must be a positive number"):
        stub_predictor(nominal=20.0, diameter=-2)
    assert stub_predictor(nominal=0.0).diameter is None  # no diameter: nothing needed
