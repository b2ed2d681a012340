"""Semantic baselines: ResNet encoder + U-Net / UNet+ / UNet++ / UNet 3+ decoders (``SemanticUNet``).

Importing this package registers ``SemanticUNet`` in Detectron2's ``META_ARCH_REGISTRY`` and the
decoders in ``SEMANTIC_DECODER_REGISTRY``.
"""
from .decoders import (
    DECODER_NAMES,
    INFERENCE_MODES,
    SEMANTIC_DECODER_REGISTRY,
    GraphDecoder,
    NestedDecoder,
    UNet3PlusDecoder,
    UNetDecoder,
    UNetPlusDecoder,
    UNetPlusPlusDecoder,
    build_semantic_decoder,
    node_index,
    node_name,
)
from .encoder import resnet_level_channels, resnet_levels
from .losses import bce_dice_loss, ms_ssim, unet3p_hybrid_loss
from .meta_arch import SemanticUNet, is_semantic
from .tiling import overlap_tile_predict

__all__ = [
    "SemanticUNet",
    "is_semantic",
    "SEMANTIC_DECODER_REGISTRY",
    "DECODER_NAMES",
    "INFERENCE_MODES",
    "GraphDecoder",
    "NestedDecoder",
    "UNetDecoder",
    "UNetPlusDecoder",
    "UNetPlusPlusDecoder",
    "UNet3PlusDecoder",
    "build_semantic_decoder",
    "node_name",
    "node_index",
    "resnet_levels",
    "resnet_level_channels",
    "bce_dice_loss",
    "unet3p_hybrid_loss",
    "ms_ssim",
    "overlap_tile_predict",
]
