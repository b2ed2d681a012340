"""--diameter auto on a real DSB 2018 test-split image shrunk to half its size: the nucleus count stays
within 20% of the ground truth's. Skipped, with the reason, while no model is shipped or without the DSB zip."""
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


def test_auto_diameter_counts_the_nuclei_of_a_half_size_real_image(tmp_path, capsys):
    from PIL import Image

    from maskrcnnpp.evaluation import gt_label_image
    from maskrcnnpp.evaluation.coco_results import coco_records
    from maskrcnnpp.experiment.scale_check import resize_image, resize_labels
    from maskrcnnpp.inference import read_image

    if model_zoo.default_model() is None:
        pytest.skip("no trained model is shipped yet (maskrcnnpp/weights/zoo.json lists none)")
    zip_path = dsb2018_zip_path()
    if zip_path is None:
        pytest.skip("real DSB 2018 zip not found (set MASKRCNNPP_DSB2018_ZIP)")
    root = prepared_dsb2018(zip_path=zip_path)
    records = {r["image_id"]: r for r in coco_records(read_json(str(root / "annotations" / "test.json"), "test split"))}
    record = records[model_zoo.get().card["subset"]["image_ids"][0]]
    image = resize_image(read_image(str(root / "images" / record["file_name"])), 0.5)
    Image.fromarray(image).save(tmp_path / "half.png")
    expected = len(np.unique(resize_labels(gt_label_image(record)[0], 0.5))) - 1
    sys.path.insert(0, str(REPO / "tools"))
    import predict

    counts = predict.main(["--input", str(tmp_path / "half.png"), "--output", str(tmp_path / "out"), "--device", "cpu",
                           "--formats", "label_png", "--diameter", "auto"])
    assert abs(counts["half"] - expected) <= 0.2 * expected, (counts, expected)
    assert "(auto" in capsys.readouterr().out
