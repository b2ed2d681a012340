"""Synthetic inputs for benchmarking: nuclei images of a given size, in each model's input format.

Images come from the project's synthetic nuclei generator (``maskrcnnpp.data.synthetic``), so
the heads see nucleus-like content. Training batches go through the same mapper the trainer
uses (Detectron2's ``DatasetMapper`` for Mask R-CNN, ``SemanticNucleiMapper`` for the U-Nets),
configured to keep the image at exactly ``size`` x ``size``.
"""
from __future__ import annotations

import os
import tempfile
from typing import Dict, List

import numpy as np
import torch
from PIL import Image

from detectron2.config import CfgNode
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.structures import BoxMode

from ..modeling.semantic import is_semantic

def label_image_annotations(labels: np.ndarray) -> List[Dict]:
    """Detectron2 training annotations (XYWH box, RLE mask, class 0) of every instance of a label image."""
    from ..data.synthetic import labels_to_coco_annotations

    return [dict(a, bbox_mode=BoxMode.XYWH_ABS, category_id=0, iscrowd=0) for a in labels_to_coco_annotations(labels)]


def synthetic_dataset_dicts(folder: str, size: int, count: int, seed: int = 0) -> List[Dict]:
    """Write ``count`` synthetic ``size`` x ``size`` nuclei images to ``folder``; return their dataset dicts."""
    from ..data.synthetic import generate_nuclei_image

    rng = np.random.default_rng(seed)
    dicts = []
    for k in range(count):
        style = "fluorescence" if k % 2 == 0 else "brightfield"
        image, labels = generate_nuclei_image(rng, size=size, style=style)
        path = os.path.join(folder, f"bench_{size}_{k}.png")
        Image.fromarray(image).save(path)
        dicts.append({
            "file_name": path, "image_id": f"bench_{size}_{k}", "height": size, "width": size,
            "annotations": label_image_annotations(labels),
        })
    return dicts


def fixed_size_cfg(cfg: CfgNode, size: int) -> CfgNode:
    """``cfg`` with augmentation off and resizing pinned so a ``size``-px square image stays that size."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.INPUT.MIN_SIZE_TRAIN = (size,)
    cfg.INPUT.MAX_SIZE_TRAIN = size
    cfg.INPUT.MIN_SIZE_TEST = size
    cfg.INPUT.MAX_SIZE_TEST = size
    cfg.INPUT.RANDOM_FLIP = "none"
    cfg.INPUT.CROP.ENABLED = False
    if "SEMANTIC_UNET" in cfg.MODEL and "TRAIN_CROP" in cfg.MODEL.SEMANTIC_UNET:
        cfg.MODEL.SEMANTIC_UNET.TRAIN_CROP = size  # the mapper's random crop then keeps the whole image
    cfg.freeze()
    return cfg


def build_mapper(cfg: CfgNode, is_train: bool):
    """The mapper the trainer uses for ``cfg``'s meta-architecture."""
    if is_semantic(cfg):
        from ..data.semantic import SemanticNucleiMapper

        return SemanticNucleiMapper(cfg, is_train=is_train)
    return DatasetMapper(cfg, is_train=is_train)


class SyntheticBatches:
    """Mapped inference inputs and training batches of synthetic nuclei at one image size.

    The images are written once to a temporary folder (removed by :meth:`close`), then mapped
    on demand; ``inference(n)`` / ``training(n)`` return ``n`` mapped dicts (cycling the pool).
    """

    def __init__(self, cfg: CfgNode, size: int, pool: int = 4, seed: int = 0):
        self.size = size
        self.cfg = fixed_size_cfg(cfg, size)
        self._tmp = tempfile.TemporaryDirectory(prefix="maskrcnnpp_bench_")
        self.dataset_dicts = synthetic_dataset_dicts(self._tmp.name, size, pool, seed)
        self._train_mapper = build_mapper(self.cfg, is_train=True)

    def inference(self, n: int) -> List[Dict]:
        """``n`` inputs in Detectron2's inference format (image tensor + original height/width)."""
        out = []
        for k in range(n):
            d = self.dataset_dicts[k % len(self.dataset_dicts)]
            image = utils.read_image(d["file_name"], format=self.cfg.INPUT.FORMAT)
            tensor = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
            out.append({"image": tensor, "height": d["height"], "width": d["width"], "file_name": d["file_name"]})
        return out

    def training(self, n: int) -> List[Dict]:
        """``n`` training inputs mapped exactly as the trainer maps them (targets included)."""
        return [self._train_mapper(self.dataset_dicts[k % len(self.dataset_dicts)]) for k in range(n)]

    def close(self) -> None:
        self._tmp.cleanup()

    def __enter__(self) -> "SyntheticBatches":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
