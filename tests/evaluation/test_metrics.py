"""Hand-worked cases of the nuclei metrics, each answer derived in the comment beside it."""
import numpy as np
import pytest

from maskrcnnpp.evaluation.metrics import (
    PRECISION_KEYS,
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


def canvas(*boxes, shape=(10, 10)):
    """Label image with object k+1 filling boxes[k] = (row0, row1, col0, col1), ends exclusive."""
    lab = np.zeros(shape, dtype=np.int32)
    for k, (r0, r1, c0, c1) in enumerate(boxes):
        lab[r0:r1, c0:c1] = k + 1
    return lab


GT_SQUARE = canvas((0, 4, 0, 4))  # one 4x4 nucleus, 16 px


def check(row, **expected):
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, abs=1e-12), key


def test_perfect_prediction_scores_one():
    gt = canvas((0, 4, 0, 4), (5, 9, 5, 8), (0, 2, 7, 10))
    pred = np.where(gt > 0, gt + 10, 0)  # same objects under other label values
    check(score_image(gt, pred), score=1, iou=1, dice=1, aji=1, pq=1, sq=1, dq=1, tp=3, fp=0, fn=0)


def test_no_prediction_scores_zero():
    check(score_image(GT_SQUARE, np.zeros_like(GT_SQUARE)), score=0, iou=0, dice=0, aji=0, pq=0, sq=0, dq=0, fn=1)


def test_one_extra_false_positive():
    pred = canvas((0, 4, 0, 4), (8, 10, 8, 10))  # the nucleus + a 2x2 = 4 px false positive
    # each threshold: TP 1, FP 1, FN 0 -> 1/2; foreground 16 / 20; Dice 32 / 36;
    # AJI: C 16, U 16 + 4 unused; PQ: SQ 1, DQ 1 / (1 + 1/2)
    check(score_image(GT_SQUARE, pred), score=0.5, iou=0.8, dice=32 / 36, aji=0.8, sq=1, dq=2 / 3, pq=2 / 3, fp=1)


def test_nucleus_split_in_two():
    pred = canvas((0, 4, 0, 3), (0, 4, 3, 4))  # 12 px (IoU 0.75) + 4 px (IoU 0.25)
    # t = .50 ... .70 (5 thresholds): TP 1, FP 1, FN 0 -> 1/2; t >= .75: TP 0, FP 2, FN 1 -> 0
    row = score_image(GT_SQUARE, pred)
    assert [row[k] for k in PRECISION_KEYS] == [0.5] * 5 + [0.0] * 5
    # AJI: g -> the 12 px half (C 12, U 16), the 4 px half unused -> 12 / 20
    # PQ: one TP at IoU 0.75, one FP -> SQ .75, DQ 2/3
    check(row, score=0.25, iou=1, dice=1, aji=0.6, sq=0.75, dq=2 / 3, pq=0.5, tp=1, fp=1, fn=0)


def test_two_nuclei_merged_into_one():
    gt = canvas((0, 4, 0, 3), (0, 4, 3, 4))  # 12 px + 4 px side by side
    pred = canvas((0, 4, 0, 4))  # one 16 px object over both
    # t < .75: TP 1 (the 12 px one), FP 0, FN 1 -> 1/2, then 0: score .25
    # AJI: both g pick the single p: C 12 + 4, U 16 + 16 -> 1/2 (not symmetric with the split)
    check(score_image(gt, pred), score=0.25, iou=1, dice=1, aji=0.5, sq=0.75, dq=2 / 3, pq=0.5, tp=1, fp=0, fn=1)


def test_iou_exactly_half_is_not_a_match():
    pred = canvas((0, 4, 0, 2))  # 8 px inside the 16 px nucleus: IoU = 8/16 = 0.5 exactly
    assert overlap_matrix(GT_SQUARE, pred).intersections.tolist() == [[8]]
    np.testing.assert_array_equal(dsb_precisions(GT_SQUARE, pred), np.zeros(10))
    assert panoptic_quality(GT_SQUARE, pred) == (0.0, 0.0, 0.0)
    assert aggregated_jaccard_index(GT_SQUARE, pred) == 0.5  # AJI pairs by max IoU, no threshold


def test_iou_055_matches_at_the_first_threshold_only():
    gt = canvas((0, 4, 0, 5))  # 20 px
    pred = np.zeros_like(gt)
    pred.ravel()[np.flatnonzero(gt)[:11]] = 1  # 11 px inside: IoU = 11/20 = 0.55 exactly
    precisions = dsb_precisions(gt, pred)
    np.testing.assert_array_equal(precisions, [1.0] + [0.0] * 9)
    assert dsb_score(gt, pred) == pytest.approx(0.1)
    assert panoptic_quality(gt, pred) == pytest.approx((0.55, 0.55, 1.0))


def test_empty_images():
    empty = np.zeros((6, 6), dtype=np.int32)
    # nothing to find and nothing found: perfect by definition
    check(score_image(empty, empty), score=1, iou=1, dice=1, aji=1, pq=1, sq=1, dq=1)
    # predictions on an image without nuclei: 0 everywhere
    check(score_image(empty, canvas((0, 2, 0, 2), shape=(6, 6))), score=0, iou=0, dice=0, aji=0, pq=0)


def test_label_values_need_not_be_consecutive():
    gt = canvas((0, 4, 0, 3), (0, 4, 3, 4), (6, 9, 6, 9))
    pred = canvas((0, 4, 0, 4), (6, 9, 6, 8))
    reference = score_image(gt, pred)
    big = np.where(gt > 0, gt.astype(np.int64) * 1_000_000_007, 0)  # ids far beyond the pixel count
    spread = np.where(pred == 1, 300, np.where(pred == 2, 7, 0))
    assert score_image(big, spread) == reference


def test_foreground_iou_dice_on_semantic_masks():
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 px
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 px, 4 shared
    assert foreground_iou_dice(a, b) == (4 / 12, 8 / 16)
    assert foreground_iou_dice(np.zeros((3, 3)), np.zeros((3, 3))) == (1.0, 1.0)


def test_remove_overlaps_resolves_by_score():
    a = np.zeros((6, 6), bool)
    a[0:4, 0:4] = True
    b = np.zeros((6, 6), bool)
    b[2:6, 2:6] = True  # shares the 2x2 block [2:4, 2:4] with a
    masks = np.stack([a, b])
    lab = remove_overlaps(masks, np.array([0.9, 0.6]))
    assert (lab[2:4, 2:4] == 1).all() and (lab == 1).sum() == 16 and (lab == 2).sum() == 12
    lab = remove_overlaps(masks, np.array([0.3, 0.6]))  # b now scores higher: label 1, keeps the block
    assert (lab[2:4, 2:4] == 1).all() and (lab == 1).sum() == 16 and (lab == 2).sum() == 12
    assert (lab[0:2, 0:2] == 2).all()
    lab = remove_overlaps(masks, np.array([0.5, 0.5]))  # a tie goes to the lower index
    assert (lab[2:4, 2:4] == 1).all() and (lab[0, 0] == 1)


def test_remove_overlaps_drops_emptied_instances():
    a = np.zeros((5, 5), bool)
    a[:3, :3] = True
    inner = np.zeros((5, 5), bool)
    inner[1, 1] = True  # inside a, lower score: left empty
    c = np.zeros((5, 5), bool)
    c[4, 4] = True
    lab = remove_overlaps(np.stack([inner, a, c]), np.array([0.2, 0.9, 0.5]))
    assert lab.dtype == np.int32
    assert sorted(np.unique(lab).tolist()) == [0, 1, 2]  # consecutive, emptied one gone
    assert (lab[:3, :3] == 1).all() and lab[4, 4] == 2
    assert remove_overlaps(np.zeros((0, 3, 4), bool), np.zeros(0)).shape == (3, 4)


def test_summarize_images_means_and_pooled_values():
    perfect = score_image(GT_SQUARE, GT_SQUARE)
    extra_fp = score_image(GT_SQUARE, canvas((0, 4, 0, 4), (8, 10, 8, 10)))
    s = summarize_images([perfect, extra_fp])
    assert s["score"] == pytest.approx((1 + 0.5) / 2)
    assert s["iou"] == pytest.approx((1 + 0.8) / 2)
    assert s["iou_pooled"] == pytest.approx((16 + 16) / (16 + 20))  # pixels pooled first
    assert s["dice_pooled"] == pytest.approx(2 * 32 / (32 + 36))
    assert s["aji_pooled"] == pytest.approx(32 / 36)
    # pooled PQ: TP 2, FP 1, FN 0, IoU sum 2 -> SQ 1, DQ 2 / 2.5
    assert s["pq_pooled"] == pytest.approx(0.8)
    assert (s["num_images"], s["num_gt"], s["num_pred"], s["tp"], s["fp"], s["fn"]) == (2, 2, 3, 2, 1, 0)
    assert summarize_images([]) == {}


def test_bad_label_images_are_rejected():
    with pytest.raises(ValueError, match="differ in size"):
        score_image(np.zeros((3, 3), int), np.zeros((3, 4), int))
    with pytest.raises(ValueError, match="integer labels"):
        score_image(np.zeros((3, 3), float), np.zeros((3, 3), int))
    with pytest.raises(ValueError, match="negative"):
        score_image(-np.ones((3, 3), int), np.zeros((3, 3), int))
