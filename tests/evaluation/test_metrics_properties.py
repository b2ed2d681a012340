"""Property tests: the vectorised metrics agree with a deliberately plain reference (loops, exact fractions)."""
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nuclei_eval_helpers import encode_mask
from maskrcnnpp.evaluation.label_images import rles_to_label_image
from maskrcnnpp.evaluation.metrics import PRECISION_KEYS, remove_overlaps, score_image

# ----------------------------------------------------------------------------- the reference


def objects(lab):
    """{label: set of (row, col)} of a label image, walking every pixel."""
    out = {}
    for r in range(lab.shape[0]):
        for c in range(lab.shape[1]):
            if lab[r, c] != 0:
                out.setdefault(int(lab[r, c]), set()).add((r, c))
    return out


def reference_scores(gt, pred):
    g_objs, p_objs = objects(gt), objects(pred)
    inter = {(g, p): len(g_objs[g] & p_objs[p]) for g in g_objs for p in p_objs}
    union = {(g, p): len(g_objs[g] | p_objs[p]) for g in g_objs for p in p_objs}
    iou = {pair: Fraction(inter[pair], union[pair]) for pair in inter}

    precisions = []
    for k in range(10, 20):
        t = Fraction(k, 20)
        matches = [pair for pair in iou if iou[pair] > t]
        assert len({g for g, _ in matches}) == len(matches) == len({p for _, p in matches})  # one-to-one
        tp = len(matches)
        fp, fn = len(p_objs) - tp, len(g_objs) - tp
        precisions.append(Fraction(1) if tp + fp + fn == 0 else Fraction(tp, tp + fp + fn))

    a = {(r, c) for r in range(gt.shape[0]) for c in range(gt.shape[1]) if gt[r, c]}
    b = {(r, c) for r in range(pred.shape[0]) for c in range(pred.shape[1]) if pred[r, c]}
    fg_iou = Fraction(1) if not a and not b else Fraction(len(a & b), len(a | b))
    fg_dice = Fraction(1) if not a and not b else Fraction(2 * len(a & b), len(a) + len(b))

    # AJI, Kumar et al. 2017, Algorithm 1 (a truth object overlapping nothing stays unpaired)
    c_sum, u_sum, used = 0, 0, set()
    for g in sorted(g_objs):
        best, best_iou = None, Fraction(0)
        for p in sorted(p_objs):
            if iou[g, p] > best_iou:
                best, best_iou = p, iou[g, p]
        if best is None:
            u_sum += len(g_objs[g])
        else:
            c_sum += inter[g, best]
            u_sum += union[g, best]
            used.add(best)
    u_sum += sum(len(p_objs[p]) for p in p_objs if p not in used)
    aji = Fraction(1) if u_sum == 0 else Fraction(c_sum, u_sum)

    matched = [iou[pair] for pair in iou if iou[pair] > Fraction(1, 2)]
    tp, fp, fn = len(matched), len(p_objs) - len(matched), len(g_objs) - len(matched)
    if not g_objs and not p_objs:
        pq = sq = dq = Fraction(1)
    elif tp == 0:
        pq = sq = dq = Fraction(0)
    else:
        sq = sum(matched) / tp
        dq = Fraction(tp) / (tp + Fraction(fp, 2) + Fraction(fn, 2))
        pq = sq * dq
    values = {"score": sum(precisions) / 10, "iou": fg_iou, "dice": fg_dice, "aji": aji, "pq": pq, "sq": sq, "dq": dq}
    values.update(dict(zip(PRECISION_KEYS, precisions)))
    return values


def reference_remove_overlaps(masks, scores):
    """Each pixel to the covering mask of highest score (lowest index on ties), then 1..K by rank."""
    n, h, w = masks.shape
    rank_of = sorted(range(n), key=lambda i: (-scores[i], i))
    owner = np.zeros((h, w), dtype=int)
    for r in range(h):
        for c in range(w):
            for i in rank_of:
                if masks[i, r, c]:
                    owner[r, c] = i + 1
                    break
    labels, next_label = np.zeros((h, w), dtype=int), 1
    for i in rank_of:
        if (owner == i + 1).any():
            labels[owner == i + 1] = next_label
            next_label += 1
    return labels


# ----------------------------------------------------------------------------- the data


@st.composite
def label_image_pairs(draw):
    """Blocky truth (small labels upsampled) and a prediction that is a perturbed or random one."""
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    scale = draw(st.integers(1, 3))
    num = draw(st.integers(0, 5))
    small = draw(arrays(np.int64, (h, w), elements=st.integers(0, num)))
    gt = np.kron(small, np.ones((scale, scale), dtype=np.int64))
    if draw(st.booleans()):
        pred = draw(arrays(np.int64, gt.shape, elements=st.integers(0, num)))
    else:  # relabel the truth and change some pixels: yields IoUs around the thresholds
        table = np.array(draw(st.permutations(range(num + 8)))[: num + 1])
        pred = table[gt]
        flips = draw(arrays(bool, gt.shape))
        noise = draw(arrays(np.int64, gt.shape, elements=st.integers(0, num + 2)))
        pred = np.where(flips, noise, pred)
    return gt, pred


@st.composite
def masks_and_scores(draw):
    n = draw(st.integers(0, 5))
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    masks = draw(arrays(bool, (n, h, w)))
    scores = np.array(draw(st.lists(st.sampled_from([0.1, 0.5, 0.7, 0.9]), min_size=n, max_size=n)), dtype=float)
    return masks, scores


# ----------------------------------------------------------------------------- the properties


@settings(max_examples=200, deadline=None)
@given(label_image_pairs())
def test_metrics_agree_with_reference(pair):
    gt, pred = pair
    fast = score_image(gt, pred)
    for key, value in reference_scores(gt, pred).items():
        assert abs(fast[key] - float(value)) <= 1e-9, (key, fast[key], value)


@settings(max_examples=150, deadline=None)
@given(masks_and_scores())
def test_remove_overlaps_agrees_with_reference(data):
    masks, scores = data
    np.testing.assert_array_equal(remove_overlaps(masks, scores), reference_remove_overlaps(masks, scores))


@settings(max_examples=100, deadline=None)
@given(masks_and_scores())
def test_rle_painting_equals_remove_overlaps(data):
    masks, scores = data
    rles = [encode_mask(m) for m in masks]
    np.testing.assert_array_equal(rles_to_label_image(rles, scores, masks.shape[1:]), remove_overlaps(masks, scores))
