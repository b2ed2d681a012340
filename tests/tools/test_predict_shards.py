"""tools/predict.py --shard K/N and tools/merge_predictions.py: shards split a folder without overlap
and merge into the results of one unsharded run; --batch-size gives the same files."""
from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest
from PIL import Image

from maskrcnnpp.inference.shards import Shard
from maskrcnnpp.errors import UserError
from tool_helpers import FAST_OPTS, disk_labels, nuclei_image, save_tiny_weights

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import merge_predictions  # noqa: E402
import predict  # noqa: E402

FORMATS = "label_png,coco,kaggle_csv,nuclei_csv"


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_the_sorted_list(count):
    files = [f"img{i:02d}.png" for i in range(13)]
    shards = [Shard(k, count).select(files) for k in range(1, count + 1)]
    assert sorted(sum(shards, [])) == files  # together every file, none twice
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_shard_takes_every_nth_from_the_kth():
    files = [f"img{i:02d}.png" for i in range(13)]
    assert Shard(2, 5).select(files) == ["img01.png", "img06.png", "img11.png"]
    assert Shard(5, 5).select(files) == ["img04.png", "img09.png"]


@pytest.mark.parametrize("text,message", [("3", "is not K/N"), ("0/4", "K must be in 1..N"), ("5/4", "K must be in 1..N"),
                                          ("a/b", "is not K/N"), ("1/0", "K must be in 1..N")])
def test_bad_shard_text(text, message):
    with pytest.raises(UserError, match=message):
        Shard.parse(text)
    assert Shard.parse(" 2 / 4 ") == Shard(2, 4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    images = root / "images"
    images.mkdir()
    layouts = [[(25, 25, 9), (25, 60, 8), (70, 80, 10)], [(40, 40, 11), (70, 20, 7)], [(30, 30, 9), (60, 90, 10)],
               [(50, 50, 12), (20, 90, 8)], [(20, 20, 8), (70, 70, 9), (30, 80, 7)]]
    for k, disks in enumerate(layouts):
        Image.fromarray(nuclei_image(disk_labels((96, 112), disks), seed=k)).save(images / f"img{k}.png")
    return root, images, save_tiny_weights(root / "weights")


def _run(images, out, weights, *extra):
    return predict.main(["--input", str(images), "--output", str(out), "--config", "maskrcnnpp_tiny", "--weights", weights,
                         "--device", "cpu", "--score-thresh", "0.3", "--formats", FORMATS, *extra, *FAST_OPTS])


def _assert_same_coco(path, reference):
    """Same nuclei (image, mask) in both files, scores within float rounding (shard 2 ran batched)."""
    def entries(p):
        return sorted((r["image_id"], r["segmentation"]["counts"], r["score"]) for r in json.loads(p.read_text()))

    got, want = entries(path), entries(reference)
    assert [e[:2] for e in got] == [e[:2] for e in want] and len(got) > 10
    assert np.allclose([e[2] for e in got], [e[2] for e in want], atol=1e-6)


def _kaggle_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], sorted(map(tuple, rows[1:]))


def test_two_shards_merge_into_the_unsharded_run(folder, capsys):
    root, images, weights = folder
    whole, sharded = root / "whole", root / "sharded"
    counts = _run(images, whole, weights)
    first = _run(images, sharded, weights, "--shard", "1/2")
    assert sorted(first) == ["img0", "img2", "img4"]
    with pytest.raises(SystemExit) as exc:  # shard 2 has not run yet: nothing to merge, nothing written
        merge_predictions.main([str(sharded)])
    assert exc.value.code == 2
    assert "1 of 2 shards have not finished (no record for shard 2)" in capsys.readouterr().err
    assert not (sharded / "coco_results.json").exists()
    second = _run(images, sharded, weights, "--shard", "2/2", "--batch-size", "2")
    assert sorted(second) == ["img1", "img3"] and {**first, **second} == counts
    summary = merge_predictions.main([str(sharded)])
    assert summary == {"shards": 2, "images": 5, "nuclei": sum(counts.values()),
                       "written": ["coco_results.json", "kaggle_submission.csv"]}
    _assert_same_coco(sharded / "coco_results.json", whole / "coco_results.json")
    assert _kaggle_rows(sharded / "kaggle_submission.csv") == _kaggle_rows(whole / "kaggle_submission.csv")
    for stem in counts:  # per-image files of both shards side by side, as one run writes them
        assert np.array_equal(np.asarray(Image.open(sharded / f"{stem}_labels.png")),
                              np.asarray(Image.open(whole / f"{stem}_labels.png")))
    record = json.loads((sharded / "predict_shard.shard-2-of-2.json").read_text())
    assert record["images"] == ["img1", "img3"] and record["total_images"] == 5


def test_merge_refuses_shards_of_two_runs_and_overlapping_shards(folder, tmp_path, capsys):
    root, images, weights = folder
    _run(images, tmp_path, weights, "--shard", "1/2", "--formats", "coco")
    _run(images, tmp_path, weights, "--shard", "2/3", "--formats", "coco")
    with pytest.raises(SystemExit) as exc:
        merge_predictions.main([str(tmp_path)])
    assert exc.value.code == 2
    assert "holds shards of runs split 2 and 3 ways" in capsys.readouterr().err
    # a record edited to claim another shard's image
    os.remove(tmp_path / "predict_shard.shard-2-of-3.json")
    _run(images, tmp_path, weights, "--shard", "2/2", "--formats", "coco")
    record_path = tmp_path / "predict_shard.shard-2-of-2.json"
    record = json.loads(record_path.read_text())
    record["images"].append("img0")
    record_path.write_text(json.dumps(record))
    with pytest.raises(SystemExit):
        merge_predictions.main([str(tmp_path)])
    assert "image img0 is in shard 1 and shard 2" in capsys.readouterr().err
    assert not (tmp_path / "coco_results.json").exists()


@pytest.mark.parametrize("args,message", [(["--shard", "3/2"], "--shard: shard '3/2': K must be in 1..N"),
                                          (["--batch-size", "0"], "--batch-size must be at least 1, got 0")])
def test_bad_shard_or_batch_size_exits_2_before_anything_is_written(folder, tmp_path, capsys, args, message):
    root, images, weights = folder
    with pytest.raises(SystemExit) as exc:
        _run(images, tmp_path / "out", weights, *args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
