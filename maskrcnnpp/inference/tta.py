"""Test-time augmentation of one image: the instances a model finds in it and its flips, merged.

* Mask R-CNN models: Detectron2's ``GeneralizedRCNNWithTTA`` (original + horizontal flip at the
  test scale; boxes merged by NMS, masks averaged);
* ``SemanticUNet`` models: the foreground (and boundary) probabilities of the original and its
  horizontal, vertical and double flips averaged before the watershed post-processing.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from detectron2.config import CfgNode
from detectron2.structures import Instances

# a model image and a resize factor -> the model's input dict {"image", "height", "width"}
ModelInput = Callable[[np.ndarray, float], dict]

# none, horizontal, vertical, both (axes of an [H, W, C] image)
FLIPS: List[Tuple[int, ...]] = [(), (1,), (0,), (0, 1)]


def build_rcnn_tta(cfg: CfgNode, model: torch.nn.Module) -> torch.nn.Module:
    """Detectron2's ``GeneralizedRCNNWithTTA`` around ``model`` (its mapper is set per image by
    :func:`rcnn_tta_instances`)."""
    from detectron2.modeling import GeneralizedRCNNWithTTA

    return GeneralizedRCNNWithTTA(cfg, model)


def rcnn_tta_instances(tta_model: torch.nn.Module, model_image: np.ndarray, scale: float) -> Instances:
    """The merged instances of ``tta_model`` (from :func:`build_rcnn_tta`) on ``model_image`` resized
    by ``scale`` and its horizontal flip, at the image's original size."""
    from detectron2.modeling.test_time_augmentation import DatasetMapperTTA

    height, width = model_image.shape[:2]
    short = max(1, int(round(min(height, width) * scale)))
    # The wrapper resizes from the original image itself; give it exactly the test scale.
    tta_model.tta_mapper = DatasetMapperTTA(min_sizes=[short], max_size=10 * max(height, width, short), flip=True)
    tensor = torch.as_tensor(np.ascontiguousarray(model_image.transpose(2, 0, 1)))
    return tta_model([{"image": tensor, "height": height, "width": width}])[0]["instances"]


def _unflipped(output: torch.Tensor, axes: Tuple[int, ...]) -> torch.Tensor:
    """A [1, H, W] model output of an image flipped along ``axes`` ([H, W, C] axes), flipped back, on the CPU."""
    dims = [a + 1 for a in axes]
    output = output.detach().to("cpu")
    return torch.flip(output, dims) if dims else output


def semantic_flip_instances(model: torch.nn.Module, model_input: ModelInput, model_image: np.ndarray,
                            scale: float) -> Instances:
    """Instances of a ``SemanticUNet`` ``model`` on ``model_image`` resized by ``scale``: the mean of
    the foreground (and boundary) probabilities of the image and its three flips (:data:`FLIPS`),
    post-processed by the model's own settings (``model.postprocess``)."""
    from ..utils.postprocess import labels_to_instances, probability_to_instances

    height, width = model_image.shape[:2]
    fg_sum: Optional[torch.Tensor] = None
    boundary_sum: Optional[torch.Tensor] = None
    for axes in FLIPS:
        flipped = np.flip(model_image, axis=axes) if axes else model_image
        out = model([model_input(np.ascontiguousarray(flipped), scale)])[0]
        fg = _unflipped(out["sem_seg"], axes)
        fg_sum = fg if fg_sum is None else fg_sum + fg
        if "boundary" in out:
            b = _unflipped(out["boundary"], axes)
            boundary_sum = b if boundary_sum is None else boundary_sum + b
    fg_mean = (fg_sum / len(FLIPS))[0].numpy()
    boundary = None if boundary_sum is None else (boundary_sum / len(FLIPS))[0].numpy()
    labels = probability_to_instances(fg_mean, boundary=boundary, **model.postprocess)
    return labels_to_instances(labels, fg_mean, (height, width))
