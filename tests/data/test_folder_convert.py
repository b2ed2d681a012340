"""The own-folder converter (datasets/prepare_folder.py) on tiny folders the tests write: each layout
gives the expected COCO (areas, boxes, RLE back to the label image), the split, and every bad input
(an error naming the file, or a counted correction)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from pycocotools import mask as mask_util

from data_testutils import box_mask, standard_samples, write_kaggle_source
from maskrcnnpp.data.dsb2018 import DatasetError, split_image_ids
from maskrcnnpp.data.folder import detect_layout, prepare_folder
from maskrcnnpp.data.dsb2018.source import Source

H, W = 20, 30
REPO = Path(__file__).resolve().parents[2]


def convert(src, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    return prepare_folder(src, out, **kw)


def load(out: Path, split: str = "all") -> dict:
    return json.loads((out / "annotations" / f"{split}.json").read_text())


def kinds(result) -> dict:
    return result.manifest["counts"]["corrections"]


def grey(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def labels_of(seed: int) -> np.ndarray:
    """Three nuclei with values 3, 7 and 300 (16-bit), 7 touching 3 (no background between them)."""
    lab = np.zeros((H, W), np.uint16)
    lab[2:6, 3:9] = 3
    lab[6:9, 4:8] = 7
    lab[12:18, 15 + seed % 3 : 25] = 300
    return lab


def write_labels_folder(root: Path, n: int = 4, fmt: str = "tif") -> dict:
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for i in range(n):
        Image.fromarray(grey(i)).save(root / f"im{i}.png")
        lab = labels_of(i)
        if fmt == "tif":
            tifffile.imwrite(root / f"im{i}_labels.tif", lab)
        else:
            Image.fromarray(lab).save(root / f"im{i}_labels.png")
        out[f"im{i}"] = lab
    return out


def check_against_labels(out: Path, labels: dict, key: str = "label") -> None:
    coco = load(out)
    stems = {im["id"]: im["stem"] for im in coco["images"]}
    assert sorted(stems.values()) == sorted(labels)
    seen = {s: set() for s in labels}
    for ann in coco["annotations"]:
        stem = stems[ann["image_id"]]
        expected = labels[stem] == ann[key]
        np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]).astype(bool), expected)
        ys, xs = np.nonzero(expected)
        assert ann["area"] == expected.sum()
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        seen[stem].add(ann[key])
    for stem, lab in labels.items():
        assert seen[stem] == set(int(v) for v in np.unique(lab) if v)


# ----------------------------------------------------------------------------- the three layouts


@pytest.mark.parametrize("fmt", ["tif", "png"])
def test_labels_layout_gives_one_annotation_per_label(tmp_path, fmt):
    labels = write_labels_folder(tmp_path / "src", fmt=fmt)
    result = convert(tmp_path / "src", tmp_path / "out", split="0.5,0.25,0.25")
    out = tmp_path / "out"
    check_against_labels(out, labels)
    assert result.manifest["identity"]["layout"] == "labels"
    assert result.manifest["identity"]["format"] == "maskrcnnpp-folder"
    assert result.manifest["counts"]["annotations"] == 12
    assert kinds(result) == {"grey_to_rgb": 4}
    for stem in labels:  # grey images written as RGB with the same pixels
        rgb = np.asarray(Image.open(out / "images" / f"{stem}.png"))
        assert rgb.shape == (H, W, 3) and (rgb == grey(int(stem[2:]))[..., None]).all()
    assert [c["images"] for c in result.manifest["counts"]["splits"].values()] == [4, 2, 1, 1]


def test_labels_paired_by_stem_across_subfolders_and_predict_outputs_ignored(tmp_path):
    src = tmp_path / "src"
    (src / "raw").mkdir(parents=True)
    (src / "labels").mkdir()
    Image.fromarray(grey(0)).save(src / "raw" / "a.png")
    tifffile.imwrite(src / "labels" / "a_labels.tif", labels_of(0).astype(np.int32))
    (src / "labels" / "a_nuclei.csv").write_text("label,area\n")
    result = convert(src, tmp_path / "out", split="train")
    check_against_labels(tmp_path / "out", {"a": labels_of(0)})
    assert result.manifest["ignored_files"] == ["labels/a_nuclei.csv"]


def test_a_zip_of_the_folder_gives_the_same_dataset(tmp_path):
    import zipfile

    write_labels_folder(tmp_path / "src", n=2)
    (tmp_path / "src" / ".DS_Store").write_bytes(b"junk")  # hidden files are never read
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as z:
        for path in sorted((tmp_path / "src").iterdir()):
            z.write(path, f"mylab/{path.name}")
    convert(tmp_path / "src", tmp_path / "a", split="train")
    result = convert(tmp_path / "src.zip", tmp_path / "b", split="train", workers=2)
    assert result.manifest["source"]["kind"] == "zip"
    assert load(tmp_path / "a")["annotations"] == load(tmp_path / "b")["annotations"]


def test_masks_layout_equals_the_dsb_converter(tmp_path):
    samples = standard_samples(3, H, W)
    src = write_kaggle_source(tmp_path / "src", samples)
    assert detect_layout(Source(src)) == "masks"
    result = convert(src, tmp_path / "out")
    from maskrcnnpp.data.dsb2018 import prepare_dsb2018

    prepare_dsb2018(src, tmp_path / "dsb", workers=1, progress=False)
    ours, theirs = load(tmp_path / "out"), load(tmp_path / "dsb")
    assert ours["annotations"] == theirs["annotations"]
    assert [im["stem"] for im in ours["images"]] == [im["dsb_id"] for im in theirs["images"]]
    assert result.manifest["identity"]["layout"] == "masks"
    assert len(ours["annotations"]) == sum(len(m) for _, m in samples.values())


def _coco_json(images: dict) -> dict:
    """A COCO JSON: image a with a polygon, an uncompressed RLE, a compressed RLE and a crowd region."""
    square = [[2, 2, 8, 2, 8, 6, 2, 6]]  # x, y corners: pixels x 2..7, y 2..5 after rasterisation
    m2 = box_mask(H, W, 10, 15, 10, 20) > 0
    rle_c = mask_util.encode(np.asfortranarray(m2.astype(np.uint8)))
    m3 = box_mask(H, W, 15, 19, 22, 28) > 0
    flat = m3.flatten(order="F").astype(np.uint8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], edges])).tolist()
    return {
        "images": [{"id": 5, "file_name": "a.png", "height": H, "width": W},
                   {"id": 6, "file_name": "sub/b.png", "height": H, "width": W}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 1, "segmentation": square, "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 1, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": rle_c["counts"].decode()}},
            {"id": 3, "image_id": 6, "category_id": 2, "iscrowd": 0, "segmentation": {"size": [H, W], "counts": counts}},
            {"id": 4, "image_id": 6, "category_id": 1, "iscrowd": 1, "segmentation": square},
        ],
        "categories": [{"id": 1, "name": "nucleus"}, {"id": 2, "name": "dividing"}],
    }, {1: None, 2: m2, 3: m3}


def test_coco_layout_polygons_and_rles(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(grey(0)).save(src / "a.png")
    Image.fromarray(grey(1)).save(src / "sub" / "b.png")
    Image.fromarray(grey(2)).save(src / "unlisted.png")
    coco, masks = _coco_json({})
    (src / "annotations.json").write_text(json.dumps(coco))
    (src / "coco_results.json").write_text("[]")  # a results list is no dataset: not a second JSON
    assert detect_layout(Source(src)) == "coco"
    result = convert(src, tmp_path / "out", split="train")
    out = load(tmp_path / "out")
    anns = {a["coco_id"]: a for a in out["annotations"]}
    assert sorted(anns) == [1, 2, 3]
    poly = mask_util.decode(anns[1]["segmentation"]).astype(bool)
    expected_poly = mask_util.decode(mask_util.merge(mask_util.frPyObjects(coco["annotations"][0]["segmentation"], H, W)))
    np.testing.assert_array_equal(poly, expected_poly.astype(bool))
    assert anns[1]["area"] == poly.sum() > 0
    for k in (2, 3):
        np.testing.assert_array_equal(mask_util.decode(anns[k]["segmentation"]).astype(bool), masks[k])
        assert anns[k]["area"] == masks[k].sum()
    assert kinds(result) == {"crowd_dropped": 1, "grey_to_rgb": 2, "image_not_in_coco": 1}
    assert any("2 categories (nucleus, dividing) all taken as 'nucleus'" in n for n in result.manifest["notes"])

    # the same JSON outside the folder, named explicitly, gives the same annotations
    (src / "annotations.json").rename(tmp_path / "ann.json")
    convert(src, tmp_path / "out2", split="train", coco_json=tmp_path / "ann.json")
    assert load(tmp_path / "out2")["annotations"] == out["annotations"]


# ----------------------------------------------------------------------------- split


def test_split_follows_the_dsb_rule_and_tiny_folders_keep_all_in_one_split(tmp_path):
    labels = write_labels_folder(tmp_path / "src", n=6)
    convert(tmp_path / "src", tmp_path / "out", seed=3)
    expected = split_image_ids(sorted(labels), (0.5, 0.2, 0.3), 3)
    for split in ("train", "val", "test"):
        assert [im["stem"] for im in load(tmp_path / "out", split)["images"]] == expected[split]

    result = convert(tmp_path / "src", tmp_path / "all_train", split="train")
    assert [c["images"] for c in result.manifest["counts"]["splits"].values()] == [6, 6, 0, 0]
    assert result.manifest["notes"] == []

    write_labels_folder(tmp_path / "one", n=1)
    result = convert(tmp_path / "one", tmp_path / "one_out")  # 1 image, 0.5/0.2/0.3: it goes to train
    assert [c["images"] for c in result.manifest["counts"]["splits"].values()] == [1, 1, 0, 0]
    assert [n.split(" (")[0] for n in result.manifest["notes"]] == ["split 'val' has no image", "split 'test' has no image"]


def test_rerun_is_a_noop_and_another_layout_or_split_is_refused(tmp_path):
    write_labels_folder(tmp_path / "src", n=2)
    out = tmp_path / "out"
    convert(tmp_path / "src", out, split="train")
    assert convert(tmp_path / "src", out, split="train").status == "unchanged"
    with pytest.raises(DatasetError, match=r"already holds a different dataset \(split"):
        convert(tmp_path / "src", out, split="test")


# ----------------------------------------------------------------------------- bad label images


def one_labelled(tmp_path, label, image=None, label_name="a_labels.tif") -> Path:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    Image.fromarray(grey(0) if image is None else image).save(src / "a.png")
    if isinstance(label, bytes):
        (src / label_name).write_bytes(label)
    elif label_name.endswith(".tif"):
        tifffile.imwrite(src / label_name, label)
    else:
        Image.fromarray(label).save(src / label_name)
    return src


@pytest.mark.parametrize("label,message", [
    (np.full((H, W), 0.5, np.float32), r"a_labels.tif: label image with non-integer values \(e.g. 0.5\)"),
    (np.full((H + 1, W), 1, np.uint8), r"a_labels.tif: label image is 21x30 but its image .*a.png is 20x30"),
    (np.full((H, W), -1, np.int16), r"a_labels.tif: label image with negative values \(min -1\)"),
    (np.dstack([labels_of(0), labels_of(1), labels_of(0)]).astype(np.uint8), r"a_labels.tif: colour label image"),
    (b"II*\x00garbage", r"a_labels.tif: cannot decode the TIFF label image"),
])
def test_bad_label_images_are_errors_naming_the_file(tmp_path, label, message):
    src = one_labelled(tmp_path, label)
    with pytest.raises(DatasetError, match=message):
        convert(src, tmp_path / "out", split="train")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_unreadable_png_label_image_is_an_error(tmp_path):
    src = one_labelled(tmp_path, b"\x89PNG\r\n\x1a\nnot really", label_name="a_labels.png")
    with pytest.raises(DatasetError, match=r"a_labels.png: cannot decode the image"):
        convert(src, tmp_path / "out", split="train")


def test_label_image_corrections_are_counted(tmp_path):
    lab = labels_of(0)
    src = tmp_path / "src"
    src.mkdir()
    cases = {
        "float": lab.astype(np.float32),  # whole numbers stored as floats
        "rgb": np.dstack([lab % 256] * 3).astype(np.uint8),  # grey saved as RGB
        "empty": np.zeros((H, W), np.uint8),  # an image without nuclei
        "binary": ((lab > 0) * 255).astype(np.uint8),  # a foreground mask, not instance labels
    }
    for stem, arr in cases.items():
        Image.fromarray(grey(1)).save(src / f"{stem}.png")
        tifffile.imwrite(src / f"{stem}_labels.tif", arr)
    result = convert(src, tmp_path / "out", split="train")
    assert kinds(result) == {"grey_to_rgb": 4, "labels_binary": 1, "labels_empty": 1, "labels_float": 1,
                             "labels_not_grey": 1}
    coco = load(tmp_path / "out")
    per_stem = {im["stem"]: [a for a in coco["annotations"] if a["image_id"] == im["id"]] for im in coco["images"]}
    assert len(per_stem["float"]) == 3 and len(per_stem["rgb"]) == 3 and per_stem["empty"] == []
    # 3 and 7 touch: one region; 300 is apart: two nuclei
    assert sorted(a["area"] for a in per_stem["binary"]) == sorted([int(((lab == 3) | (lab == 7)).sum()),
                                                                    int((lab == 300).sum())])
    assert result.manifest["counts"]["images_without_annotations"] == 1
    binary = [c for c in result.manifest["corrections"] if c["kind"] == "labels_binary"][0]
    assert binary["file"].endswith("binary_labels.tif") and "covers 2 separate regions" in binary["detail"]


def test_missing_partners_and_duplicate_stems_are_errors(tmp_path):
    write_labels_folder(tmp_path / "a", n=2)
    (tmp_path / "a" / "im1.png").unlink()
    with pytest.raises(DatasetError, match=r"im1_labels.tif: label image without its image \(im1.png"):
        convert(tmp_path / "a", tmp_path / "out")
    write_labels_folder(tmp_path / "b", n=2)
    (tmp_path / "b" / "im0_labels.tif").unlink()
    with pytest.raises(DatasetError, match=r"im0.png: image without a label image \(im0_labels.tif or .png\); 1 such"):
        convert(tmp_path / "b", tmp_path / "out")
    write_labels_folder(tmp_path / "c", n=1)
    Image.fromarray(labels_of(0).astype(np.uint8)).save(tmp_path / "c" / "im0_labels.png")
    with pytest.raises(DatasetError, match=r"two label images for 'im0'"):
        convert(tmp_path / "c", tmp_path / "out")
    write_labels_folder(tmp_path / "d", n=1)
    Image.fromarray(labels_of(0).astype(np.uint8)).save(tmp_path / "d" / "im0_labels.jpg")
    (tmp_path / "d" / "im0_labels.tif").unlink()
    with pytest.raises(DatasetError, match=r"im0_labels.jpg: label image in a lossy format"):
        convert(tmp_path / "d", tmp_path / "out")


def test_layout_detection_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no annotations recognised") as e:
        convert(tmp_path / "empty", tmp_path / "out")
    assert e.value.argument == "layout"
    src = write_kaggle_source(tmp_path / "mixed", standard_samples(1, H, W))
    Image.fromarray(grey(0)).save(src / "x.png")
    tifffile.imwrite(src / "x_labels.tif", labels_of(0))
    with pytest.raises(DatasetError, match=r"several layouts \(masks, labels\)"):
        convert(src, tmp_path / "out")
    with pytest.raises(DatasetError, match=r"img00.png: image without a label image"):
        convert(src, tmp_path / "out", layout="labels")  # the DSB images have no label images
    result = convert(src, tmp_path / "out", layout="masks", split="train")  # the DSB converter ignores x.png
    assert result.manifest["counts"]["images"] == 1 and result.manifest["counts"]["ignored_files"] == 2
    with pytest.raises(DatasetError, match="layout 'bogus'"):
        convert(src, tmp_path / "out2", layout="bogus")


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["images"].append({"id": 9, "file_name": "missing.png"}), r"image file 'missing.png' not found"),
    (lambda c: c["annotations"].append({"id": 9, "image_id": 77, "segmentation": []}), r"annotations\[4\]: image_id 77"),
    (lambda c: c["images"][0].update(height=H + 1), r"image a.png is 21x30 \(height x width\) in the JSON but 20x30"),
    (lambda c: c["annotations"][1]["segmentation"].update(size=[5, 5]), r"annotation 2: RLE of size \[5, 5\]"),
    (lambda c: c["annotations"][0].update(segmentation=[[1, 2, 3]]), r"annotation 1: polygons must be lists"),
])
def test_bad_coco_json_is_an_error_naming_the_entry(tmp_path, edit, message):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(grey(0)).save(src / "a.png")
    Image.fromarray(grey(1)).save(src / "sub" / "b.png")
    coco, _ = _coco_json({})
    edit(coco)
    (src / "ann.json").write_text(json.dumps(coco))
    with pytest.raises(DatasetError, match=message):
        convert(src, tmp_path / "out", split="train")


# ----------------------------------------------------------------------------- the command line


def _cli():
    spec = importlib.util.spec_from_file_location("prepare_folder_cli", REPO / "datasets" / "prepare_folder.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_cli(tmp_path, capsys):
    cli = _cli()
    write_labels_folder(tmp_path / "src", n=3)
    out = tmp_path / "out"
    assert cli.main(["--src", str(tmp_path / "src"), "--out", str(out), "--no-progress", "--workers", "2"]) == 0
    assert "written. images/annotations: all 3/9, train 1/3, val 1/3, test 1/3. corrections: grey_to_rgb x3" \
        in capsys.readouterr().out
    assert cli.main(["--src", str(tmp_path / "src"), "--out", str(out), "--no-progress"]) == 0
    assert "already prepared, nothing to do" in capsys.readouterr().out
    tifffile.imwrite(tmp_path / "src" / "im1_labels.tif", np.full((H, W), 0.25, np.float32))
    assert cli.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "o2"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "im1_labels.tif: label image with non-integer" in err[0]
    (tmp_path / "empty").mkdir()
    assert cli.main(["--src", str(tmp_path / "empty"), "--out", str(tmp_path / "o3"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip().endswith("(option --layout)")
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
