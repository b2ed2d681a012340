"""maskrcnnpp.model_zoo: fp16 export, SHA-256 checks, names; NucleiPredictor.from_zoo and its (labels, table).

A temporary zoo (its own zoo.json and weights folder) holds a randomly initialised tiny model, so
these tests do not depend on which trained model the package ships.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from maskrcnnpp import model_zoo
from maskrcnnpp.errors import UserError
from maskrcnnpp.utils.files import sha256_of_file

from tool_helpers import FAST_OPTS, disk_labels, nuclei_image, save_tiny_weights


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    return save_tiny_weights(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def zoo(tmp_path, checkpoint, monkeypatch) -> Path:
    """A zoo with one model, ``tiny_test`` (the default), in ``tmp_path``."""
    monkeypatch.setattr(model_zoo, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(model_zoo, "ZOO_FILE", tmp_path / "zoo.json")
    sha = model_zoo.export_fp16_weights(checkpoint, str(tmp_path / "tiny_test.pth"))
    card = {"test": {"score": 0.123, "iou": 45.6}, "cpu_seconds_per_512px": 1.5}
    model_zoo.register(model_zoo.ZooModel("tiny_test", "maskrcnnpp_tiny", "tiny_test.pth", sha, "random weights", card))
    return tmp_path


def test_export_halves_every_float_tensor_and_keeps_the_values(zoo, checkpoint):
    full = torch.load(checkpoint, map_location="cpu", weights_only=False)["model"]
    half = torch.load(zoo / "tiny_test.pth", map_location="cpu", weights_only=False)["model"]
    assert half.keys() == full.keys()
    for key, value in full.items():
        if value.is_floating_point():
            assert half[key].dtype == torch.float16
            assert torch.equal(half[key], value.half()), key
        else:
            assert torch.equal(half[key], value), key  # e.g. num_batches_tracked stays an integer
    assert model_zoo.get().sha256 == sha256_of_file(zoo / "tiny_test.pth")


def test_names_default_and_the_table(zoo):
    assert model_zoo.default_model() == "tiny_test"
    assert model_zoo.get().name == model_zoo.get("tiny_test").name == "tiny_test"
    with pytest.raises(UserError, match=r"unknown model 'nuclei_unet'; the shipped models are: tiny_test"):
        model_zoo.get("nuclei_unet")
    table = model_zoo.model_zoo_table()
    assert "| tiny_test (default) | maskrcnnpp_tiny | 0.123 | 45.60 | - | - | - | - | 1.50 | random weights |" in table


def test_a_damaged_or_missing_weights_file_is_one_clear_error(zoo):
    model = model_zoo.get()
    assert model_zoo.weights_path(model) == str(zoo / "tiny_test.pth")
    assert model_zoo.resolve_weights("zoo:tiny_test") == str(zoo / "tiny_test.pth")
    assert model_zoo.resolve_weights("out/model_best.pth") == "out/model_best.pth"
    data = bytearray((zoo / "tiny_test.pth").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (zoo / "tiny_test.pth").write_bytes(bytes(data))
    with pytest.raises(UserError, match=rf"weights file {zoo / 'tiny_test.pth'} of model 'tiny_test' is damaged or "
                                        r"replaced: its SHA-256 is [0-9a-f]{64}, the shipped file's is"):
        model_zoo.weights_path(model)
    (zoo / "tiny_test.pth").unlink()
    with pytest.raises(UserError, match="tiny_test.pth of model 'tiny_test' is missing"):
        model_zoo.resolve_weights("zoo:tiny_test")


def test_an_empty_zoo_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(model_zoo, "ZOO_FILE", tmp_path / "zoo.json")
    assert model_zoo.list_models() == [] and model_zoo.default_model() is None
    with pytest.raises(UserError, match="no trained model is shipped in this version"):
        model_zoo.get()


def test_from_zoo_predicts_a_label_image_and_its_table(zoo, checkpoint):
    from maskrcnnpp import NucleiPredictor

    predictor = NucleiPredictor.from_zoo(device="cpu", opts=FAST_OPTS, score_thresh=0.0)
    reference = NucleiPredictor.from_config("maskrcnnpp_tiny", checkpoint, opts=FAST_OPTS, device="cpu",
                                            score_thresh=0.0)
    image = nuclei_image(disk_labels((64, 72), [(20, 20, 8), (40, 50, 9)]))
    labels, table = predictor(image)
    assert labels.shape == (64, 72) and labels.dtype.kind in "iu"
    count = int(labels.max())
    assert count > 0, "score threshold 0 keeps the random model's detections"
    assert table["id"].tolist() == list(range(1, count + 1))
    assert table["area"].tolist() == np.bincount(labels.ravel(), minlength=count + 1)[1:].tolist()
    ys, xs = np.nonzero(labels == 1)
    assert table["centroid_y"][0] == pytest.approx(ys.mean()) and table["centroid_x"][0] == pytest.approx(xs.mean())
    assert [table[k][0] for k in ("bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x")] == [
        ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    assert ((table["score"] >= 0) & (table["score"] <= 1)).all()
    # fp16 weights predict what the fp32 checkpoint predicts (up to fp16 rounding of the weights)
    ref_labels, _ = reference(image)
    assert abs(int(ref_labels.max()) - count) <= max(2, count // 10)


def test_predict_tool_with_no_model_options_uses_the_default_model(zoo, tmp_path, capsys):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import predict

    from PIL import Image

    Image.fromarray(nuclei_image(disk_labels((48, 48), [(20, 20, 8)]))).save(tmp_path / "a.png")
    counts = predict.main(["--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "out"), "--device", "cpu",
                           "--score-thresh", "0", "--formats", "label_png", *FAST_OPTS])
    out = capsys.readouterr().out
    assert "shipped model tiny_test" in out and "tiny_test.pth" in out
    assert set(counts) == {"a"} and (tmp_path / "out" / "a_labels.png").is_file()
    with pytest.raises(SystemExit) as exc:
        predict.main(["--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "o2"), "--model", "nope"])
    assert exc.value.code == 2
    assert "unknown model 'nope'; the shipped models are: tiny_test" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "out")


def test_the_cards_page_shows_each_models_figures(zoo):
    model = model_zoo.get()
    card = dict(model.card, test_by_image_type={"stained tissue": {"images": 3, "score": 0.25, "iou": 0.5, "dice": 0.6,
                                                                   "aji": 0.4, "pq": 0.3}},
                subset={"image_ids": [3, 7], "score": 0.41234}, run_test_score=0.5478,
                test_time_settings={"TEST.NUCLEI.SCORE_THRESH": 0.65}, test_time_selection="val score 0.556 -> 0.564")
    model_zoo.register(model_zoo.ZooModel(model.name, model.config, model.weights, model.sha256, model.summary, card))
    page = model_zoo.model_zoo_markdown()
    assert "## tiny_test (default)" in page and f"SHA-256 `{model.sha256}`" in page
    assert "| stained tissue | 3 | 0.250 | 0.500 | 0.600 | 0.400 | 0.300 |" in page
    assert "Fixed subset checked in CI (2 test images: 3, 7): score 0.4123." in page
    assert "- CPU time per 512x512 image (tools/benchmark.py): 1.50 s" in page
    assert ("- Test-time settings chosen on val after training: `TEST.NUCLEI.SCORE_THRESH 0.65` (val score 0.556 -> "
            "0.564); the run's own test score, at the settings it trained with: 0.548") in page


def test_visualize_draws_a_shipped_models_prediction(zoo, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import visualize

    from PIL import Image

    Image.fromarray(nuclei_image(disk_labels((48, 48), [(20, 20, 8)]))).save(tmp_path / "a.png")
    written = visualize.main(["--model", "tiny_test", "--images", str(tmp_path / "a.png"), "--output",
                              str(tmp_path / "vis"), "--device", "cpu", "--score-thresh", "0", *FAST_OPTS])
    assert [Path(p).name for p in written] == ["a_overlay.png"]
    with Image.open(written[0]) as grid:
        assert grid.width >= 2 * 48  # image and prediction side by side


def test_the_out_of_distribution_check_goes_into_the_card_and_its_page(zoo, tmp_path):
    from maskrcnnpp.experiment.ood_check import summarize_check
    from maskrcnnpp.experiment.zoo_export import store_ood_check
    from maskrcnnpp.utils.files import write_json

    def row(set_name, image_id, kind, score, flags=()):
        return {"set": set_name, "image_id": image_id, "image_kind": kind, "group": f"{kind}-8x8", "score": score,
                "iou": score, "dice": score, "aji": score, "pq": score, "nuclei": 2, "gt_nuclei": 3, "flags": list(flags)}

    summary = summarize_check([row("dsb2018", 1, "fluorescence", 0.6), row("ext", 1, "stained tissue", 0.1, ["weak"])])
    write_json(str(tmp_path / "check" / "ood_check.json"), summary)
    stored = store_ood_check("tiny_test", str(tmp_path / "check"), "python tools/ood_check.py --out X", "2026-12-06")
    assert model_zoo.get().card["ood_check"] == stored and stored["external"]["score"] == 0.1
    page = model_zoo.model_zoo_markdown()
    assert "Out-of-distribution check (2026-12-06; `python tools/ood_check.py --out X`;" in page
    assert "| all images | 2 | 0.350 | 0.350 | 0.350 | 0.350 | 0.350 | 4 / 6 |" in page
    assert "| external sets | 1 | 0.100 |" in page and "| set ext | 1 | 0.100 |" in page
    assert "| kind stained tissue | 1 | 0.100 |" in page and "| group ext / stained tissue-8x8 | 1 | 0.100 |" in page
    assert "1 image(s) flagged, 1 scored below 0.3, 1 both (precision 1.00, recall 1.00)." in page
    with pytest.raises(UserError, match="out-of-distribution check"):
        store_ood_check("tiny_test", str(tmp_path / "nowhere"), "c", "d")
