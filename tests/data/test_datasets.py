"""Detectron2 registration: names, metadata, lazy DSB root, unprepared-data errors, synthetic cache."""
from __future__ import annotations

import json

import numpy as np
import pytest
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from pycocotools import mask as mask_util

from data_testutils import standard_samples, write_kaggle_source
from maskrcnnpp.config import get_maskrcnnpp_cfg
from maskrcnnpp.data import DatasetNotPreparedError, register_nuclei_coco, setup_datasets
from maskrcnnpp.data.dsb2018 import prepare_dsb2018

NAMES = [f"dsb2018_{s}" for s in ("train", "val", "test", "all")] + [f"nuclei_synth_{s}" for s in ("train", "val", "test")]


@pytest.fixture
def tiny_dsb(tmp_path):
    """A prepared DSB-layout root made from 6 small images (split 0.5/0.2/0.3: 3/1/2 images)."""
    src = write_kaggle_source(tmp_path / "src", standard_samples(6, 24, 32))
    prepare_dsb2018(src, tmp_path / "prepared", workers=1, progress=False)
    return tmp_path / "prepared"


def test_names_registered_at_import_with_nuclei_metadata():
    for name in NAMES:
        assert name in DatasetCatalog.list()
        meta = MetadataCatalog.get(name)
        assert meta.thing_classes == ["nucleus"] and meta.evaluator_type == "nuclei"


def test_dsb_root_resolved_at_use_time(tiny_dsb, tmp_path, monkeypatch, synth_cache):
    monkeypatch.setenv("MASKRCNNPP_DSB2018", str(tmp_path / "nowhere"))
    monkeypatch.delenv("MASKRCNNPP_DSB2018_ZIP", raising=False)
    with pytest.raises(DatasetNotPreparedError) as err:
        DatasetCatalog.get("dsb2018_train")
    assert isinstance(err.value, FileNotFoundError)
    assert f"python datasets/prepare_dsb2018.py --src PATH/TO/stage1_train.zip --out {tmp_path / 'nowhere'} " in str(err.value)
    monkeypatch.setenv("MASKRCNNPP_DSB2018_ZIP", "/data/stage1_train.zip")  # the zip, when known
    with pytest.raises(DatasetNotPreparedError, match="prepare_dsb2018.py --src /data/stage1_train.zip --out"):
        DatasetCatalog.get("dsb2018_val")

    monkeypatch.setenv("MASKRCNNPP_DSB2018", str(tiny_dsb))  # no re-registration needed
    meta = MetadataCatalog.get("dsb2018_val")
    assert meta.json_file == str(tiny_dsb / "annotations" / "val.json")
    assert meta.image_root == str(tiny_dsb / "images")
    records = DatasetCatalog.get("dsb2018_train")
    assert len(records) == 3 and len(DatasetCatalog.get("dsb2018_all")) == 6
    expected = json.loads((tiny_dsb / "annotations" / "train.json").read_text())
    assert [r["file_name"] for r in records] == [str(tiny_dsb / "images" / im["file_name"]) for im in expected["images"]]
    ann = records[0]["annotations"][0]
    assert ann["bbox_mode"] == BoxMode.XYWH_ABS and ann["category_id"] == 0
    assert isinstance(ann["segmentation"], dict) and isinstance(ann["segmentation"]["counts"], str)
    assert mask_util.area(ann["segmentation"]) == expected["annotations"][0]["area"]
    assert MetadataCatalog.get("dsb2018_train").thing_dataset_id_to_contiguous_id == {1: 0}

    # The config root wins over the environment, and setup_datasets is idempotent.
    cfg = get_maskrcnnpp_cfg()
    cfg.DATASETS.NUCLEI.DSB2018_ROOT = str(tmp_path / "elsewhere")
    setup_datasets(cfg)
    setup_datasets(cfg)
    assert MetadataCatalog.get("dsb2018_test").json_file == str(tmp_path / "elsewhere" / "annotations" / "test.json")
    with pytest.raises(DatasetNotPreparedError, match="elsewhere"):
        DatasetCatalog.get("dsb2018_test")


def test_unsplit_root_says_so(tmp_path, monkeypatch, synth_cache):
    src = write_kaggle_source(tmp_path / "src", standard_samples(2, 24, 32))
    prepare_dsb2018(src, tmp_path / "nosplit", split=None, workers=1, progress=False)
    monkeypatch.setenv("MASKRCNNPP_DSB2018", str(tmp_path / "nosplit"))
    assert len(DatasetCatalog.get("dsb2018_all")) == 2
    with pytest.raises(DatasetNotPreparedError, match="prepared without a split"):
        DatasetCatalog.get("dsb2018_train")


def test_synthetic_sets_generated_on_first_use_from_config(synth_cache):
    cfg = get_maskrcnnpp_cfg()
    cfg.DATASETS.NUCLEI.SYNTH_IMAGES = [3, 1, 2]
    cfg.DATASETS.NUCLEI.SYNTH_SIZE = 64
    setup_datasets(cfg)
    assert not synth_cache.exists()  # nothing generated before use
    train = DatasetCatalog.get("nuclei_synth_train")
    assert len(train) == 3 and len(DatasetCatalog.get("nuclei_synth_test")) == 2
    assert all(r["height"] == r["width"] == 64 and r["annotations"] for r in train)
    meta = MetadataCatalog.get("nuclei_synth_val")
    assert meta.json_file.startswith(str(synth_cache)) and json.loads(open(meta.json_file).read())["images"]
    # train/val/test come from different seeds: no image is shared.
    val = DatasetCatalog.get("nuclei_synth_val")
    train_masks = {r["annotations"][0]["segmentation"]["counts"] for r in train}
    assert val[0]["annotations"][0]["segmentation"]["counts"] not in train_masks
    # Reloading reuses the cache.
    stamp = {p: p.stat().st_mtime_ns for p in synth_cache.rglob("*.json")}
    DatasetCatalog.get("nuclei_synth_train")
    assert {p: p.stat().st_mtime_ns for p in synth_cache.rglob("*.json")} == stamp


def test_mapper_builds_bitmask_instances_from_rle(synth_cache):
    from detectron2.data import DatasetMapper

    cfg = get_maskrcnnpp_cfg()
    cfg.DATASETS.NUCLEI.SYNTH_IMAGES = [1, 1, 1]
    cfg.DATASETS.NUCLEI.SYNTH_SIZE = 64
    setup_datasets(cfg)
    cfg.MODEL.MASK_ON = True
    cfg.INPUT.MASK_FORMAT = "bitmask"
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 64, 64
    (record,) = DatasetCatalog.get("nuclei_synth_train")
    out = DatasetMapper(cfg, is_train=False)(dict(record, annotations=record["annotations"]))
    assert out["image"].shape == (3, 64, 64)
    expected = np.stack([mask_util.decode(a["segmentation"]).astype(bool) for a in record["annotations"]])
    assert "instances" not in out  # test-time mapping drops annotations
    train_out = DatasetMapper(cfg, is_train=True, augmentations=[], image_format="RGB",
                              use_instance_mask=True, instance_mask_format="bitmask")(record)
    np.testing.assert_array_equal(train_out["instances"].gt_masks.tensor.numpy(), expected)


def test_register_custom_coco(tiny_dsb):
    json_file, image_root = str(tiny_dsb / "annotations" / "val.json"), str(tiny_dsb / "images")
    register_nuclei_coco("my_nuclei", json_file, image_root)
    register_nuclei_coco("my_nuclei", json_file, image_root)  # same files: no-op
    try:
        assert MetadataCatalog.get("my_nuclei").evaluator_type == "nuclei"
        assert len(DatasetCatalog.get("my_nuclei")) == 1
        with pytest.raises(ValueError, match="already registered"):
            register_nuclei_coco("my_nuclei", str(tiny_dsb / "annotations" / "test.json"), image_root)
    finally:
        DatasetCatalog.remove("my_nuclei")
        MetadataCatalog.remove("my_nuclei")


def test_sets_of_an_older_generator_are_pruned(synth_cache):
    old = synth_cache / "synthetic" / "nuclei-0000000000-n3-size64-seed0"
    (old / "annotations").mkdir(parents=True)
    (old / "synthetic.json").write_text("{}")
    cfg = get_maskrcnnpp_cfg()
    cfg.DATASETS.NUCLEI.SYNTH_IMAGES = [1, 1, 1]
    cfg.DATASETS.NUCLEI.SYNTH_SIZE = 64
    setup_datasets(cfg)
    DatasetCatalog.get("nuclei_synth_train")
    assert not old.exists()
    assert len(list((synth_cache / "synthetic").iterdir())) == 1
