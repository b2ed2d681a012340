"""image_type on hand-made images of each kind; per-kind means of per-image rows."""
import numpy as np
import pytest

from maskrcnnpp.evaluation.image_types import image_type, image_type_of_file, scores_by_image_type


def test_each_kind_is_told_apart():
    dark = np.full((32, 32, 3), 10, np.uint8)
    dark[8:16, 8:16] = 200  # a bright nucleus on a dark background
    bright = 255 - dark
    tissue = np.zeros((32, 32, 3), np.uint8)
    tissue[...] = (230, 180, 220)  # pink background (H&E-like)
    tissue[8:16, 8:16] = (90, 40, 130)  # purple nucleus
    assert image_type(dark) == "fluorescence"
    assert image_type(dark[..., 0]) == "fluorescence"  # a grey H x W array
    assert image_type(bright) == "bright-field"
    assert image_type(tissue) == "stained tissue"
    assert image_type(tissue.mean(axis=2).astype(np.uint8)) == "bright-field"  # the same tissue in grey


def test_scores_by_image_type_average_within_each_kind():
    rows = [{"image_id": 1, "score": 0.2, "iou": 0.5}, {"image_id": 2, "score": 0.4, "iou": 0.7},
            {"image_id": 3, "score": 0.9, "iou": 0.8}]
    types = {1: "fluorescence", 2: "fluorescence", 3: "stained tissue"}
    table = scores_by_image_type(rows, types, metrics=("score", "iou"))
    assert list(table) == ["fluorescence", "stained tissue"]  # no bright-field image: left out
    assert table["fluorescence"] == {"images": 2, "score": pytest.approx(0.3), "iou": pytest.approx(0.6)}
    assert table["stained tissue"] == {"images": 1, "score": 0.9, "iou": 0.8}


def test_the_kind_of_an_image_file(tmp_path):
    from PIL import Image

    tissue = np.zeros((16, 16, 3), np.uint8)
    tissue[...] = (230, 180, 220)
    Image.fromarray(tissue).save(tmp_path / "t.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    assert image_type_of_file(str(tmp_path / "t.png")) == "stained tissue"
    assert image_type_of_file(str(tmp_path / "broken.png")) == "unknown"
    assert image_type_of_file(str(tmp_path / "absent.png")) == "unknown" and image_type_of_file("") == "unknown"


def test_a_dim_16_bit_fluorescence_file_is_fluorescence(tmp_path):
    import tifffile
    from PIL import Image

    dim = np.full((32, 32), 400, np.uint16)  # background far above 255, far below the 16-bit range
    dim[8:16, 8:16] = 4000
    Image.fromarray(dim).save(tmp_path / "dim.png")
    tifffile.imwrite(tmp_path / "dim.tif", dim)
    assert image_type_of_file(str(tmp_path / "dim.png")) == image_type_of_file(str(tmp_path / "dim.tif")) == "fluorescence"
