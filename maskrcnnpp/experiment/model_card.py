"""The model card of a trained run, for the model zoo: what it was trained on and how, and what it
scores on the internal test split (overall and per image kind) and on a fixed subset of it.

The subset (a few images of each kind, the first by image id) is what CI re-scores with the
shipped fp16 weights, so its figure is measured with those weights through ``NucleiPredictor``.
"""
from __future__ import annotations

import csv
import os
import platform
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from ..evaluation import gt_label_image, score_image
from ..evaluation.image_types import IMAGE_TYPES, image_type_of_file, scores_by_image_type
from ..inference import NucleiPredictor, read_image
from ..utils.files import read_json
from .runs import table_values

__all__ = ["SUBSET_PER_TYPE", "card_from_run", "subset_records", "subset_score"]

# Images of each kind in the fixed subset: DSB's test split has ~164 fluorescence, ~32 stained
# tissue and ~5 bright-field images, so every kind is represented and the test stays fast on a CPU.
SUBSET_PER_TYPE = {"fluorescence": 8, "stained tissue": 3, "bright-field": 1}
TEST_KEYS = {"score": "score", "iou": "iou", "dice": "dice", "aji": "aji", "pq": "pq", "mask_ap": "ap"}


DATA_TEXT = {
    "dsb2018": "DSB 2018 stage1_train, the paper's split: trained on train",
    "synthetic": "synthetic nuclei (maskrcnnpp.data.synthetic): trained on nuclei_synth_train",
}


def _test_rows(output_dir: str, test_dataset: str) -> List[Dict[str, Any]]:
    path = os.path.join(output_dir, "inference", test_dataset, "per_image.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{output_dir}: no test evaluation of {test_dataset} ({path})")
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _test_figures(evaluation: Mapping[str, Any], dataset: str) -> Dict[str, Any]:
    """The card's test figures (IoU, Dice, mask AP in %) from an evaluator summary.json."""
    values = table_values({"nuclei": evaluation, "segm": evaluation.get("segm", {})})
    test = {key: values[field] for key, field in TEST_KEYS.items()}
    test.update(images=int(evaluation["num_images"]), nuclei=int(evaluation["num_gt"]), dataset=dataset)
    return test


def card_from_run(run_dir: str, hardware: Optional[str] = None, retest_dir: Optional[str] = None) -> Dict[str, Any]:
    """The card of the ``tools/experiment.py`` run in ``run_dir`` (its result.json, budget and test
    evaluation): data, recipe overrides, iterations, training seconds, test figures, figures per kind.

    ``retest_dir``: the OUTPUT_DIR of an evaluation of the same weights on the same test split with the
    test-time settings the model ships with (chosen on val after training); the test figures are then
    that evaluation's, and the run's own test score is kept as ``run_test_score``.
    """
    result = read_json(os.path.join(run_dir, "result.json"), "run result", ValueError)
    signature = result["budget"]["signature"]
    dataset = result["test_dataset"]
    if retest_dir is None:
        rows = _test_rows(os.path.join(run_dir, "train"), dataset)
        nuclei = result["test_results"]["nuclei"]
        test = {key: result[field] for key, field in TEST_KEYS.items()}
        test.update(images=int(nuclei["num_images"]), nuclei=int(nuclei["num_gt"]), dataset=dataset)
    else:
        rows = _test_rows(retest_dir, dataset)
        test = _test_figures(read_json(os.path.join(retest_dir, "inference", dataset, "summary.json"),
                                       "test evaluation", ValueError), dataset)
    types = {r["image_id"]: image_type_of_file(r["file_name"]) for r in rows}
    card = {
        "data": (f"{DATA_TEXT.get(signature['data'], signature['data'])}, checkpoint "
                 f"{result['selected_checkpoint']} selected by {result['selection_metric']} on val, scored on "
                 f"{result['test_dataset']} (images never trained on)"),
        "checkpoint": result["selected_checkpoint"],
        "config": result["config"],
        "initial_weights": result["initial_weights"],
        "overrides": signature["opts"],
        "iterations": result["train_iters"],
        "train_seconds_last_session": round(float(result["train_seconds_this_session"]), 1),
        "hardware": hardware or f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores",
        "test": test,
        "test_by_image_type": scores_by_image_type(rows, types),
    }
    if retest_dir is not None:
        card["run_test_score"] = result["score"]
    return card


def subset_records(records: List[Mapping[str, Any]], per_type: Mapping[str, int] = SUBSET_PER_TYPE
                   ) -> List[Mapping[str, Any]]:
    """The first ``per_type[kind]`` records of each kind, by image id (kinds from the image files)."""
    chosen: List[Mapping[str, Any]] = []
    counts = {kind: 0 for kind in IMAGE_TYPES}
    for record in sorted(records, key=lambda r: str(r["image_id"])):
        kind = image_type_of_file(record["file_name"])
        if counts.get(kind, 0) < per_type.get(kind, 0):
            counts[kind] += 1
            chosen.append(record)
    return chosen


def subset_score(predictor: NucleiPredictor, records: List[Mapping[str, Any]]) -> float:
    """Mean DSB score of ``predictor`` over ``records`` (dataset dicts with ground truth)."""
    scores = []
    for record in records:
        labels, _ = predictor(read_image(record["file_name"]))
        scores.append(score_image(gt_label_image(record)[0], labels)["score"])
    return float(np.mean(scores))
