"""NucleiEvaluator end to end on tiny datasets registered here (perfect, empty, thresholded outputs)."""
import csv
import json
import os
import math
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.structures import BitMasks, Boxes, Instances

from nuclei_eval_helpers import coco_gt_from_masks
from maskrcnnpp.config import get_maskrcnnpp_cfg
from maskrcnnpp.evaluation import NucleiEvaluationInputError, NucleiEvaluator

SIZES = {1: (64, 64), 2: (48, 64), 3: (64, 64)}


def _register(tmp_path, gt):
    json_path = tmp_path / "gt.json"
    json_path.write_text(json.dumps(gt))
    name = f"nuclei_eval_test_{uuid.uuid4().hex[:8]}"
    register_coco_instances(name, {}, str(json_path), str(tmp_path))
    return name


@pytest.fixture
def tiny_dataset(tmp_path):
    """Image 1: three discs (RLE); image 2: one polygon nucleus; image 3: no nuclei."""
    rr, cc = np.mgrid[:64, :64]
    discs = [
        (rr - 15) ** 2 + (cc - 15) ** 2 <= 64,
        (rr - 42) ** 2 + (cc - 20) ** 2 <= 36,
        (rr - 30) ** 2 + (cc - 48) ** 2 <= 100,
    ]
    gt = coco_gt_from_masks({1: ("a.png", discs, SIZES[1]), 2: ("b.png", [], SIZES[2]), 3: ("c.png", [], SIZES[3])})
    poly = [10.0, 10.0, 30.0, 10.0, 30.0, 25.0, 10.0, 25.0]
    rle = mask_util.merge(mask_util.frPyObjects([poly], *SIZES[2]))
    gt["annotations"].append(
        {
            "id": 100, "image_id": 2, "category_id": 1, "segmentation": [poly], "iscrowd": 0,
            "area": float(mask_util.area(rle)), "bbox": [float(v) for v in mask_util.toBbox(rle)],
        }
    )
    name = _register(tmp_path, gt)
    yield name, gt
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def gt_masks(gt, image_id):
    h, w = SIZES[image_id]
    out = []
    for ann in gt["annotations"]:
        if ann["image_id"] == image_id:
            segm = ann["segmentation"]
            rle = mask_util.merge(mask_util.frPyObjects(segm, h, w)) if isinstance(segm, list) else segm
            out.append(mask_util.decode(rle).astype(bool))
    return out


def make_instances(masks, shape, scores=None):
    inst = Instances(shape)
    tensor = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, *shape), dtype=torch.bool)
    inst.pred_masks = tensor
    inst.pred_boxes = BitMasks(tensor).get_bounding_boxes() if masks else Boxes(torch.zeros(0, 4))
    n = len(masks)
    inst.scores = torch.tensor(scores if scores is not None else [0.99 - 0.01 * k for k in range(n)], dtype=torch.float32)
    inst.pred_classes = torch.zeros(n, dtype=torch.int64)
    return inst


def inputs_for(image_id):
    h, w = SIZES[image_id]
    return [{"image_id": image_id, "height": h, "width": w, "file_name": f"{image_id}.png"}]


def run(evaluator, outputs_by_image):
    evaluator.reset()
    for image_id, output in outputs_by_image.items():
        evaluator.process(inputs_for(image_id), [output])
    return evaluator.evaluate()


def test_perfect_predictions_score_one_everywhere(tiny_dataset, tmp_path):
    name, gt = tiny_dataset
    out_dir = tmp_path / "eval"
    evaluator = NucleiEvaluator(name, get_maskrcnnpp_cfg(), str(out_dir))  # distributed gather, world size 1
    outputs = {i: {"instances": make_instances(gt_masks(gt, i), SIZES[i])} for i in SIZES}
    results = run(evaluator, outputs)

    assert list(results) == ["nuclei", "segm", "bbox"]
    for key in ("score", "iou", "dice", "aji", "pq", "sq", "dq", "iou_pooled", "aji_pooled", "pq_pooled"):
        assert results["nuclei"][key] == 1.0, key
    assert results["nuclei"]["num_gt"] == 4 and results["nuclei"]["num_images"] == 3
    assert all(isinstance(v, float) for v in results["nuclei"].values())
    assert results["segm"]["AP"] == pytest.approx(100.0) and results["bbox"]["AP"] == pytest.approx(100.0)
    flat = flatten_results_dict(results)  # what DefaultTrainer puts in its EventStorage
    assert flat["nuclei/score"] == 1.0 and flat["segm/AP75"] == pytest.approx(100.0)
    assert all(isinstance(v, float) for v in flat.values())

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["score"] == 1.0 and summary["segm"]["AP"] == pytest.approx(100.0)
    assert summary["settings"] == {"score_thresh": 0.5, "mask_thresh": 0.5, "max_dets": 500, "coco_ap": True}
    with open(out_dir / "per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["image_id"], r["num_gt"], float(r["score"])) for r in rows] == [("1", "3", 1.0), ("2", "1", 1.0), ("3", "0", 1.0)]
    assert (out_dir / "coco_instances_results.json").is_file()  # COCOEvaluator's own dump


def test_a_full_disk_leaves_no_half_written_coco_files(tiny_dataset, tmp_path, monkeypatch):
    import errno

    import torch

    name, gt = tiny_dataset
    out_dir = tmp_path / "eval"
    evaluator = NucleiEvaluator(name, get_maskrcnnpp_cfg(), str(out_dir))
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):  # Detectron2 saves instances_predictions.pth through an open file
        real_save(obj, f, *args, **kwargs)
        f.flush()
        f.truncate(3)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run(evaluator, {i: {"instances": make_instances(gt_masks(gt, i), SIZES[i])} for i in SIZES})
    assert not (out_dir / "instances_predictions.pth").exists()
    assert not any(p.name.startswith((".partial-", ".tmp")) for p in out_dir.iterdir())


def test_empty_predictions(tiny_dataset, tmp_path):
    name, _ = tiny_dataset
    evaluator = NucleiEvaluator(name, None, str(tmp_path / "eval"), distributed=False)
    results = run(evaluator, {i: {"instances": make_instances([], SIZES[i])} for i in SIZES})
    nuclei = results["nuclei"]
    # images 1 and 2 have nuclei and get 0; image 3 has none, predicts none and gets 1
    for key in ("score", "iou", "dice", "aji", "pq"):
        assert nuclei[key] == pytest.approx(1 / 3), key
    assert nuclei["iou_pooled"] == 0.0 and nuclei["num_pred"] == 0 and nuclei["fn"] == 4
    # pycocotools' score of an empty detection set (Detectron2 alone would report NaN): 0 where
    # there is ground truth (all four nuclei are "small", under 32 x 32 px), NaN where there is none
    for task in ("segm", "bbox"):
        assert results[task]["AP"] == results[task]["AP50"] == results[task]["APs"] == 0.0, task
        assert math.isnan(results[task]["APm"]) and math.isnan(results[task]["APl"]), task
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["segm"]["AP"] == 0.0 and summary["segm"]["APm"] is None  # strict JSON: NaN written as null


def test_no_predictions_score_what_pycocotools_gives_one_wrong_detection(tiny_dataset, tmp_path):
    """With ground truth present, finding nothing and finding only a wrong nucleus both have AP 0;
    the first is the only one Detectron2 does not evaluate itself."""
    name, _ = tiny_dataset
    far = np.zeros(SIZES[3], bool)
    far[50:60, 50:60] = True  # on image 3, which has no nuclei
    aps = {}
    for label, wrong in (("none", []), ("wrong", [far])):
        outputs = {i: {"instances": make_instances(wrong if i == 3 else [], SIZES[i])} for i in SIZES}
        results = run(NucleiEvaluator(name, None, distributed=False, max_dets=500), outputs)
        aps[label] = {k: v for k, v in results["segm"].items() if not k.startswith("AP-")}
    assert aps["none"].keys() == aps["wrong"].keys()
    for key, value in aps["wrong"].items():
        assert (math.isnan(value) and math.isnan(aps["none"][key])) or aps["none"][key] == value, key


def test_score_threshold_from_config(tiny_dataset):
    name, gt = tiny_dataset
    rr, cc = np.mgrid[:64, :64]
    spurious = (rr - 55) ** 2 + (cc - 55) ** 2 <= 9  # a false positive away from every nucleus
    outputs = {i: {"instances": make_instances(gt_masks(gt, i), SIZES[i])} for i in SIZES}
    outputs[1] = {"instances": make_instances(gt_masks(gt, 1) + [spurious], SIZES[1], [0.9, 0.9, 0.9, 0.3])}

    default = run(NucleiEvaluator(name, get_maskrcnnpp_cfg(), distributed=False, coco_ap=False), outputs)
    assert default["nuclei"]["score"] == 1.0  # 0.3 < SCORE_THRESH 0.5: not scored

    cfg = get_maskrcnnpp_cfg()
    cfg.TEST.NUCLEI.SCORE_THRESH = 0.2
    low = run(NucleiEvaluator(name, cfg, distributed=False, coco_ap=False), outputs)
    # image 1: 3 TP + 1 FP at every threshold -> 3/4; images 2 and 3 stay 1
    assert low["nuclei"]["score"] == pytest.approx((0.75 + 1 + 1) / 3)
    assert list(low) == ["nuclei"]

    # a float32 score equal to the threshold is kept (float32(0.7) < 0.7 in float64)
    outputs[1] = {"instances": make_instances(gt_masks(gt, 1) + [spurious], SIZES[1], [0.9, 0.9, 0.9, 0.7])}
    cfg.TEST.NUCLEI.SCORE_THRESH = 0.7
    at = run(NucleiEvaluator(name, cfg, distributed=False, coco_ap=False), outputs)
    assert at["nuclei"]["num_pred"] == 5.0 and at["nuclei"]["score"] == pytest.approx((0.75 + 1 + 1) / 3)
    # the same predictions as a results file (float32 scores stored as doubles) score the same
    evaluator = NucleiEvaluator(name, cfg, distributed=False, coco_ap=False)
    evaluator.reset()
    for image_id, output in outputs.items():
        inst = output["instances"]
        results = [{"segmentation": mask_util.encode(np.asfortranarray(m.numpy().astype(np.uint8))), "score": float(sc)}
                   for m, sc in zip(inst.pred_masks, inst.scores)]
        evaluator.process_coco_results(image_id, results)
    assert evaluator.evaluate()["nuclei"] == at["nuclei"]


def test_soft_masks_use_mask_threshold(tiny_dataset):
    name, gt = tiny_dataset
    outputs = {}
    for i in SIZES:
        soft = [np.where(m, 0.6, 0.4).astype(np.float32) for m in gt_masks(gt, i)]
        outputs[i] = {"instances": make_instances([s > 0.5 for s in soft], SIZES[i])}
        outputs[i]["instances"].pred_masks = torch.from_numpy(np.stack(soft)) if soft else torch.zeros((0, *SIZES[i]))
    default = run(NucleiEvaluator(name, distributed=False), outputs)
    assert default["nuclei"]["score"] == 1.0
    # COCO AP sees the same binarised masks (a uint8 cast alone would make every 0.6 a 0)
    assert default["segm"]["AP"] == pytest.approx(100.0)
    # at 0.3 every soft mask covers the whole image: the best-scoring one takes it all
    loose = run(NucleiEvaluator(name, distributed=False, coco_ap=False, mask_thresh=0.3), outputs)["nuclei"]
    area1, area2 = sum(m.sum() for m in gt_masks(gt, 1)), gt_masks(gt, 2)[0].sum()
    assert loose["num_pred"] == 2.0
    assert loose["iou"] == pytest.approx((area1 / (64 * 64) + area2 / (48 * 64) + 1) / 3)


def test_semantic_foreground_scores_iou_and_dice(tiny_dataset):
    name, gt = tiny_dataset
    outputs = {}
    for i in SIZES:
        fg = np.zeros(SIZES[i], bool)
        for m in gt_masks(gt, i):
            fg |= m
        prob = fg.astype(np.float32)
        if i == 1:
            prob[60:64, :] = 0.7  # 4 x 64 = 256 extra foreground pixels, no nucleus there
        outputs[i] = {"instances": make_instances(gt_masks(gt, i), SIZES[i]), "sem_seg": torch.from_numpy(prob)[None]}
    nuclei = run(NucleiEvaluator(name, distributed=False, coco_ap=False), outputs)["nuclei"]
    area1 = sum(m.sum() for m in gt_masks(gt, 1))
    assert nuclei["score"] == 1.0  # instances are perfect
    assert nuclei["iou"] == pytest.approx((area1 / (area1 + 256) + 1 + 1) / 3)
    assert nuclei["dice"] == pytest.approx((2 * area1 / (2 * area1 + 256) + 1 + 1) / 3)


def test_semantic_only_outputs_use_postprocessing(tiny_dataset, monkeypatch):
    import maskrcnnpp.utils.postprocess as postprocess

    name, gt = tiny_dataset
    calls = []
    real = postprocess.probability_to_instances

    def recording(prob, cfg=None, **kwargs):
        calls.append(prob.shape)
        return real(prob, cfg, **kwargs)

    monkeypatch.setattr(postprocess, "probability_to_instances", recording)
    outputs = {}
    for i in SIZES:
        fg = np.zeros(SIZES[i], np.float32)
        for m in gt_masks(gt, i):
            fg[m] = 0.9
        outputs[i] = {"sem_seg": torch.from_numpy(fg)[None]}
    # well-separated convex nuclei: thresholding + watershed recovers each one exactly
    results = run(NucleiEvaluator(name, get_maskrcnnpp_cfg(), distributed=False), outputs)
    assert calls == [SIZES[1], SIZES[2], SIZES[3]]
    assert results["nuclei"]["score"] == 1.0 and results["nuclei"]["aji"] == 1.0
    assert results["segm"]["AP"] == pytest.approx(100.0)


def test_max_dets_covers_crowded_images(tmp_path):
    squares = []
    for k in range(110):  # 110 nuclei of 2 x 2 px: more than COCO's default 100 detections
        r, c = divmod(k, 12)
        m = np.zeros((64, 64), bool)
        m[5 * r : 5 * r + 2, 5 * c : 5 * c + 2] = True
        squares.append(m)
    gt = coco_gt_from_masks({7: ("crowded.png", squares, (64, 64))})
    name = _register(tmp_path, gt)
    try:
        inputs = [{"image_id": 7, "height": 64, "width": 64}]
        outputs = [{"instances": make_instances(squares, (64, 64), [0.9] * 110)}]
        aps = {}
        for max_dets in (500, 100):
            evaluator = NucleiEvaluator(name, distributed=False, max_dets=max_dets)
            evaluator.reset()
            evaluator.process(inputs, outputs)
            aps[max_dets] = evaluator.evaluate()["segm"]["AP"]
        assert aps[500] == pytest.approx(100.0)
        assert aps[100] < 95.0  # only 100 of the 110 nuclei can be recalled
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def test_bad_outputs_are_rejected_with_the_image_named(tiny_dataset):
    name, gt = tiny_dataset
    evaluator = NucleiEvaluator(name, distributed=False, coco_ap=False)
    with pytest.raises(NucleiEvaluationInputError, match="image id 99 is not in dataset"):
        evaluator.process([{"image_id": 99}], [{"instances": make_instances([], (64, 64))}])
    with pytest.raises(NucleiEvaluationInputError, match=r"image id 1: prediction is \(32, 32\)"):
        evaluator.process(inputs_for(1), [{"instances": make_instances([], (32, 32))}])
    with pytest.raises(NucleiEvaluationInputError, match="neither 'instances' nor 'sem_seg'"):
        evaluator.process(inputs_for(1), [{"proposals": None}])
