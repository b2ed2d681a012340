"""Overlap-tile inference: exact coverage, mirrored borders, and its use inside SemanticUNet."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from detectron2.modeling import build_model

from maskrcnnpp.modeling.semantic import overlap_tile_predict
from maskrcnnpp.modeling.semantic.tiling import mirror_pad
from semantic_testutils import make_cfg


@pytest.mark.parametrize("hw,tile,margin", [((70, 45), 32, 8), ((64, 64), 32, 0), ((5, 90), 24, 4)])
def test_every_pixel_comes_from_exactly_one_tile(hw, tile, margin):
    image = torch.rand(2, *hw)
    calls = []

    def identity(tiles):
        calls.append(tiles.shape)
        assert tiles.shape[-2:] == (tile, tile)
        return tiles

    out = overlap_tile_predict(image, identity, tile, margin, batch_size=3)
    torch.testing.assert_close(out, image, rtol=0, atol=0)
    core = tile - 2 * margin
    assert sum(s[0] for s in calls) == -(-hw[0] // core) * -(-hw[1] // core)


def test_borders_are_mirrored_and_context_is_used():
    # A 3x3 mean with zero padding inside each tile: with a >= 1 px margin no output pixel sees a
    # tile's zero padding, so the stitched result equals the whole-image filter with mirrored borders.
    image = torch.rand(1, 37, 53, dtype=torch.float64)
    kernel = torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64)
    out = overlap_tile_predict(image, lambda t: F.conv2d(t, kernel, padding=1), tile_size=16, margin=2)
    expected = ndi.uniform_filter(image[0].numpy(), size=3, mode="mirror")
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-12)


def test_mirror_pad_handles_pads_larger_than_the_image():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    ours = mirror_pad(x, 7, 5, 9, 2)[0, 0].numpy()
    np.testing.assert_array_equal(ours, np.pad(x[0, 0].numpy(), ((7, 5), (9, 2)), mode="reflect"))


def test_margin_must_leave_a_core():
    with pytest.raises(ValueError, match="TILE_OVERLAP"):
        overlap_tile_predict(torch.zeros(1, 8, 8), lambda t: t, tile_size=16, margin=8)


def test_model_tiles_images_larger_than_tile_size():
    torch.manual_seed(0)
    cfg = make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__TILE_SIZE=64, MODEL__SEMANTIC_UNET__TILE_OVERLAP=16)
    model = build_model(cfg).eval()
    seen = []
    original = model.predict_probabilities

    def spy(x, mode=None):
        seen.append(tuple(x.shape))
        return original(x, mode)

    model.predict_probabilities = spy
    image = torch.randint(0, 256, (3, 70, 100), dtype=torch.uint8)
    (out,) = model([{"image": image, "height": 70, "width": 100}])
    assert out["sem_seg"].shape == (1, 70, 100)
    # 32 px cores: 3 x 4 tiles of 64 px, fed 4 at a time.
    assert seen == [(4, 3, 64, 64)] * 3
    # An image that fits one tile is predicted whole.
    seen.clear()
    model([{"image": image[:, :64, :50]}])
    assert seen == [(1, 3, 64, 50)]
