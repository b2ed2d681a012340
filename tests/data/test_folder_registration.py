"""Prepared own folders registered by name (DATASETS.NUCLEI.FOLDERS): the names, their data, the
errors naming the key and folder, and tools/train_net.py fine-tuning the shipped model on one."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from maskrcnnpp.config import setup_cfg
from maskrcnnpp.data import DatasetNotPreparedError, generate_nuclei_image, prepare_folder, setup_datasets
from maskrcnnpp.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> tuple:
    """Six synthetic 96x96 images with label images, prepared with the default split; their labels."""
    root = tmp_path_factory.mktemp("folder")
    src, labels = root / "src", {}
    src.mkdir()
    for i in range(6):
        image, lab = generate_nuclei_image(i, 96)
        Image.fromarray(image).save(src / f"cell{i}.png")
        tifffile.imwrite(src / f"cell{i}_labels.tif", lab.astype(np.uint16))
        labels[f"cell{i}"] = lab
    prepare_folder(src, root / "prepared", workers=1, progress=False)
    return root / "prepared", labels


@pytest.fixture
def restore_registrations():
    yield
    setup_datasets(setup_cfg("maskrcnnpp_tiny", device="cpu"))


def _setup(*opts):
    cfg = setup_cfg("maskrcnnpp_tiny", list(opts), device="cpu")
    setup_datasets(cfg)
    return cfg


def test_folders_key_registers_the_four_splits(prepared, restore_registrations):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    root, labels = prepared
    _setup("DATASETS.NUCLEI.FOLDERS", f'[["mylab", "{root}"], "other={root}"]')
    manifest = json.loads((root / "manifest.json").read_text())
    for name in ("mylab", "other"):
        for split in ("train", "val", "test", "all"):
            dicts = DatasetCatalog.get(f"{name}_{split}")
            assert len(dicts) == manifest["counts"]["splits"][split]["images"]
            meta = MetadataCatalog.get(f"{name}_{split}")
            assert meta.evaluator_type == "nuclei" and meta.thing_classes == ["nucleus"]
            assert meta.json_file == str(root / "annotations" / f"{split}.json")
    for d in DatasetCatalog.get("mylab_all"):  # one annotation per nucleus of the label image
        stem = Path(d["file_name"]).stem
        assert Path(d["file_name"]).parent == root / "images"
        assert len(d["annotations"]) == len(np.unique(labels[stem])) - 1
    _setup()  # the key emptied: the names are gone
    assert "mylab_train" not in DatasetCatalog.list()


def test_unprepared_folders_name_the_key_and_the_folder(tmp_path, prepared, restore_registrations):
    from detectron2.data import DatasetCatalog

    from maskrcnnpp.engine.trainer import check_datasets

    cfg = _setup("DATASETS.NUCLEI.FOLDERS", f'[["lab", "{tmp_path / "absent"}"]]', "DATASETS.TRAIN", '("lab_train",)')
    with pytest.raises(DatasetNotPreparedError, match=rf"lab_val: DATASETS.NUCLEI.FOLDERS gives 'lab' the folder "
                                                      rf"{tmp_path / 'absent'}, which does not exist. Prepare it with"):
        DatasetCatalog.get("lab_val")
    with pytest.raises(UserError, match=r"lab_train: DATASETS.NUCLEI.FOLDERS .* does not exist"):
        check_datasets(cfg)
    nosplit = tmp_path / "nosplit"
    prepare_folder(prepared[0].parent / "src", nosplit, split="none", workers=1, progress=False)
    _setup("DATASETS.NUCLEI.FOLDERS", f'[["lab", "{nosplit}"]]')
    assert len(DatasetCatalog.get("lab_all")) == 6
    with pytest.raises(DatasetNotPreparedError, match=r"was prepared without a split \(no annotations/train.json\)"):
        DatasetCatalog.get("lab_train")
    cfg = _setup("DATASETS.TRAIN", '("lab_train",)')
    with pytest.raises(UserError, match=r"'lab_train' is not registered.*DATASETS.NUCLEI.FOLDERS \[\[NAME, FOLDER\]\]"):
        check_datasets(cfg)


@pytest.mark.parametrize("value,message", [
    ('["justaname"]', r"'justaname' is not a \[NAME, FOLDER\] pair"),
    ('[["bad name", "/x"]]', r"dataset name 'bad name' must be letters"),
    ('[["a", "/x"], ["a", "/y"]]', r"'a' is given twice"),
    ('[["dsb2018", "/x"]]', r"the name 'dsb2018' would replace the registered dataset dsb2018_train"),
])
def test_bad_entries_are_user_errors_naming_the_key(value, message, restore_registrations):
    with pytest.raises(UserError, match=rf"DATASETS.NUCLEI.FOLDERS: {message}"):
        _setup("DATASETS.NUCLEI.FOLDERS", value)


def test_train_net_fine_tunes_the_shipped_model_on_a_registered_folder(prepared, tmp_path):
    root, labels = prepared
    test = json.loads((root / "annotations" / "test.json").read_text())
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "tools" / "train_net.py"), "--config", "nuclei_maskrcnnpp_r18", "--device", "cpu",
           "MODEL.WEIGHTS", "zoo:nuclei_maskrcnnpp_r18", "DATASETS.NUCLEI.FOLDERS", f'[["mylab", "{root}"]]',
           "DATASETS.TRAIN", '("mylab_train",)', "DATASETS.VAL", "()", "DATASETS.TEST", '("mylab_test",)',
           "SOLVER.MAX_ITER", "1", "SOLVER.IMS_PER_BATCH", "2", "INPUT.MIN_SIZE_TRAIN", "(128,)",
           "INPUT.MIN_SIZE_TEST", "128", "TEST.EVAL_PERIOD", "0", "TEST.NUCLEI.COCO_AP", "False",
           "OUTPUT_DIR", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert res.returncode == 0, res.stderr[-3000:]
    assert re.search(r"Loading from \S*weights/nuclei_maskrcnnpp_r18.pth", (out / "log.txt").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines() if line.strip()]
    assert any("total_loss" in m for m in metrics)
    summary = json.loads((out / "inference" / "mylab_test" / "summary.json").read_text())
    gt = sum(len(np.unique(labels[im["stem"]])) - 1 for im in test["images"])
    assert summary["num_images"] == len(test["images"]) and summary["num_gt"] == gt
