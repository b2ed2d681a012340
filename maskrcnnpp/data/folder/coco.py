"""Images plus a COCO instances JSON: reading and checking the JSON, and its segmentations -> candidates.

Polygons, uncompressed and compressed RLE are accepted; every category is taken as "nucleus";
``iscrowd`` annotations are dropped (a counted correction).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
from pycocotools import mask as mask_util

from ...utils.kaggle_rle import coco_rle_from_runs
from ..dsb2018.convert import Candidate
from ..dsb2018.corrections import correction
from ..dsb2018.errors import DatasetError

__all__ = ["CocoFile", "coco_candidates", "is_coco_dataset", "parse_coco"]

# (annotation id, segmentation, iscrowd)
Segmentation = Tuple[object, object, int]


@dataclass
class CocoFile:
    """The parts of a COCO JSON the converter uses: images (by their ``id``), their annotations, categories."""

    display: str
    images: Dict[object, dict]  # COCO image id -> {"file_name", "height", "width"}
    annotations: Dict[object, List[Segmentation]] = field(default_factory=dict)
    categories: List[str] = field(default_factory=list)


def is_coco_dataset(obj: object) -> bool:
    """Whether a parsed JSON looks like a COCO dataset (not, say, a results list or a manifest)."""
    return isinstance(obj, dict) and isinstance(obj.get("images"), list) and isinstance(obj.get("annotations"), list)


def parse_coco(data: bytes, display: str) -> CocoFile:
    """The checked contents of a COCO instances JSON; DatasetError naming the file and entry at fault."""
    try:
        obj = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DatasetError(f"{display}: not valid JSON: {e}") from None
    if not is_coco_dataset(obj):
        raise DatasetError(f"{display}: not a COCO instances JSON (expected an object with 'images' and "
                           "'annotations' lists)")
    images: Dict[object, dict] = {}
    for k, im in enumerate(obj["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise DatasetError(f"{display}: images[{k}] needs an 'id' and a 'file_name'")
        if im["id"] in images:
            raise DatasetError(f"{display}: images[{k}]: image id {im['id']!r} appears twice")
        images[im["id"]] = {"file_name": im["file_name"], "height": im.get("height"), "width": im.get("width")}
    coco = CocoFile(display, images, {i: [] for i in images})
    for k, ann in enumerate(obj["annotations"]):
        if not isinstance(ann, dict) or "segmentation" not in ann:
            raise DatasetError(f"{display}: annotations[{k}] has no 'segmentation' (boxes alone are no masks)")
        if ann.get("image_id") not in images:
            raise DatasetError(f"{display}: annotations[{k}]: image_id {ann.get('image_id')!r} is in no entry of 'images'")
        coco.annotations[ann["image_id"]].append((ann.get("id", k), ann["segmentation"], int(bool(ann.get("iscrowd", 0)))))
    coco.categories = [str(c.get("name", c.get("id"))) for c in obj.get("categories") or [] if isinstance(c, dict)]
    return coco


def _rle(segmentation: object, height: int, width: int, where: str) -> dict:
    if isinstance(segmentation, list):
        if not all(isinstance(p, list) and len(p) >= 6 and len(p) % 2 == 0 for p in segmentation):
            raise DatasetError(f"{where}: polygons must be lists of at least 3 x,y pairs")
        if not segmentation:
            return coco_rle_from_runs(np.zeros(0), np.zeros(0), height, width)  # dropped as empty later
        return mask_util.merge(mask_util.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise DatasetError(f"{where}: RLE of size {segmentation['size']} (height, width) but the image is "
                               f"{height}x{width}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            return mask_util.frPyObjects(segmentation, height, width)
        if isinstance(counts, str):
            return {"size": [height, width], "counts": counts.encode("ascii")}
    raise DatasetError(f"{where}: segmentation is neither polygons nor an RLE {{'size', 'counts'}}")


def coco_candidates(segmentations: Tuple[Segmentation, ...], coco_display: str, image_id: str,
                    height: int, width: int, corrections: List[dict]) -> List[Candidate]:
    """One candidate (provenance ``coco_id``) per annotation of an image; crowd regions dropped."""
    candidates = []
    for ann_id, segmentation, iscrowd in segmentations:
        where = f"{coco_display}: annotation {ann_id}"
        if iscrowd:
            corrections.append(correction("crowd_dropped", image_id, where, "iscrowd 1"))
            continue
        try:
            rle = _rle(segmentation, height, width, where)
            mask_util.area(rle)  # a malformed counts string fails here, not in the training loader
        except (TypeError, ValueError, OverflowError, UnicodeEncodeError) as e:
            raise DatasetError(f"{where}: unreadable segmentation ({e})") from None
        candidates.append(("coco_id", ann_id, where, rle))
    return candidates
