"""Read and check a COCO ground-truth file and a COCO results file before scoring them.

Used by ``tools/evaluate.py``. Every problem raises :class:`NucleiEvaluationInputError` with a
message naming the file and the offending entry, image id or key; fields that can be derived
exactly (an annotation's ``area``/``bbox`` from its mask, an image's size from its file) are
filled in and counted rather than rejected.
"""
from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pycocotools.mask as mask_util

from ..utils.files import read_json
from .label_images import NucleiEvaluationInputError, rle_run_lengths, segmentation_to_rle

logger = logging.getLogger(__name__)

__all__ = ["load_coco_gt", "load_coco_results", "file_stem", "unique_stems", "RESULTS_FORMAT_HINT"]

RESULTS_FORMAT_HINT = (
    "expected COCO results format: a JSON list of {\"image_id\", \"category_id\", \"score\", "
    "\"segmentation\": RLE {\"size\": [H, W], \"counts\": ...}} as Detectron2's COCOEvaluator "
    "writes to coco_instances_results.json"
)


def _read_json(path: str, what: str) -> Any:
    return read_json(path, f"{what} file", NucleiEvaluationInputError)


def _image_size_from_file(images_dir: Optional[str], image: Dict[str, Any], gt_path: str) -> Tuple[int, int]:
    if not images_dir:
        raise NucleiEvaluationInputError(
            f"{gt_path}: image id {image['id']!r} has no 'height'/'width'; give the image folder (images_dir) so they "
            "can be read from the image files"
        )
    path = os.path.join(images_dir, image.get("file_name", ""))
    if not os.path.isfile(path):
        raise NucleiEvaluationInputError(
            f"{gt_path}: image id {image['id']!r} has no 'height'/'width' and its file {path} does not exist"
        )
    from PIL import Image

    with Image.open(path) as im:  # reads the header only
        width, height = im.size
    return height, width


def load_coco_gt(path: str, images_dir: Optional[str] = None) -> Tuple[Dict[str, Any], Dict[str, int]]:
    """COCO ground truth from ``path``, completed where a field can be derived; and the fill counts.

    Requires ``images``, ``annotations`` and ``categories``; every annotation needs a known
    ``image_id`` and a ``segmentation``. Missing image sizes are read from ``images_dir``;
    missing annotation ``area``/``bbox``/``iscrowd`` are computed from the mask (``iscrowd`` = 0).
    """
    gt = _read_json(path, "ground-truth")
    if not isinstance(gt, dict) or not all(k in gt for k in ("images", "annotations", "categories")):
        found = sorted(gt)[:10] if isinstance(gt, dict) else type(gt).__name__
        raise NucleiEvaluationInputError(
            f"{path} is not a COCO ground-truth file: expected a JSON object with 'images', "
            f"'annotations' and 'categories' (found {found})"
        )
    if not gt["images"]:
        raise NucleiEvaluationInputError(f"{path} lists no images: nothing to score")
    fills = {"image_sizes": 0, "areas": 0, "bboxes": 0, "iscrowd": 0}
    images: Dict[Any, Dict[str, Any]] = {}
    for k, image in enumerate(gt["images"]):
        if not isinstance(image, dict) or "id" not in image:
            raise NucleiEvaluationInputError(f"{path}: images[{k}] has no 'id'")
        if "file_name" not in image:
            raise NucleiEvaluationInputError(f"{path}: image id {image['id']!r} has no 'file_name'")
        if image["id"] in images:
            raise NucleiEvaluationInputError(f"{path}: image id {image['id']!r} appears twice in 'images'")
        if "height" not in image or "width" not in image:
            image["height"], image["width"] = _image_size_from_file(images_dir, image, path)
            fills["image_sizes"] += 1
        images[image["id"]] = image
    category_ids = {c.get("id") for c in gt["categories"] if isinstance(c, dict)}
    for k, ann in enumerate(gt["annotations"]):
        where = f"{path}: annotations[{k}]"
        if not isinstance(ann, dict) or ann.get("image_id") not in images:
            raise NucleiEvaluationInputError(f"{where} refers to image id {ann.get('image_id')!r}, absent from 'images'")
        if ann.get("category_id") not in category_ids:
            raise NucleiEvaluationInputError(f"{where} has category_id {ann.get('category_id')!r}, absent from 'categories'")
        if "segmentation" not in ann:
            raise NucleiEvaluationInputError(f"{where} has no 'segmentation' (nuclei metrics need masks)")
        image = images[ann["image_id"]]
        if "area" not in ann or "bbox" not in ann:
            rle = segmentation_to_rle(ann["segmentation"], image["height"], image["width"], where)
            if "area" not in ann:
                ann["area"] = float(mask_util.area(rle))
                fills["areas"] += 1
            if "bbox" not in ann:
                ann["bbox"] = [float(v) for v in mask_util.toBbox(rle)]
                fills["bboxes"] += 1
        if "iscrowd" not in ann:
            ann["iscrowd"] = 0
            fills["iscrowd"] += 1
    filled = {k: v for k, v in fills.items() if v}
    if filled:
        logger.info("%s: filled in %s", path, ", ".join(f"{v} {k}" for k, v in filled.items()))
    return gt, fills


def coco_records(gt: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Detectron2-style dataset dicts (image_id, file_name, height, width, annotations) of a loaded COCO ground truth."""
    anns: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    for ann in gt["annotations"]:
        anns[ann["image_id"]].append(ann)
    return [{"image_id": image["id"], "file_name": image.get("file_name", "?"), "height": image["height"],
             "width": image["width"], "annotations": anns.get(image["id"], [])} for image in gt["images"]]


def group_results_file(path: str, what: str = "results file") -> Dict[Any, List[Dict[str, Any]]]:
    """A COCO results file (no ground truth to check it against) grouped by ``image_id`` as stored
    (1 and "1" are different images); a NucleiEvaluationInputError naming it (``what`` ``path``) if it is not one."""
    results = read_json(path, what, NucleiEvaluationInputError)
    if not isinstance(results, list) or any(not isinstance(r, dict) or "image_id" not in r or "segmentation" not in r
                                            for r in results):
        raise NucleiEvaluationInputError(f"{what} {path} is not a COCO results file (a JSON list of entries with "
                                         "image_id, segmentation, score)")
    grouped: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    for r in results:
        grouped[r["image_id"]].append(r)
    return dict(grouped)


def file_stem(file_name: str) -> str:
    """``file_name`` without folder and extension: the image id tools/predict.py writes."""
    return os.path.splitext(os.path.basename(str(file_name)))[0]


def unique_stems(images: Sequence[Tuple[Any, str]]) -> Dict[str, Any]:
    """``{file stem: image id}`` of ``(image id, file name)`` pairs, leaving out stems two images share."""
    by_stem: Dict[str, List[Any]] = defaultdict(list)
    for image_id, file_name in images:
        by_stem[file_stem(file_name)].append(image_id)
    return {stem: ids[0] for stem, ids in by_stem.items() if len(ids) == 1}


def _ids_from_file_stems(results: List[Dict[str, Any]], gt: Dict[str, Any], path: str) -> List[Dict[str, Any]]:
    """``results`` with image ids given as file stems (tools/predict.py's) replaced by the ground truth's ids.

    Applies only when no result id is a ground-truth id (ids are compared with their types: 1 is
    not "1") and every one is the stem of exactly one ground-truth ``file_name``; otherwise
    ``results`` are returned unchanged (and checked by id).
    """
    ids = {image["id"] for image in gt["images"]}
    used = {res["image_id"] for res in results}
    if not used or used & ids:
        return results
    stems = unique_stems([(image["id"], image["file_name"]) for image in gt["images"]])
    if not all(isinstance(i, str) and i in stems for i in used):
        return results
    logger.info("%s: image ids of %d image(s) matched to the ground truth by file-name stem", path, len(used))
    return [dict(res, image_id=stems[res["image_id"]]) for res in results]


def _check_result_entries(results: Any, path: str) -> None:
    """A NucleiEvaluationInputError naming ``path`` unless ``results`` is a list of COCO result entries."""
    if isinstance(results, dict):
        kind = "COCO ground truth (an object with 'annotations')" if "annotations" in results else "a JSON object"
        raise NucleiEvaluationInputError(f"{path} is {kind}, not COCO results format; {RESULTS_FORMAT_HINT}")
    if not isinstance(results, list):
        raise NucleiEvaluationInputError(f"{path} is not COCO results format; {RESULTS_FORMAT_HINT}")
    for k, res in enumerate(results):
        if not isinstance(res, dict):
            raise NucleiEvaluationInputError(f"{path}: entry {k} is not an object; {RESULTS_FORMAT_HINT}")
        missing = [key for key in ("image_id", "category_id", "score", "segmentation") if key not in res]
        if missing:
            raise NucleiEvaluationInputError(
                f"{path}: entry {k} lacks {', '.join(repr(m) for m in missing)}; {RESULTS_FORMAT_HINT}"
            )
        if not isinstance(res["segmentation"], dict):
            raise NucleiEvaluationInputError(
                f"{path}: entry {k} has a {type(res['segmentation']).__name__} segmentation, not an RLE; "
                f"{RESULTS_FORMAT_HINT}"
            )
        if isinstance(res["score"], bool) or not isinstance(res["score"], (int, float)):
            raise NucleiEvaluationInputError(f"{path}: entry {k} has a non-numeric score {res['score']!r}")
        if not math.isfinite(res["score"]):  # NaN would be dropped by the nuclei metrics but ranked by COCO AP
            raise NucleiEvaluationInputError(f"{path}: entry {k} has a non-finite score {res['score']!r}")


def _checked_result(res: Dict[str, Any], k: int, image: Dict[str, Any], path: str) -> Dict[str, Any]:
    """Entry ``k`` with a compressed RLE (str counts) of its image's size, a float score and a bbox."""
    rle = segmentation_to_rle(
        res["segmentation"], image["height"], image["width"], f"{path}: entry {k} (image id {res['image_id']!r})",
    )
    counts = rle["counts"]
    rle = {"size": [int(v) for v in rle["size"]], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    # every entry, whatever its score: the nuclei metrics decode only those above the threshold,
    # but COCO AP uses them all
    try:
        runs = rle_run_lengths(rle)
    except ValueError as e:
        raise NucleiEvaluationInputError(f"{path}: entry {k} (image id {res['image_id']!r}): {e}") from None
    if runs.sum() != image["height"] * image["width"] or (runs < 0).any():
        raise NucleiEvaluationInputError(
            f"{path}: entry {k} (image id {res['image_id']!r}): RLE counts cover {int(runs.sum())} pixels, "
            f"not {image['height'] * image['width']} ({image['height']} x {image['width']})"
        )
    bbox = res.get("bbox")
    if bbox is None:
        bbox = [float(v) for v in mask_util.toBbox(rle)]
    return {"image_id": res["image_id"], "category_id": res["category_id"], "score": float(res["score"]),
            "segmentation": rle, "bbox": bbox}


def load_coco_results(path: str, gt: Dict[str, Any]) -> Dict[Any, List[Dict[str, Any]]]:
    """COCO instance-segmentation results from ``path`` checked against ``gt``, grouped by image id.

    Image ids are ``gt``'s ids, or all of them ``gt`` file-name stems (as tools/predict.py writes
    them), which are mapped to ``gt``'s ids. Rejects a file that is not COCO results format,
    results for image ids absent from ``gt``,
    category ids absent from ``gt``, and RLEs whose size is not their image's ``[height, width]``.
    Each returned result has a compressed RLE ``segmentation`` (str counts), a float ``score``
    and a ``bbox`` (computed from the mask when absent).
    """
    results = _read_json(path, "results")
    _check_result_entries(results, path)
    images = {image["id"]: image for image in gt["images"]}
    results = _ids_from_file_stems(results, gt, path)
    absent = sorted({res["image_id"] for res in results if res["image_id"] not in images}, key=repr)
    if absent:
        shown = ", ".join(repr(i) for i in absent[:10]) + (f" and {len(absent) - 10} more" if len(absent) > 10 else "")
        raise NucleiEvaluationInputError(
            f"{path}: predictions for {len(absent)} image id(s) absent from the ground truth: {shown} "
            "(image ids are matched to the ground truth's ids, or all of them to its file-name stems)"
        )
    category_ids = {c["id"] for c in gt["categories"]}
    by_image: Dict[Any, List[Dict[str, Any]]] = defaultdict(list)
    for k, res in enumerate(results):
        if res["category_id"] not in category_ids:
            raise NucleiEvaluationInputError(
                f"{path}: entry {k} has category_id {res['category_id']!r}, absent from the ground truth's "
                f"categories {sorted(category_ids)}"
            )
        by_image[res["image_id"]].append(_checked_result(res, k, images[res["image_id"]], path))
    return dict(by_image)
