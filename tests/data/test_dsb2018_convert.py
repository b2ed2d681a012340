"""The DSB 2018 converter on small Kaggle-layout sources that the tests write: output, splits,
idempotence, and every bad input of the issue (an error naming the file, or a counted correction)."""
from __future__ import annotations

import hashlib
import json
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util

from data_testutils import box_mask, png_bytes, rgba, standard_samples, write_kaggle_source
from maskrcnnpp.data.dsb2018 import DatasetError, parse_split, prepare_dsb2018, split_image_ids
from maskrcnnpp.utils.kaggle_rle import write_kaggle_csv

H, W = 24, 32


def convert(src, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return prepare_dsb2018(src, out, **kw)


def load(out: Path, split: str = "all") -> dict:
    return json.loads((out / "annotations" / f"{split}.json").read_text())


def kinds(result) -> dict:
    return result.manifest["counts"]["corrections"]


def one_image(masks, image=None) -> dict:
    return {"img": (rgba(H, W, 0) if image is None else image, masks)}


# ----------------------------------------------------------------------------- normal output


def test_output_layout_annotations_and_images(tmp_path):
    samples = standard_samples(4, H, W)
    src = write_kaggle_source(tmp_path / "src", samples, as_zip=True)
    result = convert(src, tmp_path / "out", split="0.5,0.25,0.25")
    out = tmp_path / "out"
    assert result.status == "created"
    coco = load(out)
    assert coco["categories"] == [{"id": 1, "name": "nucleus", "supercategory": "nucleus"}]
    assert [im["dsb_id"] for im in coco["images"]] == sorted(samples)
    assert len(coco["annotations"]) == sum(len(m) for _, m in samples.values()) == 10
    by_image = {im["id"]: im["dsb_id"] for im in coco["images"]}
    for ann in coco["annotations"]:
        image_id = by_image[ann["image_id"]]
        expected = samples[image_id][1][int(ann["mask_id"][1:])] > 0
        decoded = mask_util.decode(ann["segmentation"]).astype(bool)
        np.testing.assert_array_equal(decoded, expected)
        ys, xs = np.nonzero(expected)
        assert ann["area"] == expected.sum()
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert ann["iscrowd"] == 0 and ann["category_id"] == 1
    for image_id, (image, _) in samples.items():
        written = Image.open(out / "images" / f"{image_id}.png")
        assert written.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(written), image[..., :3])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert manifest["counts"]["splits"]["train"] == {"images": 2, "annotations": len(load(out, "train")["annotations"])}
    assert kinds(result) == {"alpha_removed": 4}  # RGBA with opaque alpha: a counted format conversion
    assert not list(tmp_path.glob(".out.partial-*"))


def test_folder_and_zip_sources_give_identical_annotations(tmp_path):
    samples = standard_samples(3, H, W)
    folder = write_kaggle_source(tmp_path / "folder", samples)
    archive = write_kaggle_source(tmp_path / "archive", samples, as_zip=True)
    convert(folder, tmp_path / "a", split=None)
    convert(archive, tmp_path / "b", split=None, workers=2)  # also through the process pool
    assert load(tmp_path / "a")["annotations"] == load(tmp_path / "b")["annotations"]


def test_split_is_deterministic_disjoint_and_by_image(tmp_path):
    ids = [f"i{k:02d}" for k in range(20)]
    a = split_image_ids(ids, (0.5, 0.2, 0.3), seed=0)
    assert a == split_image_ids(list(reversed(ids)), (0.5, 0.2, 0.3), seed=0)
    assert [len(a[s]) for s in ("train", "val", "test")] == [10, 4, 6]
    assert sorted(a["train"] + a["val"] + a["test"]) == ids
    assert a != split_image_ids(ids, (0.5, 0.2, 0.3), seed=1)
    # Largest remainders: 7 * (0.5, 0.2, 0.3) = 3.5, 1.4, 2.1 -> 4, 1, 2.
    assert [len(v) for v in split_image_ids(ids[:7], (0.5, 0.2, 0.3), 0).values()] == [4, 1, 2]

    samples = standard_samples(6, H, W)
    src = write_kaggle_source(tmp_path / "src", samples)
    convert(src, tmp_path / "out")
    expected = split_image_ids(sorted(samples), (0.5, 0.2, 0.3), 0)
    all_anns = {a["id"]: a for a in load(tmp_path / "out")["annotations"]}
    for split in ("train", "val", "test"):
        coco = load(tmp_path / "out", split)
        assert [im["dsb_id"] for im in coco["images"]] == expected[split]
        image_ids = {im["id"] for im in coco["images"]}
        assert {a["id"] for a in coco["annotations"]} == {a["id"] for a in all_anns.values() if a["image_id"] in image_ids}


def test_split_fractions_must_sum_to_one():
    assert parse_split("none") is None
    assert parse_split("0.5,0.2,0.3") == (0.5, 0.2, 0.3)
    with pytest.raises(DatasetError, match="sum to 1, they sum to 0.9"):
        parse_split("0.5,0.2,0.2")
    with pytest.raises(DatasetError, match="three fractions"):
        parse_split("0.5,0.5")
    with pytest.raises(DatasetError, match="non-negative"):
        parse_split("1.2,-0.2,0")


# ----------------------------------------------------------------------------- idempotence


def test_rerun_is_a_noop_and_a_different_dataset_is_an_error(tmp_path):
    src = write_kaggle_source(tmp_path / "src", standard_samples(3, H, W))
    out = tmp_path / "out"
    convert(src, out)
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    again = convert(src, out)
    assert again.status == "unchanged"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == stamp

    with pytest.raises(DatasetError, match=r"already holds a different dataset \(split"):
        convert(src, out, split="0.6,0.2,0.2")
    other = write_kaggle_source(tmp_path / "other", standard_samples(2, H, W))
    with pytest.raises(DatasetError, match=r"out: already holds a different dataset \(source_sha256"):
        convert(other, out)

    (out / "images" / "img01.png").unlink()  # a damaged copy of the same dataset is rebuilt
    assert convert(src, out).status == "rebuilt"
    assert (out / "images" / "img01.png").is_file()


def test_foreign_output_folder_is_refused(tmp_path):
    src = write_kaggle_source(tmp_path / "src", standard_samples(2, H, W))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="out: folder is not empty and holds no manifest.json"):
        convert(src, out)
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    assert convert(src, out).status == "created"  # an empty folder is fine


def test_failure_leaves_no_output_and_no_temporary_folder(tmp_path):
    samples = standard_samples(4, H, W)
    samples["img03"] = (samples["img03"][0], [png_bytes(box_mask(H, W, 1, 3, 1, 3))[:40]])  # truncated
    src = write_kaggle_source(tmp_path / "src", samples, as_zip=True)
    with pytest.raises(DatasetError):
        convert(src, tmp_path / "out", workers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.zip"]


# ----------------------------------------------------------------------------- bad inputs: errors


def test_corrupt_image_is_an_error_naming_it(tmp_path):
    src = write_kaggle_source(tmp_path / "src", {"bad": (b"\x89PNG\r\n\x1a\nnot really", [box_mask(H, W, 0, 2, 0, 2)])}, as_zip=True)
    with pytest.raises(DatasetError, match=r"src\.zip:bad/images/bad\.png: cannot decode the image"):
        convert(src, tmp_path / "out")


def test_truncated_mask_is_an_error_naming_it(tmp_path):
    src = write_kaggle_source(tmp_path / "src", one_image([box_mask(H, W, 0, 2, 0, 2), png_bytes(box_mask(H, W, 4, 9, 4, 9))[:-30]]))
    with pytest.raises(DatasetError, match=r"img/masks/m001\.png: cannot decode the image"):
        convert(src, tmp_path / "out")


def test_mask_of_another_size_is_an_error(tmp_path):
    src = write_kaggle_source(tmp_path / "src", one_image([box_mask(H, W, 0, 2, 0, 2), box_mask(H + 1, W, 0, 2, 0, 2)]))
    with pytest.raises(DatasetError, match=rf"img/masks/m001\.png: mask is {H + 1}x{W} but its image is {H}x{W}"):
        convert(src, tmp_path / "out")


def test_image_folder_without_masks_is_an_error(tmp_path):
    samples = standard_samples(2, H, W)
    samples["lonely"] = (rgba(H, W, 9), [])
    src = write_kaggle_source(tmp_path / "src", samples)
    with pytest.raises(DatasetError, match=r"src/lonely: image folder without masks"):
        convert(src, tmp_path / "out")
    images_only = write_kaggle_source(tmp_path / "images_only", {"a": (rgba(H, W, 1), [])})
    with pytest.raises(DatasetError, match="images-only data .* need labels: the released RLE CSV") as err:
        convert(images_only, tmp_path / "out")
    assert err.value.argument == "labels"  # the command names its option for it


def test_masks_without_image_is_an_error(tmp_path):
    src = write_kaggle_source(tmp_path / "src", standard_samples(1, H, W), raw={"ghost/masks/m.png": png_bytes(box_mask(H, W, 0, 2, 0, 2))})
    with pytest.raises(DatasetError, match=r"src/ghost: masks without an image"):
        convert(src, tmp_path / "out")


def test_not_a_zip_or_folder(tmp_path):
    bogus = tmp_path / "data.zip"
    bogus.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DatasetError, match="data.zip: neither a folder nor a zip file"):
        convert(bogus, tmp_path / "out")
    with pytest.raises(DatasetError, match="missing: no such file or folder"):
        convert(tmp_path / "missing", tmp_path / "out")


def open_files_named(path: Path) -> list:
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    found = []
    for fd in fds.iterdir():
        try:
            if Path(fd.readlink()) == path.resolve():
                found.append(fd.name)
        except OSError:  # closed between listing and reading
            continue
    return found


def test_a_zip_rejected_while_scanning_is_closed(tmp_path):
    archive = write_kaggle_source(tmp_path / "src", standard_samples(1, H, W), as_zip=True,
                                  raw={"ghost/masks/m.png": png_bytes(box_mask(H, W, 0, 2, 0, 2))})
    with pytest.raises(DatasetError, match=r"src\.zip:ghost: masks without an image") as err:
        convert(archive, tmp_path / "out")
    # the traceback keeps the converter's frames (and its Source) alive: the zip is closed, not just unreferenced
    assert err.tb is not None and open_files_named(archive) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.zip"]


def test_an_output_that_appears_while_converting_and_differs_is_an_error_naming_it(tmp_path):
    from maskrcnnpp.data.dsb2018.write import commit

    tmp, out = tmp_path / ".out.partial-1-abcd1234", tmp_path / "out"
    (tmp / "images").mkdir(parents=True)
    (out / "other").mkdir(parents=True)  # written by someone else meanwhile
    with pytest.raises(DatasetError, match=rf"^{out}: appeared while converting and holds something else$"):
        commit(tmp, out, {"format": "x"}, replace=False)
    assert (out / "other").is_dir() and (tmp / "images").is_dir()  # prepare_dsb2018 removes tmp


# ----------------------------------------------------------------------------- bad inputs: corrections


def test_empty_mask_is_dropped_and_recorded(tmp_path):
    src = write_kaggle_source(tmp_path / "src", one_image([box_mask(H, W, 0, 3, 0, 3), np.zeros((H, W), np.uint8)]))
    result = convert(src, tmp_path / "out")
    assert len(load(tmp_path / "out")["annotations"]) == 1
    (entry,) = [c for c in result.manifest["corrections"] if c["kind"] == "empty_mask"]
    assert entry["file"].endswith("img/masks/m001.png") and entry["image"] == "img"


def test_non_binary_mask_becomes_its_nonzero_pixels(tmp_path):
    mask = box_mask(H, W, 2, 6, 2, 6)
    mask[2, 2:6] = 128
    mask[3, 2] = 1
    src = write_kaggle_source(tmp_path / "src", one_image([mask]))
    result = convert(src, tmp_path / "out")
    (ann,) = load(tmp_path / "out")["annotations"]
    np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]).astype(bool), mask > 0)
    (entry,) = [c for c in result.manifest["corrections"] if c["kind"] == "mask_not_binary"]
    assert "3 nonzero values (1, 128, 255)" in entry["detail"]


def test_overlapping_masks_first_keeps_shared_pixels(tmp_path):
    first, second = box_mask(H, W, 0, 6, 0, 6), box_mask(H, W, 4, 10, 4, 10)
    inside = box_mask(H, W, 1, 3, 1, 3)  # entirely within `first`
    src = write_kaggle_source(tmp_path / "src", one_image([first, second, inside]))
    result = convert(src, tmp_path / "out")
    anns = load(tmp_path / "out")["annotations"]
    assert [a["mask_id"] for a in anns] == ["m000", "m001"]
    decoded = [mask_util.decode(a["segmentation"]).astype(bool) for a in anns]
    np.testing.assert_array_equal(decoded[0], first > 0)
    np.testing.assert_array_equal(decoded[1], (second > 0) & ~(first > 0))
    assert anns[1]["area"] == 36 - 4
    assert kinds(result)["overlap_removed"] == 1 and kinds(result)["mask_emptied_by_overlap"] == 1
    (entry,) = [c for c in result.manifest["corrections"] if c["kind"] == "overlap_removed"]
    assert entry["detail"].startswith("4 pixels") and entry["file"].endswith("m001.png")


def test_same_mask_twice_in_an_image_is_dropped_but_across_images_kept(tmp_path):
    mask = box_mask(H, W, 3, 8, 3, 8)
    samples = {"a": (rgba(H, W, 1), [mask, box_mask(H, W, 10, 14, 10, 14), mask.copy()]), "b": (rgba(H, W, 2), [mask])}
    result = convert(write_kaggle_source(tmp_path / "src", samples), tmp_path / "out")
    anns = load(tmp_path / "out")["annotations"]
    assert [(a["image_id"], a["mask_id"]) for a in anns] == [(1, "m000"), (1, "m001"), (2, "m000")]
    (entry,) = [c for c in result.manifest["corrections"] if c["kind"] == "duplicate_mask"]
    assert entry["file"].endswith("a/masks/m002.png") and entry["detail"].endswith("a/masks/m000.png")


def test_grey_palette_rgba_and_16bit_images_become_rgb8(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (H, W), dtype=np.uint8)
    translucent = rgba(H, W, 5)
    translucent[0, :3, 3] = 10
    palette = Image.fromarray(grey).convert("P")
    grey16 = rng.integers(0, 4000, (H, W)).astype(np.uint16)  # 12-bit data in a 16-bit PNG
    grey16[0, 0] = 4000
    rgb16 = rng.integers(0, 65536, (H, W, 3)).astype(np.uint16)
    rgb16[0, 0] = 65535
    ok, rgb16_png = cv2.imencode(".png", rgb16[..., ::-1])  # OpenCV writes BGR
    mask = [box_mask(H, W, 0, 4, 0, 4)]
    samples = {
        "grey": (grey, mask), "palette": (png_bytes(palette), mask), "translucent": (translucent, mask),
        "grey16": (png_bytes(Image.fromarray(grey16)), mask), "rgb16": (rgb16_png.tobytes(), mask),
    }
    result = convert(write_kaggle_source(tmp_path / "src", samples), tmp_path / "out")
    images = {k: np.asarray(Image.open(tmp_path / "out" / "images" / f"{k}.png")) for k in samples}
    assert all(im.dtype == np.uint8 and im.shape == (H, W, 3) for im in images.values())
    np.testing.assert_array_equal(images["grey"], np.repeat(grey[..., None], 3, 2))
    np.testing.assert_array_equal(images["palette"], np.asarray(palette.convert("RGB")))
    np.testing.assert_array_equal(images["translucent"], translucent[..., :3])
    np.testing.assert_array_equal(images["grey16"][..., 0], np.round(grey16 * (255 / 4000)).astype(np.uint8))
    np.testing.assert_array_equal(images["rgb16"], np.round(rgb16 * (255 / 65535)).astype(np.uint8))
    by_image = {}
    for c in result.manifest["corrections"]:
        by_image.setdefault(c["image"], set()).add(c["kind"])
    assert by_image == {
        "grey": {"grey_to_rgb"}, "palette": {"palette_to_rgb", "alpha_removed"},
        "translucent": {"alpha_not_opaque"}, "grey16": {"depth_to_8bit", "grey_to_rgb"}, "rgb16": {"depth_to_8bit"},
    }
    assert result.manifest["source_formats"]["RGB 16-bit"] == 1


def test_junk_and_unknown_files_are_listed_not_silently_skipped(tmp_path):
    src = write_kaggle_source(tmp_path / "src", standard_samples(1, H, W),
                              raw={"__MACOSX/img00/._x.png": b"junk", "README.txt": b"hello"}, as_zip=True)
    result = convert(src, tmp_path / "out")
    assert sorted(result.manifest["ignored_files"]) == ["README.txt", "__MACOSX/img00/._x.png"]


# ----------------------------------------------------------------------------- --labels (RLE CSV)


def test_labels_csv_source_matches_mask_source(tmp_path):
    samples = standard_samples(3, H, W)
    src = write_kaggle_source(tmp_path / "src", samples)
    convert(src, tmp_path / "from_masks")
    csv_path = tmp_path / "labels.csv"
    write_kaggle_csv(csv_path, {k: [m > 0 for m in masks] for k, (_, masks) in samples.items()})
    images_only = write_kaggle_source(tmp_path / "images_only", {k: (im, []) for k, (im, _) in samples.items()}, as_zip=True)
    result = convert(images_only, tmp_path / "from_csv", labels=csv_path)
    strip = lambda anns: [{k: v for k, v in a.items() if k not in ("mask_id", "csv_line")} for a in anns]  # noqa: E731
    for split in ("all", "train", "val", "test"):
        assert strip(load(tmp_path / "from_csv", split)["annotations"]) == strip(load(tmp_path / "from_masks", split)["annotations"])
    assert result.manifest["source"]["labels"]["sha256"] == hashlib.sha256(csv_path.read_bytes()).hexdigest()


def test_labels_csv_errors_and_unlabelled_images(tmp_path):
    src = write_kaggle_source(tmp_path / "src", {k: (rgba(H, W, i), []) for i, k in enumerate(["a", "b"])})
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("ImageId,EncodedPixels\na,1 5\na,760 10\n")
    with pytest.raises(DatasetError, match=rf"labels.csv:3: image a \({H}x{W}\): run 760 10 ends at pixel 769, beyond"):
        convert(src, tmp_path / "out", labels=csv_path)
    csv_path.write_text("ImageId,Mask\na,1 5\n")
    with pytest.raises(DatasetError, match="labels.csv: wrong header"):
        convert(src, tmp_path / "out", labels=csv_path)
    csv_path.write_text("ImageId,EncodedPixels\na,1 5\nzzz,1 1\n")
    with pytest.raises(DatasetError, match="labels.csv: 1 ImageId.* no image .* zzz"):
        convert(src, tmp_path / "out", labels=csv_path)
    csv_path.write_text(f"ImageId,EncodedPixels,Height,Width\na,1 5,{H + 1},{W}\n")
    with pytest.raises(DatasetError, match=rf"labels.csv:2: image a is {H + 1}x{W} .* in the CSV but {H}x{W}"):
        convert(src, tmp_path / "out", labels=csv_path)

    csv_path.write_text("ImageId,EncodedPixels\na,1 5\na,1 5\n")  # same mask twice, b unlabelled
    result = convert(src, tmp_path / "out", labels=csv_path, split=None)
    assert len(load(tmp_path / "out")["annotations"]) == 1
    assert kinds(result) == {"alpha_removed": 1, "duplicate_mask": 1, "image_without_labels": 1}
    assert [im["dsb_id"] for im in load(tmp_path / "out")["images"]] == ["a"]


# ----------------------------------------------------------------------------- command line


def test_cli(tmp_path, capsys):
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "datasets" / "prepare_dsb2018.py"
    spec = importlib.util.spec_from_file_location("prepare_dsb2018_cli", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    src = write_kaggle_source(tmp_path / "src", standard_samples(2, H, W), as_zip=True)
    out = tmp_path / "out"
    assert cli.main(["--src", str(src), "--out", str(out), "--split", "0.5,0.2,0.2", "--no-progress"]) == 2
    assert "error: split '0.5,0.2,0.2': fractions must sum to 1" in capsys.readouterr().err
    assert not out.exists()
    assert cli.main(["--src", str(src), "--out", str(out), "--split", "none", "--workers", "1", "--no-progress"]) == 0
    assert "written. images/annotations: all 2/5. corrections: alpha_removed x2" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "annotations").iterdir()) == ["all.json"]
    assert cli.main(["--src", str(src), "--out", str(out), "--split", "none", "--no-progress"]) == 0
    assert "already prepared, nothing to do" in capsys.readouterr().out
    assert cli.main(["--src", str(src), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "already holds a different dataset" in err and "choose another output folder or remove it (option --out)" in err


def test_partial_folders_of_dead_runs_are_removed(tmp_path):
    src = write_kaggle_source(tmp_path / "src", standard_samples(1, H, W))
    dead = tmp_path / ".out.partial-999999999-abcd1234"  # no such process
    alive = tmp_path / ".out.partial-1-abcd1234"  # pid 1 always exists
    for folder in (dead, alive):
        (folder / "images").mkdir(parents=True)
    convert(src, tmp_path / "out")
    assert not dead.exists() and alive.exists()


def test_colour_mask_uses_any_nonzero_channel(tmp_path):
    colour = np.zeros((H, W, 3), np.uint8)
    colour[2:5, 2:6, 0] = 255  # red
    colour[5:7, 2:6, 2] = 90  # blue
    result = convert(write_kaggle_source(tmp_path / "src", one_image([colour])), tmp_path / "out")
    (ann,) = load(tmp_path / "out")["annotations"]
    np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]).astype(bool), colour.any(axis=2))
    assert kinds(result)["mask_not_grey"] == 1 and kinds(result)["mask_not_binary"] == 1


def test_cli_full_disk_and_bad_workers_are_one_line_and_leave_nothing(tmp_path, capsys, monkeypatch):
    import errno
    import importlib.util
    import os

    import maskrcnnpp.data.dsb2018.write as dsb_write

    script = Path(__file__).resolve().parents[2] / "datasets" / "prepare_dsb2018.py"
    spec = importlib.util.spec_from_file_location("prepare_dsb2018_cli", script)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    src = write_kaggle_source(tmp_path / "src", standard_samples(2, H, W), as_zip=True)
    out = tmp_path / "data" / "out"
    assert cli.main(["--src", str(src), "--out", str(out), "--workers", "-3", "--no-progress"]) == 2
    assert capsys.readouterr().err == "error: --workers must be >= 1, got -3\n"

    def full_disk(path, obj):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(dsb_write, "_write_json", full_disk)
    assert cli.main(["--src", str(src), "--out", str(out), "--workers", "1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device (the disk is full" in err and "Traceback" not in err
    assert os.listdir(tmp_path / "data") == []  # the partial dataset folder is removed


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_stopped_by_a_signal_is_quiet_and_leaves_nothing(tmp_path, signum):
    import os
    import subprocess
    import sys
    import time

    samples = {f"img{i:03d}": (rgba(256, 256, i), [box_mask(256, 256, 8 * k, 8 * k + 6, 8 * k, 8 * k + 6) for k in range(30)])
               for i in range(150)}
    src = write_kaggle_source(tmp_path / "src", samples, as_zip=True)
    out = tmp_path / "data" / "out"
    script = Path(__file__).resolve().parents[2] / "datasets" / "prepare_dsb2018.py"
    # its own process group, as a terminal's Ctrl-C reaches the whole group (workers too)
    # SIGINT as a terminal gives it: a test run started in the background inherits it ignored
    proc = subprocess.Popen([sys.executable, str(script), "--src", str(src), "--out", str(out), "--workers", "2",
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "data").glob(".out.partial-*/images/*.png")):
        time.sleep(0.05)
    assert proc.poll() is None, "the conversion ended before it could be interrupted"
    os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    assert err.strip() == f"interrupted: {out} is left as it was (the partial conversion is removed)"
    assert os.listdir(tmp_path / "data") == []


def test_converter_gives_the_pixels_of_prediction_and_counts_its_conversions():
    # A model trained on 16-bit images converted here must see the same 8-bit pixels when
    # tools/predict.py reads the same file: checked against the converter's own step.
    from maskrcnnpp.data.dsb2018.decode import image_to_rgb8
    from maskrcnnpp.inference.image_io import to_uint8_rgb

    rng = np.random.default_rng(3)
    grey12 = rng.integers(0, 4000, (6, 7)).astype(np.uint16)  # 12-bit data in a 16-bit file
    rgb16 = rng.integers(0, 65536, (6, 7, 3)).astype(np.uint16)
    floats = rng.random((6, 7)).astype(np.float32) * 3.5
    for arr, mode, expected in ((grey12, "I;16", ["depth_to_8bit", "grey_to_rgb"]), (rgb16, "RGB", ["depth_to_8bit"]),
                                (floats, "F", ["depth_to_8bit", "grey_to_rgb"])):
        corrections = []
        trained_on = image_to_rgb8(arr, mode, "img", "img.png", corrections)
        assert np.array_equal(to_uint8_rgb(arr), trained_on), mode
        assert [c["kind"] for c in corrections] == expected, mode
