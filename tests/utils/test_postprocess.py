"""Probability -> nucleus instances: thresholding, small-object removal, watershed splits."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.segmentation import find_boundaries

from maskrcnnpp.utils.postprocess import labels_to_instances, probability_to_instances
from semantic_testutils import disk_labels, make_cfg

TWO_DISCS = [(30, 25, 12), (30, 45, 12)]  # centres 20 px apart: touching, one connected blob


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def _matches(labels: np.ndarray, gt: np.ndarray) -> list:
    return [max(_iou(labels == p, gt == g) for p in range(1, labels.max() + 1)) for g in range(1, gt.max() + 1)]


def test_touching_discs_are_one_component_but_watershed_splits_them():
    gt = disk_labels((60, 70), TWO_DISCS)
    prob = (gt > 0).astype(np.float32) * 0.9
    assert ndi.label(prob > 0.5)[1] == 1
    plain = probability_to_instances(prob, watershed=False)
    assert plain.max() == 1
    split = probability_to_instances(prob)
    assert split.dtype == np.int32 and split.max() == 2
    assert min(_matches(split, gt)) > 0.9
    assert ((split > 0) == (gt > 0)).all(), "the split keeps every foreground pixel"


def test_boundary_channel_seeds_the_split():
    gt = disk_labels((60, 70), TWO_DISCS)
    prob = (gt > 0).astype(np.float32)
    boundary = find_boundaries(gt, mode="inner").astype(np.float32)
    labels = probability_to_instances(prob, boundary=boundary)
    assert labels.max() == 2 and min(_matches(labels, gt)) > 0.9
    assert probability_to_instances(prob, boundary=boundary, watershed=False).max() == 1


def test_elongated_nucleus_is_not_cut():
    yy, xx = np.mgrid[:60, :80]
    ellipse = ((yy - 30) / 7.0) ** 2 + ((xx - 40) / 30.0) ** 2 <= 1
    assert probability_to_instances(ellipse.astype(np.float32)).max() == 1


def test_threshold_min_size_and_cfg():
    prob = np.zeros((40, 40), np.float32)
    prob[5:15, 5:15] = 0.8  # 100 px nucleus
    prob[30:32, 30:32] = 0.8  # 4 px speck
    prob[20:28, 20:28] = 0.6  # 64 px, faint
    labels = probability_to_instances(prob, min_size=10)
    assert labels.max() == 2 and (labels[30:32, 30:32] == 0).all()
    assert probability_to_instances(prob, min_size=1).max() == 3
    cfg = make_cfg("unetpp_tiny.yaml", MODEL__SEMANTIC_UNET__THRESHOLD=0.7, MODEL__SEMANTIC_UNET__MIN_SIZE=10)
    assert probability_to_instances(prob, cfg).max() == 1
    assert probability_to_instances(prob, cfg, threshold=0.5).max() == 2, "explicit keywords win over cfg"
    assert probability_to_instances(prob[None], cfg).max() == 1, "[1, H, W] is accepted"
    assert probability_to_instances(np.zeros((8, 8))).max() == 0


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="prob"):
        probability_to_instances(np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="boundary"):
        probability_to_instances(np.ones((8, 8)), boundary=np.zeros((4, 4)))


def test_labels_to_instances():
    labels = np.zeros((10, 12), np.int32)
    labels[1:4, 2:6] = 1
    labels[6:9, 7:12] = 2
    prob = np.where(labels == 1, 0.9, np.where(labels == 2, 0.7, 0.1)).astype(np.float32)
    inst = labels_to_instances(labels, prob)
    assert inst.image_size == (10, 12) and len(inst) == 2
    assert inst.pred_masks.dtype.is_floating_point is False
    assert inst.pred_masks[0].sum() == 12 and inst.pred_masks[1].sum() == 15
    assert inst.pred_boxes.tensor.tolist() == [[2, 1, 6, 4], [7, 6, 12, 9]]
    assert inst.scores.tolist() == pytest.approx([0.9, 0.7])
    assert inst.pred_classes.tolist() == [0, 0]
    assert len(labels_to_instances(np.zeros((5, 5), np.int32), np.zeros((5, 5)))) == 0
