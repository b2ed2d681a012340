"""tools/ood_check.py on a tiny prepared folder with the shipped model: its table equals what
tools/predict.py + tools/evaluate.py give for the same images, per set and per kind."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskrcnnpp.data.folder import prepare_folder
from maskrcnnpp.experiment.ood_check import summarize_check

from tool_helpers import disk_labels, nuclei_image, run_tool

DISKS = [(24, 24, 9), (24, 70, 9), (70, 30, 10), (75, 80, 8), (50, 50, 9)]


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    root = tmp_path_factory.mktemp("ood")
    src = root / "src"
    src.mkdir()
    labels = disk_labels((112, 112), DISKS)
    for seed in range(2):
        Image.fromarray(nuclei_image(labels, seed=seed)).save(src / f"fluo{seed}.png")
        tifffile.imwrite(src / f"fluo{seed}_labels.tif", labels.astype(np.uint16))
    he = np.empty((112, 112, 3), np.uint8)
    he[:] = (230, 150, 200)
    he[labels > 0] = (90, 60, 150)
    Image.fromarray(he).save(src / "he.png")
    tifffile.imwrite(src / "he_labels.tif", labels.astype(np.uint16))
    prepare_folder(src, root / "prepared", split="test", workers=1, progress=False)
    out = root / "check"
    res = run_tool("ood_check.py", ["--set", f"tiny={root / 'prepared'}:test", "--out", str(out), "--device", "cpu",
                                    "TEST.NUCLEI.TRUST.WEAK_KINDS", '["stained tissue"]'])
    assert res.returncode == 0, res.stderr[-3000:]
    return root, out, res


def test_table_equals_predict_and_evaluate(checked):
    root, out, res = checked
    summary = json.loads((out / "ood_check.json").read_text())
    pred = root / "pred"
    r = run_tool("predict.py", ["--input", str(root / "prepared" / "images"), "--output", str(pred), "--device", "cpu"])
    assert r.returncode == 0, r.stderr[-3000:]
    r = run_tool("evaluate.py", ["--gt", str(root / "prepared" / "annotations" / "test.json"), "--pred",
                                 str(pred / "coco_results.json"), "--score-thresh", "0", "--no-coco-ap", "--out",
                                 str(root / "eval")])
    assert r.returncode == 0, r.stderr[-3000:]
    evaluated = json.loads((root / "eval" / "summary.json").read_text())
    tiny = summary["by_set"]["tiny"]
    assert tiny["images"] == 3 and tiny["gt_nuclei"] == 15
    for metric in ("score", "iou", "dice", "aji", "pq"):
        assert tiny[metric] == pytest.approx(evaluated[metric], abs=1e-6), metric
    assert summary["overall"]["score"] == pytest.approx(evaluated["score"], abs=1e-6)
    assert tiny["score"] > 0.3, "the shipped model finds these disks"
    per_kind = {k: v["images"] for k, v in summary["by_kind"].items()}
    assert per_kind == {"fluorescence": 2, "stained tissue": 1}
    assert "| tiny | 3 |" in res.stdout and "| tiny / stained tissue | 1 |" in res.stdout


def test_rows_carry_groups_and_trust_and_the_flags_are_counted(checked):
    _, out, res = checked
    rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
    assert sorted(r["file_name"] for r in rows) == ["fluo0.png", "fluo1.png", "he.png"]
    by_name = {r["file_name"]: r for r in rows}
    assert by_name["he.png"]["flags"][0] == "stained tissue is a weak image kind of this model"
    assert by_name["he.png"]["group"] == "stained tissue-112x112"
    assert by_name["fluo0.png"]["group"] == "fluorescence-112x112"
    flags = summarize_check(rows)["flags"]
    assert flags["flagged"] == sum(bool(r["flags"]) for r in rows) >= 1
    assert flags["failed"] == sum(r["score"] < 0.3 for r in rows)
    assert "Trust flags:" in res.stdout


def test_bad_set_and_existing_rows_are_one_line_errors(checked, tmp_path, capsys):
    from tiny_tool_helpers import load_tool

    root, out, _ = checked
    tool = load_tool("ood_check")

    def error_of(argv):
        with pytest.raises(SystemExit) as e:
            tool.main(argv)
        assert e.value.code == 2
        return capsys.readouterr().err.strip().splitlines()[-1]

    assert error_of(["--set", "nope", "--out", str(tmp_path / "x")]).endswith(
        "check set 'nope': expected NAME=FOLDER[:SPLIT], e.g. monuseg=datasets/ext_monuseg_test:test")
    line = error_of(["--set", f"a={tmp_path}", "--out", str(tmp_path / "y")])
    assert "check set a:" in line and "is missing" in line
    assert "holds the rows.jsonl of an earlier run" in error_of(["--set", f"tiny={root / 'prepared'}:test",
                                                                 "--out", str(out)])
    assert "--classical scores Otsu + watershed" in error_of(["--classical", "--model", "x", "--set", f"tiny={root / 'prepared'}:test",
                                                              "--out", str(tmp_path / "z")])
    summary = tool.main(["--summarize", str(out)])
    assert summary["by_set"]["tiny"]["images"] == 3 and "| tiny | 3 |" in capsys.readouterr().out
