"""tools/evaluate.py run as a user runs it: ground truth scored against itself, and each rejection."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest

from nuclei_eval_helpers import REPO, coco_gt_from_label_images, coco_gt_from_masks, coco_results_from_gt, dsb_zip_masks, dsb_zip_path

TOOL = os.path.join(REPO, "tools", "evaluate.py")
HEADLINE = ("score", "iou", "dice", "aji", "pq")


def evaluate(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True, cwd=REPO, timeout=300)


def write(path, obj):
    path.write_text(json.dumps(obj))
    return path


def synthetic_gt():
    rr, cc = np.mgrid[:64, :64]
    lab = np.zeros((64, 64), np.int32)
    lab[(rr - 15) ** 2 + (cc - 15) ** 2 <= 64] = 1
    lab[(rr - 40) ** 2 + (cc - 40) ** 2 <= 100] = 2
    lab[50:60, 5:12] = 3
    return coco_gt_from_label_images({1: lab, 2: np.zeros((32, 48), np.int32)})


def assert_self_score_is_perfect(result, out_dir, num_images):
    assert result.returncode == 0, result.stderr
    summary = json.loads((out_dir / "summary.json").read_text())
    for key in HEADLINE:
        assert summary[key] == 1.0, key
    for task in ("segm", "bbox"):
        assert summary[task]["AP"] == 100.0, task
    with open(out_dir / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == num_images and all(float(r["score"]) == 1.0 for r in rows)
    # no image files beside this ground truth: the kind of each image is unknown, no per-kind table
    assert {r["image_type"] for r in rows} == {"unknown"} and summary["by_image_type"] == {}
    assert "| score" in result.stdout and "segm AP" in result.stdout  # the printed table


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    gt = synthetic_gt()
    return folder, gt, write(folder / "gt.json", gt), write(folder / "pred.json", coco_results_from_gt(gt))


def test_ground_truth_against_itself_is_perfect(synthetic_files):
    folder, _, gt_path, pred_path = synthetic_files
    out = folder / "self"
    assert_self_score_is_perfect(evaluate("--gt", gt_path, "--pred", pred_path, "--out", out), out, num_images=2)
    assert json.loads((out / "summary.json").read_text())["dataset"] == str(gt_path)  # what was scored


@pytest.mark.realdata
def test_real_ground_truth_against_itself_is_perfect(tmp_path):
    zip_path = dsb_zip_path()
    if not os.path.isfile(zip_path):
        pytest.skip(f"DSB 2018 zip not found at {zip_path} (set MASKRCNNPP_DSB2018_ZIP)")
    gt = coco_gt_from_masks(dsb_zip_masks(zip_path, num_images=5))
    assert len(gt["images"]) == 5 and len(gt["annotations"]) > 20
    gt_path = write(tmp_path / "gt.json", gt)
    pred_path = write(tmp_path / "pred.json", coco_results_from_gt(gt))
    out = tmp_path / "out"
    assert_self_score_is_perfect(evaluate("--gt", gt_path, "--pred", pred_path, "--out", out), out, num_images=5)


def test_score_thresh_limits_what_is_scored(synthetic_files, tmp_path):
    _, gt, gt_path, _ = synthetic_files
    results = coco_results_from_gt(gt, scores=[0.9, 0.9, 0.2])  # the third nucleus found with low score
    lab = np.zeros((32, 48), np.int32)
    lab[2:6, 2:6] = 1
    spurious = coco_results_from_gt(coco_gt_from_label_images({2: lab}), scores=[0.1])  # on the empty image...
    pred_path = write(tmp_path / "pred.json", results + spurious)

    assert evaluate("--gt", gt_path, "--pred", pred_path, "--out", tmp_path / "all", "--no-coco-ap", "--score-thresh", 0).returncode == 0
    everything = json.loads((tmp_path / "all" / "summary.json").read_text())
    assert everything["score"] == pytest.approx((1.0 + 0.0) / 2)  # ...which zeroes image 2
    assert "segm" not in everything and everything["settings"]["score_thresh"] == 0.0

    assert evaluate("--gt", gt_path, "--pred", pred_path, "--out", tmp_path / "t", "--score-thresh", 0.5).returncode == 0
    thresholded = json.loads((tmp_path / "t" / "summary.json").read_text())
    # image 1 keeps 2 of its 3 nuclei: 2 / 3 at every threshold; image 2 is empty again: 1
    assert thresholded["score"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert thresholded["settings"]["score_thresh"] == 0.5
    # the default is training's TEST.NUCLEI.SCORE_THRESH (0.5): a run's results file gives its summary again
    assert evaluate("--gt", gt_path, "--pred", pred_path, "--out", tmp_path / "d").returncode == 0
    default = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert default["score"] == thresholded["score"] and default["settings"]["score_thresh"] == 0.5
    bad = evaluate("--gt", gt_path, "--pred", pred_path, "--out", tmp_path / "x", "--score-thresh", 1.5)
    assert bad.returncode == 2 and "--score-thresh must be in [0, 1] (a score/probability), got 1.5" in bad.stderr


def test_results_named_by_file_stem_are_scored_against_their_images(synthetic_files, tmp_path):
    """tools/predict.py writes image_id = file stem; the ground truth has integer ids."""
    _, gt, gt_path, _ = synthetic_files
    stems = {image["id"]: os.path.splitext(image["file_name"])[0] for image in gt["images"]}
    assert all(isinstance(i, int) for i in stems)
    results = coco_results_from_gt(gt, scores=[0.9, 0.9, 0.2])
    by_id = write(tmp_path / "by_id.json", results)
    by_stem = write(tmp_path / "by_stem.json", [dict(r, image_id=stems[r["image_id"]]) for r in results])
    for name, pred in (("id", by_id), ("stem", by_stem)):
        assert evaluate("--gt", gt_path, "--pred", pred, "--out", tmp_path / name).returncode == 0
    a, b = (json.loads((tmp_path / n / "summary.json").read_text()) for n in ("id", "stem"))
    assert a["score"] == b["score"] == pytest.approx((2 / 3 + 1.0) / 2) and a["segm"] == b["segm"]
    # one stem that names no image: the whole file is checked by id, and the error names the ids
    mixed = write(tmp_path / "mixed.json", [dict(r, image_id="nosuchimage") if k == 0 else dict(r, image_id=stems[r["image_id"]])
                                            for k, r in enumerate(results)])
    res = evaluate("--gt", gt_path, "--pred", mixed, "--out", tmp_path / "m")
    assert res.returncode == 2 and "image id(s) absent from the ground truth: '1', 'nosuchimage'" in res.stderr


def _mutated(results, **changes):
    bad = [dict(r) for r in results]
    for key, value in changes.items():
        bad[1][key] = value
    return bad


@pytest.mark.parametrize(
    "case, expected",
    [
        ("absent_image", "predictions for 1 image id(s) absent from the ground truth: 77"),
        ("rle_size", "entry 1 (image id 1): RLE size [64, 63] (height, width) does not match the image size [64, 64]"),
        ("ground_truth_as_results", "is COCO ground truth (an object with 'annotations'), not COCO results format"),
        ("missing_keys", "entry 1 lacks 'score', 'segmentation'; expected COCO results format"),
        ("not_json", "is not valid JSON"),
        ("folder", "is a folder, not a JSON file"),
        # checked whatever the score: a low-scoring entry is still used by COCO AP
        ("short_rle_low_score", "entry 1 (image id 1): RLE counts cover 1024 pixels, not 4096 (64 x 64)"),
        ("nan_score", "entry 1 has a non-finite score nan"),
    ],
)
def test_bad_predictions_are_rejected(synthetic_files, tmp_path, case, expected):
    _, gt, gt_path, pred_path = synthetic_files
    results = coco_results_from_gt(gt)
    pred = tmp_path / "pred.json"
    if case == "absent_image":
        write(pred, _mutated(results, image_id=77))
    elif case == "rle_size":
        write(pred, _mutated(results, segmentation=dict(results[1]["segmentation"], size=[64, 63])))
    elif case == "ground_truth_as_results":
        pred = gt_path
    elif case == "missing_keys":
        bad = [dict(r) for r in results]
        del bad[1]["score"], bad[1]["segmentation"]
        write(pred, bad)
    elif case == "folder":
        pred = tmp_path / "results_folder"
        pred.mkdir()
    elif case == "short_rle_low_score":
        short = mask_util.encode(np.asfortranarray(np.ones((32, 32), np.uint8)))["counts"].decode("ascii")
        write(pred, _mutated(results, score=0.1, segmentation={"size": [64, 64], "counts": short}))
    elif case == "nan_score":
        write(pred, _mutated(results, score=float("nan")))
    else:
        pred.write_text('[{"image_id": 1,')
    out = tmp_path / "out"
    result = evaluate("--gt", gt_path, "--pred", pred, "--out", out)
    assert result.returncode == 2
    assert expected in result.stderr
    assert result.stderr.startswith("evaluate.py: error: ") and "Traceback" not in result.stderr
    assert not out.exists()  # nothing half-written


def test_each_kind_of_refusal_is_one_exact_line(synthetic_files, tmp_path):
    """The option checks, the input files' checks and --only-predicted-images: the same one line each."""
    _, gt, gt_path, pred_path = synthetic_files
    results = coco_results_from_gt(gt)
    bad_size = write(tmp_path / "bad_size.json", _mutated(results, segmentation=dict(results[1]["segmentation"], size=[64, 63])))
    empty = write(tmp_path / "empty.json", [])
    for argv, line in [
        (["--pred", pred_path, "--score-thresh", 1.5], "--score-thresh must be in [0, 1] (a score/probability), got 1.5"),
        (["--pred", bad_size], f"{bad_size}: entry 1 (image id 1): RLE size [64, 63] (height, width) does not match "
                               "the image size [64, 64]"),
        (["--pred", empty, "--only-predicted-images"], f"--only-predicted-images: {empty} predicts nothing for any image"),
    ]:
        res = evaluate("--gt", gt_path, "--out", tmp_path / "out", *argv)
        assert (res.returncode, res.stderr) == (2, f"evaluate.py: error: {line}\n")
    assert not (tmp_path / "out").exists()


def test_without_out_a_summary_already_there_is_not_replaced(synthetic_files, tmp_path):
    _, gt, gt_path, _ = synthetic_files
    pred = write(tmp_path / "coco_instances_results.json", coco_results_from_gt(gt))
    (tmp_path / "summary.json").write_text('{"score": 0.5, "written": "by training"}')
    res = evaluate("--gt", gt_path, "--pred", pred)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"error: {tmp_path / 'summary.json'} exists" in res.stderr and "--overwrite" in res.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["written"] == "by training"
    assert evaluate("--gt", gt_path, "--pred", pred, "--overwrite").returncode == 0
    assert json.loads((tmp_path / "summary.json").read_text())["score"] == 1.0


def test_predictions_for_some_images_warn_and_can_be_scored_alone(synthetic_files, tmp_path):
    _, gt, gt_path, _ = synthetic_files
    only_first = write(tmp_path / "pred.json", [r for r in coco_results_from_gt(gt) if r["image_id"] == 1])
    res = evaluate("--gt", gt_path, "--pred", only_first, "--out", tmp_path / "all")
    assert res.returncode == 0, res.stderr
    assert "has predictions for 1 of the 2 ground-truth images; the 1 others count as all nuclei missed" in res.stderr
    res = evaluate("--gt", gt_path, "--pred", only_first, "--out", tmp_path / "alone", "--only-predicted-images")
    assert res.returncode == 0, res.stderr
    assert "scoring the 1 of 2 ground-truth images that have predictions" in res.stderr
    alone = json.loads((tmp_path / "alone" / "summary.json").read_text())
    assert alone["num_images"] == 1 and alone["score"] == 1.0  # image 2 (no nuclei, no predictions) left out
    assert alone["dataset"] == f"{gt_path} (only the 1 of 2 images with predictions)"  # a partial score says so
    with open(tmp_path / "alone" / "per_image.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_per_image_file_names_point_at_the_prepared_images_folder(tmp_path):
    gt = synthetic_gt()
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    gt_path = write(tmp_path / "annotations" / "test.json", gt)
    pred = write(tmp_path / "pred.json", coco_results_from_gt(gt))
    assert evaluate("--gt", gt_path, "--pred", pred, "--out", tmp_path / "e").returncode == 0
    with open(tmp_path / "e" / "per_image.csv") as f:
        names = [r["file_name"] for r in csv.DictReader(f)]
    assert names == [str(tmp_path / "images" / i["file_name"]) for i in gt["images"]]
