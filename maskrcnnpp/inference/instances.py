"""Predicted nuclei as cropped masks, and the non-overlapping label image made from them.

A model's ``Instances`` hold one full-image mask per nucleus; a large tiled image can hold
thousands of nuclei, so predictions are kept as :class:`CroppedInstance` (a mask cut to its box,
plus its offset and score) and painted into one label image at the end (:func:`paint_labels`).
Painting gives each pixel to the highest-scoring instance covering it, exactly like
:func:`maskrcnnpp.evaluation.remove_overlaps` on the full masks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Sequence, Tuple

import numpy as np
import torch

from ..evaluation.label_images import scores_kept


@dataclass
class CroppedInstance:
    """One predicted nucleus: ``mask`` (bool ``[h, w]``) placed at row ``y0``, column ``x0``."""

    y0: int
    x0: int
    mask: np.ndarray
    score: float

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def box(self) -> Tuple[int, int, int, int]:
        """(y0, x0, y1, x1), end-exclusive."""
        return self.y0, self.x0, self.y0 + self.mask.shape[0], self.x0 + self.mask.shape[1]

    @property
    def centroid(self) -> Tuple[float, float]:
        """(row, column) mean of the mask's pixels, in image coordinates."""
        ys, xs = np.nonzero(self.mask)
        return self.y0 + float(ys.mean()), self.x0 + float(xs.mean())

    def shifted(self, dy: int, dx: int) -> "CroppedInstance":
        return CroppedInstance(self.y0 + dy, self.x0 + dx, self.mask, self.score)


def crop_mask(mask: np.ndarray, score: float) -> CroppedInstance | None:
    """Cut a full-image bool mask to the box of its pixels; ``None`` for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return CroppedInstance(y0, x0, np.ascontiguousarray(mask[y0:y1, x0:x1]), float(score))


def crops_from_masks(masks: np.ndarray, scores: Sequence[float]) -> List[CroppedInstance]:
    """Cropped instances of ``[N, H, W]`` masks (nonzero = inside); empty masks carry nothing and are skipped."""
    out = []
    for mask, score in zip(np.asarray(masks) != 0, np.asarray(scores, dtype=np.float64).reshape(-1)):
        inst = crop_mask(mask, score)
        if inst is not None:
            out.append(inst)
    return out


def crops_from_instances(instances, score_thresh: float, mask_thresh: float = 0.5) -> List[CroppedInstance]:
    """Cropped instances of a Detectron2 ``Instances`` (``pred_masks``, ``scores``) scoring ``>= score_thresh``.

    Soft (float) masks are binarised with ``>= mask_thresh`` (Detectron2's paste rule).
    """
    if len(instances) == 0:
        return []
    scores = instances.scores.detach().to("cpu").numpy().astype(np.float64)
    keep = np.flatnonzero(scores_kept(scores, score_thresh))
    masks = instances.pred_masks
    masks = getattr(masks, "tensor", masks)
    masks = masks[torch.as_tensor(keep, dtype=torch.long, device=masks.device)].detach().to("cpu")
    masks = (masks >= mask_thresh) if masks.dtype.is_floating_point else masks.bool()
    return crops_from_masks(masks.numpy(), scores[keep])


def crops_from_unpasted_instances(results, height: int, width: int, score_thresh: float,
                                  mask_thresh: float = 0.5) -> List[CroppedInstance]:
    """What :func:`crops_from_instances` gives for ``detector_postprocess(results, height, width)``,
    without ever holding ``N`` full-image masks.

    ``results`` is an R-CNN's output before post-processing (``inference(..., do_postprocess=False)``:
    boxes in the resized input, ``pred_masks`` ``[N, 1, M, M]`` soft masks). Detectron2 pastes every
    mask into a full ``height x width`` array at once: 500 masks of a 3000 x 3000 image are 4.5 GB.
    Here boxes are scaled, clipped and filtered by ``detector_postprocess`` itself (masks left out),
    and each kept mask is pasted into its box only, by Detectron2's own ``_do_paste_mask`` (the
    ``skip_empty`` path its CPU paste takes), with the same ``>= mask_thresh`` rule: identical to
    Detectron2 on the CPU. On CUDA Detectron2 pastes the whole image, where bilinear tails reach a
    few pixels past boxes wider or taller than 84 px with values below 0.5; so results are also
    identical there at ``mask_thresh >= 0.5`` (the default), while a lower threshold keeps that thin
    rim in Detectron2's paste and not here.
    """
    from detectron2.layers.mask_ops import _do_paste_mask
    from detectron2.modeling.postprocessing import detector_postprocess
    from detectron2.structures import Instances

    if len(results) == 0:
        return []
    fields = {k: v for k, v in results.get_fields().items() if k != "pred_masks"}
    boxes_only = Instances(results.image_size, **fields)
    boxes_only.source_index = torch.arange(len(results), device=results.scores.device)
    placed = detector_postprocess(boxes_only, height, width)
    scores = placed.scores.detach().to("cpu").numpy().astype(np.float64)
    out = []
    for k in np.flatnonzero(scores_kept(scores, score_thresh)):
        mask = results.pred_masks[placed.source_index[k]][None]  # [1, 1, M, M]
        patch, (rows, cols) = _do_paste_mask(mask, placed.pred_boxes.tensor[k][None], height, width, skip_empty=True)
        inst = crop_mask((patch[0] >= mask_thresh).to("cpu").numpy(), scores[k])
        if inst is not None:
            out.append(inst.shifted(int(rows.start), int(cols.start)))  # the slices' bounds are tensors
    return out


@dataclass
class NucleiPrediction:
    """Non-overlapping nuclei of one image: ``labels`` int32 ``[H, W]`` (0 = background, 1..K in
    decreasing score order) and ``scores`` float32 ``[K]`` (``scores[k - 1]`` is label k's)."""

    labels: np.ndarray
    scores: np.ndarray
    info: dict = field(default_factory=dict)  # how it was made (tiles, duplicates removed, ...)

    @property
    def num_instances(self) -> int:
        return int(self.scores.size)

    @property
    def image_size(self) -> Tuple[int, int]:
        return tuple(self.labels.shape)  # type: ignore[return-value]

    def masks(self) -> Iterator[np.ndarray]:
        """The bool mask of each label 1..K in order (one full-size array at a time)."""
        for k in range(1, self.num_instances + 1):
            yield self.labels == k


def paint_labels(instances: Sequence[CroppedInstance], shape: Tuple[int, int]) -> NucleiPrediction:
    """Label image where each pixel goes to the highest-scoring instance covering it.

    Equal scores favour the earlier instance; instances left without pixels are dropped; labels
    are 1..K in decreasing score order (the convention of ``remove_overlaps``).
    """
    height, width = int(shape[0]), int(shape[1])
    scores = np.array([inst.score for inst in instances], dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    ranked = np.zeros((height, width), dtype=np.int32 if len(order) < 2**31 - 1 else np.int64)
    for rank in range(len(order) - 1, -1, -1):  # worst first, so the best ends on top
        inst = instances[order[rank]]
        y0, x0, y1, x1 = inst.box
        if y0 < 0 or x0 < 0 or y1 > height or x1 > width:
            raise ValueError(f"instance box {inst.box} leaves the {height}x{width} image")
        ranked[y0:y1, x0:x1][inst.mask] = rank + 1
    kept = np.bincount(ranked.ravel(), minlength=len(order) + 1) > 0
    kept[0] = False
    renumber = np.zeros(len(order) + 1, dtype=np.int32)
    renumber[kept] = np.arange(1, int(kept.sum()) + 1, dtype=np.int32)
    kept_scores = scores[order][kept[1:]].astype(np.float32)
    return NucleiPrediction(renumber[ranked], kept_scores, {"instances_in": len(instances), "emptied_by_overlap": len(instances) - int(kept.sum())})
