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

from ..errors import UserError
from ..utils.rle import rle_pixel_indices as _rle_pixel_indices
from ..utils.rle import rle_run_lengths
from .metrics import remove_overlaps

logger = logging.getLogger(__name__)

__all__ = [
    "NucleiEvaluationInputError",
    "segmentation_to_rle",
    "rle_run_lengths",
    "rle_pixel_indices",
    "rles_to_label_image",
    "gt_label_image",
    "instances_to_label_image",
    "scores_kept",
    "results_kept",
    "results_label_image",
]


class NucleiEvaluationInputError(UserError, ValueError):
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


def rle_pixel_indices(rle: Dict[str, Any], num_pixels: int, where: str = "RLE") -> np.ndarray:
    """Column-major (Fortran) flat indices of an RLE's foreground pixels (:mod:`maskrcnnpp.utils.rle`),
    or a NucleiEvaluationInputError naming ``where``."""
    try:
        return _rle_pixel_indices(rle, num_pixels)
    except ValueError as e:
        raise NucleiEvaluationInputError(f"{where}: {e}") from None


# Pixel indices handled per np.minimum.at call, so that huge masks never need N x H x W memory.
_PAINT_CHUNK = 1 << 22


def _label_image_from_pixels(pixels: Sequence[np.ndarray], priorities: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Each pixel to the object of highest priority covering it (ties: lower index); labels 1..K by rank."""
    height, width = int(shape[0]), int(shape[1])
    num = len(pixels)
    if num == 0:
        return np.zeros((height, width), dtype=np.int32)
    order = np.argsort(-np.asarray(priorities, dtype=np.float64), kind="stable")
    owner = np.full(height * width, num, dtype=np.int32)  # best (lowest) rank covering each pixel
    batch_idx: List[np.ndarray] = []
    batch_rank: List[np.ndarray] = []
    pending = 0
    for rank, i in enumerate(order):
        batch_idx.append(pixels[i])
        batch_rank.append(np.full(pixels[i].size, rank, dtype=np.int32))
        pending += pixels[i].size
        if pending >= _PAINT_CHUNK or rank == num - 1:
            np.minimum.at(owner, np.concatenate(batch_idx), np.concatenate(batch_rank))
            batch_idx, batch_rank, pending = [], [], 0
    kept = np.bincount(owner, minlength=num + 1)[:num] > 0
    renumber = np.zeros(num + 1, dtype=np.int32)
    renumber[:num][kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.int32)
    return np.ascontiguousarray(renumber[owner].reshape(width, height).T)


def rles_to_label_image(rles: Sequence[Dict[str, Any]], priorities: Sequence[float], shape: Tuple[int, int]) -> np.ndarray:
    """Label image of RLE objects where each pixel goes to the covering object of highest priority.

    Same result as ``remove_overlaps(decoded masks, priorities)`` (ties: lower index wins;
    emptied objects dropped; labels 1..K by decreasing priority), in time proportional to the
    objects' pixels rather than objects x image size: runs are read from the RLEs
    (:func:`rle_run_lengths`) and each pixel keeps the best rank painted on it.
    """
    priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
    if len(rles) != priorities.size:
        raise ValueError(f"{len(rles)} RLEs but {priorities.size} priorities")
    num_pixels = int(shape[0]) * int(shape[1])
    pixels = [rle_pixel_indices(r, num_pixels, f"object {k}") for k, r in enumerate(rles)]
    return _label_image_from_pixels(pixels, priorities, shape)


def gt_label_image(record: Dict[str, Any]) -> Tuple[np.ndarray, Dict[str, int]]:
    """Ground-truth label image of one Detectron2 dataset dict, and counts of what was corrected.

    Crowd annotations (``iscrowd=1``) are not objects of the nuclei metrics and are skipped;
    empty masks are skipped; where masks overlap, the smaller object keeps the shared pixels.
    The counts (``crowd``, ``empty``, ``overlap_pixels``, ``dropped``) say how many of each;
    ``overlap_pixels`` counts mask pixels given up to a smaller mask (a pixel claimed by k masks
    counts k - 1).
    """
    height, width = int(record["height"]), int(record["width"])
    where = f"image_id {record.get('image_id')!r} ({record.get('file_name', '?')})"
    pixels: List[np.ndarray] = []
    crowd = empty = 0
    for k, ann in enumerate(record.get("annotations", [])):
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        if "segmentation" not in ann:
            raise NucleiEvaluationInputError(f"{where}, annotation {k}: no 'segmentation' (nuclei metrics need masks)")
        rle = segmentation_to_rle(ann["segmentation"], height, width, f"{where}, annotation {k}")
        px = rle_pixel_indices(rle, height * width, f"{where}, annotation {k}")
        if px.size == 0:
            empty += 1
        else:
            pixels.append(px)
    areas = np.array([p.size for p in pixels], dtype=np.int64)
    labels = _label_image_from_pixels(pixels, -areas.astype(np.float64), (height, width))
    num_kept = int(labels.max()) if labels.size else 0
    overlap = int(areas.sum()) - int(np.count_nonzero(labels))
    stats = {"crowd": crowd, "empty": empty, "overlap_pixels": overlap, "dropped": len(pixels) - num_kept}
    if overlap:
        logger.warning(
            "%s: ground-truth masks overlap; %d mask pixels given up to the smaller nucleus (%d nuclei "
            "left empty and dropped)", where, overlap, stats["dropped"],
        )
    return labels, stats


def scores_kept(scores: Sequence[float], score_thresh: float) -> np.ndarray:
    """Boolean mask of ``scores >= score_thresh`` compared in float32, as the models' own
    (float32) scores are compared at inference: a score stored in a results file as
    ``float(float32(0.7))`` is kept at threshold 0.7 here as it was in training."""
    return np.asarray(scores, dtype=np.float32) >= np.float32(score_thresh)


def results_kept(results: Sequence[Dict[str, Any]], score_thresh: float) -> List[Dict[str, Any]]:
    """The COCO results (``score``; 1 where absent) kept at ``score_thresh`` by :func:`scores_kept`."""
    keep = scores_kept([float(r.get("score", 1.0)) for r in results], score_thresh)
    return [r for r, k in zip(results, keep) if k]


def results_label_image(results: Sequence[Dict[str, Any]], shape: Tuple[int, int], score_thresh: float,
                        where: str = "results") -> np.ndarray:
    """Label image of one image's COCO results scoring at least ``score_thresh`` (overlaps go to the
    higher score); segmentations are checked against ``shape`` (a NucleiEvaluationInputError naming ``where``)."""
    kept = results_kept(results, score_thresh)
    rles = [segmentation_to_rle(r["segmentation"], shape[0], shape[1], where) for r in kept]
    return rles_to_label_image(rles, [float(r.get("score", 1.0)) for r in kept], shape)


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
    keep = np.flatnonzero(scores_kept(scores, score_thresh))
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
