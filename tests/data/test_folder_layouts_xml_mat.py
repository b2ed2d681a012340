"""The own-folder converter's layouts ``xml`` (Aperio ImageScope / MoNuSeg polygons) and ``mat`` (HoVer-Net
``inst_map``) on tiny hand-made folders: the exact masks, the counted corrections, detection, the equality
with the label image converted in layout ``labels``, and bad files as errors naming them. The MoNuSeg and
Aitslab conversions are checked against their reference outputs when those folders are present."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tifffile
from PIL import Image
from pycocotools import mask as mask_util

from maskrcnnpp.data.dsb2018 import DatasetError
from maskrcnnpp.data.dsb2018.source import Source
from maskrcnnpp.data.folder import LAYOUTS, detect_layout, prepare_folder

H, W = 12, 10
REPO = Path(__file__).resolve().parents[2]


def convert(src, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    kw.setdefault("split", "train")
    return prepare_folder(src, out, **kw)


def load(out: Path) -> dict:
    return json.loads((out / "annotations" / "all.json").read_text())


def kinds(result) -> dict:
    return result.manifest["counts"]["corrections"]


def rgb(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def masks_by_value(out: Path, key: str = "label") -> dict:
    """``{stem: {provenance value: decoded boolean mask}}``, checking each annotation's area and box."""
    coco = load(out)
    stems = {im["id"]: im["stem"] for im in coco["images"]}
    found = {s: {} for s in stems.values()}
    for ann in coco["annotations"]:
        mask = mask_util.decode(ann["segmentation"]).astype(bool)
        ys, xs = np.nonzero(mask)
        assert ann["area"] == mask.sum()
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        found[stems[ann["image_id"]]][ann[key]] = mask
    return found


def assert_masks_are(out: Path, expected: dict) -> None:
    """The written masks are exactly ``expected[stem] == k`` for every nonzero value k of it."""
    found = masks_by_value(out)
    assert sorted(found) == sorted(expected)
    for stem, lab in expected.items():
        assert sorted(found[stem]) == [int(v) for v in np.unique(lab) if v]
        for value, mask in found[stem].items():
            np.testing.assert_array_equal(mask, lab == value)


def assert_nothing_written(tmp_path: Path, out: str = "out") -> None:
    assert not (tmp_path / out).exists() and not list(tmp_path.glob(f".{out}.partial-*"))


# ----------------------------------------------------------------------------- layout xml

# (Id, [(X, Y), ...]) in file order. Half-pixel corners put no pixel centre on an edge, so the filled
# pixels are worked out by hand below.
REGIONS = [
    ("1", [(0.5, 0.5), (4.5, 0.5), (4.5, 4.5), (0.5, 4.5)]),  # rows 1..4, cols 1..4
    ("2", [(2.5, 2.5), (6.5, 2.5), (6.5, 6.5), (2.5, 6.5)]),  # rows 3..6, cols 3..6: takes 4 pixels of 1
    ("3", [(1.0, 1.0), (5.0, 5.0)]),  # two vertices: degenerate
    ("4", [(0.5, 7.5), (4.7, 7.5), (0.5, 11.7)]),  # triangle: rows 8..11, cols >= 1 with row + col <= 12
    ("5", [(20.0, 1.0), (25.0, 1.0), (25.0, 5.0)]),  # right of the image: no pixel inside, degenerate
    ("6", [(6.5, 7.5), (8.5, 7.5), (8.5, 9.5), (6.5, 9.5)]),  # rows 8..9, cols 7..8: all taken by 7
    ("7", [(5.5, 6.5), (14.0, 6.5), (14.0, 10.5), (5.5, 10.5)]),  # rows 7..10, cols 6..9 (clipped at W)
]


def expected_xml_labels() -> np.ndarray:
    """The label image of REGIONS: later regions over earlier ones, renumbered 1..4 without 3, 5 and 6."""
    lab = np.zeros((H, W), np.uint16)
    lab[1:5, 1:5] = 1
    lab[3:7, 3:7] = 2
    for r in range(8, 12):
        for c in range(1, 13 - r):
            lab[r, c] = 3
    lab[7:11, 6:10] = 4
    return lab


def xml_text(regions) -> str:
    """An Aperio ImageScope annotation file holding ``regions`` as MoNuSeg's do."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<Annotations MicronsPerPixel="0.252700">',
           '<Annotation Id="1"><Attributes/><Regions>',
           '<RegionAttributeHeaders><AttributeHeader Id="9999" Name="Region"/></RegionAttributeHeaders>']
    for region_id, vertices in regions:
        out.append(f'<Region Id="{region_id}" Type="0"><Attributes/><Vertices>')
        out += [f'<Vertex X="{x}" Y="{y}"/>' for x, y in vertices]
        out.append("</Vertices></Region>")
    out.append("</Regions></Annotation></Annotations>")
    return "\n".join(out)


def write_xml_folder(src: Path) -> dict:
    """Image a (RGB TIFF) with REGIONS; image b (grey PNG, its XML in another folder) with one square."""
    (src / "tissue").mkdir(parents=True)
    (src / "annotations").mkdir()
    tifffile.imwrite(src / "tissue" / "a.tif", rgb(0))
    (src / "tissue" / "a.xml").write_text(xml_text(REGIONS))
    Image.fromarray(rgb(1)[..., 0]).save(src / "tissue" / "b.png")
    (src / "annotations" / "b.xml").write_text(xml_text([("9", [(1.5, 1.5), (3.5, 1.5), (3.5, 2.5), (1.5, 2.5)])]))
    b = np.zeros((H, W), np.uint16)
    b[2, 2:4] = 1
    return {"a": expected_xml_labels(), "b": b}


def test_xml_layout_gives_the_hand_worked_masks_and_counts_its_corrections(tmp_path):
    src = tmp_path / "src"
    expected = write_xml_folder(src)
    assert detect_layout(Source(src)) == "xml"
    result = convert(src, tmp_path / "out")
    assert result.manifest["identity"]["layout"] == "xml"
    assert_masks_are(tmp_path / "out", expected)
    assert kinds(result) == {"grey_to_rgb": 1, "xml_degenerate": 2, "xml_overlap": 2, "xml_overwritten": 1}
    details = {(c["kind"], c["file"].split("a.xml: ")[-1]): c["detail"]
               for c in result.manifest["corrections"] if c["image"] == "a"}
    assert details == {
        ("xml_overlap", "Region 2 (Id 2)"): "4 pixels of earlier regions taken by this later one",
        ("xml_degenerate", "Region 3 (Id 3)"): "2 vertices; a polygon needs 3",
        ("xml_degenerate", "Region 5 (Id 5)"): f"no pixel centre of the {H}x{W} image inside",
        ("xml_overlap", "Region 7 (Id 7)"): "4 pixels of earlier regions taken by this later one",
        ("xml_overwritten", "Region 6 (Id 6)"): "every pixel taken by later regions: dropped",
    }
    assert all(c["file"].startswith(f"{src / 'tissue' / 'a.xml'}: Region ")
               for c in result.manifest["corrections"] if c["kind"].startswith("xml_"))
    assert set(result.manifest["correction_kinds"]) == {"grey_to_rgb", "xml_degenerate", "xml_overlap",
                                                        "xml_overwritten"}
    rgb_a = np.asarray(Image.open(tmp_path / "out" / "images" / "a.png"))
    np.testing.assert_array_equal(rgb_a, rgb(0))  # the image's pixels unchanged


def test_xml_layout_equals_its_label_image_in_layout_labels(tmp_path):
    expected = write_xml_folder(tmp_path / "src")
    convert(tmp_path / "src", tmp_path / "xml_out")
    labels_src = tmp_path / "labels_src"
    labels_src.mkdir()
    tifffile.imwrite(labels_src / "a.tif", rgb(0))
    Image.fromarray(rgb(1)[..., 0]).save(labels_src / "b.png")
    for stem, lab in expected.items():
        tifffile.imwrite(labels_src / f"{stem}_labels.tif", lab)
    convert(labels_src, tmp_path / "labels_out", layout="labels")
    assert (tmp_path / "xml_out" / "annotations" / "all.json").read_bytes() == \
        (tmp_path / "labels_out" / "annotations" / "all.json").read_bytes()


def test_xml_without_regions_gives_an_image_without_nuclei(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", rgb(0))
    (src / "a.xml").write_text(xml_text([]))
    result = convert(src, tmp_path / "out", layout="xml")
    assert kinds(result) == {"labels_empty": 1}
    assert load(tmp_path / "out")["annotations"] == []


@pytest.mark.parametrize("text,message", [
    ('<Annotations><Region Id="1"><Vertex X="1" Y="1"/>', r"a\.xml: cannot parse the XML annotation file"),
    (b"\xff\xfe not xml at all", r"a\.xml: cannot parse the XML annotation file"),
    (xml_text([("1", [(1, 1), (5, 1), (5, 5)])]).replace('X="5" Y="5"', 'X="five" Y="5"'),
     r"a\.xml: Region 1 \(Id 1\): a <Vertex> without numeric X and Y"),
    (xml_text([("1", [(1, 1), (5, 1), (5, 5)])]).replace('Y="5"', "", 1),
     r"a\.xml: Region 1 \(Id 1\): a <Vertex> without numeric X and Y"),
    (xml_text([("1", [(1, 1), (5, 1), ("nan", 5)])]), r"a\.xml: Region 1 \(Id 1\): a <Vertex> with a non-finite"),
])
def test_bad_xml_is_an_error_naming_the_file(tmp_path, text, message):
    src = tmp_path / "src"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", rgb(0))
    (src / "a.xml").write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(DatasetError, match=message):
        convert(src, tmp_path / "out", layout="xml")
    assert_nothing_written(tmp_path)


def test_xml_partners_missing_are_errors(tmp_path):
    src = tmp_path / "src"
    write_xml_folder(src)
    (src / "annotations" / "b.xml").unlink()
    with pytest.raises(DatasetError, match=r"b\.png: image without an XML annotation file \(b\.xml\); 1 such"):
        convert(src, tmp_path / "out", layout="xml")
    (src / "tissue" / "a.tif").unlink()
    with pytest.raises(DatasetError, match=r"a\.xml: XML annotation file without its image \(a\.png"):
        convert(src, tmp_path / "out", layout="xml")
    assert_nothing_written(tmp_path)


# ----------------------------------------------------------------------------- layout mat


def inst_map() -> np.ndarray:
    """Three objects with the ids 2, 5 and 9 (HoVer-Net ids need not be 1..N); 5 touches 2."""
    lab = np.zeros((H, W), np.int32)
    lab[1:4, 1:5] = 2
    lab[4:7, 2:4] = 5
    lab[8:11, 5:9] = 9
    return lab


def write_mat_folder(src: Path, arrays: dict = None) -> dict:
    """CoNSeP-like: Images/<stem>.png, Labels/<stem>.mat with inst_map (and a type_map beside it)."""
    arrays = {"a": inst_map(), "b": inst_map().astype(np.float64)} if arrays is None else arrays
    (src / "Images").mkdir(parents=True)
    (src / "Labels").mkdir()
    for k, (stem, arr) in enumerate(arrays.items()):
        Image.fromarray(rgb(k)).save(src / "Images" / f"{stem}.png")
        scipy.io.savemat(src / "Labels" / f"{stem}.mat", {"inst_map": arr, "type_map": (arr > 0).astype(np.int32)})
    return arrays


def test_mat_layout_gives_the_instance_maps_masks(tmp_path):
    src = tmp_path / "src"
    arrays = write_mat_folder(src)
    assert detect_layout(Source(src)) == "mat"
    result = convert(src, tmp_path / "out")
    assert result.manifest["identity"]["layout"] == "mat"
    assert_masks_are(tmp_path / "out", arrays)  # provenance 'label': the id in inst_map, as for a label image
    assert kinds(result) == {"labels_float": 1}  # b's map is double, MATLAB's default type
    floats = [c for c in result.manifest["corrections"] if c["kind"] == "labels_float"][0]
    assert floats["image"] == "b" and floats["file"].endswith("Labels/b.mat['inst_map']")


def test_mat_layout_equals_its_label_image_in_layout_labels(tmp_path):
    arrays = write_mat_folder(tmp_path / "src", {"a": inst_map(), "b": inst_map()[::-1].copy()})
    convert(tmp_path / "src", tmp_path / "mat_out")
    labels_src = tmp_path / "labels_src"
    labels_src.mkdir()
    for k, (stem, arr) in enumerate(arrays.items()):
        Image.fromarray(rgb(k)).save(labels_src / f"{stem}.png")
        tifffile.imwrite(labels_src / f"{stem}_labels.tif", arr)
    convert(labels_src, tmp_path / "labels_out")
    assert (tmp_path / "mat_out" / "annotations" / "all.json").read_bytes() == \
        (tmp_path / "labels_out" / "annotations" / "all.json").read_bytes()


def _write_mat(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        scipy.io.savemat(path, content)


@pytest.mark.parametrize("content,message", [
    ({"type_map": inst_map()}, r"Labels/a\.mat: no variable 'inst_map' \(the file holds type_map\)"),
    ({"inst_map": np.zeros((H + 1, W), np.int32)},
     r"Labels/a\.mat: 'inst_map' is 13x10 but its image .*Images/a\.png is 12x10"),
    ({"inst_map": -inst_map()}, r"Labels/a\.mat\['inst_map'\]: label image with negative values"),
    ({"inst_map": inst_map() + 0.5}, r"Labels/a\.mat\['inst_map'\]: label image with non-integer values"),
    ({"inst_map": inst_map() * 1j}, r"Labels/a\.mat\['inst_map'\]: label image of type complex128"),
    ({"inst_map": "not a map"}, r"Labels/a\.mat\['inst_map'\]: label image of shape \(1,\)"),
    (b"MATLAB 5.0 MAT-file, truncated", r"Labels/a\.mat: cannot read the MATLAB file"),
])
def test_bad_mat_is_an_error_naming_the_file_and_key(tmp_path, content, message):
    src = tmp_path / "src"
    write_mat_folder(src, {"a": inst_map(), "b": inst_map()})
    _write_mat(src / "Labels" / "a.mat", content)
    with pytest.raises(DatasetError, match=message):
        convert(src, tmp_path / "out", layout="mat")
    assert_nothing_written(tmp_path)


def test_mat_partners_missing_or_twice_are_errors(tmp_path):
    src = tmp_path / "src"
    write_mat_folder(src, {"a": inst_map(), "b": inst_map()})
    Image.fromarray(rgb(5)).save(src / "c.png")
    with pytest.raises(DatasetError, match=r"c\.png: image without a \.mat annotation file \(c\.mat\); 1 such"):
        convert(src, tmp_path / "out", layout="mat")
    (src / "c.png").unlink()
    (src / "Overlay").mkdir()
    Image.fromarray(rgb(5)).save(src / "Overlay" / "a.png")
    with pytest.raises(DatasetError, match=r"two images for 'a'"):
        convert(src, tmp_path / "out", layout="mat")
    assert_nothing_written(tmp_path)


# ----------------------------------------------------------------------------- detection


def test_detection_of_xml_and_mat_leaves_the_other_layouts_alone(tmp_path):
    assert LAYOUTS == ("labels", "masks", "coco", "xml", "mat")
    # a labels folder with microscope metadata <stem>.xml beside each image stays 'labels'
    src = tmp_path / "labels"
    src.mkdir()
    Image.fromarray(rgb(0)).save(src / "a.png")
    tifffile.imwrite(src / "a_labels.tif", inst_map().astype(np.uint16))
    (src / "a.xml").write_text("<OME/>")
    assert detect_layout(Source(src)) == "labels"
    # XML and .mat files without an image of their stem are no annotations
    lone = tmp_path / "lone"
    lone.mkdir()
    Image.fromarray(rgb(0)).save(lone / "a.png")
    (lone / "other.xml").write_text(xml_text([]))
    scipy.io.savemat(lone / "other.mat", {"inst_map": inst_map()})
    with pytest.raises(DatasetError, match="no annotations recognised") as e:
        detect_layout(Source(lone))
    assert e.value.argument == "layout"
    # images with both partners: choose one
    both = tmp_path / "both"
    write_mat_folder(both, {"a": inst_map()})
    (both / "Labels" / "a.xml").write_text(xml_text(REGIONS))
    with pytest.raises(DatasetError, match=r"several layouts \(xml, mat\)"):
        convert(both, tmp_path / "out")
    assert convert(both, tmp_path / "out", layout="mat").manifest["ignored_files"] == ["Labels/a.xml"]
    assert convert(both, tmp_path / "out2", layout="xml").manifest["ignored_files"] == ["Labels/a.mat"]


def test_cli_names_the_new_layouts(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("prepare_folder_cli", REPO / "datasets" / "prepare_folder.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    write_mat_folder(tmp_path / "src", {"a": inst_map()})
    assert cli.main(["--src", str(tmp_path / "src"), "--out", str(tmp_path / "out"), "--layout", "mat",
                     "--split", "train", "--no-progress"]) == 0
    assert "all 1/3" in capsys.readouterr().out
    assert "xml" in cli.build_parser().format_help() and "HoVer-Net" in cli.__doc__


# ----------------------------------------------------------------------------- the real folders, when present

REAL = [
    ("xml", REPO / "datasets" / "external_raw" / "_src" / "monuseg", REPO / "datasets" / "ext_monuseg_test"),
    ("mat", REPO / "datasets" / "external_raw" / "_src" / "aitslab", REPO / "datasets" / "ext_aitslab_bioimaging1"),
]


@pytest.mark.realdata
@pytest.mark.parametrize("layout,src,reference", REAL, ids=[r[0] for r in REAL])
def test_real_folder_gives_its_reference_conversion(tmp_path, layout, src, reference):
    expected = reference / "annotations" / "all.json"
    if not src.is_dir() or not expected.is_file():
        pytest.skip(f"{src} or {expected} not present")
    convert(src, tmp_path / "out", layout=layout, split="test", workers=2)
    assert (tmp_path / "out" / "annotations" / "all.json").read_bytes() == expected.read_bytes()
