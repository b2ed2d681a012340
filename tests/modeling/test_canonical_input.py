"""MODEL.CANONICAL_INPUT: grey, bright backgrounds inverted, percentiles stretched; hand-worked images."""
from __future__ import annotations

import pytest
import torch

from maskrcnnpp.config import get_maskrcnnpp_cfg
from maskrcnnpp.modeling.canonical_input import CanonicalInput, canonical_input_from_config


def fluorescence() -> torch.Tensor:
    """3 x 10 x 10 grey: background 10, a 3 x 3 nucleus of 110 (9 % of the pixels)."""
    image = torch.full((3, 10, 10), 10.0)
    image[:, 2:5, 2:5] = 110.0
    return image


def test_off_is_the_identity():
    image = fluorescence()
    assert not CanonicalInput().active
    assert torch.equal(CanonicalInput()(image.to(torch.uint8)), image)


def test_grey_is_the_channel_mean_in_every_channel():
    image = torch.stack([torch.full((4, 4), 30.0), torch.full((4, 4), 60.0), torch.full((4, 4), 120.0)])
    out = CanonicalInput(grey=True)(image)
    assert torch.equal(out, torch.full((3, 4, 4), 70.0))


def test_bright_background_is_inverted_and_a_dark_one_is_not():
    dark = fluorescence()
    assert torch.equal(CanonicalInput(invert_bright=True)(dark), dark)
    bright = 255.0 - dark  # dark nucleus (145) on a bright background (245)
    assert torch.equal(CanonicalInput(invert_bright=True)(bright), dark)


def test_percentiles_map_to_0_and_255():
    ramp = torch.arange(100, dtype=torch.float32).reshape(1, 10, 10).expand(3, 10, 10)
    out = CanonicalInput(percentiles=(0.0, 100.0))(ramp)
    assert out[0, 0, 0] == 0 and out[0, 9, 9] == 255
    assert out[0, 5, 0] == pytest.approx(50 * 255 / 99)
    clipped = CanonicalInput(percentiles=(10.0, 90.0))(ramp)  # torch.quantile interpolates: 9.9 and 89.1
    assert clipped[0, 0, 0] == 0 and clipped[0, 9, 9] == 255
    assert clipped[0, 5, 0] == pytest.approx((50 - 9.9) * 255 / (89.1 - 9.9), rel=1e-5)


def test_he_like_and_fluorescence_images_end_alike():
    """A colour H&E-like image (purple nucleus on pink and white) and a fluorescence image with the same
    nucleus come out with a bright nucleus on a dark background, both stretched to 0..255."""
    canon = CanonicalInput(grey=True, invert_bright=True, percentiles=(1.0, 99.0))
    he = torch.empty(3, 10, 10)
    he[0], he[1], he[2] = 235.0, 200.0, 225.0
    he[:, 2:5, 2:5] = torch.tensor([90.0, 60.0, 150.0])[:, None, None]
    for image in (he, fluorescence()):
        out = canon(image)
        assert out[0, 3, 3] == 255 and out[0, 8, 8] == 0
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_config_keys_and_errors():
    cfg = get_maskrcnnpp_cfg()
    assert canonical_input_from_config(cfg) == CanonicalInput()
    cfg.MODEL.CANONICAL_INPUT.GREY = True
    cfg.MODEL.CANONICAL_INPUT.INVERT_BRIGHT = True
    cfg.MODEL.CANONICAL_INPUT.PERCENTILES = [1.0, 99.8]
    assert canonical_input_from_config(cfg) == CanonicalInput(True, True, (1.0, 99.8))
    for bad in ([99.0, 1.0], [1.0], [-1.0, 50.0], ["a", 2.0]):
        cfg.MODEL.CANONICAL_INPUT.PERCENTILES = bad
        with pytest.raises(ValueError, match=r"MODEL\.CANONICAL_INPUT\.PERCENTILES"):
            canonical_input_from_config(cfg)


def test_the_model_applies_it_before_pixel_normalisation():
    from detectron2.modeling import build_model

    cfg = get_maskrcnnpp_cfg()
    cfg.merge_from_file("configs/maskrcnnpp_tiny.yaml")
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.CANONICAL_INPUT.INVERT_BRIGHT = True
    model = build_model(cfg).eval()
    bright = (255.0 - fluorescence()).to(torch.uint8)
    images = model.preprocess_image([{"image": bright}])
    mean, std = model.pixel_mean, model.pixel_std
    expected = (fluorescence() - mean) / std
    assert torch.allclose(images.tensor[0, :, :10, :10], expected, atol=1e-5)
