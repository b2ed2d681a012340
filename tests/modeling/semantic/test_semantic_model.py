"""SemanticUNet: Eq. 1 node graphs, output shapes, deep supervision, pruning, gradients, bad configs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from detectron2.modeling import META_ARCH_REGISTRY, build_model
from detectron2.structures import Instances
from detectron2.utils.events import EventStorage

from maskrcnnpp.benchmark.pruning import record_executed_modules
from maskrcnnpp.modeling.semantic import (
    SEMANTIC_DECODER_REGISTRY,
    SemanticUNet,
    bce_dice_loss,
    resnet_levels,
)
from semantic_testutils import make_cfg

DECODERS = ["unet", "unetplus", "unetpp", "unet3p"]


@pytest.fixture(scope="module")
def models():
    """One eval-mode tiny model per decoder (built once: the shape tests share them)."""
    torch.manual_seed(0)
    return {d: build_model(make_cfg(f"{d}_tiny.yaml")).eval() for d in DECODERS}


def test_registered():
    assert META_ARCH_REGISTRY.get("SemanticUNet") is SemanticUNet
    for name in ("UNetDecoder", "UNetPlusDecoder", "UNetPlusPlusDecoder", "UNet3PlusDecoder"):
        assert name in SEMANTIC_DECODER_REGISTRY


def test_node_graphs_follow_the_papers(models):
    upp = models["unetpp"].decoder
    # Eq. 1: X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})])
    assert upp.inputs["x_0_3"] == ["x_0_0", "x_0_1", "x_0_2", "x_1_2"]
    assert upp.inputs["x_1_1"] == ["x_1_0", "x_2_0"]
    assert upp.inputs["x_0_4"] == ["x_0_0", "x_0_1", "x_0_2", "x_0_3", "x_1_3"]
    assert sorted(upp.inputs) == sorted(f"x_{i}_{j}" for j in range(1, 5) for i in range(5 - j))
    plus = models["unetplus"].decoder
    assert plus.inputs["x_0_3"] == ["x_0_2", "x_1_2"] and sorted(plus.inputs) == sorted(upp.inputs)
    unet = models["unet"].decoder
    assert unet.inputs == {
        "x_3_1": ["x_3_0", "x_4_0"],
        "x_2_2": ["x_2_0", "x_3_1"],
        "x_1_3": ["x_1_0", "x_2_2"],
        "x_0_4": ["x_0_0", "x_1_3"],
    }
    u3 = models["unet3p"].decoder
    assert u3.inputs["x_1_3"] == ["x_0_0", "x_1_0", "x_2_2", "x_3_1", "x_4_0"]
    assert u3.inputs["x_3_1"] == ["x_0_0", "x_1_0", "x_2_0", "x_3_0", "x_4_0"]
    # R-18 levels: stem 64, res2..res5 64/128/256/512; tiny widths 32/32/64/64.
    assert upp.level_channels == [64, 64, 128, 256, 512]
    first = upp.x_0_3.block[0]
    # X^{0,0} is the 64-channel stem conv, X^{0,1..2} have w0 = 32, X^{1,2} has w1 = 32.
    assert first.weight.shape == (32, 64 + 2 * 32 + 32, 3, 3)
    assert upp.x_3_1.block[0].weight.shape == (64, 256 + 512, 3, 3)
    assert plus.x_0_3.block[0].weight.shape == (32, 32 + 32, 3, 3)
    # UNet 3+: five 32-channel projections concatenated (160) then one 3x3 fuse conv.
    assert len(u3.x_1_3.projections) == 5 and u3.x_1_3.fuse.weight.shape == (160, 160, 3, 3)


def test_encoder_split_matches_detectron2_stem(models):
    resnet = models["unet"].backbone
    x = torch.randn(1, 3, 64, 64)
    levels = resnet_levels(resnet, x, 5)
    assert [tuple(t.shape[-2:]) for t in levels] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    ref = resnet(x)
    torch.testing.assert_close(F.max_pool2d(levels[0], 3, 2, 1), ref["stem"])
    for name, level in zip(("res2", "res3", "res4", "res5"), levels[1:]):
        torch.testing.assert_close(level, ref[name])


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("hw", [(64, 64), (96, 128), (100, 75)])
def test_output_shapes(models, decoder, hw):
    model = models[decoder]
    h, w = hw
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    (out,) = model([{"image": image, "height": h, "width": w}])
    assert out["sem_seg"].shape == (1, h, w)
    assert 0 <= float(out["sem_seg"].min()) and float(out["sem_seg"].max()) <= 1
    inst = out["instances"]
    assert isinstance(inst, Instances) and inst.image_size == (h, w)
    assert inst.pred_masks.dtype == torch.bool and inst.pred_masks.shape[1:] == (h, w)
    assert len(inst.scores) == len(inst.pred_boxes) == len(inst.pred_classes) == len(inst.pred_masks)
    # Head logits are at the padded size (multiple of 32) of the input.
    x = torch.randn(2, 3, -(-h // 32) * 32, -(-w // 32) * 32)
    logits, _ = model.head_logits(x, model.decoder.head_names)
    assert all(v.shape == (2, 1) + x.shape[-2:] for v in logits.values())


def test_output_resized_to_requested_size(models):
    (out,) = models["unetpp"]([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8), "height": 128, "width": 96}])
    assert out["sem_seg"].shape == (1, 128, 96) and out["instances"].image_size == (128, 96)


def test_deep_supervision_heads(models):
    assert models["unetpp"].decoder.head_names == ("x_0_1", "x_0_2", "x_0_3", "x_0_4")
    assert models["unetplus"].decoder.head_names == ("x_0_1", "x_0_2", "x_0_3", "x_0_4")
    assert models["unet"].decoder.head_names == ("x_0_4",)
    assert models["unet3p"].decoder.head_names == ("x_0_4", "x_1_3", "x_2_2", "x_3_1", "x_4_0")
    no_ds = build_model(make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__DEEP_SUPERVISION=False))
    assert no_ds.decoder.head_names == ("x_0_4",)


def test_ensemble_is_mean_of_head_probabilities(models):
    model = models["unetpp"]
    x = torch.randn(1, 3, 64, 64)
    logits, _ = model.head_logits(x, model.decoder.head_names)
    expected = torch.stack([torch.sigmoid(v) for v in logits.values()]).mean(0)
    torch.testing.assert_close(model.predict_probabilities(x, "ensemble"), expected)


def _executed_names(model, fn):
    names = {id(m): n for n, m in model.named_modules()}
    with record_executed_modules(model) as executed:
        fn()
    return [names[id(m)] for m in executed]


@pytest.mark.parametrize("decoder", ["unetpp", "unetplus"])
def test_pruned_level_equals_full_head_and_runs_less(models, decoder):
    model = models[decoder]
    torch.manual_seed(1)
    x = torch.randn(1, 3, 96, 64)
    full, _ = model.head_logits(x, model.decoder.head_names)
    convs = {}
    for d in range(1, 5):
        pruned = model.predict_probabilities(x, f"L{d}")
        torch.testing.assert_close(pruned, torch.sigmoid(full[f"x_0_{d}"]), rtol=0, atol=0)
        ran = _executed_names(model, lambda: model.predict_probabilities(x, f"L{d}"))
        convs[d] = sum(isinstance(dict(model.named_modules())[n], torch.nn.Conv2d) for n in ran)
        nodes = {n.split(".")[1] for n in ran if n.startswith("decoder.x_")}
        assert nodes == {f"x_{i}_{j}" for j in range(1, 5) for i in range(5 - j) if i + j <= d}
        stages = {n.split(".")[1] for n in ran if n.startswith("backbone.res")}
        assert stages == {f"res{k}" for k in range(2, d + 2)}, f"L{d} must run res2..res{d + 1} only"
    ensemble = _executed_names(model, lambda: model.predict_probabilities(x, "ensemble"))
    convs["ensemble"] = sum(isinstance(dict(model.named_modules())[n], torch.nn.Conv2d) for n in ensemble)
    assert convs[1] < convs[2] < convs[3] < convs[4] < convs["ensemble"]
    # R-18 BasicBlock stages: res2 has 4 convs, res3..res5 5 (with the shortcut); 2 convs per node; 1 per head.
    assert convs[1] == 1 + 4 + 2 * 1 + 1
    assert convs[4] == 1 + 4 + 5 * 3 + 2 * 10 + 1
    assert convs["ensemble"] == convs[4] + 3


@pytest.mark.parametrize(
    "name,overrides",
    [
        ("unet_tiny.yaml", {}),
        ("unetplus_tiny.yaml", {"MODEL__SEMANTIC_UNET__BOUNDARY": True}),
        ("unetpp_tiny.yaml", {}),
        ("unet3p_tiny.yaml", {"MODEL__SEMANTIC_UNET__CGM": True, "MODEL__SEMANTIC_UNET__BOUNDARY": True}),
    ],
)
def test_gradients_reach_every_decoder_node(name, overrides):
    torch.manual_seed(0)
    cfg = make_cfg(name, **overrides)
    model = build_model(cfg).train()
    rng = np.random.default_rng(0)
    target = torch.from_numpy((rng.random((2, 64, 64)) > 0.5).astype(np.uint8))
    batch = [
        {
            "image": torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8),
            "sem_seg": target[k],
            "boundary": 1 - target[k],
        }
        for k in range(2)
    ]
    with EventStorage():
        losses = model(batch)
    expected = {f"loss_{h}" for h in model.decoder.head_names}
    if cfg.MODEL.SEMANTIC_UNET.BOUNDARY:
        expected |= {f"loss_{h}_boundary" for h in model.decoder.head_names}
    if cfg.MODEL.SEMANTIC_UNET.CGM:
        expected.add("loss_cgm")
    assert set(losses) == expected
    sum(losses.values()).backward()
    modules = [n for n in model.decoder.inputs] + ["heads"] + (["cgm"] if model.cgm is not None else [])
    for n in modules:
        owner = model.cgm if n == "cgm" else getattr(model.decoder, n)
        for pname, p in owner.named_parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, f"no gradient at {n}.{pname}"
    for stage in ("stem", "res2", "res3", "res4", "res5"):
        grads = [p.grad for p in getattr(model.backbone, stage).parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads), f"no gradient in encoder {stage}"


def test_training_losses_ignore_padding_and_average_heads():
    torch.manual_seed(0)
    model = build_model(make_cfg("unetpp_tiny.yaml")).train()  # GroupNorm, no dropout: deterministic
    img = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    tgt = torch.zeros(64, 64, dtype=torch.uint8)
    tgt[10:30, 10:30] = 1
    ignored = tgt.clone()
    ignored[32:] = 255
    with EventStorage(), torch.no_grad():
        whole = model([{"image": img, "sem_seg": tgt}])
        partial = model([{"image": img, "sem_seg": ignored}])
        logits, _ = model.head_logits(((img.float() - model.pixel_mean) / model.pixel_std)[None], model.decoder.head_names)
    # Each head's entry is its loss divided by the number of heads; ignored pixels are left out.
    for h, v in logits.items():
        assert float(whole[f"loss_{h}"]) == pytest.approx(float(bce_dice_loss(v, tgt[None, None].float())) / 4, rel=1e-5)
        upper = bce_dice_loss(v[..., :32, :], tgt[None, None, :32].float())
        assert float(partial[f"loss_{h}"]) == pytest.approx(float(upper) / 4, rel=1e-5)


@pytest.mark.parametrize(
    "name,overrides,match",
    [
        ("unet_tiny.yaml", {"MODEL__SEMANTIC_UNET__DEEP_SUPERVISION": True}, "DEEP_SUPERVISION"),
        ("unet_tiny.yaml", {"MODEL__SEMANTIC_UNET__INFERENCE_MODE": "L2"}, "INFERENCE_MODE"),
        ("unet3p_tiny.yaml", {"MODEL__SEMANTIC_UNET__INFERENCE_MODE": "L3"}, "INFERENCE_MODE"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__INFERENCE_MODE": "fast"}, "INFERENCE_MODE"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__CGM": True}, "CGM"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__WIDTHS": [32, 64, 128, 256, 512]}, "WIDTHS"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__DECODER": "segnet"}, "DECODER"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__LOSS": "lovasz"}, "LOSS"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__UPSAMPLE": "bicubic"}, "UPSAMPLE"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__TILE_OVERLAP": 200}, "TILE_OVERLAP"),
        ("unetpp_tiny.yaml", {"MODEL__RESNETS__OUT_FEATURES": ["res2", "res3"]}, "OUT_FEATURES"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__NORM": "LN"}, r"MODEL.SEMANTIC_UNET.NORM='LN' is not allowed"),
        ("unetpp_tiny.yaml", {"MODEL__SEMANTIC_UNET__NORM": "GN", "MODEL__SEMANTIC_UNET__WIDTHS": [16, 32, 64, 64]},
         r"MODEL.SEMANTIC_UNET.WIDTHS=\[16, 32, 64, 64\] must be multiples of 32"),
        ("unet3p_tiny.yaml", {"MODEL__SEMANTIC_UNET__NORM": "GN", "MODEL__SEMANTIC_UNET__UNET3P_CAT_CHANNELS": 20},
         r"MODEL.SEMANTIC_UNET.UNET3P_CAT_CHANNELS=\[20\] must be multiples of 32"),
    ],
)
def test_bad_config_names_the_key(name, overrides, match):
    with pytest.raises(ValueError, match=match):
        build_model(make_cfg(name, **overrides))


def test_training_needs_targets():
    model = build_model(make_cfg("unet_tiny.yaml")).train()
    with pytest.raises(KeyError, match="sem_seg"):
        model([{"image": torch.zeros(3, 64, 64, dtype=torch.uint8)}])
