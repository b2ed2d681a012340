"""Helpers of the semantic-baseline tests: config loading and hand-made synthetic nuclei."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np
import pycocotools.mask as mask_util
from PIL import Image

from maskrcnnpp import get_maskrcnnpp_cfg, resolve_config_path
from dsb2018_data import disk_labels

TINY_CONFIGS = ["unet_tiny.yaml", "unetplus_tiny.yaml", "unetpp_tiny.yaml", "unet3p_tiny.yaml"]


def make_cfg(name: str = "unetpp_tiny.yaml", **overrides):
    """A config from configs/ on the CPU; ``A__B__C=value`` sets cfg.A.B.C."""
    import maskrcnnpp.modeling.semantic  # noqa: F401  (registers SemanticUNet)

    cfg = get_maskrcnnpp_cfg()
    cfg.merge_from_file(resolve_config_path(name))
    cfg.MODEL.DEVICE = "cpu"
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split("__")
        for p in parents:
            node = getattr(node, p)
        setattr(node, leaf, value)
    return cfg




def random_nuclei(rng: np.random.Generator, size: int, count: int) -> Tuple[np.ndarray, np.ndarray]:
    """(uint8 RGB image, labels): ``count`` bright discs (r 5..10, some touching) on a noisy dark field."""
    discs = [(rng.uniform(8, size - 8), rng.uniform(8, size - 8), rng.uniform(5, 10)) for _ in range(count)]
    labels = disk_labels((size, size), discs)
    image = rng.normal(30, 8, (size, size)) + 150 * (labels > 0) + rng.normal(0, 10, (size, size))
    image = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=2), labels


def write_dataset(folder: Path, num_images: int = 3, size: int = 96, seed: int = 0) -> List[dict]:
    """PNG images + Detectron2 dataset dicts whose annotations are compressed-RLE instance masks."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dicts = []
    for n in range(num_images):
        image, labels = random_nuclei(rng, size, count=8)
        path = folder / f"img{n}.png"
        Image.fromarray(image).save(path)
        annos = []
        for k in range(1, labels.max() + 1):
            mask = labels == k
            if not mask.any():
                continue
            rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            ys, xs = np.nonzero(mask)
            annos.append(
                {
                    "segmentation": rle,
                    "bbox": [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)],
                    "bbox_mode": 0,  # XYXY_ABS
                    "category_id": 0,
                    "iscrowd": 0,
                }
            )
        dicts.append({"file_name": str(path), "image_id": n, "height": size, "width": size, "annotations": annos})
    return dicts
