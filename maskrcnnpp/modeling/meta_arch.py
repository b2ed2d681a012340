"""Mask RCNN++'s meta-architecture: Detectron2's GeneralizedRCNN plus optional deep supervision."""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F

from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, GeneralizedRCNN
from detectron2.modeling.postprocessing import detector_postprocess

from .canonical_input import CanonicalInput, canonical_input_from_config
from .semantic.losses import bce_dice_loss


def foreground_target(gt_instances, padded_hw, out_hw, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Union of each image's instance masks, placed in the padded batch frame, area-resized to ``out_hw``.

    Returns ``(target, valid)``: ``target`` float [N, 1, h, w] in [0, 1] (fraction of foreground
    in each output cell); ``valid`` bool [N, 1, h, w], False where a cell lies mostly in the batch
    padding, which is neither nucleus nor background (the semantic models ignore it too).
    """
    target = torch.zeros((len(gt_instances), 1, *padded_hw), device=device)
    extent = torch.zeros_like(target)
    for k, inst in enumerate(gt_instances):
        height, width = inst.image_size
        extent[k, 0, :height, :width] = 1
        if len(inst) == 0:
            continue
        union = inst.gt_masks.tensor.any(dim=0).to(target.dtype)
        target[k, 0, : union.shape[0], : union.shape[1]] = union
    return F.interpolate(target, size=out_hw, mode="area"), F.interpolate(extent, size=out_hw, mode="area") >= 0.5


@META_ARCH_REGISTRY.register()
class NucleiRCNN(GeneralizedRCNN):
    """Detectron2's GeneralizedRCNN whose pasted masks are cut at ``TEST.NUCLEI.MASK_THRESH`` and
    whose input images first go through ``MODEL.CANONICAL_INPUT`` (off by default).

    Stock Mask R-CNN (the baseline) in every other respect; GeneralizedRCNN always pastes at 0.5.
    """

    @configurable
    def __init__(self, *, mask_threshold: float = 0.5, canonical_input: CanonicalInput = CanonicalInput(), **kwargs):
        super().__init__(**kwargs)
        self.mask_threshold = mask_threshold
        self.canonical_input = canonical_input

    @classmethod
    def from_config(cls, cfg) -> Dict:
        ret = super().from_config(cfg)
        ret["mask_threshold"] = cfg.TEST.NUCLEI.MASK_THRESH
        ret["canonical_input"] = canonical_input_from_config(cfg)
        return ret

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        if self.canonical_input.active:
            batched_inputs = [dict(x, image=self.canonical_input(x["image"].to(self.device)))
                              for x in batched_inputs]
        return super().preprocess_image(batched_inputs)

    def inference(self, batched_inputs, detected_instances=None, do_postprocess: bool = True):
        results = super().inference(batched_inputs, detected_instances, do_postprocess=False)
        if not do_postprocess:
            return results
        out = []
        for result, x in zip(results, batched_inputs):
            size = result.image_size  # the resized input, before batch padding
            h, w = x.get("height", size[0]), x.get("width", size[1])
            out.append({"instances": detector_postprocess(result, h, w, mask_threshold=self.mask_threshold)})
        return out


@META_ARCH_REGISTRY.register()
class MaskRCNNPlusPlus(NucleiRCNN):
    """Mask R-CNN on the UNet++ pyramid; with deep supervision, adds ``loss_deep_sup``.

    ``loss_deep_sup = weight * mean_j L(Y, sigmoid(X^{0,j} head))`` with L the hybrid
    BCE + soft-Dice loss (UNet++ Eq. 2) against the union of the instance masks, over the
    images' pixels (batch padding is left out). Inference is
    exactly GeneralizedRCNN's.
    """

    @configurable
    def __init__(self, *, deep_supervision_weight: float = 0.0, channels_last: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.deep_supervision_weight = deep_supervision_weight
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)

    @classmethod
    def from_config(cls, cfg) -> Dict:
        ret = super().from_config(cfg)
        c = cfg.MODEL.UNETPP_FPN
        if c.DEEP_SUPERVISION and cfg.MODEL.BACKBONE.NAME != "build_resnet_unetpp_fpn_backbone":
            raise ValueError("MODEL.UNETPP_FPN.DEEP_SUPERVISION needs MODEL.BACKBONE.NAME="
                             f"'build_resnet_unetpp_fpn_backbone', not {cfg.MODEL.BACKBONE.NAME!r}")
        if c.DEEP_SUPERVISION and (not cfg.MODEL.MASK_ON or cfg.INPUT.MASK_FORMAT != "bitmask"):
            raise ValueError("MODEL.UNETPP_FPN.DEEP_SUPERVISION's target is the union of the instance masks: it needs "
                             f"MODEL.MASK_ON True and INPUT.MASK_FORMAT 'bitmask' (got {cfg.MODEL.MASK_ON}, "
                             f"{cfg.INPUT.MASK_FORMAT!r})")
        ret["deep_supervision_weight"] = c.DEEP_SUPERVISION_WEIGHT if c.DEEP_SUPERVISION else 0.0
        ret["channels_last"] = c.CHANNELS_LAST
        return ret

    def preprocess_image(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        images = super().preprocess_image(batched_inputs)
        if self.channels_last:
            images.tensor = images.tensor.contiguous(memory_format=torch.channels_last)
        self._padded_hw = tuple(images.tensor.shape[-2:])
        return images

    def forward(self, batched_inputs: List[Dict[str, torch.Tensor]]):
        out = super().forward(batched_inputs)
        if not self.training or self.deep_supervision_weight <= 0:
            return out
        logits = self.backbone.deep_supervision_logits
        gt = [x["instances"].to(self.device) for x in batched_inputs]
        target, valid = foreground_target(gt, self._padded_hw, logits[0].shape[-2:], self.device)
        loss = sum(bce_dice_loss(l.float(), target, valid) for l in logits) / len(logits)
        out["loss_deep_sup"] = self.deep_supervision_weight * loss
        return out
