"""Label images from COCO segmentations: RLE run reading against pycocotools, GT corrections, file checks."""
import json

import numpy as np
import pycocotools.mask as mask_util
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nuclei_eval_helpers import coco_gt_from_label_images, encode_mask
from maskrcnnpp.evaluation.coco_results import load_coco_gt, load_coco_results
from maskrcnnpp.evaluation.label_images import (
    NucleiEvaluationInputError,
    gt_label_image,
    rle_pixel_indices,
    rle_run_lengths,
    rles_to_label_image,
    scores_kept,
    segmentation_to_rle,
)


def decoded_from_runs(rle, shape):
    flat = np.zeros(shape[0] * shape[1], dtype=np.uint8)
    flat[rle_pixel_indices(rle, flat.size)] = 1
    return flat.reshape(shape[1], shape[0]).T


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 300), st.integers(1, 300), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0), st.integers(1, 40)
)
def test_run_reading_matches_pycocotools_decode(height, width, seed, density, blob):
    """Random blocky masks up to 300 x 300: runs long enough for multi-group and negative deltas."""
    rng = np.random.default_rng(seed)
    small = rng.random((-(-height // blob), -(-width // blob))) < density
    mask = np.kron(small, np.ones((blob, blob), dtype=bool))[:height, :width]
    mask ^= rng.random(mask.shape) < 0.01  # a few isolated pixels: short runs between long ones
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    np.testing.assert_array_equal(decoded_from_runs(rle, mask.shape), mask_util.decode(rle))
    as_str = dict(rle, counts=rle["counts"].decode("ascii"))
    assert rle_run_lengths(as_str).sum() == height * width


def test_uncompressed_and_polygon_segmentations():
    mask = np.zeros((5, 4), bool)
    mask[1:3, 1:4] = True
    runs = [6, 2, 3, 2, 3, 2, 2]  # column-major: 5 + 1 bg, 2 fg, 3 bg, ...
    rle = segmentation_to_rle({"size": [5, 4], "counts": runs}, 5, 4, "test")
    np.testing.assert_array_equal(decoded_from_runs(rle, (5, 4)), mask)
    poly = segmentation_to_rle([[0.0, 0.0, 4.0, 0.0, 4.0, 2.0, 0.0, 2.0]], 5, 4, "test")
    np.testing.assert_array_equal(decoded_from_runs(poly, (5, 4)), mask_util.decode(poly))
    with pytest.raises(NucleiEvaluationInputError, match=r"ann 3: RLE size \[4, 5\] .* \[5, 4\]"):
        segmentation_to_rle({"size": [4, 5], "counts": runs}, 5, 4, "ann 3")
    with pytest.raises(NucleiEvaluationInputError, match="cover 19 pixels, not 20"):
        rle_pixel_indices({"size": [5, 4], "counts": runs[:-1] + [1]}, 20, "bad")


def test_rle_label_image_resolves_overlaps_by_priority():
    a = np.zeros((6, 6), bool)
    a[:4, :4] = True
    b = np.zeros((6, 6), bool)
    b[2:, 2:] = True
    lab = rles_to_label_image([encode_mask(a), encode_mask(b)], [0.2, 0.8], (6, 6))
    assert (lab[2:4, 2:4] == 1).all() and (lab == 1).sum() == 16 and (lab == 2).sum() == 12
    assert lab.flags.c_contiguous and lab.dtype == np.int32


def test_ground_truth_corrections_are_counted():
    big = np.zeros((8, 8), bool)
    big[:6, :6] = True
    small = np.zeros((8, 8), bool)
    small[4:8, 4:8] = True  # shares 4 px with big; the smaller one keeps them
    inside = np.zeros((8, 8), bool)
    inside[0, 0] = True  # inside big, and smallest: keeps its pixel
    record = {
        "image_id": 5, "height": 8, "width": 8,
        "annotations": [
            {"segmentation": encode_mask(big), "iscrowd": 0},
            {"segmentation": encode_mask(small)},
            {"segmentation": encode_mask(inside)},
            {"segmentation": encode_mask(np.zeros((8, 8), bool))},
            {"segmentation": encode_mask(big), "iscrowd": 1},
        ],
    }
    labels, stats = gt_label_image(record)
    assert stats == {"crowd": 1, "empty": 1, "overlap_pixels": 5, "dropped": 0}
    assert labels[0, 0] == 1 and (labels == 2).sum() == 16 and (labels == 3).sum() == 36 - 4 - 1
    record["annotations"].append({"iscrowd": 0})
    with pytest.raises(NucleiEvaluationInputError, match="image_id 5 .*annotation 5: no 'segmentation'"):
        gt_label_image(record)


def test_coco_files_are_completed_or_rejected(tmp_path):
    from PIL import Image

    lab = np.zeros((6, 7), np.int32)
    lab[1:3, 1:4] = 1
    gt = coco_gt_from_label_images({3: lab})
    del gt["images"][0]["height"], gt["images"][0]["width"], gt["annotations"][0]["area"], gt["annotations"][0]["bbox"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(NucleiEvaluationInputError, match="image id 3 has no 'height'/'width'; give the image folder"):
        load_coco_gt(str(path))
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(tmp_path / "3.png")
    completed, fills = load_coco_gt(str(path), str(tmp_path))
    assert fills == {"image_sizes": 1, "areas": 1, "bboxes": 1, "iscrowd": 0}
    assert (completed["images"][0]["height"], completed["images"][0]["width"]) == (6, 7)
    assert completed["annotations"][0]["area"] == 6.0 and completed["annotations"][0]["bbox"] == [1.0, 1.0, 3.0, 2.0]

    pred = tmp_path / "pred.json"
    pred.write_text(json.dumps([{"image_id": 3, "category_id": 9, "score": 1, "segmentation": gt["annotations"][0]["segmentation"]}]))
    with pytest.raises(NucleiEvaluationInputError, match="category_id 9, absent from the ground truth's categories"):
        load_coco_results(str(pred), completed)
    pred.write_text(json.dumps([{"image_id": 3, "category_id": 1, "score": 1, "segmentation": [[0, 0, 2, 0, 2, 2]]}]))
    with pytest.raises(NucleiEvaluationInputError, match="entry 0 has a list segmentation, not an RLE"):
        load_coco_results(str(pred), completed)
    rle = gt["annotations"][0]["segmentation"]
    pred.write_text(json.dumps([{"image_id": 3, "category_id": 1, "score": 0.5, "segmentation": rle}]))
    by_image = load_coco_results(str(pred), completed)
    assert by_image[3][0]["bbox"] == [1.0, 1.0, 3.0, 2.0] and by_image[3][0]["score"] == 0.5


def test_scores_kept_compares_in_float32_as_inference_does():
    stored = float(np.float32(0.7))  # a model's float32 score as a results file stores it: 0.699999988...
    assert stored < 0.7
    assert scores_kept([stored, 0.69, 0.71], 0.7).tolist() == [True, False, True]
    assert scores_kept([], 0.5).tolist() == [] and scores_kept([0.0], float("-inf")).tolist() == [True]
