"""Label images (0 = background, 1..K = objects) from COCO segmentations and model outputs.

Ground truth comes as Detectron2 dataset dicts (RLE or polygon segmentations, decoded with
pycocotools); predictions come as Detectron2 ``Instances`` (dense masks) or as COCO results
(RLE). Either way overlapping objects are resolved by priority, so every pixel has one owner:
predictions by score (:func:`maskrcnnpp.evaluation.metrics.remove_overlaps`), ground truth by
area (the smaller object keeps the shared pixels, and the correction is counted).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch

from .metrics import remove_overlaps

logger = logging.getLogger(__name__)

__all__ = [
    "NucleiEvaluationInputError",
    "segmentation_to_rle",
    "rles_to_label_image",
    "gt_label_image",
    "instances_to_label_image",
]


class NucleiEvaluationInputError(ValueError):
    """Ground truth or predictions that cannot be scored; the message names the file/image/key."""


def segmentation_to_rle(segm: Any, height: int, width: int, where: str) -> Dict[str, Any]:
    """Compressed RLE of a COCO segmentation (RLE dict or polygon list) of an ``height x width`` image.

    Raises :class:`NucleiEvaluationInputError` (mentioning ``where``) for an RLE whose ``size``
    is not ``[height, width]`` or a segmentation of an unknown form.
    """
    if isinstance(segm, dict):
        if "size" not in segm or "counts" not in segm:
            raise NucleiEvaluationInputError(f"{where}: RLE segmentation needs 'size' and 'counts', got keys {sorted(segm)}")
        size = [int(v) for v in segm["size"]]
        if size != [int(height), int(width)]:
            raise NucleiEvaluationInputError(
                f"{where}: RLE size {size} (height, width) does not match the image size "
                f"[{int(height)}, {int(width)}]"
            )
        if isinstance(segm["counts"], list):  # uncompressed RLE
            return mask_util.frPyObjects(segm, height, width)
        return segm
    if isinstance(segm, list) and segm and all(isinstance(p, list) for p in segm):
        polygons = [p for p in segm if len(p) >= 6 and len(p) % 2 == 0]
        if len(polygons) != len(segm):
            raise NucleiEvaluationInputError(f"{where}: polygon with fewer than 3 points or an odd number of coordinates")
        return mask_util.merge(mask_util.frPyObjects(polygons, height, width))
    raise NucleiEvaluationInputError(f"{where}: segmentation is neither an RLE dict nor a list of polygons")


def rles_to_label_image(rles: Sequence[Dict[str, Any]], priorities: Sequence[float], shape: Tuple[int, int]) -> np.ndarray:
    """Label image of RLE objects where each pixel goes to the covering object of highest priority.

    Same result as ``remove_overlaps(decoded masks, priorities)`` (ties: lower index wins;
    emptied objects dropped; labels 1..K by decreasing priority) without holding all masks at
    once: objects are decoded one at a time and painted, lowest priority first, inside their box.
    """
    height, width = int(shape[0]), int(shape[1])
    priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
    if len(rles) != priorities.size:
        raise ValueError(f"{len(rles)} RLEs but {priorities.size} priorities")
    ranked = np.zeros((height, width), dtype=np.int32)
    if len(rles) == 0:
        return ranked
    order = np.argsort(-priorities, kind="stable")
    boxes = np.asarray(mask_util.toBbox([rles[i] for i in order])).reshape(-1, 4)
    for rank in range(len(order) - 1, -1, -1):  # worst first, so the best ends on top
        x, y, w, h = boxes[rank]
        if w <= 0 or h <= 0:
            continue
        x0, y0 = int(x), int(y)
        x1, y1 = min(int(np.ceil(x + w)), width), min(int(np.ceil(y + h)), height)
        mask = mask_util.decode(rles[order[rank]])[y0:y1, x0:x1] > 0
        ranked[y0:y1, x0:x1][mask] = rank + 1
    kept = np.bincount(ranked.ravel(), minlength=len(order) + 1) > 0
    kept[0] = False
    renumber = np.zeros(len(order) + 1, dtype=np.int32)
    renumber[kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.int32)
    return renumber[ranked]


def gt_label_image(record: Dict[str, Any]) -> Tuple[np.ndarray, Dict[str, int]]:
    """Ground-truth label image of one Detectron2 dataset dict, and counts of what was corrected.

    Crowd annotations (``iscrowd=1``) are not objects of the nuclei metrics and are skipped;
    empty masks are skipped; where masks overlap, the smaller object keeps the shared pixels.
    The counts (``crowd``, ``empty``, ``overlap_pixels``, ``dropped``) say how many of each.
    """
    height, width = int(record["height"]), int(record["width"])
    where = f"image_id {record.get('image_id')!r} ({record.get('file_name', '?')})"
    rles: List[Dict[str, Any]] = []
    crowd = 0
    for k, ann in enumerate(record.get("annotations", [])):
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        if "segmentation" not in ann:
            raise NucleiEvaluationInputError(f"{where}, annotation {k}: no 'segmentation' (nuclei metrics need masks)")
        rles.append(segmentation_to_rle(ann["segmentation"], height, width, f"{where}, annotation {k}"))
    areas = np.asarray(mask_util.area(rles), dtype=np.int64).reshape(-1) if rles else np.zeros(0, np.int64)
    nonempty = areas > 0
    rles = [r for r, keep in zip(rles, nonempty) if keep]
    areas = areas[nonempty]
    labels = rles_to_label_image(rles, -areas.astype(np.float64), (height, width))
    num_kept = int(labels.max()) if labels.size else 0
    overlap = int(areas.sum()) - int(np.count_nonzero(labels))
    stats = {
        "crowd": crowd,
        "empty": int((~nonempty).sum()),
        "overlap_pixels": overlap,
        "dropped": len(rles) - num_kept,
    }
    if overlap:
        logger.warning(
            "%s: ground-truth masks overlap on %d pixels; the smaller nucleus keeps them (%d nuclei "
            "left empty and dropped)", where, overlap, stats["dropped"],
        )
    return labels, stats


def instances_to_label_image(instances, score_thresh: float, mask_thresh: float) -> np.ndarray:
    """Label image of a Detectron2 ``Instances`` (``pred_masks``, ``scores``), overlaps removed by score.

    Instances scoring below ``score_thresh`` are dropped; soft (float) masks are binarised with
    ``>= mask_thresh`` (Detectron2's paste rule), boolean masks are used as they are.
    """
    height, width = instances.image_size
    if len(instances) == 0:
        return np.zeros((height, width), dtype=np.int32)
    if not instances.has("pred_masks"):
        raise NucleiEvaluationInputError("predicted Instances have no 'pred_masks'; nuclei metrics need masks")
    masks = instances.pred_masks
    masks = getattr(masks, "tensor", masks)  # BitMasks -> its [N, H, W] tensor
    scores = instances.scores.detach().to("cpu").numpy().astype(np.float64)
    keep = np.nonzero(scores >= score_thresh)[0]
    if len(keep) < len(scores):  # select before moving: only the kept masks leave the device
        masks = masks[torch.as_tensor(keep, dtype=torch.long, device=masks.device)]
    masks = masks.detach().to("cpu")
    if masks.dtype.is_floating_point:
        masks = masks >= mask_thresh
    masks = masks.numpy().astype(bool, copy=False)
    if masks.shape[1:] != (height, width):
        raise NucleiEvaluationInputError(
            f"pred_masks are {tuple(masks.shape[1:])} but the Instances image size is {(height, width)}"
        )
    return remove_overlaps(masks, scores[keep])
