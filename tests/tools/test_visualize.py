"""maskrcnnpp.vis.images and tools/visualize.py: overlays, contours, the Fig. 4 error map, PNG grids."""
from __future__ import annotations

import json
import logging
import os
import stat
import sys
import uuid

import numpy as np
import pytest
import torch
from PIL import Image

from maskrcnnpp.utils.files import default_file_mode
from maskrcnnpp.evaluation.coco_results import file_stem
from maskrcnnpp.inference import NucleiPrediction, coco_results, write_coco_results
from maskrcnnpp.vis.images import (
    ERROR_COLORS,
    PANEL_GAP,
    TITLE_HEIGHT,
    compose_grid,
    distinct_colors,
    draw_instances,
    error_legend,
    error_map,
)

from tool_helpers import FAST_OPTS, disk_labels, nuclei_image, run_tool, save_tiny_weights

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import visualize  # noqa: E402

SIZE = 96


# ---------------------------------------------------------------------------- library
def test_distinct_colors_differ_between_neighbouring_labels():
    colors = distinct_colors(50)
    assert colors.shape == (50, 3) and (colors >= 0).all() and (colors <= 1).all()
    assert np.linalg.norm(np.diff(colors, axis=0), axis=1).min() > 0.2


def test_overlay_fills_and_contour_outlines():
    labels = disk_labels((64, 80), [(20, 20, 8), (40, 55, 10)])
    image = np.full((64, 80, 3), 60, np.uint8)
    overlay = draw_instances(image, labels, "overlay")
    contour = draw_instances(image, labels, "contour")
    assert overlay.shape == contour.shape == image.shape
    for out in (overlay, contour):
        assert (out[2, 2] == 60).all() and (out[60, 5] == 60).all()  # background untouched
    assert not (overlay[20, 20] == 60).all() and not (overlay[40, 55] == 60).all()  # centres filled
    assert (contour[20, 20] == 60).all() and (contour[40, 55] == 60).all()  # centres left as they are
    assert not (contour[20, 28] == 60).all() or not (contour[20, 27] == 60).all()  # the outline is drawn
    assert not np.array_equal(overlay[20, 20], overlay[40, 55])  # two nuclei, two colours
    assert draw_instances(image, labels, "overlay", scale=2).shape == (128, 160, 3)


def test_error_map_colours_tp_fn_fp_areas():
    gt = disk_labels((40, 40), [(12, 12, 6), (28, 28, 6)])
    pred = disk_labels((40, 40), [(12, 16, 6)])  # nucleus 1 shifted right, nucleus 2 missed
    errors = error_map(gt, pred)
    assert tuple(errors[12, 14]) == ERROR_COLORS["TP"]
    assert tuple(errors[12, 21]) == ERROR_COLORS["FP"]  # predicted, not in ground truth
    assert tuple(errors[28, 28]) == ERROR_COLORS["FN"]  # missed nucleus
    assert tuple(errors[2, 2]) == (0, 0, 0)
    gt_border = (28, 22)  # inner border of ground-truth nucleus 2: darkened
    assert tuple(errors[gt_border]) == tuple(np.array(ERROR_COLORS["FN"]) // 2)


def test_error_legend_fits_its_panel():
    assert error_legend(400, {"TP": 1234, "FN": 56, "FP": 7}).shape == (TITLE_HEIGHT, 400, 3)
    narrow = error_legend(96, {"TP": 1234, "FN": 56, "FP": 7})
    assert narrow.shape == (3 * TITLE_HEIGHT, 96, 3)
    for row, name in enumerate(["TP", "FN", "FP"]):  # one swatch per line
        assert tuple(narrow[row * TITLE_HEIGHT + 8, 6]) == ERROR_COLORS[name]


def test_compose_grid_layout():
    a, b = np.full((10, 20, 3), 1, np.uint8), np.full((14, 12, 3), 2, np.uint8)
    grid = compose_grid([("a", a), ("b", b), ("c", a)], ncols=2)
    cell_h, cell_w = 14 + TITLE_HEIGHT, 20
    assert grid.shape == (2 * cell_h + PANEL_GAP, 2 * cell_w + PANEL_GAP, 3)
    assert (grid[TITLE_HEIGHT : TITLE_HEIGHT + 10, :20] == 1).all()
    assert (grid[TITLE_HEIGHT : TITLE_HEIGHT + 14, cell_w + PANEL_GAP : cell_w + PANEL_GAP + 12] == 2).all()
    assert (grid[cell_h + PANEL_GAP + TITLE_HEIGHT : cell_h + PANEL_GAP + TITLE_HEIGHT + 10, :20] == 1).all()


# ---------------------------------------------------------------------------- tools/visualize.py
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two synthetic nuclei images registered as a COCO dataset, and a results file made from their truth."""
    from detectron2.data import DatasetCatalog
    from skimage.segmentation import relabel_sequential

    from maskrcnnpp.data import register_nuclei_coco
    from maskrcnnpp.data.synthetic import build_synthetic_dataset
    from maskrcnnpp.evaluation import gt_label_image

    root = tmp_path_factory.mktemp("vis")
    json_file = build_synthetic_dataset(root / "synth", 2, SIZE, seed=5, split="test")
    name = f"vis_test_{uuid.uuid4().hex[:6]}"
    register_nuclei_coco(name, str(json_file), str(root / "synth" / "images"))
    records = DatasetCatalog.get(name)
    truth, predictions, results = {}, {}, []
    for record in records:
        gt = gt_label_image(record)[0]
        pred = np.roll(gt, 2, axis=1)
        pred[pred == 1] = 0  # nucleus 1 missed
        pred = relabel_sequential(pred)[0].astype(np.int32)
        results += coco_results(record["image_id"], NucleiPrediction(pred, np.full(pred.max(), 0.9, np.float32)))
        # a confident-looking false positive that scores below the default threshold 0.5
        block = np.zeros_like(gt)
        ys, xs = np.nonzero(gt == 0)
        block[ys[0], xs[0]] = 1
        low = coco_results(record["image_id"], NucleiPrediction(block, np.array([0.2], np.float32)))
        results += low
        truth[str(record["image_id"])] = (record, gt, (ys[0], xs[0]))
        predictions[str(record["image_id"])] = pred
    results_file = str(root / "results.json")
    write_coco_results(results_file, results)
    return name, results_file, truth, predictions, root


@pytest.mark.parametrize("mode", ["overlay", "contour", "errors"])
def test_results_over_a_dataset(dataset, mode, tmp_path):
    name, results_file, truth, predictions, _ = dataset
    written = visualize.main(["--results", results_file, "--dataset", name, "--mode", mode, "--output", str(tmp_path)])
    stems = {i: os.path.splitext(os.path.basename(record["file_name"]))[0] for i, (record, _, _) in truth.items()}
    assert sorted(os.path.basename(p) for p in written) == sorted(f"{stems[i]}_{mode}.png" for i in truth)
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in written} == {default_file_mode()}  # not mkstemp's 0600
    for image_id, (record, gt, low_pixel) in truth.items():
        grid = np.asarray(Image.open(tmp_path / f"{stems[image_id]}_{mode}.png").convert("RGB"))
        panels = 4 if mode == "errors" else 3
        # a 96 px wide error panel stacks its legend's three entries
        cell_h = SIZE + TITLE_HEIGHT + (3 * TITLE_HEIGHT if mode == "errors" else 0)
        assert grid.shape == (cell_h, panels * SIZE + (panels - 1) * PANEL_GAP, 3)
        original = np.asarray(Image.open(record["file_name"]).convert("RGB"))
        assert np.array_equal(grid[TITLE_HEIGHT : TITLE_HEIGHT + SIZE, :SIZE], original)
        if mode == "errors":
            x0 = 3 * (SIZE + PANEL_GAP)
            errors = grid[TITLE_HEIGHT : TITLE_HEIGHT + SIZE, x0 : x0 + SIZE]
            pred = predictions[image_id]
            fp = (pred > 0) & (gt == 0)
            fn_only = (gt == 1) & (pred == 0)
            assert (errors[fp] == ERROR_COLORS["FP"]).all()
            assert (errors[(gt == 0) & (pred == 0)] == 0).all()  # includes the pixel scoring 0.2
            assert tuple(errors[low_pixel]) == (0, 0, 0)
            # missed nucleus 1: its pixels are FN (full colour inside, half on its inner border)
            colours = {tuple(c) for c in errors[fn_only]}
            assert colours <= {ERROR_COLORS["FN"], tuple(np.array(ERROR_COLORS["FN"]) // 2)}


def test_results_named_by_file_stem_match_the_dataset_images(dataset, tmp_path):
    """tools/predict.py names images by file stem: its results draw the same error maps as id-keyed ones."""
    name, results_file, truth, _, root = dataset
    stems = {i: os.path.splitext(os.path.basename(record["file_name"]))[0] for i, (record, _, _) in truth.items()}
    by_stem = [dict(r, image_id=stems[str(r["image_id"])]) for r in json.loads(open(results_file).read())]
    stem_file = tmp_path / "by_stem.json"
    stem_file.write_text(json.dumps(by_stem))
    by_id = visualize.main(["--results", results_file, "--dataset", name, "--mode", "errors", "--output", str(tmp_path / "id")])
    by_name = visualize.main(["--results", str(stem_file), "--dataset", name, "--mode", "errors", "--output", str(tmp_path / "stem")])
    assert [os.path.basename(p) for p in by_id] == [os.path.basename(p) for p in by_name]
    for a, b in zip(by_id, by_name):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))


def test_ids_and_stems_are_not_confused_and_shared_stems_keep_apart(dataset, tmp_path):
    """Files 0.png (id 1) and 1.png (id 2): a predict.py file keyed "0"/"1" must draw 0.png with "0"'s
    nuclei, though str(id 1) == "1"; two images sharing a stem (plate folders) get two grids."""
    import shutil

    from detectron2.data import DatasetCatalog

    from maskrcnnpp.data import register_nuclei_coco

    name, results_file, truth, predictions, root = dataset
    coco = json.loads((root / "synth" / "annotations" / "test.json").read_text())
    new_names = {1: "a/0.png", 2: "b/1.png"}
    for image in coco["images"]:
        (root / "ids" / new_names[image["id"]]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "synth" / "images" / image["file_name"], root / "ids" / new_names[image["id"]])
        image["file_name"] = new_names[image["id"]]
    (root / "ids" / "gt.json").write_text(json.dumps(coco))
    by_stem = [dict(r, image_id=file_stem(new_names[r["image_id"]])) for r in json.loads(open(results_file).read())]
    stem_file = tmp_path / "by_stem.json"
    stem_file.write_text(json.dumps(by_stem))
    for label, names in (("ids", new_names), ("plates", {1: "a/0.png", 2: "b/0.png"})):
        if label == "plates":
            shutil.copy(root / "ids" / "b" / "1.png", root / "ids" / "b" / "0.png")
            for image in coco["images"]:
                image["file_name"] = names[image["id"]]
            (root / "ids" / "gt.json").write_text(json.dumps(coco))
        ds = f"vis_ids_{label}_{uuid.uuid4().hex[:6]}"
        register_nuclei_coco(ds, str(root / "ids" / "gt.json"), str(root / "ids"))
        try:
            results = results_file if label == "plates" else str(stem_file)
            # one image drawn: its id (1) and its stem ("0") each match one key of the stem-keyed file
            limit = ["--max-images", "1"] if label == "ids" else []
            written = visualize.main(["--results", results, "--dataset", ds, "--mode", "errors", *limit,
                                      "--output", str(tmp_path / label)])
        finally:
            DatasetCatalog.remove(ds)
        if label == "ids":
            reference = visualize.main(["--results", results_file, "--dataset", name, "--mode", "errors",
                                        "--output", str(tmp_path / "ref")])
            assert [os.path.basename(p) for p in written] == ["0_errors.png"]
            for a, b in zip(sorted(reference), written):  # the reference's images in id order: the same pixels
                assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
        else:
            assert [os.path.basename(p) for p in written] == ["0_id1_errors.png", "0_id2_errors.png"]


def test_model_over_image_files(tmp_path):
    weights = save_tiny_weights(tmp_path / "w")
    images = tmp_path / "images"
    images.mkdir()
    labels = disk_labels((SIZE, SIZE), [(30, 30, 9), (60, 60, 10)])
    for k in range(3):
        Image.fromarray(nuclei_image(labels, seed=k).astype(np.uint16) * 100).save(images / f"img{k}.png")
    written = visualize.main(["--config", "maskrcnnpp_tiny", "--weights", weights, "--images", str(images),
                              "--mode", "contour", "--max-images", "2", "--output", str(tmp_path / "out"),
                              "--scale", "2", "--score-thresh", "0.3", *FAST_OPTS])
    assert [os.path.basename(p) for p in written] == ["img0_contour.png", "img1_contour.png"]
    grid = np.asarray(Image.open(written[0]))
    assert grid.shape == (2 * SIZE + TITLE_HEIGHT, 2 * 2 * SIZE + PANEL_GAP, 3)  # image | prediction, scaled x2


def test_user_errors_exit_2_with_a_message(tmp_path, capsys, dataset):
    def error(argv):
        with pytest.raises(SystemExit) as exc:
            visualize.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    out = ["--output", str(tmp_path / "o")]
    assert "--mode errors compares predictions with ground truth" in error(["--results", dataset[1], "--images", str(tmp_path), "--mode", "errors"] + out)
    assert "dataset 'no_such_split' is not registered" in error(["--results", dataset[1], "--dataset", "no_such_split"] + out)
    assert f"--results {tmp_path / 'x.json'} does not exist" in error(["--results", str(tmp_path / "x.json"), "--dataset", dataset[0]] + out)
    assert "--score-thresh must be in [0, 1]" in error(["--results", dataset[1], "--dataset", dataset[0], "--score-thresh", "-1"] + out)
    assert "give either --config" in error(["--results", dataset[1], "--config", "maskrcnnpp_tiny", "--dataset", dataset[0]] + out)
    # a results file for other images: an error, not error maps that call every nucleus missed
    other = tmp_path / "other.json"
    other.write_text(json.dumps([dict(r, image_id=f"other{r['image_id']}") for r in json.loads(open(dataset[1]).read())]))
    assert "none of the 2 image(s) to draw has an entry" in error(["--results", str(other), "--dataset", dataset[0]] + out)
    afile = tmp_path / "afile"
    afile.write_text("")
    assert f"--output {afile}: exists and is not a folder" in error(["--results", dataset[1], "--dataset", dataset[0], "--output", str(afile)])


def test_subprocess_error_has_no_traceback(tmp_path):
    res = run_tool("visualize.py", ["--config", "maskrcnnpp_tiny", "--images", str(tmp_path / "none"), "--output", str(tmp_path / "o")])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"error: --images {tmp_path / 'none'} does not exist"
    assert "Traceback" not in res.stderr


def test_a_bad_image_among_good_ones_writes_nothing(tmp_path, capsys):
    """Every image is read and checked before anything is drawn: no grids of the good ones, no folder."""
    images = tmp_path / "images"
    images.mkdir()
    labels = disk_labels((SIZE, SIZE), [(30, 30, 9)])
    for k in range(2):
        Image.fromarray(nuclei_image(labels, seed=k)).save(images / f"img{k}.png")
    (images / "img2.png").write_bytes(b"")  # 0 bytes, third in order
    results = tmp_path / "results.json"
    entries = [e for k in range(2) for e in coco_results(f"img{k}", NucleiPrediction(labels, np.array([0.9], np.float32)))]
    results.write_text(json.dumps(entries))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        visualize.main(["--results", str(results), "--images", str(images), "--mode", "overlay", "--output", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "img2.png" in err and "Traceback" not in err
    assert not out.exists()


def mask_util_rle(mask: np.ndarray) -> dict:
    import pycocotools.mask as mask_util

    encoded = mask_util.encode(np.asfortranarray(mask))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}


def test_bad_image_and_results_files_are_one_exact_line(tmp_path, capsys):
    """The line a user sees for a missing --images folder, a results file that is not one, results of the
    wrong image size, and an image file that is a z-stack."""
    import tifffile

    def error(argv):
        with pytest.raises(SystemExit) as exc:
            visualize.main(argv + ["--mode", "overlay", "--output", str(tmp_path / "o")])
        assert exc.value.code == 2
        return capsys.readouterr().err

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((SIZE, SIZE), np.uint8)).save(images / "img0.png")
    results = tmp_path / "results.json"
    results.write_text("[]")
    assert error(["--results", str(results), "--images", str(tmp_path / "none")]) == (
        f"error: --images {tmp_path / 'none'} does not exist\n")
    results.write_text(json.dumps({"image_id": "img0"}))
    assert error(["--results", str(results), "--images", str(images)]) == (
        f"error: --results {results} is not a COCO results file (a JSON list of entries with image_id, "
        "segmentation, score)\n")
    small = mask_util_rle(np.ones((10, 10), np.uint8))
    results.write_text(json.dumps([{"image_id": "img0", "category_id": 1, "score": 0.9, "segmentation": small}]))
    assert error(["--results", str(results), "--images", str(images)]) == (
        f"error: {results} (image img0): RLE size [10, 10] (height, width) does not match the image size [96, 96]\n")
    stack = tmp_path / "stack"
    stack.mkdir()
    tifffile.imwrite(stack / "z.tif", np.zeros((3, SIZE, SIZE), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    results.write_text(json.dumps([{"image_id": "z", "category_id": 1, "score": 0.9, "segmentation": small}]))
    assert error(["--results", str(results), "--images", str(stack)]) == (
        f"error: image {stack / 'z.tif'}: a stack of 3 planes (TIFF axes ZYX); multi-page stacks are not supported: "
        "save one plane per file\n")
    assert not (tmp_path / "o").exists()


def test_images_without_model_options_are_drawn_with_the_default_shipped_model(tmp_path, capsys, caplog):
    from maskrcnnpp import model_zoo

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(nuclei_image(disk_labels((SIZE, SIZE), [(30, 30, 9), (60, 60, 10)]))).save(images / "cells.png")
    with caplog.at_level(logging.WARNING):
        written = visualize.main(["--images", str(images), "--output", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert [os.path.basename(p) for p in written] == ["cells_overlay.png"]
    grid = np.asarray(Image.open(written[0]))
    assert grid.shape == (SIZE + TITLE_HEIGHT, 2 * SIZE + PANEL_GAP, 3)  # image | prediction
    assert model_zoo.default_model() is not None and "device: " in out
    if not torch.cuda.is_available():  # MODEL.DEVICE auto: the CPU, without a warning
        assert "device: cpu" in out and not [r for r in caplog.records if "MODEL.DEVICE" in r.getMessage()]


def test_model_none_draws_the_ground_truth_alone_and_nothing_with_images(tmp_path, capsys, dataset):
    written = visualize.main(["--model", "none", "--dataset", dataset[0], "--max-images", "1",
                              "--output", str(tmp_path / "gt")])
    grid = np.asarray(Image.open(written[0]))
    assert grid.shape == (SIZE + TITLE_HEIGHT, 2 * SIZE + PANEL_GAP, 3)  # image | ground truth
    with pytest.raises(SystemExit) as exc:
        visualize.main(["--model", "none", "--images", str(tmp_path), "--output", str(tmp_path / "o")])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip() == ("error: nothing to draw: --model none with --images; give predictions "
                                               "(a model or --results) or a --dataset with ground truth")
