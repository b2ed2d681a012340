"""One image: write its RGB PNG, turn its masks (or CSV rows) into COCO RLE, drop duplicates and overlaps.

:func:`write_rgb_png`, :func:`mask_file_candidates` and :func:`image_record` are the steps the
folder converter (:mod:`maskrcnnpp.data.folder`) shares.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from ...utils.kaggle_rle import RLEError, coco_rle_from_crop, coco_rle_from_runs, kaggle_to_coco_rle
from .corrections import correction
from .decode import Decoded, as_array, image_to_rgb8, load, size_of
from .errors import DatasetError
from .scan import ImageTask
from .source import Source

__all__ = ["Candidate", "convert_image", "image_record", "mask_file_candidates", "write_rgb_png"]

# (provenance key, provenance value, file for messages, RLE)
Candidate = Tuple[str, object, str, dict]


def convert_image(task: ImageTask, source: Source, images_dir: str, compress_level: int) -> dict:
    """Convert one image and its masks: write the RGB PNG, return its COCO annotations and corrections."""
    corrections: List[dict] = []
    height, width, desc = write_rgb_png(task.image_id, task.image_name, source, images_dir, compress_level,
                                        corrections)
    if task.csv_size is not None and task.csv_size != (height, width):
        raise DatasetError(
            f"{task.labels_path}:{task.rle_lines[0] if task.rle_lines else '?'}: image {task.image_id} is "
            f"{task.csv_size[0]}x{task.csv_size[1]} (Height x Width) in the CSV but {height}x{width} in "
            f"{source.display(task.image_name)}"
        )
    if task.rles is None:
        candidates = mask_file_candidates(task.image_id, task.mask_names, source, height, width, corrections)
    else:
        candidates = _csv_candidates(task, height, width)
    return image_record(task.image_id, height, width, desc, candidates, corrections)


def write_rgb_png(image_id: str, image_name: str, source: Source, images_dir: str, compress_level: int,
                  corrections: List[dict]) -> Tuple[int, int, str]:
    """Decode ``image_name``, write it as ``images_dir/<image_id>.png`` (8-bit RGB); its height, width, format."""
    display = source.display(image_name)
    arr, desc, mode = as_array(load(source.read(image_name), display))
    rgb = image_to_rgb8(arr, mode, image_id, display, corrections)
    del arr
    height, width = rgb.shape[:2]
    Image.fromarray(rgb).save(os.path.join(images_dir, f"{image_id}.png"), format="PNG",
                              compress_level=compress_level)
    return height, width, desc


def image_record(image_id: str, height: int, width: int, desc: str, candidates: List[Candidate],
                 corrections: List[dict]) -> dict:
    """The converted image: its candidate masks without empties, duplicates and overlaps, as COCO annotations."""
    kept = _remove_overlaps(_drop_empty_and_duplicates(candidates, image_id, corrections), image_id, corrections)
    annotations = [{
        key: value,
        "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
        "area": int(mask_util.area(rle)),
        "bbox": [float(v) for v in mask_util.toBbox(rle)],
    } for key, value, _, rle in kept]
    return {"image_id": image_id, "height": height, "width": width, "format": desc,
            "annotations": annotations, "corrections": corrections}


def mask_file_candidates(image_id: str, mask_names: Sequence[str], source: Source, height: int, width: int,
                         corrections: List[dict]) -> List[Candidate]:
    """One candidate per mask file (foreground = nonzero), each checked to have the image's size."""
    candidates = []
    for name in mask_names:
        mdisplay = source.display(name)
        decoded = load(source.read(name), mdisplay)
        if size_of(decoded) != (height, width):
            mh, mw = size_of(decoded)
            raise DatasetError(f"{mdisplay}: mask is {mh}x{mw} but its image is {height}x{width}")
        rle = _mask_rle(decoded, image_id, mdisplay, corrections)
        candidates.append(("mask_id", Path(name).stem, mdisplay, rle))
    return candidates


def _csv_candidates(task: ImageTask, height: int, width: int) -> List[Candidate]:
    candidates = []
    for rle_text, line in zip(task.rles, task.rle_lines):
        try:
            rle = kaggle_to_coco_rle(rle_text, (height, width))
        except RLEError as e:
            raise DatasetError(f"{task.labels_path}:{line}: image {task.image_id} ({height}x{width}): {e}") from None
        candidates.append(("csv_line", line, f"{task.labels_path}:{line}", rle))
    return candidates


def _mask_rle(decoded: Decoded, image_id: str, display: str, corrections: List[dict]) -> dict:
    """COCO RLE of a decoded mask file (foreground = nonzero), recording non-binary/colour masks."""
    height, width = size_of(decoded)
    if isinstance(decoded, Image.Image) and decoded.mode in ("L", "1"):
        # Common case: crop to the nonzero box in C before touching pixels in NumPy.
        box = decoded.getbbox()
        if box is None:
            return coco_rle_from_runs(np.zeros(0), np.zeros(0), height, width)
        left, top = box[0], box[1]
        values = np.asarray(decoded.crop(box))
    else:
        arr, _, mode = as_array(decoded)
        if arr.ndim == 3:
            arr = (arr[..., :-1] if arr.shape[2] in (2, 4) else arr).max(axis=2)
            corrections.append(correction("mask_not_grey", image_id, display, f"mode {mode}"))
        rows, cols = np.flatnonzero(arr.any(axis=1)), np.flatnonzero(arr.any(axis=0))
        if rows.size == 0:
            return coco_rle_from_runs(np.zeros(0), np.zeros(0), height, width)
        top, left = int(rows[0]), int(cols[0])
        values = arr[top : rows[-1] + 1, left : cols[-1] + 1]
    foreground = values != 0
    peak = values.max()
    if np.count_nonzero(values == peak) != np.count_nonzero(foreground):
        found = np.unique(values[foreground])
        shown = ", ".join(str(v) for v in found[:6]) + (" ..." if found.size > 6 else "")
        corrections.append(correction("mask_not_binary", image_id, display,
                                      f"{found.size} nonzero values ({shown}); foreground = nonzero"))
    return coco_rle_from_crop(foreground, top, left, height, width)


def _drop_empty_and_duplicates(candidates: List[Candidate], image_id: str, corrections: List[dict]) -> List[Candidate]:
    kept: List[Candidate] = []
    seen: Dict[bytes, str] = {}
    for key, value, where, rle in candidates:
        if mask_util.area(rle) == 0:
            corrections.append(correction("empty_mask", image_id, where, "no foreground pixel"))
            continue
        first = seen.setdefault(rle["counts"], where)
        if first != where:
            corrections.append(correction("duplicate_mask", image_id, where, f"same pixels as {first}"))
            continue
        kept.append((key, value, where, rle))
    return kept


def _remove_overlaps(kept: List[Candidate], image_id: str, corrections: List[dict]) -> List[Candidate]:
    """Give every pixel claimed by several masks to the first of them; drop masks left empty."""
    if len(kept) < 2:
        return kept
    rles = [k[3] for k in kept]
    union = mask_util.merge(rles, intersect=False)
    # Per-RLE areas: pycocotools' area() of a list of 256+ RLEs overflows under NumPy 2.
    if int(mask_util.area(union)) == sum(int(mask_util.area(r)) for r in rles):
        return kept  # the common case: no pixel claimed twice
    height, width = rles[0]["size"]
    claimed = np.zeros((height, width), dtype=bool)
    out = []
    for key, value, where, rle in kept:
        mask = mask_util.decode(rle).astype(bool)
        own = mask & ~claimed
        removed = int(np.count_nonzero(mask)) - int(np.count_nonzero(own))
        if removed and not own.any():
            corrections.append(correction("mask_emptied_by_overlap", image_id, where,
                                          f"all {removed} pixels belong to earlier masks"))
            continue
        if removed:
            corrections.append(correction("overlap_removed", image_id, where,
                                          f"{removed} pixels shared with earlier masks removed"))
            rle = _encode(own)
        claimed |= own
        out.append((key, value, where, rle))
    return out


def _encode(mask: np.ndarray) -> dict:
    """pycocotools compressed RLE of a boolean mask."""
    return mask_util.encode(np.asfortranarray(mask.view(np.uint8)))
