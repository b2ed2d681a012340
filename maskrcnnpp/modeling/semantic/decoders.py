"""Decoders of the semantic baselines as graphs of named nodes ``x_i_j`` (U-Net, UNet+, UNet++, UNet 3+).

Index convention (the paper's X^{i,j}, Zhou et al., IEEE TMI 2019): ``x_i_j`` is X^{i,j}, where
``i`` is the down-sampling level (0 = finest, stride 2; 4 = coarsest, stride 32) and ``j`` the
position along the skip pathway of that level. ``x_i_0`` are the encoder levels
(see :mod:`.encoder`: x_0_0 = stem conv, x_1_0..x_4_0 = res2..res5); decoder nodes have j >= 1
and i + j <= 4. With U = 2x upsampling, H = ``NODE_CONVS`` x (3x3 conv + norm + ReLU):

* ``unet``     X^{i,j} = H([X^{i,0}, U(X^{i+1,j-1})]) only on the path i + j = 4
  (x_3_1, x_2_2, x_1_3, x_0_4): plain same-scale skips.
* ``unetplus`` X^{i,j} = H([X^{i,j-1}, U(X^{i+1,j-1})]) for every i + j <= 4: the nested
  grid with short skips between adjacent nodes only (UNet+).
* ``unetpp``   X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})]) for every i + j <= 4:
  dense skips, Eq. 1 of the paper (UNet++).
* ``unet3p``   UNet 3+ (Huang et al., ICASSP 2020) on the U-Net path: its decoder stage
  X_De^{i+1} (1-based in that paper) is ``x_i_{4-i}`` here and aggregates every encoder level at
  or above it (max-pooled down) and every coarser decoder node plus X^{4,0} (upsampled), each
  projected by 3x3 conv + norm + ReLU to ``UNET3P_CAT_CHANNELS``, concatenated (5 x CAT
  channels), then one 3x3 conv + norm + ReLU.

Heads are 1x1 convs (UNet++) or 3x3 convs (UNet 3+) producing logits at the node's resolution;
the meta-architecture upsamples them bilinearly to the input size (X^{0,j} is at stride 2).
Nodes are computed on demand from the requested heads, so asking only for X^{0,d} runs only
the nodes with i + j <= d and only encoder levels 0..d: the pruned UNet++ L_d.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

from detectron2.config import configurable
from detectron2.layers import Conv2d
from detectron2.utils.registry import Registry

from ..layers import UPSAMPLE_MODES, check_choice, check_norm, conv_norm_relu
from .blocks import ConvStack, resample_to

SEMANTIC_DECODER_REGISTRY = Registry("SEMANTIC_DECODER")
SEMANTIC_DECODER_REGISTRY.__doc__ = """Decoders of SemanticUNet; built with (cfg, level_channels)."""

# MODEL.SEMANTIC_UNET.DECODER short names -> registered classes (any other registered name works too).
DECODER_NAMES = {
    "unet": "UNetDecoder",
    "unetplus": "UNetPlusDecoder",
    "unetpp": "UNetPlusPlusDecoder",
    "unet3p": "UNet3PlusDecoder",
}
INFERENCE_MODES = ("ensemble", "final", "L1", "L2", "L3", "L4")


def node_name(i: int, j: int) -> str:
    """Name of the paper's node X^{i,j}."""
    return f"x_{i}_{j}"


def node_index(name: str) -> Tuple[int, int]:
    """(i, j) of a node name ``x_i_j``."""
    _, i, j = name.split("_")
    return int(i), int(j)


def _check_choice(key: str, value, allowed: Sequence) -> None:
    check_choice("MODEL.SEMANTIC_UNET", key, value, allowed)


def prediction_head(in_channels: int, out_channels: int, kernel_size: int) -> Conv2d:
    """A logits head (1x1 or 3x3 conv) started near zero, so every head begins at p ~ 0.5."""
    head = Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=kernel_size // 2)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.constant_(head.bias, 0.0)
    return head


class GraphDecoder(nn.Module):
    """A decoder whose nodes ``x_i_j`` (modules of that name) form a DAG evaluated on demand.

    Subclasses fill ``self.inputs`` (node -> its input node names, in concatenation order),
    add one module per decoder node and one head per supervised node in ``self.heads``.
    """

    def __init__(self, level_channels: Sequence[int], out_channels: int):
        super().__init__()
        self.level_channels = list(level_channels)
        self.num_levels = len(self.level_channels)
        self.out_channels = out_channels
        self.inputs: Dict[str, List[str]] = {}
        self.heads = nn.ModuleDict()
        self._plans: Dict[Tuple[str, ...], Tuple[List[str], int]] = {}

    @property
    def head_names(self) -> Tuple[str, ...]:
        """Supervised nodes, finest-first for the nested decoders (x_0_1 .. x_0_4)."""
        return tuple(self.heads.keys())

    @property
    def final_head(self) -> str:
        """The node whose head is the model's single output: X^{0, L-1}."""
        return node_name(0, self.num_levels - 1)

    def heads_for_mode(self, mode: str) -> List[str]:
        """Heads computed in an inference mode: all (``ensemble``), the final one, or X^{0,d} (``Ld``)."""
        _check_choice("INFERENCE_MODE", mode, INFERENCE_MODES)
        if mode == "ensemble":
            return list(self.head_names)
        if mode == "final":
            return [self.final_head]
        name = node_name(0, int(mode[1:]))
        if name not in self.heads:
            raise ValueError(
                f"MODEL.SEMANTIC_UNET.INFERENCE_MODE={mode!r} needs a head on {name}; {type(self).__name__} "
                f"has heads {list(self.head_names)} (pruning needs DECODER unetplus/unetpp with DEEP_SUPERVISION True)"
            )
        return [name]

    def plan(self, heads: Sequence[str]) -> Tuple[List[str], int]:
        """Decoder nodes needed for ``heads`` in evaluation order, and the number of encoder levels needed."""
        heads = tuple(heads)
        if heads not in self._plans:
            self._plans[heads] = self._make_plan(heads)
        return self._plans[heads]

    def _make_plan(self, heads: Tuple[str, ...]) -> Tuple[List[str], int]:
        for h in heads:
            if h not in self.heads:
                raise KeyError(f"{type(self).__name__} has no head {h!r}; heads: {list(self.head_names)}")
        order: List[str] = []
        levels = 0
        seen = set()

        def visit(name: str) -> None:
            nonlocal levels
            if name in seen:
                return
            seen.add(name)
            i, j = node_index(name)
            if j == 0:
                levels = max(levels, i + 1)
                return
            for dep in self.inputs[name]:
                visit(dep)
            order.append(name)

        for h in heads:
            visit(h)
        return order, levels

    def forward(self, features: Sequence[torch.Tensor], heads: Sequence[str]) -> Dict[str, torch.Tensor]:
        """Logits of ``heads`` at their nodes' resolutions, computing only the nodes they need.

        ``features[i]`` is encoder level i (X^{i,0}); at least ``plan(heads)[1]`` levels are needed.
        """
        order, levels = self.plan(heads)
        if len(features) < levels:
            raise ValueError(f"heads {list(heads)} need {levels} encoder levels, got {len(features)}")
        values = {node_name(i, 0): f for i, f in enumerate(features)}
        for name in order:
            i, _ = node_index(name)
            size = tuple(features[i].shape[-2:])
            values[name] = getattr(self, name)([values[n] for n in self.inputs[name]], size)
        return {h: self.heads[h](values[h]) for h in heads}


class DecoderNode(nn.Module):
    """One node X^{i,j}: resample inputs to level i's size, concatenate, apply H (ConvStack)."""

    def __init__(self, in_channels: Sequence[int], out_channels: int, norm: str, num_convs: int, upsample: str):
        super().__init__()
        self.upsample = upsample
        self.block = ConvStack(sum(in_channels), out_channels, norm, num_convs)

    def forward(self, inputs: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
        return self.block(torch.cat([resample_to(t, size, self.upsample) for t in inputs], dim=1))


class NestedDecoder(GraphDecoder):
    """U-Net / UNet+ / UNet++ on the X^{i,j} grid; ``SKIPS`` picks the skip pattern (module doc)."""

    SKIPS = "unetpp"

    @configurable
    def __init__(
        self,
        level_channels: Sequence[int],
        *,
        widths: Sequence[int],
        out_channels: int = 1,
        deep_supervision: bool = False,
        num_convs: int = 2,
        norm: str = "BN",
        upsample: str = "bilinear",
    ):
        """
        Args:
            level_channels: channels of encoder levels 0..L-1 (X^{0,0}..X^{L-1,0}).
            widths: channels of the decoder nodes on levels 0..L-2 (level L-1 has none).
            out_channels: channels of each head (1 foreground, +1 with a boundary channel).
            deep_supervision: heads on X^{0,1..L-1} (UNet+/UNet++), else only on X^{0,L-1}.
        """
        super().__init__(level_channels, out_channels)
        L = self.num_levels
        if len(widths) != L - 1:
            raise ValueError(
                f"MODEL.SEMANTIC_UNET.WIDTHS needs {L - 1} entries (decoder levels 0..{L - 2}; level {L - 1} is "
                f"the encoder's last stage), got {list(widths)}"
            )
        _check_choice("UPSAMPLE", upsample, UPSAMPLE_MODES)
        check_norm("MODEL.SEMANTIC_UNET", norm, {"WIDTHS": list(widths)})
        if deep_supervision and self.SKIPS == "unet":
            raise ValueError(
                "MODEL.SEMANTIC_UNET.DEEP_SUPERVISION=True needs the nested nodes X^{0,1..3}; the plain U-Net "
                "decoder has only X^{0,4}: set it False or use DECODER unetplus/unetpp"
            )
        self.widths = list(widths)

        def channels(name: str) -> int:
            i, j = node_index(name)
            return self.level_channels[i] if j == 0 else self.widths[i]

        for j in range(1, L):
            for i in range(L - j):
                if self.SKIPS == "unet" and i + j != L - 1:
                    continue
                if self.SKIPS == "unet":
                    same = [node_name(i, 0)]
                elif self.SKIPS == "unetplus":
                    same = [node_name(i, j - 1)]
                else:
                    same = [node_name(i, k) for k in range(j)]
                name = node_name(i, j)
                self.inputs[name] = same + [node_name(i + 1, j - 1)]
                cin = [channels(n) for n in self.inputs[name]]
                self.add_module(name, DecoderNode(cin, widths[i], norm, num_convs, upsample))
        supervised = [node_name(0, j) for j in range(1, L)] if deep_supervision else [self.final_head]
        for name in supervised:
            self.heads[name] = prediction_head(widths[0], out_channels, kernel_size=1)

    @classmethod
    def from_config(cls, cfg, level_channels):
        sc = cfg.MODEL.SEMANTIC_UNET
        return {
            "level_channels": level_channels,
            "widths": list(sc.WIDTHS),
            "out_channels": 2 if sc.BOUNDARY else 1,
            "deep_supervision": sc.DEEP_SUPERVISION,
            "num_convs": sc.NODE_CONVS,
            "norm": sc.NORM,
            "upsample": sc.UPSAMPLE,
        }


@SEMANTIC_DECODER_REGISTRY.register()
class UNetDecoder(NestedDecoder):
    """U-Net decoder: X^{i,j} = H([X^{i,0}, U(X^{i+1,j-1})]) on i + j = L-1 only."""

    SKIPS = "unet"


@SEMANTIC_DECODER_REGISTRY.register()
class UNetPlusDecoder(NestedDecoder):
    """UNet+ decoder: the nested grid with adjacent-node skips X^{i,j} = H([X^{i,j-1}, U(X^{i+1,j-1})])."""

    SKIPS = "unetplus"


@SEMANTIC_DECODER_REGISTRY.register()
class UNetPlusPlusDecoder(NestedDecoder):
    """UNet++ decoder (Eq. 1): X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})])."""

    SKIPS = "unetpp"


class FullScaleNode(nn.Module):
    """One UNet 3+ decoder stage: resample + 3x3 project each input to ``cat`` channels, concat, 3x3 fuse."""

    def __init__(self, in_channels: Sequence[int], cat_channels: int, norm: str, upsample: str):
        super().__init__()
        self.upsample = upsample
        self.projections = nn.ModuleList(conv_norm_relu(c, cat_channels, norm) for c in in_channels)
        fused = cat_channels * len(in_channels)
        self.fuse = conv_norm_relu(fused, fused, norm)

    def forward(self, inputs: List[torch.Tensor], size: Tuple[int, int]) -> torch.Tensor:
        parts = [p(resample_to(t, size, self.upsample)) for p, t in zip(self.projections, inputs)]
        return self.fuse(torch.cat(parts, dim=1))


@SEMANTIC_DECODER_REGISTRY.register()
class UNet3PlusDecoder(GraphDecoder):
    """UNet 3+ full-scale skip decoder with full-scale deep supervision (module doc for the graph).

    Deep supervision puts a 3x3-conv head on every decoder stage x_i_{L-1-i} and on X^{L-1,0}
    (the paper's five side outputs), each upsampled to the input size by the meta-architecture.
    """

    @configurable
    def __init__(
        self,
        level_channels: Sequence[int],
        *,
        cat_channels: int = 64,
        out_channels: int = 1,
        deep_supervision: bool = True,
        norm: str = "BN",
        upsample: str = "bilinear",
    ):
        super().__init__(level_channels, out_channels)
        _check_choice("UPSAMPLE", upsample, UPSAMPLE_MODES)
        if cat_channels < 1:
            raise ValueError(f"MODEL.SEMANTIC_UNET.UNET3P_CAT_CHANNELS must be >= 1, got {cat_channels}")
        check_norm("MODEL.SEMANTIC_UNET", norm, {"UNET3P_CAT_CHANNELS": [cat_channels]})
        L = self.num_levels
        self.decoder_channels = cat_channels * L

        def channels(name: str) -> int:
            i, j = node_index(name)
            return self.level_channels[i] if j == 0 else self.decoder_channels

        def stage(i: int) -> str:  # decoder stage of level i; the deepest "stage" is the encoder's X^{L-1,0}
            return node_name(i, L - 1 - i)

        for i in range(L - 2, -1, -1):
            name = stage(i)
            self.inputs[name] = [node_name(k, 0) for k in range(i + 1)] + [stage(k) for k in range(i + 1, L)]
            cin = [channels(n) for n in self.inputs[name]]
            self.add_module(name, FullScaleNode(cin, cat_channels, norm, upsample))
        supervised = [stage(i) for i in range(L)] if deep_supervision else [self.final_head]
        for name in supervised:
            self.heads[name] = prediction_head(channels(name), out_channels, kernel_size=3)

    @classmethod
    def from_config(cls, cfg, level_channels):
        sc = cfg.MODEL.SEMANTIC_UNET
        return {
            "level_channels": level_channels,
            "cat_channels": sc.UNET3P_CAT_CHANNELS,
            "out_channels": 2 if sc.BOUNDARY else 1,
            "deep_supervision": sc.DEEP_SUPERVISION,
            "norm": sc.NORM,
            "upsample": sc.UPSAMPLE,
        }


def build_semantic_decoder(cfg, level_channels: Sequence[int]) -> GraphDecoder:
    """Build ``MODEL.SEMANTIC_UNET.DECODER`` (a short name above or any registered decoder name)."""
    name = cfg.MODEL.SEMANTIC_UNET.DECODER
    registered = DECODER_NAMES.get(name, name)
    try:
        cls = SEMANTIC_DECODER_REGISTRY.get(registered)
    except KeyError:
        raise ValueError(
            f"MODEL.SEMANTIC_UNET.DECODER={name!r} is unknown; choose one of {list(DECODER_NAMES)} "
            f"or a name registered in SEMANTIC_DECODER_REGISTRY"
        ) from None
    return cls(cfg, level_channels)
