"""Builders shared by the evaluation tests and the benchmark: COCO files from label images.

``coco_gt_from_label_images`` writes a COCO ground-truth dict (RLE via pycocotools);
``coco_results_from_gt`` turns ground truth into a COCO results list (each object predicted
exactly); ``dsb_zip_label_images`` reads a few images' nuclei from the DSB 2018 zip.
"""
from __future__ import annotations

import io
import os
import zipfile
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dsb_zip_path() -> str:
    """The DSB 2018 stage1_train zip: $MASKRCNNPP_DSB2018_ZIP or <repo>/../shared/data/dsb2018/."""
    default = os.path.join(REPO, "..", "shared", "data", "dsb2018", "stage1_train.zip")
    return os.environ.get("MASKRCNNPP_DSB2018_ZIP", default)


def encode_mask(mask: np.ndarray) -> dict:
    """Compressed RLE (str counts) of a boolean mask."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_gt_from_masks(images: Dict[int, Tuple[str, Sequence[np.ndarray], Tuple[int, int]]]) -> dict:
    """COCO ground truth from {image_id: (file_name, list of bool masks, (H, W))}; one category 'nucleus'."""
    gt = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "nucleus"}]}
    ann_id = 1
    for image_id, (file_name, masks, (height, width)) in images.items():
        gt["images"].append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for mask in masks:
            rle = encode_mask(mask)
            gt["annotations"].append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(mask_util.area(rle)),
                    "bbox": [float(v) for v in mask_util.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
            ann_id += 1
    return gt


def coco_gt_from_label_images(labels: Dict[int, np.ndarray]) -> dict:
    """COCO ground truth with one annotation per object of each label image."""
    images = {}
    for image_id, lab in labels.items():
        ids = [i for i in np.unique(lab) if i > 0]
        images[image_id] = (f"{image_id}.png", [lab == i for i in ids], lab.shape)
    return coco_gt_from_masks(images)


def coco_results_from_gt(gt: dict, scores: Optional[Sequence[float]] = None) -> List[dict]:
    """COCO results predicting every ground-truth annotation exactly (score 1 unless given)."""
    results = []
    for k, ann in enumerate(gt["annotations"]):
        results.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "segmentation": dict(ann["segmentation"]),
                "bbox": list(ann["bbox"]),
                "score": 1.0 if scores is None else float(scores[k]),
            }
        )
    return results


def dsb_zip_masks(zip_path: str, num_images: int, min_nuclei: int = 0) -> Dict[int, Tuple[str, List[np.ndarray], Tuple[int, int]]]:
    """The first ``num_images`` images (sorted DSB ids) of the zip with their nucleus masks.

    Images with fewer than ``min_nuclei`` masks are skipped. Integer image ids 1..N keep the
    COCO files simple; the file name is the DSB id.
    """
    from PIL import Image

    with zipfile.ZipFile(zip_path) as zf:
        masks_by_image: Dict[str, List[str]] = defaultdict(list)
        image_entry: Dict[str, str] = {}
        for name in zf.namelist():
            parts = name.split("/")
            if len(parts) == 3 and parts[2].endswith(".png"):
                if parts[1] == "masks":
                    masks_by_image[parts[0]].append(name)
                elif parts[1] == "images":
                    image_entry[parts[0]] = name
        out = {}
        for dsb_id in sorted(image_entry):
            if len(out) == num_images:
                break
            if len(masks_by_image[dsb_id]) < min_nuclei:
                continue
            with Image.open(io.BytesIO(zf.read(image_entry[dsb_id]))) as im:
                width, height = im.size
            masks = [np.asarray(Image.open(io.BytesIO(zf.read(m)))) > 0 for m in sorted(masks_by_image[dsb_id])]
            out[len(out) + 1] = (f"{dsb_id}.png", masks, (height, width))
    return out
