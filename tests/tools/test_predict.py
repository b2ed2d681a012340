"""tools/predict.py: every output format agrees with the label image; user errors exit 2 without a traceback."""
from __future__ import annotations

import csv
import errno
import json
import os
import stat

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from PIL import Image

from maskrcnnpp.utils.files import default_file_mode
from tool_helpers import FAST_OPTS, REPO, disk_labels, nuclei_image, run_tool, save_tiny_weights

REPO_TOOLS = REPO / "tools"

SCORE = "0.3"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, weights):
    """predict.py over a folder with a 16-bit grey PNG and an 8-bit RGBA PNG, all formats, 2 x 2 tiles each."""
    root = tmp_path_factory.mktemp("predict")
    images = root / "images"
    images.mkdir()
    labels = disk_labels((96, 112), [(25, 25, 9), (25, 60, 8), (70, 80, 10), (65, 30, 7)])
    grey16 = nuclei_image(labels).astype(np.uint16) * 200 + 1000
    Image.fromarray(grey16).save(images / "cells16.png")
    rgba = np.concatenate([np.repeat(nuclei_image(labels, seed=1)[:, :, None], 3, 2), np.full((96, 112, 1), 255, np.uint8)], 2)
    Image.fromarray(rgba).save(images / "cellsRGBA.png")
    (images / "notes.txt").write_text("not an image, not matched by the default pattern")
    out = root / "out"
    res = run_tool("predict.py", ["--input", str(images), "--config", "maskrcnnpp_tiny", "--weights", weights,
                                  "--output", str(out), "--device", "cpu", "--score-thresh", SCORE,
                                  "--formats", "label_png,label_tif,coco,kaggle_csv,nuclei_csv,imagej_roi",
                                  "--tile-size", "80", "--tile-overlap", "24", *FAST_OPTS])
    assert res.returncode == 0, res.stderr[-3000:]
    return out, {"cells16": grey16, "cellsRGBA": rgba}, res


def read_nuclei_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_outputs_get_the_mode_of_an_ordinary_file(predicted):
    # colleagues on a shared server must be able to read the results: not mkstemp's 0600
    out, _, _ = predicted
    expected = default_file_mode()
    assert expected != 0o600  # the suite's umask lets the check tell the two apart
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {p.name: expected for p in out.iterdir()}


def test_reports_the_device_and_counts(predicted):
    out, _, res = predicted
    assert "device: cpu" in res.stdout and "no GPU used" in res.stdout
    assert "cells16.png: 96x112 grey uint16 ->" in res.stdout
    assert "cellsRGBA.png: 96x112 RGBA uint8 ->" in res.stdout
    assert res.stdout.count(" nuclei, 4 tiles, ") == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}_{k}" for s in ("cells16", "cellsRGBA") for k in ("labels.png", "labels.tif", "nuclei.csv", "rois.zip")]
        + ["coco_results.json", "kaggle_submission.csv"]
    )


def test_label_images_csv_rois_coco_and_kaggle_agree(predicted):
    import roifile
    import tifffile

    from maskrcnnpp.utils.kaggle_rle import read_kaggle_csv, rle_decode
    from maskrcnnpp.inference import intensity_image

    out, originals, _ = predicted
    coco = json.loads((out / "coco_results.json").read_text())
    kaggle = read_kaggle_csv(out / "kaggle_submission.csv")
    total = 0
    for stem, original in originals.items():
        png = np.asarray(Image.open(out / f"{stem}_labels.png"))
        assert png.dtype == np.uint16 and png.shape == original.shape[:2]
        assert np.array_equal(tifffile.imread(out / f"{stem}_labels.tif"), png)
        count = int(png.max())
        assert count > 0, "the random-init model predicts nuclei at this threshold"
        assert np.array_equal(np.unique(png), np.arange(count + 1))  # labels 1..K, no gaps
        total += count

        rows = read_nuclei_csv(out / f"{stem}_nuclei.csv")
        assert [int(r["id"]) for r in rows] == list(range(1, count + 1))
        intensity = intensity_image(original)
        for r in rows[:5]:
            mask = png == int(r["id"])
            ys, xs = np.nonzero(mask)
            assert int(r["area"]) == mask.sum()
            assert float(r["centroid_y"]) == pytest.approx(ys.mean(), rel=1e-5)
            assert float(r["centroid_x"]) == pytest.approx(xs.mean(), rel=1e-5)
            assert (int(r["bbox_min_y"]), int(r["bbox_min_x"]), int(r["bbox_max_y"]), int(r["bbox_max_x"])) == (
                ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
            assert float(r["mean_intensity"]) == pytest.approx(intensity[mask].mean(), rel=1e-5)
        scores = np.array([float(r["score"]) for r in rows])
        assert (scores >= float(SCORE)).all() and (np.diff(scores) <= 1e-6).all()

        rois = roifile.roiread(out / f"{stem}_rois.zip")
        assert len(rois) == count
        assert [roi.name for roi in rois[:2]] == ["nucleus-0001", "nucleus-0002"][: min(2, count)]
        for k, roi in enumerate(rois[:5], start=1):
            xy = roi.coordinates()
            ys, xs = np.nonzero(png == k)
            # the outline passes through the pixel-edge midpoints around the mask's pixel centres
            assert xy[:, 0].min() >= xs.min() and xy[:, 0].max() <= xs.max() + 1
            assert xy[:, 1].min() >= ys.min() and xy[:, 1].max() <= ys.max() + 1

        entries = [e for e in coco if e["image_id"] == stem]
        assert len(entries) == count
        for k, e in enumerate(entries, start=1):
            assert np.array_equal(mask_util.decode(e["segmentation"]).astype(bool), png == k)
            assert e["score"] == pytest.approx(float(rows[k - 1]["score"]), abs=1e-5)
            assert e["category_id"] == 1

        rles = kaggle[stem]
        assert len(rles) == count
        decoded = sorted(int(png[rle_decode(r, png.shape)][0]) for r in rles)
        assert decoded == list(range(1, count + 1))
        assert all(np.array_equal(rle_decode(r, png.shape), png == png[rle_decode(r, png.shape)][0]) for r in rles)
    assert len(coco) == total


def test_missing_input_is_a_clear_error_without_traceback(tmp_path):
    res = run_tool("predict.py", ["--input", str(tmp_path / "nowhere"), "--config", "maskrcnnpp_tiny",
                                  "--output", str(tmp_path / "out")])
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"error: --input {tmp_path / 'nowhere'} does not exist"
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def _main_error(capsys, argv):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
    import predict

    with pytest.raises(SystemExit) as exc:
        predict.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert "Traceback" not in err
    return err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    err = _main_error(capsys, ["--input", str(img), "--config", "maskrcnnpp_tiny", "--output", str(tmp_path / "o"),
                               "--device", "cuda"])
    assert "error: device 'cuda' (MODEL.DEVICE) was asked for but torch.cuda.is_available() is False" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the device lines of a machine without CUDA")
def test_the_default_model_runs_on_the_cpu_without_a_device_warning_unless_cuda_is_asked_for(tmp_path):
    img = tmp_path / "cells.png"
    Image.fromarray(nuclei_image(disk_labels((64, 64), [(20, 20, 8), (44, 40, 9)]))).save(img)
    quiet = run_tool("predict.py", ["--input", str(img), "--output", str(tmp_path / "a"), "--formats", "label_png"])
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout.startswith("device: cpu (") and "shipped model" in quiet.stdout
    assert "MODEL.DEVICE" not in quiet.stderr and "WARNING maskrcnnpp.config" not in quiet.stderr
    asked = run_tool("predict.py", ["--input", str(img), "--output", str(tmp_path / "b"), "--formats", "label_png",
                                    "MODEL.DEVICE", "cuda"])
    assert asked.returncode == 0, asked.stderr[-3000:]
    assert ("WARNING maskrcnnpp.config: nuclei_maskrcnnpp_r18: MODEL.DEVICE cuda but no GPU is available: running "
            "on the CPU") in asked.stderr.splitlines()


def test_bad_config_key_unknown_format_and_empty_folder(tmp_path, capsys, weights):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    base = ["--input", str(img), "--config", "maskrcnnpp_tiny", "--output", str(tmp_path / "o"), "--weights", weights]
    err = _main_error(capsys, base + ["MODEL.NOT_A_KEY", "1"])
    assert "error:" in err and "MODEL.NOT_A_KEY" in err
    err = _main_error(capsys, base + ["--formats", "label_png,label_jpeg"])
    assert "error: --formats" in err and "label_jpeg" in err and "imagej_roi" in err
    (tmp_path / "empty").mkdir()
    err = _main_error(capsys, ["--input", str(tmp_path / "empty"), "--config", "maskrcnnpp_tiny", "--output", str(tmp_path / "o")])
    assert f"error: --input {tmp_path / 'empty'}: no images matching" in err
    err = _main_error(capsys, base[:-2] + ["--weights", str(tmp_path / "missing.pth")])
    assert f"error: weights file {tmp_path / 'missing.pth'} does not exist" in err
    err = _main_error(capsys, base + ["--tile-size", "64", "--tile-overlap", "64"])
    assert "error: --tile-overlap must be in [0, --tile-size 64)" in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_input_that_names_no_usable_images_is_one_exact_line(tmp_path, capsys):
    base = ["--config", "maskrcnnpp_tiny", "--output", str(tmp_path / "o")]
    (tmp_path / "empty").mkdir()
    (tmp_path / "twins").mkdir()
    for name in ("a.png", "a.tif"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "twins" / name)
    for folder, line in [
        ("nowhere", f"error: --input {tmp_path / 'nowhere'} does not exist\n"),
        ("empty", f"error: --input {tmp_path / 'empty'}: no images matching *.png / *.tif / *.tiff / *.jpg / *.jpeg / *.bmp\n"),
        ("twins", f"error: --input: {tmp_path / 'twins' / 'a.png'} and {tmp_path / 'twins' / 'a.tif'} share the name 'a' "
                  "(outputs would collide); pick one with a pattern\n"),
    ]:
        assert _main_error(capsys, ["--input", str(tmp_path / folder), *base]) == line
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------------------- writers (library)
def test_roi_outline_encloses_exactly_the_mask_pixel_centres():
    from matplotlib.path import Path as MplPath

    from maskrcnnpp.inference.writers import nucleus_outline

    mask = disk_labels((30, 34), [(14, 15, 9)]) > 0
    mask[14, 24:28] = True  # a one-pixel-wide spur
    mask[3:6, 3:5] = True  # a second, smaller piece: the outline follows the largest
    outline = MplPath(nucleus_outline(mask))
    rows, cols = np.mgrid[: mask.shape[0], : mask.shape[1]]
    centres = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)  # ImageJ pixel centres
    inside = outline.contains_points(centres).reshape(mask.shape)
    largest = mask.copy()
    largest[3:6, 3:5] = False
    assert np.array_equal(inside, largest)


def test_label_image_limits_and_atomic_writes(tmp_path):
    import tifffile

    from maskrcnnpp.inference import NucleiPrediction, write_label_image
    from maskrcnnpp.inference.writers import atomic_path

    many = np.arange(1, 257 * 256 + 1, dtype=np.int32).reshape(257, 256)  # 65,792 nuclei of one pixel
    pred = NucleiPrediction(many, np.ones(many.max(), np.float32))
    with pytest.raises(ValueError, match="do not fit a 16-bit PNG"):
        write_label_image(str(tmp_path / "many.png"), pred)
    write_label_image(str(tmp_path / "many.tif"), pred)
    back = tifffile.imread(tmp_path / "many.tif")
    assert back.dtype == np.uint32 and np.array_equal(back, many)
    with pytest.raises(RuntimeError):
        with atomic_path(str(tmp_path / "half.csv")) as tmp:
            open(tmp, "w").write("partial")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.tif"]  # no partial file left


# ---------------------------------------------------------------------------- checks before anything is written
def _main_ok(capsys, argv):
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
    import predict

    counts = predict.main(argv)
    return counts, capsys.readouterr()


def test_a_bad_input_among_good_ones_fails_before_the_model_and_writes_nothing(tmp_path, capsys, weights):
    import tifffile

    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        Image.fromarray(nuclei_image(disk_labels((40, 40), [(20, 20, 8)]), seed=i)).save(images / f"a{i}.png")
    (images / "b_broken.png").write_bytes(b"not a png")
    tifffile.imwrite(images / "zz_stack.tif", np.zeros((5, 40, 40), np.uint8))  # a 5-page stack, sorting last
    out = tmp_path / "out"
    err = _main_error(capsys, ["--input", str(images), "--config", "maskrcnnpp_tiny", "--weights", weights,
                               "--output", str(out), "--device", "cpu", *FAST_OPTS])
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 5 input image(s) cannot be used, nothing was written: ")
    assert f"cannot read image {images / 'b_broken.png'}" in last
    assert (f"image {images / 'zz_stack.tif'}: 5 planes of unknown meaning (TIFF axes QYX), not a grey, RGB or RGBA "
            "image: choose the nuclear channel (1..5) and optionally a cytoplasm channel with --channel K (and "
            "optionally --cyto-channel K); if they are the pages of a stack, save one page per file") in last
    assert not out.exists()  # not even the folder: the inputs are checked first


def test_output_that_is_a_file_fails_before_the_model(tmp_path, capsys, weights):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    target = tmp_path / "taken"
    target.write_text("a file")
    argv = ["--input", str(img), "--config", "maskrcnnpp_tiny", "--weights", weights, "--output", str(target)]
    err = _main_error(capsys, argv)
    assert err.strip().splitlines()[-1] == (
        f"error: --output {target}: exists and is not a folder")
    assert target.read_text() == "a file"


def test_an_unwritable_output_folder_fails_before_the_model(tmp_path, capsys, weights, monkeypatch):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    out = tmp_path / "read_only"
    out.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: the folder refuses through the probe instead
        def refuse(*args, dir=None, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)
        monkeypatch.setattr("maskrcnnpp.cli.tempfile.TemporaryFile", refuse)
    else:
        out.chmod(0o555)
    monkeypatch.setattr("maskrcnnpp.inference.NucleiPredictor.__init__",
                        lambda *a, **k: pytest.fail("the model was built before the output folder was checked"))
    argv = ["--input", str(img), "--config", "maskrcnnpp_tiny", "--weights", weights, "--output", str(out)]
    err = _main_error(capsys, argv)
    assert err.strip().splitlines()[-1] == f"error: --output {out}: cannot write in the folder (Permission denied)"


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path, capsys, weights, monkeypatch):
    img = tmp_path / "a.png"
    Image.fromarray(nuclei_image(disk_labels((64, 64), [(20, 20, 8), (44, 40, 9)]))).save(img)
    out = tmp_path / "out"
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        if str(fp).startswith(str(out)):
            real_save(self, fp, *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    argv = ["--input", str(img), "--config", "maskrcnnpp_tiny", "--weights", weights, "--output", str(out),
            "--device", "cpu", "--score-thresh", "0", "--formats", "label_png", *FAST_OPTS]
    err = _main_error(capsys, argv)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: {out}/.partial-") and last.endswith(
        ": No space left on device (the disk is full: free space and run the same command again)")
    assert [p.name for p in out.iterdir()] == []  # the partial label image is removed


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_score_thresh_outside_0_1_is_rejected(tmp_path, capsys, weights, value):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    err = _main_error(capsys, ["--input", str(img), "--config", "maskrcnnpp_tiny", "--weights", weights,
                               "--output", str(tmp_path / "o"), "--score-thresh", value])
    assert err.strip().splitlines()[-1] == f"error: --score-thresh must be in [0, 1] (a score/probability), got {float(value):g}"
    assert not (tmp_path / "o").exists()


def test_weights_of_another_architecture_are_an_error_not_a_random_model(tmp_path, capsys, weights):
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(img)
    out = tmp_path / "o"
    err = _main_error(capsys, ["--input", str(img), "--config", "unet_tiny", "--weights", weights,
                               "--output", str(out), "--device", "cpu"])
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err  # one line, not fvcore's lists of missing keys
    assert lines[0].startswith(f"error: weights {weights} do not fit config unet_tiny (SemanticUNet, ")
    assert "weights are not in the checkpoint (e.g. backbone." in lines[0]
    assert not out.exists()  # a weights mistake creates nothing


def test_grey_alpha_is_reported_and_a_rerun_warns_about_earlier_outputs(tmp_path, capsys, caplog, weights):
    labels = disk_labels((40, 44), [(20, 20, 8)])
    la = np.stack([nuclei_image(labels), np.full((40, 44), 255, np.uint8)], axis=2)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    Image.fromarray(nuclei_image(labels, seed=2)).save(tmp_path / "b.png")
    out = tmp_path / "out"
    common = ["--config", "maskrcnnpp_tiny", "--weights", weights, "--output", str(out), "--device", "cpu", *FAST_OPTS]

    _, captured = _main_ok(capsys, ["--input", str(tmp_path / "la.png"), "--formats", "label_png,kaggle_csv", *common])
    assert "la.png: 40x44 grey+alpha uint8 -> " in captured.out
    assert not [r for r in caplog.records if "earlier predict run" in r.getMessage()]

    for held, replaced in ((2, 0), (4, 2)):  # a second run, then the same run again
        caplog.clear()
        _main_ok(capsys, ["--input", str(tmp_path / "b.png"), "--formats", "label_png,coco", *common])
        warnings = [r.getMessage() for r in caplog.records if "earlier predict run" in r.getMessage()]
        assert warnings == [f"--output {out} already holds {held} file(s) of an earlier predict run: {replaced} will be "
                            "replaced; 2 are not outputs of this run and stay as they are (e.g. kaggle_submission.csv, "
                            "la_labels.png); use an empty --output folder to keep runs apart"]
    assert sorted(p.name for p in out.iterdir()) == [  # the user's files are never deleted
        "b_labels.png", "coco_results.json", "kaggle_submission.csv", "la_labels.png"]


def test_what_the_reader_notices_is_logged_once_per_file(tmp_path, capsys, caplog, weights):
    # Inputs are read twice (checked before the model is built, then predicted): one warning each.
    import tifffile

    labels = disk_labels((40, 44), [(20, 20, 8)])
    planes = np.stack([nuclei_image(labels, seed=k) for k in range(3)])  # axes QYX: meaning unknown
    tifffile.imwrite(tmp_path / "planes.tif", planes, photometric="minisblack")
    _main_ok(capsys, ["--input", str(tmp_path / "planes.tif"), "--config", "maskrcnnpp_tiny", "--weights", weights,
                      "--output", str(tmp_path / "out"), "--device", "cpu", *FAST_OPTS])
    notes = [r.getMessage() for r in caplog.records if "planes of unknown meaning" in r.getMessage()]
    assert len(notes) == 1 and "planes.tif: 3 planes of unknown meaning (TIFF axes QYX) read as RGB" in notes[0]


def test_no_nucleus_in_any_image_says_why_it_may_be(tmp_path, capsys, caplog, weights):
    img = tmp_path / "a.png"
    Image.fromarray(nuclei_image(disk_labels((48, 48), [(20, 20, 8)]))).save(img)
    import sys

    sys.path.insert(0, str(REPO_TOOLS))
    import predict

    counts = predict.main(["--input", str(img), "--config", "maskrcnnpp_tiny", "--weights", weights, "--output",
                           str(tmp_path / "out"), "--device", "cpu", "--score-thresh", "1.0", "--formats", "coco",
                           *FAST_OPTS])
    assert counts == {"a": 0}
    assert "no nucleus scored 1.0 or more in any of the 1 image(s): the weights may be untrained" in caplog.text
    assert "--score-thresh" in caplog.text
