"""Detectron2's ResNet as a five-level U-Net encoder (levels 0..4 = stem conv, res2..res5).

Detectron2's ``BasicStem`` is conv1 (7x7, stride 2) + ReLU + 3x3 max-pool (stride 2), so its
output has stride 4, the same as res2. A U-Net needs one level per resolution, so level 0 is
the stem's conv1 + ReLU output *before* the max-pool (stride 2), as in the ResNet-encoder
U-Nets the UNet++ paper used; level 1 is res2 after the max-pool (stride 4), and levels 2, 3, 4
are res3, res4, res5 (strides 8, 16, 32). The weights are those of the unmodified ResNet, so
ImageNet checkpoints load by their usual names (``backbone.stem.conv1``, ``backbone.res2...``).
"""
from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F

from detectron2.modeling.backbone.resnet import BasicStem, ResNet

RESNET_STAGES = ("res2", "res3", "res4", "res5")
LEVEL_STRIDES = (2, 4, 8, 16, 32)


def check_resnet_encoder(resnet) -> None:
    """Raise a clear error unless ``resnet`` is a Detectron2 ResNet usable as a 5-level encoder."""
    if not isinstance(resnet, ResNet) or not isinstance(resnet.stem, BasicStem):
        raise TypeError(
            "SemanticUNet needs a Detectron2 ResNet with BasicStem as encoder (MODEL.BACKBONE.NAME "
            f"'build_resnet_backbone'); got {type(resnet).__name__}"
        )
    shapes = resnet.output_shape()
    missing = [s for s in RESNET_STAGES if s not in shapes]
    if missing:
        raise ValueError(f"the ResNet encoder lacks stages {missing}; MODEL.RESNETS.OUT_FEATURES must reach res5")
    strides = tuple(shapes[s].stride for s in RESNET_STAGES)
    if strides != LEVEL_STRIDES[1:]:
        raise ValueError(
            f"ResNet stage strides {strides} are not (4, 8, 16, 32); MODEL.RESNETS.RES5_DILATION must be 1"
        )


def resnet_level_channels(resnet: ResNet) -> List[int]:
    """Channels of levels 0..4: the stem conv's, then res2..res5's."""
    shapes = resnet.output_shape()
    return [resnet.stem.out_channels] + [shapes[s].channels for s in RESNET_STAGES]


def resnet_levels(resnet: ResNet, x: torch.Tensor, num_levels: int = 5) -> List[torch.Tensor]:
    """Encoder features of levels 0..num_levels-1 (strides 2, 4, 8, 16, 32).

    Stages deeper than ``num_levels - 1`` are not run at all: this is what lets a pruned UNet++
    (L1..L3) skip res3..res5. The stem is split exactly as ``BasicStem.forward`` computes it.
    """
    if not 1 <= num_levels <= 5:
        raise ValueError(f"num_levels must be 1..5, got {num_levels}")
    stem = resnet.stem
    x0 = F.relu(stem.conv1(x))
    levels = [x0]
    x = F.max_pool2d(x0, kernel_size=3, stride=2, padding=1)
    for name in RESNET_STAGES[: num_levels - 1]:
        x = getattr(resnet, name)(x)
        levels.append(x)
    return levels
