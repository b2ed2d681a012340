"""UNet++ pyramid backbone: FPN contract, Eq. 1 node graph, parameter formula, training, bad config."""
from __future__ import annotations

import pytest
import torch

from detectron2.modeling import BACKBONE_REGISTRY, build_backbone, build_model
from detectron2.modeling.backbone.fpn import FPN
from detectron2.structures import BitMasks, Instances
from detectron2.utils.events import EventStorage

from maskrcnnpp.config import setup_cfg
from maskrcnnpp.modeling.unetpp_fpn import NestedNode, UNetPlusPlusFPN


def make_cfg(name: str = "maskrcnnpp_tiny.yaml", **overrides):
    """A config from configs/ on the CPU; ``overrides`` maps dotted keys to values."""
    opts = [item for key, value in overrides.items() for item in (key, repr(value))]
    return setup_cfg(name, opts, device="cpu")


def pathway_param_count(widths, out_channels_unused=None, norm_params_per_channel=0, bias=True) -> int:
    """Analytic size of the nested nodes: X^{i,j} has a 3x3 conv over j*w_i + w_{i+1} inputs."""
    L = len(widths)
    total = 0
    for j in range(1, L):
        for i in range(L - j):
            cin = j * widths[i] + widths[i + 1]
            total += 9 * cin * widths[i] + (widths[i] if bias else 0) + norm_params_per_channel * widths[i]
    return total


def nested_params(backbone: UNetPlusPlusFPN) -> int:
    return sum(p.numel() for m in backbone.modules() if isinstance(m, NestedNode) for p in m.parameters())


def test_registered_in_backbone_registry():
    assert "build_resnet_unetpp_fpn_backbone" in BACKBONE_REGISTRY


@pytest.mark.parametrize("hw", [(256, 320), (200, 250)])
def test_outputs_match_fpn_contract(hw):
    torch.manual_seed(0)
    fpn = build_backbone(make_cfg("maskrcnn_tiny.yaml"))
    upp = build_backbone(make_cfg("maskrcnnpp_tiny.yaml"))
    assert isinstance(fpn, FPN) and isinstance(upp, UNetPlusPlusFPN)
    assert upp.output_shape() == fpn.output_shape()
    assert upp.size_divisibility == fpn.size_divisibility == 32
    assert [k for k in upp.output_shape()] == ["p2", "p3", "p4", "p5", "p6"]
    h, w = hw
    # Detectron2 pads batches to size_divisibility; both pyramids then give identical shapes.
    ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
    x = torch.rand(1, 3, ph, pw)
    with torch.no_grad():
        a, b = fpn(x), upp(x)
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}
        assert b["p2"].shape == (1, 64, ph // 4, pw // 4)
        # Unpadded input still works: every level keeps the bottom-up's own (ceil) shape.
        raw = upp(torch.rand(1, 3, h, w))
        res = upp.bottom_up(torch.rand(1, 3, h, w))
    for p, r in zip(["p2", "p3", "p4", "p5"], ["res2", "res3", "res4", "res5"]):
        assert raw[p].shape[-2:] == res[r].shape[-2:]


def test_node_graph_follows_eq1_and_all_nodes_get_gradient():
    upp = build_backbone(make_cfg())
    inputs = upp.node_inputs()
    # 4 levels: nodes X^{i,j}, j>=1, i+j<=3 -> 3 + 2 + 1 = 6 nested nodes, j + 1 inputs each.
    assert inputs == {"x_0_1": 2, "x_0_2": 3, "x_0_3": 4, "x_1_1": 2, "x_1_2": 3, "x_2_1": 2}
    for i in range(4):
        assert isinstance(getattr(upp, f"x_{i}_0"), torch.nn.Module)
    # The 3x3 conv of X^{i,j} sees j copies of level i plus one upsampled level i+1.
    assert upp.x_0_3.conv.weight.shape[1] == 3 * 64 + 64
    out = upp(torch.rand(2, 3, 128, 160))
    sum(v.square().mean() for v in out.values()).backward()
    for name, module in upp.named_children():
        if name.startswith("x_") or name.startswith("output_"):
            grads = [p.grad for p in module.parameters()]
            assert grads and all(g is not None and g.abs().sum() > 0 for g in grads), name


@pytest.mark.parametrize("widths", [[], [32, 64, 96, 96]])
def test_parameter_count_matches_formula(widths):
    cfg = make_cfg(**{"MODEL.UNETPP_FPN.WIDTHS": widths})
    upp = build_backbone(cfg)
    w = widths or [cfg.MODEL.UNETPP_FPN.OUT_CHANNELS] * 4
    # GN: weight + bias per channel, no conv bias.
    assert nested_params(upp) == pathway_param_count(w, norm_params_per_channel=2, bias=False)
    cfg_plain = make_cfg(**{"MODEL.UNETPP_FPN.WIDTHS": widths, "MODEL.UNETPP_FPN.NORM": ""})
    assert nested_params(build_backbone(cfg_plain)) == pathway_param_count(w, bias=True)


def test_r101_config_builds_101_layers_with_expected_size():
    base = build_model(make_cfg("maskrcnn_r101.yaml"))
    pp = build_model(make_cfg("maskrcnnpp_r101.yaml"))
    bottom = pp.backbone.bottom_up
    # ResNet-101: stages of 3, 4, 23, 3 bottleneck blocks.
    assert [len(getattr(bottom, s)) for s in ["res2", "res3", "res4", "res5"]] == [3, 4, 23, 3]
    n_base = sum(p.numel() for p in base.parameters())
    n_pp = sum(p.numel() for p in pp.parameters())
    # Same laterals, output convs and heads as FPN: the difference is exactly the pathway.
    assert n_pp - n_base == pathway_param_count([256] * 4, bias=True) == 9_437_184 + 256 * 6


def _disc_batch(n: int = 2, size: int = 128, empty_last: bool = False):
    """Bright discs on a dark background, with their exact instance masks."""
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    batch = []
    for k in range(n):
        count = 0 if (empty_last and k == n - 1) else 4
        masks = []
        img = torch.full((3, size, size), 20.0)
        for _ in range(count):
            cy, cx = (torch.rand(2, generator=g) * (size - 40) + 20).tolist()
            r = float(torch.rand(1, generator=g) * 8 + 8)
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            masks.append(m)
            img[:, m] = 200.0
        inst = Instances((size, size))
        mt = torch.stack(masks) if masks else torch.zeros((0, size, size), dtype=torch.bool)
        inst.gt_masks = BitMasks(mt)
        inst.gt_boxes = inst.gt_masks.get_bounding_boxes()
        inst.gt_classes = torch.zeros(len(masks), dtype=torch.long)
        batch.append({"image": img, "instances": inst, "height": size, "width": size})
    return batch


def _train(cfg, steps: int, batch):
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    history = []
    with EventStorage():
        for _ in range(steps):
            losses = model(batch)
            total = sum(losses.values())
            opt.zero_grad()
            total.backward()
            opt.step()
            history.append({k: float(v.detach()) for k, v in losses.items()})
    return history


def test_training_steps_lower_the_loss():
    hist = _train(make_cfg(), 12, _disc_batch())
    totals = [sum(h.values()) for h in hist]
    assert sum(totals[-3:]) / 3 < 0.8 * sum(totals[:3]) / 3, totals


def test_deep_supervision_adds_its_loss_and_handles_empty_images():
    cfg = make_cfg(**{"MODEL.UNETPP_FPN.DEEP_SUPERVISION": True, "MODEL.UNETPP_FPN.DEEP_SUPERVISION_WEIGHT": 0.5})
    hist = _train(cfg, 3, _disc_batch(empty_last=True))
    assert set(hist[0]) == {"loss_cls", "loss_box_reg", "loss_mask", "loss_rpn_cls", "loss_rpn_loc", "loss_deep_sup"}
    assert hist[-1]["loss_deep_sup"] < hist[0]["loss_deep_sup"]
    assert set(_train(make_cfg(), 1, _disc_batch())[0]) == set(hist[0]) - {"loss_deep_sup"}


def test_foreground_target_is_union_in_padded_frame():
    from maskrcnnpp.modeling.meta_arch import foreground_target

    batch = _disc_batch(n=1, size=64)
    union = batch[0]["instances"].gt_masks.tensor.any(0).float()
    t, valid = foreground_target([batch[0]["instances"]], (96, 64), (24, 16), "cpu")
    assert t.shape == valid.shape == (1, 1, 24, 16)
    # Area resizing by 4 keeps the foreground fraction; the padded rows are not scored.
    assert torch.isclose(t[0, 0, :16].sum() * 16, union.sum())
    assert t[0, 0, 16:].sum() == 0
    assert valid[0, 0, :16].all() and not valid[0, 0, 16:].any()
    # An image of 62 x 58 in the same frame: an output cell counts when at least half of it is image.
    empty = Instances((62, 58))
    empty.gt_masks = BitMasks(torch.zeros((0, 62, 58), dtype=torch.bool))
    t, valid = foreground_target([empty], (96, 64), (24, 16), "cpu")
    # 62 / 4 = 15.5 rows, 58 / 4 = 14.5 columns: the last half row and half column count, their
    # corner cell (a quarter image) does not.
    assert t.sum() == 0 and valid[0, 0].sum(1).tolist() == [15] * 15 + [14] + [0] * 8


def test_channels_last_gives_the_same_detections():
    batch = [{"image": x["image"]} for x in _disc_batch(n=1)]
    torch.manual_seed(0)
    a = build_model(make_cfg()).eval()
    torch.manual_seed(0)
    b = build_model(make_cfg(**{"MODEL.UNETPP_FPN.CHANNELS_LAST": True})).eval()
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        fa, fb = a.backbone(a.preprocess_image(batch).tensor), b.backbone(b.preprocess_image(batch).tensor)
    for k in fa:
        # Different conv kernels for the two layouts: equal up to float32 rounding.
        torch.testing.assert_close(fa[k], fb[k].contiguous(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("MODEL.UNETPP_FPN.FUSE", "avg", "MODEL.UNETPP_FPN.FUSE='avg' is not allowed; choose one of ['concat', 'sum']"),
        ("MODEL.UNETPP_FPN.NORM", "LN", "MODEL.UNETPP_FPN.NORM='LN'"),
        ("MODEL.UNETPP_FPN.UPSAMPLE", "cubic", "MODEL.UNETPP_FPN.UPSAMPLE='cubic'"),
        ("MODEL.UNETPP_FPN.IN_FEATURES", ["res2", "res4"], "must be >= 2 consecutive ResNet stages"),
        ("MODEL.UNETPP_FPN.OUT_CHANNELS", 0, "must be positive"),
        ("MODEL.UNETPP_FPN.WIDTHS", [64, 0, 64, 64], "must be positive"),
        ("MODEL.UNETPP_FPN.WIDTHS", [64, 64], "one width per in_feature"),
        ("MODEL.UNETPP_FPN.WIDTHS", [16, 32, 64, 64], "MODEL.UNETPP_FPN.WIDTHS=[16, 32, 64, 64] must be multiples of 32"),
        ("MODEL.META_ARCHITECTURE", "GeneralizedRCNN", None),
    ],
)
def test_bad_config_fails_at_build_naming_the_key(key, value, message):
    overrides = {key: value}
    if message is None:  # deep supervision under a meta-architecture that would never train its heads
        overrides["MODEL.UNETPP_FPN.DEEP_SUPERVISION"] = True
        message = "MODEL.UNETPP_FPN.DEEP_SUPERVISION needs MODEL.META_ARCHITECTURE='MaskRCNNPlusPlus'"
    with pytest.raises(ValueError) as err:
        build_backbone(make_cfg(**overrides))
    assert message in str(err.value)


@pytest.mark.parametrize("key,value", [("MODEL.MASK_ON", False), ("INPUT.MASK_FORMAT", "polygon")])
def test_deep_supervision_without_bitmask_targets_fails_at_build(key, value):
    # Its target is the union of the instances' bitmasks; without them training would fail on
    # the first batch, deep inside the loss.
    cfg = make_cfg(**{"MODEL.UNETPP_FPN.DEEP_SUPERVISION": True, key: value})
    with pytest.raises(ValueError, match="needs MODEL.MASK_ON True and INPUT.MASK_FORMAT 'bitmask'"):
        build_model(cfg)


def test_deep_supervision_with_the_fpn_backbone_fails_at_build():
    cfg = make_cfg(**{"MODEL.UNETPP_FPN.DEEP_SUPERVISION": True, "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone"})
    with pytest.raises(ValueError, match="DEEP_SUPERVISION needs MODEL.BACKBONE.NAME='build_resnet_unetpp_fpn_backbone'"):
        build_model(cfg)


def test_mask_threshold_from_config_cuts_the_pasted_masks():
    batch = [{"image": x["image"], "height": 96, "width": 96} for x in _disc_batch(n=1)]
    areas = {}
    for thresh in (0.2, 0.5, 0.8):
        torch.manual_seed(0)
        model = build_model(make_cfg(**{"TEST.NUCLEI.MASK_THRESH": thresh, "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.0})).eval()
        with torch.no_grad():
            inst = model(batch)[0]["instances"]
        assert inst.image_size == (96, 96) and inst.pred_masks.dtype == torch.bool
        areas[thresh] = int(inst.pred_masks.sum())
    # Same weights and boxes: a higher cut keeps a subset of the pixels.
    assert areas[0.2] > areas[0.5] > areas[0.8]


def test_sum_fuse_projects_only_the_upsampled_input_and_matches_its_formula():
    w = [32, 64, 96, 96]
    upp = build_backbone(make_cfg(**{"MODEL.UNETPP_FPN.FUSE": "sum", "MODEL.UNETPP_FPN.WIDTHS": w, "MODEL.UNETPP_FPN.NORM": ""}))
    assert upp(torch.rand(1, 3, 64, 96))["p2"].shape == (1, 64, 16, 24)
    # X^{i,j} = H(sum of inputs): a 1x1 projection only where the level below is wider (i = 0, 1),
    # then one 3x3 conv w_i -> w_i.
    projections = sum(1 for m in upp.modules() if isinstance(m, NestedNode) for p in m.projections if not isinstance(p, torch.nn.Identity))
    assert projections == 3 + 2  # nodes of levels 0 and 1; level 2 (96) sums with level 3 (96) directly
    expected = sum((9 * w[i] * w[i] + w[i]) + (w[i + 1] * w[i] if w[i + 1] != w[i] else 0)
                   for j in range(1, 4) for i in range(4 - j))
    assert nested_params(upp) == expected


def test_bottleneck_reduces_the_3x3_input_and_matches_its_formula():
    upp = build_backbone(make_cfg(**{"MODEL.UNETPP_FPN.BOTTLENECK": 32, "MODEL.UNETPP_FPN.NORM": ""}))
    assert upp(torch.rand(1, 3, 64, 96))["p2"].shape == (1, 64, 16, 24)
    assert upp.x_0_3.conv.weight.shape[1] == 32
    expected = sum((j * 64 + 64) * 32 + 32 + 9 * 32 * 64 + 64 for j in range(1, 4) for i in range(4 - j))
    assert nested_params(upp) == expected


def test_without_validation_set_no_checkpoint_is_selected_on_test(tmp_path):
    from detectron2.engine import hooks

    from maskrcnnpp.engine.trainer import KeepBestCheckpointer, NucleiTrainer

    def hook_types(val):
        cfg = make_cfg(**{"DATASETS.VAL": val, "TEST.EVAL_PERIOD": 10, "OUTPUT_DIR": str(tmp_path),
                          "DATASETS.NUCLEI.SYNTH_IMAGES": [2, 1, 1]})
        from maskrcnnpp.data import setup_datasets

        setup_datasets(cfg)
        return [type(h) for h in NucleiTrainer(cfg).build_hooks()]

    assert hooks.EvalHook not in hook_types(()) and KeepBestCheckpointer not in hook_types(())
    with_val = hook_types(("nuclei_synth_val",))
    assert hooks.EvalHook in with_val and KeepBestCheckpointer in with_val
