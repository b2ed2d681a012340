"""Every YAML in configs/ loads through add_maskrcnnpp_config and carries the nuclei settings."""
from __future__ import annotations

from pathlib import Path

import pytest

from maskrcnnpp import get_maskrcnnpp_cfg, resolve_config_path
from maskrcnnpp.config import CONFIGS_DIR

LEAVES = sorted(p.name for p in CONFIGS_DIR.glob("*.yaml") if not p.name.startswith("Base"))
RCNN = [n for n in LEAVES if n.startswith("maskrcnn")]


def load(name: str):
    cfg = get_maskrcnnpp_cfg()
    cfg.merge_from_file(resolve_config_path(name))
    return cfg


def test_bare_names_resolve_against_configs_dir():
    assert resolve_config_path("maskrcnnpp_r101.yaml") == str(CONFIGS_DIR / "maskrcnnpp_r101.yaml")
    assert resolve_config_path("maskrcnnpp_r101") == str(CONFIGS_DIR / "maskrcnnpp_r101.yaml")
    with pytest.raises(FileNotFoundError, match="maskrcnn_r101.yaml"):
        resolve_config_path("no_such_config")


def test_configs_prefix_resolves_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # "configs/x.yaml" as typed in the README, from another folder
    assert resolve_config_path("configs/maskrcnnpp_tiny.yaml") == str(CONFIGS_DIR / "maskrcnnpp_tiny.yaml")
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text('_BASE_: "x"\n')
    assert resolve_config_path("configs/mine.yaml") == "configs/mine.yaml"  # a file that exists is taken as is
    for wrong in ("elsewhere/maskrcnnpp_tiny.yaml", str(tmp_path / "proj" / "configs" / "maskrcnnpp_tiny.yaml")):
        with pytest.raises(FileNotFoundError):  # a mistyped path is not silently our config
            resolve_config_path(wrong)


@pytest.mark.parametrize("name", LEAVES)
def test_config_loads(name):
    cfg = load(name)
    assert cfg.OUTPUT_DIR.startswith("output/"), "each leaf writes to its own output folder"


@pytest.mark.parametrize("name", LEAVES)
def test_every_config_builds_its_model(name):
    from detectron2.modeling import build_model

    cfg = load(name)
    cfg.MODEL.DEVICE = "cpu"
    model = build_model(cfg)
    assert type(model).__name__ == cfg.MODEL.META_ARCHITECTURE
    assert sum(p.numel() for p in model.parameters()) > 1_000_000


@pytest.mark.parametrize("name", RCNN)
def test_rcnn_configs_are_tuned_for_nuclei(name):
    cfg = load(name)
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 1
    assert cfg.INPUT.MASK_FORMAT == "bitmask"
    # Up to 375 nuclei in one stage1_train image: every cap must exceed it.
    assert cfg.TEST.DETECTIONS_PER_IMAGE >= 500 and cfg.TEST.NUCLEI.MAX_DETS >= cfg.TEST.DETECTIONS_PER_IMAGE
    assert cfg.MODEL.RPN.POST_NMS_TOPK_TEST >= cfg.TEST.DETECTIONS_PER_IMAGE
    assert min(s[0] for s in cfg.MODEL.ANCHOR_GENERATOR.SIZES) <= 12
    if "maskrcnnpp" in name:
        assert cfg.MODEL.BACKBONE.NAME == "build_resnet_unetpp_fpn_backbone"
        assert cfg.MODEL.META_ARCHITECTURE == "MaskRCNNPlusPlus"
    else:
        assert cfg.MODEL.BACKBONE.NAME == "build_resnet_fpn_backbone"
        assert cfg.MODEL.META_ARCHITECTURE == "NucleiRCNN"
    if "scratch" in name or "tiny" in name:
        assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.RESNETS.NORM == "GN" and cfg.MODEL.BACKBONE.FREEZE_AT == 0
        assert cfg.MODEL.FPN.NORM == cfg.MODEL.UNETPP_FPN.NORM == "GN"
    else:
        assert cfg.MODEL.WEIGHTS.endswith("R-101.pkl") and cfg.MODEL.RESNETS.DEPTH == 101


def test_baseline_and_plusplus_differ_only_in_the_pyramid():
    a, b = load("maskrcnn_r101.yaml"), load("maskrcnnpp_r101.yaml")
    for key in ("MODEL.BACKBONE.NAME", "MODEL.META_ARCHITECTURE", "OUTPUT_DIR"):
        node_a, node_b = a, b
        *parents, leaf = key.split(".")
        for p in parents:
            node_a, node_b = getattr(node_a, p), getattr(node_b, p)
        setattr(node_b, leaf, getattr(node_a, leaf))
    assert a.dump() == b.dump()


def test_device_auto_is_the_default_and_resolves_silently(monkeypatch, caplog):
    import torch

    from maskrcnnpp.config import resolve_device, setup_cfg

    assert get_maskrcnnpp_cfg().MODEL.DEVICE == "auto"
    for gpu, device in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
        assert resolve_device("auto") == device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING"):
        assert setup_cfg("nuclei_maskrcnnpp_r18").MODEL.DEVICE == "cpu"
        assert setup_cfg("maskrcnnpp_tiny", device="cpu").MODEL.DEVICE == "cpu"
    assert caplog.records == []


def test_cuda_asked_for_without_a_gpu_warns_or_is_an_error(monkeypatch, caplog):
    import torch

    from maskrcnnpp.config import setup_cfg
    from maskrcnnpp.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("WARNING"):  # MODEL.DEVICE cuda on the command line or in a config: the CPU, said once
        assert setup_cfg("maskrcnnpp_tiny", ["MODEL.DEVICE", "cuda"]).MODEL.DEVICE == "cpu"
    assert [r.getMessage() for r in caplog.records] == [
        "maskrcnnpp_tiny: MODEL.DEVICE cuda but no GPU is available: running on the CPU"]
    with pytest.raises(UserError, match=r"^device 'cuda' \(MODEL.DEVICE\) was asked for but torch.cuda.is_available\(\) "
                                        r"is False on this machine$"):
        setup_cfg("maskrcnnpp_tiny", device="cuda")  # --device cuda
