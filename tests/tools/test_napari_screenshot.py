"""tools/napari_screenshot.py: an --image that cannot be read is one error line, before napari opens."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from tiny_tool_helpers import load_tool


def test_an_unreadable_image_is_one_exact_line_and_writes_nothing(tmp_path, capsys):
    tool = load_tool("napari_screenshot")
    stack = tmp_path / "z.tif"
    tifffile.imwrite(stack, np.zeros((3, 16, 16), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    for image, line in [
        (tmp_path / "missing.png", f"error: image {tmp_path / 'missing.png'} does not exist\n"),
        (stack, f"error: image {stack}: a stack of 3 planes (TIFF axes ZYX); multi-page stacks are not supported: "
                "save one plane per file\n"),
    ]:
        with pytest.raises(SystemExit) as exc:
            tool.main(["--image", str(image), "--out", str(tmp_path / "shots" / "shot.png")])
        assert exc.value.code == 2
        assert capsys.readouterr().err == line
    assert not (tmp_path / "shots").exists()
