"""maskrcnnpp.inference.image_io: the nuclear (and cytoplasm) channel of multi-channel TIFFs, by their axis names."""
from __future__ import annotations

import numpy as np
import pytest

from maskrcnnpp.inference.image_io import ChannelChoice, ChannelChoiceNeeded, ImageReadError, read_image

H, W = 12, 16


def planes(count: int) -> np.ndarray:
    """``count`` distinct uint16 planes [count, H, W]: plane c holds 1000 * (c + 1) + pixel index."""
    return np.stack([1000 * (c + 1) + np.arange(H * W, dtype=np.uint16).reshape(H, W) for c in range(count)])


def write(path, array, **kwargs) -> str:
    import tifffile

    tifffile.imwrite(path, array, **kwargs)
    return str(path)


@pytest.fixture
def layouts(tmp_path):
    """Files of several layouts whose channel c (from 0) is planes(...)[c]; with their tifffile axes."""
    p2, p3 = planes(2), planes(3)
    return {
        "CYX": write(tmp_path / "ij_cyx.tif", p2, imagej=True, metadata={"axes": "CYX"}),
        "ZCYX, Z=1": write(tmp_path / "ij_zcyx.tif", p2[None], imagej=True, metadata={"axes": "ZCYX"}),
        "OME CYX": write(tmp_path / "ome.ome.tif", p3, ome=True, metadata={"axes": "CYX"}),
        "YXS": write(tmp_path / "rgb.tif", np.moveaxis(p3, 0, 2), photometric="rgb"),
        "QYX": write(tmp_path / "plain.tif", p2, photometric="minisblack"),
    }


@pytest.mark.parametrize("layout, count", [("CYX", 2), ("ZCYX, Z=1", 2), ("OME CYX", 3), ("YXS", 3), ("QYX", 2)])
def test_each_channel_is_found_by_the_files_axis_names(layouts, layout, count):
    p = planes(count)
    for k in range(1, count + 1):  # numbered from 1, as Fiji numbers channels
        got = read_image(layouts[layout], channels=ChannelChoice(k))
        assert got.shape == (H, W) and got.dtype == np.uint16 and np.array_equal(got, p[k - 1]), (layout, k)
    with pytest.raises(ImageReadError, match=rf"nuclear channel {count + 1} asked for, but the image has {count} "
                                             rf"channels \(TIFF axes \w+\); channels are numbered 1..{count}"):
        read_image(layouts[layout], channels=ChannelChoice(count + 1))


def test_the_cytoplasm_channel_goes_green_and_the_nuclei_blue(layouts):
    p = planes(3)
    got = read_image(layouts["OME CYX"], channels=ChannelChoice(3, cyto=1))
    assert got.shape == (H, W, 3) and got.dtype == np.uint16
    assert not got[:, :, 0].any() and np.array_equal(got[:, :, 1], p[0]) and np.array_equal(got[:, :, 2], p[2])
    assert np.array_equal(ChannelChoice(3, cyto=1).nuclear_plane(got), p[2])
    with pytest.raises(ImageReadError, match="cytoplasm channel 4 asked for, but the image has 3 channels"):
        read_image(layouts["OME CYX"], channels=ChannelChoice(1, cyto=4))


def test_without_a_channel_a_two_channel_image_asks_for_one_naming_its_axes(layouts):
    for layout in ("CYX", "ZCYX, Z=1"):
        with pytest.raises(ChannelChoiceNeeded, match=r"2 channels \(TIFF axes CYX, channels along C\), not a grey, "
                                                      r"RGB or RGBA image: choose the nuclear channel \(1..2\)"):
            read_image(layouts[layout])
    # colour files without a choice read as before
    assert read_image(layouts["YXS"]).shape == (H, W, 3)


def test_z_and_t_stacks_are_refused_with_or_without_a_channel(tmp_path):
    zc = write(tmp_path / "zc.tif", np.stack([planes(2)] * 3), imagej=True, metadata={"axes": "ZCYX"})
    t = write(tmp_path / "t.tif", planes(5), imagej=True, metadata={"axes": "TYX"})
    for choice in (None, ChannelChoice(1)):
        with pytest.raises(ImageReadError, match=r"zc.tif: a stack of 3 planes \(TIFF axes ZCYX\); multi-page stacks"):
            read_image(zc, channels=choice)
        with pytest.raises(ImageReadError, match=r"t.tif: a stack of 5 planes \(TIFF axes TYX\)"):
            read_image(t, channels=choice)


def test_grey_and_png_colour_images_have_their_channels_too(tmp_path):
    from PIL import Image

    grey = write(tmp_path / "grey.tif", planes(1)[0])
    assert np.array_equal(read_image(grey, channels=ChannelChoice(1)), planes(1)[0])
    with pytest.raises(ImageReadError, match=r"nuclear channel 2 asked for, but the image has 1 channel \(TIFF axes YX\)"):
        read_image(grey, channels=ChannelChoice(2))
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(read_image(str(tmp_path / "rgb.png"), channels=ChannelChoice(3)), rgb[:, :, 2])  # blue


@pytest.mark.parametrize("args, message", [((0,), "nuclear channel must be a channel number from 1"),
                                           ((1, 0), "cytoplasm channel must be a channel number from 1"),
                                           ((2, 2), "the nuclear and cytoplasm channels must differ, both are 2")])
def test_bad_channel_choices(args, message):
    with pytest.raises(ValueError, match=message):
        ChannelChoice(*args)
