"""maskrcnnpp.experiment.runs: the pretrained backbone file handed to the main training."""
from __future__ import annotations

import errno
import os
from types import SimpleNamespace

import pytest
import torch

from maskrcnnpp.experiment import runs


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.backbone = torch.nn.Conv2d(1, 2, 3)
        self.head = torch.nn.Linear(2, 1)


@pytest.fixture
def trained(monkeypatch):
    model = Tiny()
    monkeypatch.setattr(runs, "train_resuming", lambda cfg: (SimpleNamespace(model=model), 0, 0.0))
    return model


def test_the_backbone_file_holds_only_the_backbone_and_its_bytes_do_not_depend_on_the_temp_name(tmp_path, trained):
    cfg = SimpleNamespace(MODEL=SimpleNamespace(META_ARCHITECTURE="Tiny"))
    first = runs.pretrain_backbone(cfg, 3, str(tmp_path / "a"))
    second = runs.pretrain_backbone(cfg, 3, str(tmp_path / "b"))
    assert first == os.path.join(tmp_path, "a", "backbone.pth")
    saved = torch.load(first, map_location="cpu")
    assert saved["__source__"] == "synthetic pretraining, 3 iterations"
    assert sorted(saved["model"]) == ["backbone.bias", "backbone.weight"]
    assert torch.equal(saved["model"]["backbone.weight"], trained.backbone.weight)
    with open(first, "rb") as f, open(second, "rb") as g:
        assert f.read() == g.read()
    assert sorted(os.listdir(tmp_path / "a")) == ["backbone.pth"]


def test_a_full_disk_is_the_oserror_naming_the_file_and_leaves_nothing(tmp_path, trained, monkeypatch):
    def full(obj, f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(runs.torch, "save", full)
    cfg = SimpleNamespace(MODEL=SimpleNamespace(META_ARCHITECTURE="Tiny"))
    with pytest.raises(OSError) as err:
        runs.pretrain_backbone(cfg, 3, str(tmp_path / "pre"))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "pre" / "backbone.pth")
    assert os.listdir(tmp_path / "pre") == []
