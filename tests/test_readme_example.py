"""The README's Python example (section "Segment your images in one command") runs as written.

It runs against a temporary zoo holding a randomly initialised tiny model, on a synthetic
``cells.tif``: what is checked is that the documented calls work and return what the text says.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from maskrcnnpp import model_zoo

from tool_helpers import disk_labels, nuclei_image, save_tiny_weights

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text.split("## Segment your images in one command", 1)
    if len(section) < 2:
        pytest.skip("the README has no 'Segment your images in one command' section (no model shipped yet)")
    block = re.search(r"```python\n(.*?)```", section[1], re.S)
    assert block, "the section has no Python example"
    return block.group(1)


def test_the_python_example_segments_an_image(tmp_path, monkeypatch, capsys):
    import tifffile

    code = readme_example()
    monkeypatch.setattr(model_zoo, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(model_zoo, "ZOO_FILE", tmp_path / "zoo.json")
    sha = model_zoo.export_fp16_weights(save_tiny_weights(tmp_path / "ckpt"), str(tmp_path / "tiny.pth"))
    model_zoo.register(model_zoo.ZooModel("tiny", "maskrcnnpp_tiny", "tiny.pth", sha, "random weights", {}))
    monkeypatch.chdir(tmp_path)
    tifffile.imwrite("cells.tif", nuclei_image(disk_labels((64, 64), [(20, 20, 8), (44, 40, 9)])))
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    labels, table = scope["labels"], scope["table"]
    assert labels.shape == (64, 64)
    assert table["id"].tolist() == list(range(1, int(labels.max()) + 1))
    assert capsys.readouterr().out.startswith(f"{labels.max()} nuclei; mean area")
