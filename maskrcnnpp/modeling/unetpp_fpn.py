"""UNet++ nested dense skip pathways as a Detectron2 feature pyramid (the Mask RCNN++ backbone).

Index convention (once, as in the paper): level ``i`` = 0..L-1 is the i-th entry of
``in_features`` (res2..res5 by default, strides 4..32) and column ``j`` is the paper's second
index, so the module attribute ``x_i_j`` computes the paper's node X^{i,j}. X^{i,0} is a 1x1
lateral projection of the ResNet stage; for j >= 1 and i + j <= L-1 (Eq. 1 of Zhou et al.,
IEEE TMI 2019):

    X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})])

with [.] channel concatenation, U a 2x upsampling and H a 3x3 conv + norm + ReLU. Each
column-j node takes j + 1 inputs. The deepest node of each level, X^{i, L-1-i}, goes through a
3x3 output conv to p_{i+2}; p6 is FPN's max-pool top block, so names, strides, channels and
``size_divisibility`` are exactly those of Detectron2's FPN and the RPN/ROI heads are unchanged.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from torch import nn

from detectron2.layers import Conv2d, ShapeSpec, get_norm
from detectron2.modeling import BACKBONE_REGISTRY, Backbone, build_resnet_backbone
from detectron2.modeling.backbone.fpn import LastLevelMaxPool

from .layers import UPSAMPLE_MODES, check_choice, check_norm

FUSE_MODES = ("concat", "sum")
_RESNET_STAGES = ("res2", "res3", "res4", "res5")


def _check_choice(key: str, value, allowed: Sequence) -> None:
    check_choice("MODEL.UNETPP_FPN", key, value, allowed)


class NestedNode(nn.Module):
    """H(.) of Eq. 1 for one node: merge the inputs, then 3x3 conv + norm + ReLU.

    ``fuse="concat"`` concatenates the inputs (the paper); ``fuse="sum"`` projects each input
    to ``out_channels`` with a 1x1 conv where widths differ and sums them (ablation). An optional
    1x1 ``bottleneck`` reduces the merged channels before the 3x3 conv.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int, norm: str, fuse: str, bottleneck: int):
        super().__init__()
        self.fuse = fuse
        self.num_inputs = len(in_channels)
        use_bias = norm == ""
        if fuse == "sum":
            self.projections = nn.ModuleList(
                nn.Identity() if c == out_channels else Conv2d(c, out_channels, 1, bias=False) for c in in_channels
            )
            merged = out_channels
        else:
            merged = sum(in_channels)
        self.reduce = None
        if bottleneck > 0:
            self.reduce = Conv2d(merged, bottleneck, 1, bias=use_bias, norm=get_norm(norm, bottleneck), activation=F.relu)
            merged = bottleneck
        self.conv = Conv2d(merged, out_channels, 3, padding=1, bias=use_bias, norm=get_norm(norm, out_channels), activation=F.relu)
        for m in self.modules():
            if isinstance(m, Conv2d):
                weight_init.c2_msra_fill(m)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        if self.fuse == "sum":
            x = sum(p(t) for p, t in zip(self.projections, inputs))
        else:
            x = torch.cat(inputs, dim=1)
        if self.reduce is not None:
            x = self.reduce(x)
        return self.conv(x)


class UNetPlusPlusFPN(Backbone):
    """A feature pyramid whose lateral skips are UNet++'s nested dense skip pathways (Eq. 1).

    Returns ``{"p2": ..., "p6": ...}`` like Detectron2's ``FPN``. With ``deep_supervision`` and in
    training mode, the 1x1 foreground logits of X^{0,1..L-1} (stride of level 0) of the last
    forward are kept in ``deep_supervision_logits`` for the meta-architecture's loss, so the
    features returned keep FPN's exact contract.
    """

    def __init__(
        self,
        bottom_up: Backbone,
        in_features: Sequence[str],
        out_channels: int = 256,
        widths: Optional[Sequence[int]] = None,
        norm: str = "",
        upsample: str = "nearest",
        fuse: str = "concat",
        bottleneck: int = 0,
        top_block: Optional[nn.Module] = None,
        deep_supervision: bool = False,
    ):
        super().__init__()
        _check_choice("UPSAMPLE", upsample, UPSAMPLE_MODES)
        _check_choice("FUSE", fuse, FUSE_MODES)
        in_features = list(in_features)
        shapes = bottom_up.output_shape()
        missing = [f for f in in_features if f not in shapes]
        if missing:
            raise ValueError(f"MODEL.UNETPP_FPN.IN_FEATURES={in_features}: {missing} not produced by the bottom-up {sorted(shapes)}")
        strides = [shapes[f].stride for f in in_features]
        if len(in_features) < 2 or any(b != 2 * a for a, b in zip(strides, strides[1:])):
            raise ValueError(
                f"MODEL.UNETPP_FPN.IN_FEATURES={in_features} must be >= 2 consecutive ResNet stages "
                f"(strides doubling), e.g. {list(_RESNET_STAGES)}; got strides {strides}"
            )
        num_levels = len(in_features)
        widths = list(widths) if widths else [out_channels] * num_levels
        if len(widths) != num_levels:
            raise ValueError(f"MODEL.UNETPP_FPN.WIDTHS={widths} must have one width per in_feature ({num_levels})")
        if out_channels <= 0 or any(w <= 0 for w in widths):
            raise ValueError(f"MODEL.UNETPP_FPN.OUT_CHANNELS={out_channels} / WIDTHS={widths} must be positive")
        if bottleneck < 0:
            raise ValueError(f"MODEL.UNETPP_FPN.BOTTLENECK={bottleneck} must be >= 0")
        check_norm("MODEL.UNETPP_FPN", norm, {"OUT_CHANNELS": [out_channels], "WIDTHS": widths,
                                              "BOTTLENECK": [bottleneck] if bottleneck else []})

        self.bottom_up = bottom_up
        self.in_features = in_features
        self.num_levels = num_levels
        self.widths = widths
        self.upsample = upsample
        self.top_block = top_block
        self.deep_supervision = deep_supervision
        use_bias = norm == ""

        for i, f in enumerate(in_features):
            lateral = Conv2d(shapes[f].channels, widths[i], 1, bias=use_bias, norm=get_norm(norm, widths[i]))
            weight_init.c2_xavier_fill(lateral)
            self.add_module(f"x_{i}_0", lateral)
        for j in range(1, num_levels):
            for i in range(num_levels - j):
                inputs = [widths[i]] * j + [widths[i + 1]]
                self.add_module(f"x_{i}_{j}", NestedNode(inputs, widths[i], norm, fuse, bottleneck))
        stage_of = {f: int(f[-1]) if f.startswith("res") else i + 2 for i, f in enumerate(in_features)}
        self._out_features: List[str] = []
        self._out_feature_strides: Dict[str, int] = {}
        for i, f in enumerate(in_features):
            name = f"p{stage_of[f]}"
            out = Conv2d(widths[i], out_channels, 3, padding=1, bias=use_bias, norm=get_norm(norm, out_channels))
            weight_init.c2_xavier_fill(out)
            self.add_module(f"output_{name}", out)
            self._out_features.append(name)
            self._out_feature_strides[name] = strides[i]
        if top_block is not None:
            last = stage_of[in_features[-1]]
            for k in range(top_block.num_levels):
                name = f"p{last + k + 1}"
                self._out_features.append(name)
                self._out_feature_strides[name] = strides[-1] * 2 ** (k + 1)
        self._out_feature_channels = {k: out_channels for k in self._out_features}
        self._size_divisibility = strides[-1]
        if deep_supervision:
            self.ds_heads = nn.ModuleList(Conv2d(widths[0], 1, 1) for _ in range(1, num_levels))

    @property
    def size_divisibility(self) -> int:
        return self._size_divisibility

    def node_inputs(self) -> Dict[str, int]:
        """Number of inputs of every nested node ``x_i_j`` (j >= 1), for checking Eq. 1."""
        return {name: m.num_inputs for name, m in self.named_children() if isinstance(m, NestedNode)}

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # Resize to the exact finer shape so inputs not divisible by the top stride still work.
        if self.upsample == "bilinear":
            return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(x, size=like.shape[-2:], mode="nearest")

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        bottom_up = self.bottom_up(x)
        L = self.num_levels
        # nodes[i][j] holds X^{i,j}; filled column by column as Eq. 1 requires.
        nodes: List[List[torch.Tensor]] = [[getattr(self, f"x_{i}_0")(bottom_up[f])] for i, f in enumerate(self.in_features)]
        for j in range(1, L):
            for i in range(L - j):
                below = nodes[i + 1][j - 1]
                nodes[i].append(getattr(self, f"x_{i}_{j}")(nodes[i][:j] + [self._up(below, nodes[i][0])]))
        results = [getattr(self, f"output_{name}")(nodes[i][L - 1 - i]) for i, name in enumerate(self._out_features[:L])]
        if self.top_block is not None:
            results.extend(self.top_block(results[-1]))
        self.deep_supervision_logits: List[torch.Tensor] = []
        if self.deep_supervision and self.training:
            self.deep_supervision_logits = [head(nodes[0][j]) for j, head in enumerate(self.ds_heads, start=1)]
        return dict(zip(self._out_features, results))

    def output_shape(self) -> Dict[str, ShapeSpec]:
        return {
            name: ShapeSpec(channels=self._out_feature_channels[name], stride=self._out_feature_strides[name])
            for name in self._out_features
        }


@BACKBONE_REGISTRY.register()
def build_resnet_unetpp_fpn_backbone(cfg, input_shape: ShapeSpec) -> UNetPlusPlusFPN:
    """ResNet bottom-up + UNet++ nested pyramid, configured by ``cfg.MODEL.UNETPP_FPN``."""
    c = cfg.MODEL.UNETPP_FPN
    if c.DEEP_SUPERVISION and cfg.MODEL.META_ARCHITECTURE != "MaskRCNNPlusPlus":
        raise ValueError("MODEL.UNETPP_FPN.DEEP_SUPERVISION needs MODEL.META_ARCHITECTURE='MaskRCNNPlusPlus' "
                         f"(which adds its loss), not {cfg.MODEL.META_ARCHITECTURE!r}")
    return UNetPlusPlusFPN(
        bottom_up=build_resnet_backbone(cfg, input_shape),
        in_features=c.IN_FEATURES,
        out_channels=c.OUT_CHANNELS,
        widths=c.WIDTHS,
        norm=c.NORM,
        upsample=c.UPSAMPLE,
        fuse=c.FUSE,
        bottleneck=c.BOTTLENECK,
        top_block=LastLevelMaxPool(),
        deep_supervision=c.DEEP_SUPERVISION,
    )
