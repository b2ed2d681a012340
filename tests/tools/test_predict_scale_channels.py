"""tools/predict.py --diameter / --channel / --cyto-channel: what they do, and one error line + exit 2 for each mistake."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from tool_helpers import FAST_OPTS, REPO, disk_labels, nuclei_image, save_tiny_weights

sys.path.insert(0, str(REPO / "tools"))
import predict  # noqa: E402


@pytest.fixture(scope="module")
def two_channel_tif(tmp_path_factory):
    import tifffile

    labels = disk_labels((64, 80), [(20, 20, 7), (40, 55, 8)])
    nuclear = nuclei_image(labels).astype(np.uint16) * 100
    cyto = np.full((64, 80), 3000, np.uint16)
    path = tmp_path_factory.mktemp("tif") / "cells.tif"
    tifffile.imwrite(path, np.stack([cyto, nuclear]), imagej=True, metadata={"axes": "CYX"})
    return str(path)


def run_error(capsys, args):
    with pytest.raises(SystemExit) as exc:
        predict.main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("value", ["0", "-4", "nan", "inf", "large"])
def test_bad_diameters_exit_2(capsys, tmp_path, two_channel_tif, value):
    line = run_error(capsys, ["--input", two_channel_tif, "--output", str(tmp_path / "o"), "--diameter", value])
    assert line == f"error: --diameter must be a positive number of pixels, 'auto' or 'none', got {value!r}"
    assert not (tmp_path / "o").exists()


def test_a_two_channel_image_without_channel_says_how_to_choose(capsys, tmp_path, two_channel_tif):
    line = run_error(capsys, ["--input", two_channel_tif, "--output", str(tmp_path / "o")])
    assert "cells.tif: 2 channels (TIFF axes CYX, channels along C), not a grey, RGB or RGBA image: choose the " \
           "nuclear channel (1..2) and optionally a cytoplasm channel with --channel K (and optionally --cyto-channel K)" in line
    assert "unsupported image layout" not in line


@pytest.mark.parametrize("args, message", [
    (["--channel", "3"], "cells.tif: nuclear channel 3 asked for, but the image has 2 channels (TIFF axes CYX); "
                         "channels are numbered 1..2"),
    (["--channel", "0"], "--channel 0: nuclear channel must be a channel number from 1 (as in Fiji), got 0"),
    (["--channel", "2", "--cyto-channel", "2"], "the nuclear and cytoplasm channels must differ, both are 2"),
    (["--cyto-channel", "1"], "error: --cyto-channel needs --channel (the nuclear channel)"),
])
def test_bad_channels_exit_2(capsys, tmp_path, two_channel_tif, args, message):
    assert message in run_error(capsys, ["--input", two_channel_tif, "--output", str(tmp_path / "o"), *args])
    assert not (tmp_path / "o").exists()


def test_own_model_without_a_nominal_diameter_refuses_a_diameter(capsys, tmp_path, two_channel_tif):
    weights = save_tiny_weights(tmp_path / "w")
    line = run_error(capsys, ["--input", two_channel_tif, "--output", str(tmp_path / "o"), "--channel", "2",
                              "--config", "maskrcnnpp_tiny", "--weights", weights, "--device", "cpu", "--diameter", "9"])
    assert "TEST.NUCLEI.NOMINAL_DIAMETER is 0" in line


def test_channel_and_diameter_predict_at_the_original_size(capsys, tmp_path, two_channel_tif):
    from PIL import Image

    weights = save_tiny_weights(tmp_path / "w")
    out = tmp_path / "out"
    counts = predict.main(["--input", two_channel_tif, "--output", str(out), "--channel", "2", "--cyto-channel", "1",
                           "--config", "maskrcnnpp_tiny", "--weights", weights, "--device", "cpu", "--diameter", "10",
                           "--score-thresh", "0.3", "--formats", "label_png", *FAST_OPTS,
                           "TEST.NUCLEI.NOMINAL_DIAMETER", "20.0", "INPUT.MAX_SIZE_TEST", "1000"])
    assert list(counts) == ["cells"]
    printed = capsys.readouterr().out
    assert "cells.tif: 64x80 RGB uint16 -> " in printed and "diameter 10.0 px (given), model input x2" in printed
    assert np.asarray(Image.open(out / "cells_labels.png")).shape == (64, 80)
