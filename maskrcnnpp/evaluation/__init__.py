"""Nuclei evaluation: DSB 2018 leaderboard score, foreground IoU/Dice, AJI, PQ and COCO AP.

:mod:`.metrics` holds the exact definitions (vectorised over label images);
:class:`NucleiEvaluator` is the Detectron2 ``DatasetEvaluator`` that computes them all in one
pass; :mod:`.coco_results` reads COCO files for ``tools/evaluate.py``.
"""
from .label_images import (
    NucleiEvaluationInputError,
    gt_label_image,
    instances_to_label_image,
    rles_to_label_image,
    scores_kept,
)
from .metrics import (
    aggregated_jaccard_index,
    dsb_precisions,
    dsb_score,
    foreground_iou_dice,
    overlap_matrix,
    panoptic_quality,
    remove_overlaps,
    score_image,
    summarize_images,
)
from .nuclei_evaluator import NucleiEvaluator

__all__ = [
    "NucleiEvaluator",
    "NucleiEvaluationInputError",
    "aggregated_jaccard_index",
    "dsb_precisions",
    "dsb_score",
    "foreground_iou_dice",
    "gt_label_image",
    "instances_to_label_image",
    "overlap_matrix",
    "panoptic_quality",
    "remove_overlaps",
    "rles_to_label_image",
    "score_image",
    "scores_kept",
    "summarize_images",
]
