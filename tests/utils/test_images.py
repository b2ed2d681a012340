"""maskrcnnpp.utils.images: any image array -> 8-bit RGB, the one conversion of dataset preparation and prediction."""
from __future__ import annotations

import numpy as np
import pytest

from maskrcnnpp.utils.images import (
    ImageLayoutError,
    decode_with_opencv,
    intensity_image,
    intensity_range,
    png_ihdr,
    to_rgb8,
    to_uint8_rgb,
)


def test_uint8_rgb_is_used_as_is_and_grey_is_repeated():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(to_uint8_rgb(rgb), rgb)
    grey = rgb[:, :, 0]
    out = to_uint8_rgb(grey)
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[:, :, c], grey) for c in range(3))
    assert np.array_equal(to_uint8_rgb(grey[:, :, None]), out)


def test_rgba_drops_alpha():
    rgba = np.random.default_rng(1).integers(0, 256, (4, 6, 4), dtype=np.uint8)
    assert np.array_equal(to_uint8_rgb(rgba), rgba[:, :, :3])
    rgba16 = rgba.astype(np.uint16) * 257
    assert np.array_equal(to_uint8_rgb(rgba16, "none"), rgba[:, :, :3])


def test_16bit_minmax_and_none_rescale_values():
    img = np.array([[1000, 2000], [3000, 1500]], dtype=np.uint16)
    # minmax: 1000 -> 0, 3000 -> 255, 2000 -> 127.5 -> 128 (round half to even gives 128)
    assert to_uint8_rgb(img, "minmax")[:, :, 0].tolist() == [[0, 128], [255, 64]]
    # none: v * 255 / 65535
    assert to_uint8_rgb(img, "none")[:, :, 0].tolist() == [[4, 8], [12, 6]]


def test_16bit_percentile_rescale_ignores_hot_pixels():
    img = np.tile(np.arange(1000, 2000, dtype=np.uint16), (10, 1))  # 10,000 pixels 1000..1999
    img[0, 0] = 65535  # one hot pixel
    lo, hi = intensity_range(img, "percentile")
    assert lo == pytest.approx(np.percentile(img, 0.1)) and hi == pytest.approx(np.percentile(img, 99.9))
    assert hi < 2000  # the hot pixel does not set the white point
    out = to_uint8_rgb(img, "percentile")[:, :, 0]
    assert out[0, 0] == 255 and out[5, 0] == 0 and out[5, -1] == 255
    assert out[5, 500] == pytest.approx(round((1500 - lo) * 255 / (hi - lo)), abs=1)


def test_constant_and_float_images():
    assert not to_uint8_rgb(np.full((3, 3), 7, np.uint16), "percentile").any()
    assert (to_uint8_rgb(np.full((3, 3), 7, np.uint16)) == 255).all()  # "max": 7 x 255/7
    assert not to_uint8_rgb(np.zeros((3, 3), np.uint16)).any()
    f = np.array([[0.0, 0.5], [1.0, np.nan]])
    assert to_uint8_rgb(f, "none")[:, :, 0].tolist() == [[0, 128], [255, 0]]


def test_the_converters_call_gives_the_pixels_of_prediction():
    # prepare_dsb2018 converts training images with to_rgb8(arr, "max", grey_alpha=True); a model
    # trained on them must see the same 8-bit pixels when tools/predict.py reads the same file.
    rng = np.random.default_rng(3)
    grey12 = rng.integers(0, 4000, (6, 7)).astype(np.uint16)  # 12-bit data in a 16-bit file
    rgb16 = rng.integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    floats = rng.random((6, 7)).astype(np.float32) * 3.5
    for arr in (grey12, rgb16, floats):
        trained_on = to_rgb8(arr, "max", grey_alpha=True)
        assert np.array_equal(to_uint8_rgb(arr), trained_on.rgb), arr.dtype
        assert trained_on.value_range == (0.0, float(arr.max())) and trained_on.alpha is None
    assert to_uint8_rgb(np.array([[0, 2000], [4000, 1000]], np.uint16))[:, :, 0].tolist() == [[0, 128], [255, 64]]


def test_to_rgb8_says_what_it_did():
    rgba = np.random.default_rng(5).integers(0, 256, (4, 5, 4), dtype=np.uint8)
    done = to_rgb8(rgba)
    assert np.array_equal(done.rgb, rgba[:, :, :3]) and done.rgb.flags.c_contiguous
    assert np.array_equal(done.alpha, rgba[:, :, 3]) and not done.grey and done.value_range is None
    grey_alpha = np.stack([np.full((3, 3), 1000, np.uint16), np.full((3, 3), 65535, np.uint16)], axis=2)
    done = to_rgb8(grey_alpha, grey_alpha=True)
    assert done.grey and (done.rgb == 255).all() and done.value_range == (0.0, 1000.0)
    assert (done.alpha == 65535).all()
    with pytest.raises(ImageLayoutError, match="unsupported image layout"):
        to_rgb8(grey_alpha)  # [H, W, 2] is grey+alpha only where the caller says so


def test_png_header_and_opencv_decoding(tmp_path):
    import cv2
    from PIL import Image

    rgb16 = np.random.default_rng(6).integers(0, 65536, (5, 4, 3)).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", rgb16[:, :, ::-1])
    data = encoded.tobytes()
    assert png_ihdr(data[:26]) == (16, 2)  # 16-bit RGB
    decoded = decode_with_opencv(data)
    assert decoded.dtype == np.uint16 and np.array_equal(decoded, rgb16)  # RGB order, all 16 bits
    Image.fromarray(np.zeros((2, 3, 4), np.uint8)).save(tmp_path / "rgba.png")
    assert png_ihdr((tmp_path / "rgba.png").read_bytes()) == (8, 6)
    assert png_ihdr(b"GIF89a" + bytes(20)) is None
    assert decode_with_opencv(b"") is None and decode_with_opencv(b"not an image") is None


def test_bad_layouts_are_rejected():
    with pytest.raises(ValueError, match="unsupported image layout"):
        to_uint8_rgb(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="unsupported image layout"):
        to_uint8_rgb(np.zeros((3, 4, 4, 3), np.uint8))


def test_intensity_image_is_in_original_units():
    rgb = np.zeros((2, 2, 4), np.uint16)
    rgb[..., 0], rgb[..., 1], rgb[..., 2], rgb[..., 3] = 3000, 6000, 9000, 65535
    assert np.allclose(intensity_image(rgb), 6000.0)  # mean of R, G, B; alpha ignored
