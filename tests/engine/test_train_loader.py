"""NucleiTrainer.build_train_loader: the Mask R-CNN family trains through NucleiInstanceMapper.

A small COCO dataset with RLE nuclei is written to a temporary folder and registered; with a
deterministic transform (fixed short side, no flip) every batch the loader yields, through a
worker process, must equal Detectron2's stock DatasetMapper output for the same image.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from PIL import Image
from pycocotools import mask as mask_util

from maskrcnnpp.data import register_nuclei_coco
from maskrcnnpp.data.instance_mapper import NucleiInstanceMapper
from maskrcnnpp.engine import trainer as trainer_module
from maskrcnnpp.config import setup_cfg
from maskrcnnpp.engine.trainer import NucleiTrainer

NAME = "test_train_loader_nuclei"


def _write_coco(root: Path) -> Path:
    """Three images with 2-4 disjoint square nuclei each, plus one crowd region."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for image_id, (h, w) in enumerate([(40, 56), (48, 48), (44, 60)], start=1):
        name = f"im{image_id}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for k in range(1 + image_id):
            mask = np.zeros((h, w), np.uint8, order="F")
            mask[4 + 9 * k : 11 + 9 * k, 5 + 7 * k : 14 + 7 * k] = 1
            annotations.append({"image_id": image_id, "category_id": 1, "iscrowd": int(k == 3)})
            encoded = mask_util.encode(mask)
            annotations[-1].update(bbox=mask_util.toBbox(encoded).tolist(), area=int(mask.sum()),
                                   segmentation={"size": encoded["size"], "counts": encoded["counts"].decode()})
    for i, ann in enumerate(annotations, start=1):
        ann["id"] = i
    coco = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "nucleus"}]}
    path = root / "train.json"
    path.write_text(json.dumps(coco))
    return path


@pytest.fixture
def small_dataset(tmp_path):
    json_file = _write_coco(tmp_path)
    register_nuclei_coco(NAME, str(json_file), str(tmp_path / "images"))
    yield NAME
    DatasetCatalog.remove(NAME)
    MetadataCatalog.remove(NAME)


def _cfg(dataset: str, fast: bool):
    return setup_cfg("maskrcnnpp_tiny", [
        "DATASETS.TRAIN", f"('{dataset}',)", "DATALOADER.NUM_WORKERS", "1", "SOLVER.IMS_PER_BATCH", "2",
        "INPUT.MIN_SIZE_TRAIN", "(72,)", "INPUT.MAX_SIZE_TRAIN", "200", "INPUT.RANDOM_FLIP", "none",
        "DATALOADER.FAST_INSTANCE_MAPPER", str(fast),
    ], device="cpu")


def _spy_mapper(monkeypatch) -> list:
    mappers = []
    real = trainer_module.build_detection_train_loader

    def spy(cfg, mapper=None, **kwargs):
        mappers.append(mapper)
        return real(cfg, mapper=mapper, **kwargs)

    monkeypatch.setattr(trainer_module, "build_detection_train_loader", spy)
    return mappers


def test_train_loader_yields_stock_identical_batches(small_dataset, monkeypatch):
    mappers = _spy_mapper(monkeypatch)
    cfg = _cfg(small_dataset, fast=True)
    loader = NucleiTrainer.build_train_loader(cfg)
    assert type(mappers[-1]) is NucleiInstanceMapper

    records = {r["image_id"]: r for r in DatasetCatalog.get(small_dataset)}
    stock = DatasetMapper(cfg, is_train=True)
    seen = set()
    batches = iter(loader)
    for _ in range(3):
        batch = next(batches)
        assert len(batch) == 2
        for item in batch:
            expected = stock(records[item["image_id"]])
            assert torch.equal(item["image"], expected["image"])
            got, want = item["instances"], expected["instances"]
            assert min(item["image"].shape[1:]) == 72 and got.image_size == tuple(item["image"].shape[1:])
            assert len(got) == item["image_id"] + 1 - (item["image_id"] == 3)  # the crowd region is dropped
            assert torch.equal(got.gt_boxes.tensor, want.gt_boxes.tensor)
            assert torch.equal(got.gt_classes, want.gt_classes) and got.gt_classes.tolist() == [0] * len(got)
            assert got.gt_masks.tensor.dtype == torch.bool and torch.equal(got.gt_masks.tensor, want.gt_masks.tensor)
            # Each resized 7 x 9 nucleus covers about 7 x 9 x scale^2 pixels.
            scale = 72 / min(records[item["image_id"]]["height"], records[item["image_id"]]["width"])
            areas = got.gt_masks.tensor.flatten(1).sum(1).double()
            assert torch.allclose(areas, torch.full_like(areas, 63 * scale**2), rtol=0.35)
            seen.add(item["image_id"])
    assert len(seen) >= 2


def test_stock_mapper_when_switched_off_or_polygon_masks(small_dataset, monkeypatch):
    mappers = _spy_mapper(monkeypatch)
    NucleiTrainer.build_train_loader(_cfg(small_dataset, fast=False))
    # The stock DatasetMapper, with the stock augmentations while INPUT.NUCLEI_AUG is all off.
    assert type(mappers[-1]) is DatasetMapper
    assert [type(a).__name__ for a in mappers[-1].augmentations.augs] == ["ResizeShortestEdge"]  # RANDOM_FLIP none
    cfg = _cfg(small_dataset, fast=True)
    cfg.defrost()
    cfg.INPUT.MASK_FORMAT = "polygon"
    cfg.INPUT.NUCLEI_AUG.ROTATE_90 = True
    NucleiTrainer.build_train_loader(cfg)
    assert type(mappers[-1]) is DatasetMapper
    assert [type(a).__name__ for a in mappers[-1].augmentations.augs] == ["ResizeShortestEdge", "RandomRotation90"]
