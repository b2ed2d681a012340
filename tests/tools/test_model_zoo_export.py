"""tools/model_zoo.py export: the same weights give the same bytes and keep their file; test-time
settings that differ from the run's need an evaluation at those settings (--retest) of the run's weights."""
from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnnpp import model_zoo
from tool_helpers import save_tiny_weights

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import model_zoo as zoo_tool  # noqa: E402


def test_export_is_deterministic_and_same_weights_compares_tensors(tmp_path):
    checkpoint = save_tiny_weights(tmp_path)
    a = model_zoo.export_fp16_weights(checkpoint, str(tmp_path / "a.pth"))
    b = model_zoo.export_fp16_weights(checkpoint, str(tmp_path / "b.pth"))
    assert a == b and (tmp_path / "a.pth").read_bytes() == (tmp_path / "b.pth").read_bytes()
    assert model_zoo.same_weights(str(tmp_path / "a.pth"), checkpoint, half=True)
    assert not model_zoo.same_weights(str(tmp_path / "a.pth"), checkpoint)  # fp16 against fp32
    state = torch.load(tmp_path / "a.pth", weights_only=False)
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = state["model"][key] + 1
    torch.save(state, tmp_path / "c.pth")
    assert not model_zoo.same_weights(str(tmp_path / "a.pth"), str(tmp_path / "c.pth"))


@pytest.fixture()
def run(tmp_path):
    """A finished experiment run of maskrcnnpp_tiny on dsb2018 (two test images), as export reads it."""
    run_dir = tmp_path / "run"
    (run_dir / "train" / "inference" / "dsb2018_test").mkdir(parents=True)
    checkpoint = save_tiny_weights(run_dir / "train")
    os.replace(checkpoint, run_dir / "train" / "model_best.pth")
    signature = {"data": "dsb2018", "opts": ["INPUT.MIN_SIZE_TEST", "320", "INPUT.MAX_SIZE_TEST", "640"]}
    (run_dir / "budget.json").write_text(json.dumps({"signature": signature}))
    result = {"config": "maskrcnnpp_tiny", "test_dataset": "dsb2018_test", "budget": {"signature": signature},
              "selected_checkpoint": "model_best.pth", "selection_metric": "nuclei/score", "initial_weights": "none",
              "train_iters": 10, "train_seconds_this_session": 1.0, "score": 0.5, "iou": 80.0, "dice": 88.0,
              "aji": 0.7, "pq": 0.7, "ap": 50.0, "test_results": {"nuclei": {"num_images": 2, "num_gt": 9}}}
    (run_dir / "result.json").write_text(json.dumps(result))
    rows = []
    for k in (1, 2):
        path = tmp_path / f"img{k}.png"
        Image.fromarray(np.full((32, 32), 10 * k, np.uint8)).save(path)
        rows.append({"image_id": k, "file_name": str(path), "score": 0.5, "iou": 0.8, "dice": 0.9, "aji": 0.7, "pq": 0.7})
    with open(run_dir / "train" / "inference" / "dsb2018_test" / "per_image.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = tmp_path / "shipped.yaml"
    config.write_text('_BASE_: "%s"\nINPUT:\n  MIN_SIZE_TEST: 320\n  MAX_SIZE_TEST: 640\nTEST:\n  NUCLEI:\n'
                      '    SCORE_THRESH: 0.65\n' % os.path.join(os.path.dirname(zoo_tool.__file__), "..", "configs", "maskrcnnpp_tiny.yaml"))
    return run_dir, config


def _export_error(capsys, run_dir, config, *extra):
    with pytest.raises(SystemExit) as exc:
        zoo_tool.main(["export", "--run", str(run_dir), "--name", "t", "--config", str(config), "--summary", "s", *extra])
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_other_test_time_settings_need_a_retest_of_the_runs_weights(run, tmp_path, capsys):
    run_dir, config = run
    err = _export_error(capsys, run_dir, config)
    assert "has other test-time settings than the run (TEST.NUCLEI.SCORE_THRESH): an evaluation of the run's weights" in err
    retest = tmp_path / "retest"
    retest.mkdir()
    err = _export_error(capsys, run_dir, config, "--retest", str(retest))
    assert f"re-test folder {retest}: no config.yaml" in err
    from maskrcnnpp.config import setup_cfg

    cfg = setup_cfg(str(config), device="cpu")
    cfg.defrost()
    other = save_tiny_weights(tmp_path / "other", config="maskrcnnpp_tiny")
    with torch.no_grad():  # another model of the same shapes
        state = torch.load(other, weights_only=False)
        for value in state["model"].values():
            if value.is_floating_point():
                value.add_(1.0)
        torch.save(state, other)
    cfg.MODEL.WEIGHTS = other
    (retest / "config.yaml").write_text(cfg.dump())
    err = _export_error(capsys, run_dir, config, "--retest", str(retest))
    assert f"evaluated {other}, not the run's model_best.pth" in err
    cfg.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.3
    (retest / "config.yaml").write_text(cfg.dump())
    err = _export_error(capsys, run_dir, config, "--retest", str(retest))
    assert "was evaluated with other settings than config" in err and "MODEL.ROI_HEADS.NMS_THRESH_TEST" in err


def test_a_config_that_changes_more_than_post_processing_is_refused(run, tmp_path, capsys):
    run_dir, config = run
    config.write_text(config.read_text().replace("MIN_SIZE_TEST: 320", "MIN_SIZE_TEST: 448"))
    err = _export_error(capsys, run_dir, config, "--retest", str(tmp_path))
    assert "predicts differently from the run" in err and "INPUT.MIN_SIZE_TEST" in err


def test_the_diameter_command_stores_the_nominal_diameter_in_the_card(tmp_path, monkeypatch, capsys):
    import math

    monkeypatch.setattr(model_zoo, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(model_zoo, "ZOO_FILE", tmp_path / "zoo.json")
    sha = model_zoo.export_fp16_weights(save_tiny_weights(tmp_path), str(tmp_path / "t.pth"))
    model_zoo.register(model_zoo.ZooModel("t", "nuclei_maskrcnnpp_r18", "t.pth", sha, "s", {"test": {"score": 0.5}}))
    gt = {"images": [{"id": 1, "height": 160, "width": 160}],  # x2 to the training short side 320
          "annotations": [{"image_id": 1, "area": math.pi * 25}, {"image_id": 1, "area": math.pi * 36}]}
    (tmp_path / "train.json").write_text(json.dumps(gt))
    assert zoo_tool.main(["diameter", "--name", "t", "--gt", str(tmp_path / "train.json")]) == 0
    assert "t: nominal nucleus diameter 22.000 px" in capsys.readouterr().out  # median of 20 and 24
    card = model_zoo.get("t").card
    assert card["nominal_diameter"]["pixels"] == 22.0 and card["test"] == {"score": 0.5}
    assert model_zoo.get("t").nominal_diameter == 22.0 and model_zoo.get("t").diameter_range == [22.0, 22.0]
    assert model_zoo.get("t").config_overrides() == ["TEST.NUCLEI.NOMINAL_DIAMETER", "22.0",
                                                     "TEST.NUCLEI.AUTO_DIAMETER_RANGE", "(22.0, 22.0)"]
    assert zoo_tool.main(["diameter", "--name", "t", "--gt", str(tmp_path / "train.json"), "--default-diameter", "auto"]) == 0
    assert model_zoo.get("t").config_overrides()[-2:] == ["TEST.NUCLEI.DIAMETER", "auto"]
    assert "Predicts with `--diameter auto` unless told otherwise" in "\n".join(model_zoo._card_markdown(model_zoo.get("t"), False))
    assert zoo_tool.main(["diameter", "--name", "t", "--gt", str(tmp_path / "train.json"), "--default-diameter", "none"]) == 0
    assert "TEST.NUCLEI.DIAMETER" not in model_zoo.get("t").config_overrides()
    with pytest.raises(SystemExit) as exc:
        zoo_tool.main(["diameter", "--name", "t", "--gt", str(tmp_path / "missing.json")])
    assert exc.value.code == 2
    assert "training annotations" in capsys.readouterr().err
