"""Synthetic nuclei: exact labels, determinism, the look of each style, and the cached COCO set."""
from __future__ import annotations

import json
import multiprocessing as mp

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_util
from scipy import ndimage

from maskrcnnpp.data.synthetic import build_synthetic_dataset, generate_nuclei_image


def test_deterministic_for_a_seed():
    a_img, a_lab = generate_nuclei_image(3, 96, "fluorescence")
    b_img, b_lab = generate_nuclei_image(np.random.default_rng(3), 96, "fluorescence")
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    c_img, c_lab = generate_nuclei_image(4, 96, "fluorescence")
    assert not np.array_equal(a_lab, c_lab)


@pytest.mark.parametrize("style", ["fluorescence", "brightfield"])
def test_labels_are_exact_instances(style):
    for seed in range(6):
        image, labels = generate_nuclei_image(seed, (96, 128), style)
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert labels.shape == (96, 128) and labels.dtype == np.int32
        n = int(labels.max())
        assert n >= 1
        assert np.array_equal(np.unique(labels), np.arange(n + 1))  # 0..N, none missing
        for label, box in enumerate(ndimage.find_objects(labels), start=1):
            assert ndimage.label(labels[box] == label)[1] == 1  # one connected region each


def _stats(style: str, size: int = 128, seeds=range(12)):
    fg, bg, areas, touching = [], [], [], 0
    for seed in seeds:
        image, labels = generate_nuclei_image(seed, size, style)
        inside = labels > 0
        fg.append(image[inside].mean(axis=0))
        bg.append(image[~inside].mean(axis=0))
        areas.extend(np.bincount(labels.ravel())[1:])
        # Touching nuclei: two different labels side by side.
        right = (labels[:, 1:] != labels[:, :-1]) & (labels[:, 1:] > 0) & (labels[:, :-1] > 0)
        down = (labels[1:] != labels[:-1]) & (labels[1:] > 0) & (labels[:-1] > 0)
        touching += int(right.any() or down.any())
    return np.array(fg), np.array(bg), np.array(areas), touching


def test_fluorescence_bright_nuclei_on_dark_background():
    fg, bg, areas, touching = _stats("fluorescence")
    assert (fg.mean(axis=1) > 3 * bg.mean(axis=1) + 20).all()
    assert bg.mean() < 40
    assert touching >= 4  # clusters of touching nuclei in a good share of the images
    radii = np.sqrt(areas / np.pi)
    assert radii.min() < 9 and np.percentile(radii, 95) > 14  # varied sizes


def test_brightfield_dark_purple_nuclei_on_pink_background():
    fg, bg, _, _ = _stats("brightfield")
    assert (bg.mean(axis=1) > fg.mean(axis=1) + 50).all()  # nuclei darker than the background
    r, g, b = bg.T
    assert ((r > g + 20) & (b > g + 10)).all()  # pink/magenta background: green absorbed by eosin
    r, g, b = fg.T
    assert ((b > r) & (b > g)).all()  # purple-blue haematoxylin


def test_nucleus_size_scales_with_image_size():
    areas_128 = _stats("fluorescence", 128, range(8))[2]
    areas_256 = _stats("fluorescence", 256, range(8))[2]
    ratio = np.median(areas_256) / np.median(areas_128)
    assert 2.5 < ratio < 6.5  # about 4x the area at twice the side


def test_build_dataset_matches_generator_and_is_reused(tmp_path):
    out = tmp_path / "synth"
    json_path = build_synthetic_dataset(out, 3, 64, seed=5, split="val")
    assert json_path == out / "annotations" / "val.json"
    coco = json.loads(json_path.read_text())
    assert [im["file_name"] for im in coco["images"]] == [f"synth_s5_{i:05d}.png" for i in range(3)]
    for i, im in enumerate(coco["images"]):
        rng = np.random.default_rng([5, i])
        style = "brightfield" if rng.random() < 0.35 else "fluorescence"
        assert im["style"] == style
        image, labels = generate_nuclei_image(rng, 64, style)
        np.testing.assert_array_equal(np.asarray(Image.open(out / "images" / im["file_name"])), image)
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        assert len(anns) == labels.max()
        for k, ann in enumerate(anns, start=1):
            np.testing.assert_array_equal(mask_util.decode(ann["segmentation"]).astype(bool), labels == k)
            assert ann["area"] == (labels == k).sum()
    stamp = json_path.stat().st_mtime_ns
    assert build_synthetic_dataset(out, 3, 64, seed=5, split="val") == json_path
    assert json_path.stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="different synthetic set"):
        build_synthetic_dataset(out, 4, 64, seed=5, split="val")


def _build(args):
    out, seed = args
    return str(build_synthetic_dataset(out, 2, 48, seed=seed))


def test_parallel_builds_of_one_set_do_not_clash(tmp_path):
    out = tmp_path / "shared"
    with mp.get_context("fork").Pool(2) as pool:
        paths = pool.map(_build, [(out, 1)] * 4)
    assert set(paths) == {str(out / "annotations" / "all.json")}
    assert len(json.loads((out / "annotations" / "all.json").read_text())["images"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]  # no temporary folder left
