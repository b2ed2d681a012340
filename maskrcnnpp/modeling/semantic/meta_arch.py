"""``SemanticUNet``: ResNet encoder + U-Net / UNet+ / UNet++ / UNet 3+ decoder for nucleus foreground.

Training takes batches from :class:`maskrcnnpp.data.semantic.SemanticNucleiMapper` ("image",
"sem_seg" with 0/1 and 255 = ignore, optional "boundary") and returns one loss per supervised
head (divided by the number of heads, so their sum is the equal-weight average), plus the
boundary and CGM losses when enabled. Inference returns per image
``{"sem_seg": foreground probability [1, H, W], "instances": Instances}`` (instances from
:func:`maskrcnnpp.utils.postprocess.probability_to_instances`, on the CPU), plus ``"boundary"``
[1, H, W] with a boundary channel. Head logits are at their node's stride (2 for X^{0,j}) and are
upsampled bilinearly to the input size; inputs are zero-padded to a multiple of 32 (after
normalisation) and the outputs cropped back; large images go through overlap-tile inference.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone
from detectron2.structures import ImageList

from ...utils.postprocess import labels_to_instances, postprocess_params, probability_to_instances
from .blocks import upsample_logits
from .decoders import GraphDecoder, UNet3PlusDecoder, build_semantic_decoder
from .encoder import LEVEL_STRIDES, check_resnet_encoder, resnet_level_channels, resnet_levels
from .losses import bce_dice_loss, unet3p_hybrid_loss
from .tiling import overlap_tile_predict

IGNORE_VALUE = 255
LOSSES = ("bce_dice", "unet3p_hybrid")


class ClassificationGuidedModule(nn.Sequential):
    """UNet 3+'s CGM: dropout, 1x1 conv, global max-pool -> one "image contains nuclei" logit."""

    def __init__(self, in_channels: int, dropout: float = 0.5):
        conv = Conv2d(in_channels, 1, kernel_size=1)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.constant_(conv.bias, 0.0)
        super().__init__(nn.Dropout(dropout), conv, nn.AdaptiveMaxPool2d(1), nn.Flatten())


def is_semantic(cfg) -> bool:
    """True when ``cfg`` builds the encoder-decoder (U-Net family) meta-architecture."""
    return cfg.MODEL.META_ARCHITECTURE == SemanticUNet.__name__


@META_ARCH_REGISTRY.register()
class SemanticUNet(nn.Module):
    """Encoder-decoder semantic segmentation of nuclei (the paper's U-Net / UNet++ baselines)."""

    @configurable
    def __init__(
        self,
        *,
        backbone: nn.Module,
        decoder: GraphDecoder,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        loss: str = "bce_dice",
        loss_params: Optional[dict] = None,
        boundary: bool = False,
        boundary_weight: float = 1.0,
        cgm: bool = False,
        cgm_weight: float = 1.0,
        inference_mode: str = "ensemble",
        postprocess: Optional[dict] = None,
        tile_size: int = 0,
        tile_overlap: int = 0,
        tile_batch_size: int = 4,
    ):
        """
        Args:
            backbone: a Detectron2 ResNet (BasicStem) with res2..res5; levels 0..4 of the encoder.
            decoder: a :class:`GraphDecoder` built on ``resnet_level_channels(backbone)``.
            loss: "bce_dice" (UNet++ hybrid) or "unet3p_hybrid"; ``loss_params`` its keywords.
            boundary: the heads have a second (boundary) channel, trained on the "boundary" target.
            cgm: add UNet 3+'s classification-guided module (UNet 3+ decoder only).
            inference_mode: "ensemble", "final" or "L1".."L4" (see the decoder).
            postprocess: keywords of :func:`probability_to_instances` (threshold, min_size, ...).
            tile_size, tile_overlap, tile_batch_size: overlap-tile inference above ``tile_size`` (0: off).
        """
        super().__init__()
        check_resnet_encoder(backbone)
        if loss not in LOSSES:
            raise ValueError(f"MODEL.SEMANTIC_UNET.LOSS={loss!r} is not allowed; choose one of {list(LOSSES)}")
        if cgm and not isinstance(decoder, UNet3PlusDecoder):
            raise ValueError("MODEL.SEMANTIC_UNET.CGM=True is UNet 3+'s module: it needs DECODER 'unet3p'")
        if boundary and decoder.out_channels != 2:
            raise ValueError("a boundary channel needs decoder heads with 2 output channels")
        if tile_size and tile_size - 2 * tile_overlap <= 0:
            raise ValueError(
                f"MODEL.SEMANTIC_UNET.TILE_OVERLAP={tile_overlap} must be < TILE_SIZE/2 ({tile_size}/2)"
            )
        self.backbone = backbone
        self.decoder = decoder
        self.loss_name = loss
        self.loss_params = dict(loss_params or {})
        self.boundary = boundary
        self.boundary_weight = boundary_weight
        self.cgm = ClassificationGuidedModule(decoder.level_channels[-1]) if cgm else None
        self.cgm_weight = cgm_weight
        decoder.heads_for_mode(inference_mode)  # fail at build time on a mode the decoder lacks
        self.inference_mode = inference_mode
        self.postprocess = postprocess_params(None, **(postprocess or {}))
        self.tile_size = tile_size
        self.tile_overlap = tile_overlap
        self.tile_batch_size = tile_batch_size
        self.size_divisibility = LEVEL_STRIDES[-1]
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)

    @classmethod
    def from_config(cls, cfg):
        sc = cfg.MODEL.SEMANTIC_UNET
        backbone = build_backbone(cfg, ShapeSpec(channels=len(cfg.MODEL.PIXEL_MEAN)))
        check_resnet_encoder(backbone)
        decoder = build_semantic_decoder(cfg, resnet_level_channels(backbone))
        if sc.LOSS == "bce_dice":
            loss_params = {"bce_weight": sc.BCE_WEIGHT, "dice_weight": sc.DICE_WEIGHT, "smooth": sc.SMOOTH}
        else:
            loss_params = {"alpha": sc.FOCAL_ALPHA, "gamma": sc.FOCAL_GAMMA, "smooth": sc.SMOOTH}
        return {
            "backbone": backbone,
            "decoder": decoder,
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "loss": sc.LOSS,
            "loss_params": loss_params,
            "boundary": sc.BOUNDARY,
            "boundary_weight": sc.BOUNDARY_WEIGHT,
            "cgm": sc.CGM,
            "cgm_weight": sc.CGM_WEIGHT,
            "inference_mode": sc.INFERENCE_MODE,
            "postprocess": postprocess_params(cfg),
            "tile_size": sc.TILE_SIZE,
            "tile_overlap": sc.TILE_OVERLAP,
            "tile_batch_size": sc.TILE_BATCH_SIZE,
        }

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ------------------------------------------------------------------ network
    def head_logits(
        self, x: torch.Tensor, heads: Sequence[str], with_cgm: bool = False
    ) -> Tuple[Dict[str, torch.Tensor], Optional[torch.Tensor]]:
        """Logits of ``heads`` at the size of ``x`` (normalised, H and W multiples of 32) and the CGM logit.

        Runs only the encoder levels and decoder nodes those heads need.
        """
        _, levels = self.decoder.plan(heads)
        if with_cgm:
            levels = self.decoder.num_levels
        features = resnet_levels(self.backbone, x, levels)
        logits = {k: upsample_logits(v, x.shape[-2:]) for k, v in self.decoder(features, heads).items()}
        cgm_logit = self.cgm(features[-1])[:, 0] if with_cgm else None
        return logits, cgm_logit

    def predict_probabilities(self, x: torch.Tensor, mode: Optional[str] = None) -> torch.Tensor:
        """Probabilities [N, K, H, W] (K = 1, or 2 with a boundary channel) of normalised images ``x``.

        ``mode`` (default ``self.inference_mode``) picks the heads; "ensemble" averages their
        probabilities. Any H, W: zero-padded to a multiple of 32, cropped back.
        """
        mode = mode or self.inference_mode
        heads = self.decoder.heads_for_mode(mode)
        h, w = x.shape[-2:]
        d = self.size_divisibility
        padded = F.pad(x, (0, -w % d, 0, -h % d))
        logits, cgm_logit = self.head_logits(padded, heads, with_cgm=self.cgm is not None)
        prob = torch.stack([torch.sigmoid(logits[k]) for k in heads]).mean(0)
        if cgm_logit is not None:
            prob = prob * (cgm_logit > 0).to(prob.dtype).view(-1, 1, 1, 1)
        return prob[..., :h, :w]

    def _normalized_images(self, batched_inputs: List[dict]) -> List[torch.Tensor]:
        return [(x["image"].to(self.device).float() - self.pixel_mean) / self.pixel_std for x in batched_inputs]

    # ------------------------------------------------------------------ training
    def forward(self, batched_inputs: List[dict]):
        """Training: dict of losses; inference: list of per-image output dicts (module doc)."""
        if not self.training:
            return self.inference(batched_inputs)
        for key in ("sem_seg",) + (("boundary",) if self.boundary else ()):
            if any(key not in x for x in batched_inputs):
                raise KeyError(f"SemanticUNet training needs {key!r} in every input (use SemanticNucleiMapper)")
        images = ImageList.from_tensors(self._normalized_images(batched_inputs), self.size_divisibility)
        target = self._padded_targets(batched_inputs, "sem_seg", images)
        heads = self.decoder.head_names
        logits, cgm_logit = self.head_logits(images.tensor, heads, with_cgm=self.cgm is not None)
        valid = target != IGNORE_VALUE
        fg = (target == 1).float()
        losses = {}
        for name in heads:
            losses[f"loss_{name}"] = self._loss(logits[name][:, :1], fg, valid) / len(heads)
        if self.boundary:
            btarget = self._padded_targets(batched_inputs, "boundary", images)
            bvalid, bfg = btarget != IGNORE_VALUE, (btarget == 1).float()
            for name in heads:
                losses[f"loss_{name}_boundary"] = (
                    self.boundary_weight * self._loss(logits[name][:, 1:2], bfg, bvalid) / len(heads)
                )
        if cgm_logit is not None:
            has_nuclei = ((fg * valid).flatten(1).amax(1) > 0).float()
            losses["loss_cgm"] = self.cgm_weight * F.binary_cross_entropy_with_logits(cgm_logit, has_nuclei)
        return losses

    def _padded_targets(self, batched_inputs: List[dict], key: str, images: ImageList) -> torch.Tensor:
        targets = [x[key].to(self.device) for x in batched_inputs]
        padded = ImageList.from_tensors(targets, self.size_divisibility, pad_value=IGNORE_VALUE).tensor
        return padded[:, None, : images.tensor.shape[-2], : images.tensor.shape[-1]]

    def _loss(self, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "bce_dice":
            return bce_dice_loss(logits, target, valid, **self.loss_params)
        return unet3p_hybrid_loss(logits, target, valid, **self.loss_params)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def inference(self, batched_inputs: List[dict], mode: Optional[str] = None) -> List[dict]:
        """Per image: foreground probability at the requested output size and post-processed instances."""
        results = []
        for x, image in zip(batched_inputs, self._normalized_images(batched_inputs)):
            h, w = image.shape[-2:]
            if self.tile_size and max(h, w) > self.tile_size:
                prob = overlap_tile_predict(
                    image,
                    lambda tiles: self.predict_probabilities(tiles, mode),
                    self.tile_size,
                    self.tile_overlap,
                    self.tile_batch_size,
                )
            else:
                prob = self.predict_probabilities(image[None], mode)[0]
            out_h, out_w = int(x.get("height", h)), int(x.get("width", w))
            if (out_h, out_w) != (h, w):
                prob = F.interpolate(prob[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
            prob = prob.float()  # autocast may hand back bfloat16/float16, which NumPy cannot take
            fg = prob[:1]
            boundary = prob[1:2] if self.boundary else None
            fg_np = fg[0].cpu().numpy()
            labels = probability_to_instances(
                fg_np, boundary=None if boundary is None else boundary[0].cpu().numpy(), **self.postprocess
            )
            result = {"sem_seg": fg, "instances": labels_to_instances(labels, fg_np, (out_h, out_w))}
            if boundary is not None:
                result["boundary"] = boundary
            results.append(result)
        return results
