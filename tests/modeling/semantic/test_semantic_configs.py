"""The semantic configs: decoders, encoders, datasets and norms as their names say; R-101 builds."""
from __future__ import annotations

import pytest
import torch

from detectron2.modeling import build_model

from maskrcnnpp.config import CONFIGS_DIR
from semantic_testutils import make_cfg

SEMANTIC = sorted(p.name for p in CONFIGS_DIR.glob("unet*.yaml"))


def test_every_decoder_has_r101_scratch_and_tiny_configs():
    decoders, variants = ("unet", "unetplus", "unetpp", "unet3p"), ("r101", "r101_scratch", "tiny")
    assert SEMANTIC == sorted(f"{d}_{v}.yaml" for d in decoders for v in variants)


@pytest.mark.parametrize("name", SEMANTIC)
def test_config_matches_its_name(name):
    cfg = make_cfg(name)
    sc = cfg.MODEL.SEMANTIC_UNET
    assert cfg.MODEL.META_ARCHITECTURE == "SemanticUNet"
    assert sc.DECODER == name.split("_")[0]
    assert cfg.OUTPUT_DIR == f"output/{name[:-5]}"
    assert sc.DEEP_SUPERVISION == (sc.DECODER != "unet")
    assert sc.LOSS == ("unet3p_hybrid" if sc.DECODER == "unet3p" else "bce_dice")
    assert cfg.MODEL.RESNETS.OUT_FEATURES == ["stem", "res2", "res3", "res4", "res5"]
    if name.endswith("_tiny.yaml"):
        assert cfg.MODEL.RESNETS.DEPTH == 18 and sc.TRAIN_CROP == 64
        assert cfg.DATASETS.TRAIN == ("nuclei_synth_train",) and cfg.DATASETS.TEST == ("nuclei_synth_test",)
    else:
        assert cfg.MODEL.RESNETS.DEPTH == 101 and sc.TRAIN_CROP == 96
        assert cfg.DATASETS.TRAIN == ("dsb2018_train",) and cfg.DATASETS.VAL == ("dsb2018_val",)
    if "scratch" in name or "tiny" in name:
        assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.RESNETS.NORM == sc.NORM == "GN"
    else:
        assert cfg.MODEL.WEIGHTS.endswith("R-101.pkl") and sc.NORM == "BN"


@pytest.mark.parametrize("name", ["unetpp_r101.yaml", "unet3p_r101_scratch.yaml"])
def test_r101_builds_with_five_levels(name):
    model = build_model(make_cfg(name))
    assert model.decoder.level_channels == [64, 256, 512, 1024, 2048]
    x = torch.randn(1, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        assert model.predict_probabilities(x).shape == (1, 1, 32, 32)
