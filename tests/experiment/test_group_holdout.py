"""The leave-group-out protocol of tools/experiment.py on a tiny prepared folder of two image kinds:
whole groups go to test, training never sees them, and the table gives the score per held-out group."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskrcnnpp.data.folder import prepare_folder
from maskrcnnpp.errors import UserError
from maskrcnnpp.experiment.group_holdout import fold_groups, scores_by_group, write_holdout_root

from experiment_testutils import FAST_OPTS, load_tool
from tool_helpers import disk_labels, nuclei_image

COLOUR = "stained tissue-64x80"
GREY = "fluorescence-64x64"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """6 grey 64 x 64 fluorescence images and 3 colour 64 x 80 H&E-like ones, split train/val/test."""
    root = tmp_path_factory.mktemp("groups")
    src = root / "src"
    src.mkdir()
    for i in range(6):
        labels = disk_labels((64, 64), [(16, 16, 6), (44, 40, 7 + i % 2)])
        Image.fromarray(nuclei_image(labels, seed=i)).save(src / f"grey{i}.png")
        tifffile.imwrite(src / f"grey{i}_labels.tif", labels.astype(np.uint16))
    for i in range(3):
        labels = disk_labels((64, 80), [(20, 20, 7), (40, 60, 6)])
        rgb = np.empty((64, 80, 3), np.uint8)
        rgb[:] = (230, 150, 200)
        rgb[labels > 0] = (90, 60 + 10 * i, 150)
        Image.fromarray(rgb).save(src / f"he{i}.png")
        tifffile.imwrite(src / f"he{i}_labels.tif", labels.astype(np.uint16))
    prepare_folder(src, root / "prepared", split=(0.5, 0.25, 0.25), seed=0, workers=1, progress=False)
    return root


def names(coco):
    return sorted(im["file_name"] for im in coco["images"])


def test_holdout_root_puts_the_group_in_test_and_nothing_of_it_in_training(prepared, tmp_path):
    out = write_holdout_root(str(prepared / "prepared"), [COLOUR], str(tmp_path / "holdout"))
    ann = {s: json.loads((tmp_path / "holdout" / "annotations" / f"{s}.json").read_text())
           for s in ("all", "train", "val", "test")}
    assert names(ann["test"]) == ["he0.png", "he1.png", "he2.png"]
    assert not any(n.startswith("he") for n in names(ann["train"]) + names(ann["val"]))
    assert sorted(names(ann["train"]) + names(ann["val"])) == [f"grey{i}.png" for i in range(6)]
    assert len(ann["all"]["images"]) == 9
    groups = json.loads((tmp_path / "holdout" / "groups.json").read_text())
    assert groups["holdout"] == [COLOUR] and sorted(set(groups["images"].values())) == [GREY, COLOUR]
    assert (tmp_path / "holdout" / "images" / "he0.png").is_file()  # the link to the source's images
    stamp = (tmp_path / "holdout" / "annotations" / "train.json").stat().st_mtime_ns
    write_holdout_root(str(prepared / "prepared"), [COLOUR], out)  # a rerun writes nothing
    assert (tmp_path / "holdout" / "annotations" / "train.json").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="unknown group"):
        write_holdout_root(str(prepared / "prepared"), ["nope"], str(tmp_path / "h2"))


def test_folds_of_two_groups_and_bad_fold_text():
    groups = {1: GREY, 2: GREY, 3: COLOUR}
    assert fold_groups(groups, "1/2") == [GREY] and fold_groups(groups, "2/2") == [COLOUR]
    for bad in ("3/2", "0/2", "1/3", "a/b", "2"):
        with pytest.raises(UserError, match="group fold"):
            fold_groups(groups, bad)


def test_scores_by_group_averages_per_image_rows(tmp_path):
    path = tmp_path / "per_image.csv"
    path.write_text("image_id,score,iou,dice,aji,pq\n1,0.5,0.7,0.8,0.6,0.5\n2,0.3,0.5,0.6,0.4,0.3\n3,0.1,0.2,0.3,0.1,0.1\n")
    by_group = scores_by_group(str(path), {1: GREY, 2: GREY, 3: COLOUR})
    assert by_group[GREY]["images"] == 2 and by_group[GREY]["score"] == pytest.approx(0.4)
    assert by_group[COLOUR] == pytest.approx({"images": 1, "score": 0.1, "iou": 0.2, "dice": 0.3, "aji": 0.1, "pq": 0.1})


def test_experiment_trains_without_the_held_out_group_and_reports_it(prepared, tmp_path, capsys):
    tool = load_tool("experiment")
    out = tmp_path / "logo"
    report = tool.main(["--holdout-groups", COLOUR, "--dsb-root", str(prepared / "prepared"), "--configs",
                        "maskrcnnpp_tiny", "--budget-iters", "2", "--evals", "1", "--latency-size", "64",
                        "--latency-iters", "1", "--device", "cpu", "--out", str(out), *FAST_OPTS,
                        "SOLVER.IMS_PER_BATCH", "1", "INPUT.MIN_SIZE_TEST", "64", "INPUT.MAX_SIZE_TEST", "96"])
    row = report["rows"][0]
    assert row["test_results"]["nuclei"]["num_images"] == 3
    assert list(report["by_group"]["maskrcnnpp_tiny"]) == [COLOUR]
    assert report["by_group"]["maskrcnnpp_tiny"][COLOUR]["images"] == 3
    assert report["by_group"]["maskrcnnpp_tiny"][COLOUR]["score"] == pytest.approx(row["test_results"]["nuclei"]["score"])
    printed = capsys.readouterr().out
    assert f"leave-group-out: testing on {COLOUR}" in printed and f"| maskrcnnpp_tiny | {COLOUR} | 3 |" in printed


def test_list_groups_and_misuse(prepared, capsys):
    tool = load_tool("experiment")
    listed = tool.main(["--list-groups", "--dsb-root", str(prepared / "prepared"), "--out", "unused"])
    assert sorted(set(listed["groups"].values())) == [GREY, COLOUR]
    printed = capsys.readouterr().out
    assert f"| {GREY} | 6 | |" in printed and f"| {COLOUR} | 3 | |" in printed
    with pytest.raises(SystemExit) as e:
        tool.main(["--holdout-groups", "--data", "synthetic", "--budget-iters", "1", "--out", "unused"])
    assert e.value.code == 2
    assert "use --data dsb2018 without --test-root" in capsys.readouterr().err
