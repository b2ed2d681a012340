"""The shipped default model on real DSB 2018 test-split images (the checks of its model card).

* run through ``NucleiPredictor.from_zoo()``, it reproduces the card's score on the card's fixed
  subset of internal-test images (never trained on) within +-0.02;
* ``tools/predict.py`` with no model options finds, on a real image, a nucleus count within 20% of
  the ground truth's.

Skipped, with the reason, while no model is shipped or without the DSB 2018 zip.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from maskrcnnpp import model_zoo
from maskrcnnpp.utils.files import read_json

from dsb2018_data import dsb2018_zip_path, prepared_dsb2018

pytestmark = pytest.mark.realdata
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped():
    if model_zoo.default_model() is None:
        pytest.skip("no trained model is shipped yet (maskrcnnpp/weights/zoo.json lists none)")
    model = model_zoo.get()
    if "subset" not in model.card:
        pytest.fail(f"the card of {model.name} has no 'subset' (image_ids, score) to check")
    return model


@pytest.fixture(scope="module")
def test_split(shipped):
    zip_path = dsb2018_zip_path()
    if zip_path is None:
        pytest.skip("real DSB 2018 zip not found (set MASKRCNNPP_DSB2018_ZIP)")
    root = prepared_dsb2018(zip_path=zip_path)
    coco = read_json(str(root / "annotations" / "test.json"), "test split")
    return root, coco


def _records(root: Path, coco: dict, image_ids) -> list:
    from maskrcnnpp.evaluation.coco_results import coco_records

    by_id = {r["image_id"]: r for r in coco_records(coco)}
    missing = [i for i in image_ids if i not in by_id]
    assert not missing, f"subset images absent from the test split: {missing[:3]}"
    return [dict(by_id[i], file_name=str(root / "images" / by_id[i]["file_name"])) for i in image_ids]


def test_default_model_reproduces_its_card_score_on_the_fixed_subset(shipped, test_split):
    from maskrcnnpp import NucleiPredictor
    from maskrcnnpp.evaluation import gt_label_image, score_image
    from maskrcnnpp.inference import read_image

    root, coco = test_split
    subset = shipped.card["subset"]
    assert len(subset["image_ids"]) >= 10
    predictor = NucleiPredictor.from_zoo(device="cpu", diameter=None)  # as the card's subset score was made
    scores = []
    for record in _records(root, coco, subset["image_ids"]):
        labels, table = predictor(read_image(record["file_name"]))
        assert table["id"].tolist() == list(range(1, int(labels.max()) + 1))
        scores.append(score_image(gt_label_image(record)[0], labels)["score"])
    assert float(np.mean(scores)) == pytest.approx(subset["score"], abs=0.02)


def test_predict_with_no_model_options_counts_the_nuclei_of_a_real_image(shipped, test_split, tmp_path, capsys):
    from maskrcnnpp.evaluation import gt_label_image

    root, coco = test_split
    record = _records(root, coco, shipped.card["subset"]["image_ids"][:1])[0]
    sys.path.insert(0, str(REPO / "tools"))
    import predict

    counts = predict.main(["--input", record["file_name"], "--output", str(tmp_path / "out"), "--device", "cpu",
                           "--formats", "label_png"])
    expected = int(gt_label_image(record)[0].max())
    (count,) = counts.values()
    assert abs(count - expected) <= 0.2 * expected, (count, expected)
    assert f"shipped model {shipped.name}" in capsys.readouterr().out
