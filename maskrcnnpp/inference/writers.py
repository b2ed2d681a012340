"""Write predicted nuclei in the formats biologists and challenge tools read.

Every writer takes a :class:`~maskrcnnpp.inference.instances.NucleiPrediction` (label image 1..K
+ one score per label) and writes atomically: to a temporary file beside the target, renamed into
place when complete, so an interrupted run never leaves a half-written output.

* :func:`write_label_image` -- 16-bit label image, PNG (Pillow) or TIFF (tifffile); 0 = background,
  nucleus k has value k (TIFF switches to 32 bits above 65,535 nuclei; PNG refuses).
* :func:`coco_results` / :func:`write_coco_results` -- COCO results JSON (list of ``image_id``,
  ``category_id`` 1 = nucleus, ``segmentation`` compressed RLE, ``bbox`` XYWH, ``score``), what
  Detectron2's ``COCOEvaluator`` writes and ``tools/evaluate.py`` / pycocotools read.
* :func:`write_kaggle` -- the Data Science Bowl 2018 RLE CSV (via :mod:`maskrcnnpp.utils.kaggle_rle`).
* :func:`nuclei_table` / :func:`write_nuclei_csv` -- one row per nucleus: id, area, centroid,
  bbox, score, mean intensity (scikit-image ``regionprops_table`` on the original intensities).
* :func:`write_imagej_rois` -- an ImageJ/Fiji ROI set (zip of ``.roi``, one polygon per nucleus,
  roifile), opened with File > Open or the ROI Manager.
* :func:`image_summary_row` / :func:`write_image_summary` -- one row per image: size, nuclei, scale
  and the trust columns of :mod:`maskrcnnpp.inference.trust` (kind, nucleus size, mean score, flags).
"""
from __future__ import annotations

import csv
import json
import logging
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import pycocotools.mask as mask_util

from ..utils.files import atomic_path
from .instances import NucleiPrediction

logger = logging.getLogger(__name__)

FORMATS = ("label_png", "label_tif", "coco", "kaggle_csv", "nuclei_csv", "imagej_roi", "image_summary")
# One row per image of the image_summary CSV: how it was predicted and how far it is from the
# model's training images (maskrcnnpp.inference.trust).
IMAGE_SUMMARY_COLUMNS = ("image", "height", "width", "nuclei", "scale", "diameter_source", "image_kind", "diameter_px",
                         "mean_score", "flags")
NUCLEUS_CATEGORY_ID = 1
NUCLEI_CSV_COLUMNS = (
    "id", "area", "centroid_y", "centroid_x", "bbox_min_y", "bbox_min_x", "bbox_max_y", "bbox_max_x",
    "score", "mean_intensity",
)


# ---------------------------------------------------------------------- label images
def write_label_image(path: str, prediction: NucleiPrediction) -> None:
    """Write the label image to ``path`` (.png: 16-bit; .tif/.tiff: 16-bit, 32-bit above 65,535 nuclei)."""
    labels = prediction.labels
    count = prediction.num_instances
    lower = path.lower()
    if lower.endswith((".tif", ".tiff")):
        import tifffile

        data = labels.astype(np.uint16 if count <= np.iinfo(np.uint16).max else np.uint32)
        with atomic_path(path) as tmp:
            tifffile.imwrite(tmp, data, compression="zlib")
    elif lower.endswith(".png"):
        if count > np.iinfo(np.uint16).max:
            raise ValueError(f"{count} nuclei do not fit a 16-bit PNG ({path}); write a TIFF label image instead")
        from PIL import Image

        with atomic_path(path) as tmp:
            Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
    else:
        raise ValueError(f"label image {path}: unknown extension (use .png, .tif or .tiff)")


# ---------------------------------------------------------------------- COCO results
def coco_results(image_id: Any, prediction: NucleiPrediction) -> List[Dict[str, Any]]:
    """COCO instance-segmentation results of one image (one entry per nucleus, label order)."""
    results = []
    for k, mask in enumerate(prediction.masks(), start=1):
        rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        results.append(
            {
                "image_id": image_id,
                "category_id": NUCLEUS_CATEGORY_ID,
                "segmentation": rle,
                "bbox": [float(v) for v in mask_util.toBbox(rle)],
                "score": float(prediction.scores[k - 1]),
            }
        )
    return results


def write_coco_results(path: str, results: List[Dict[str, Any]]) -> None:
    """Write a list of COCO results (from :func:`coco_results`) as JSON."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(results, f)


# ---------------------------------------------------------------------- per-image summary
def image_summary_row(image: str, prediction: NucleiPrediction) -> List[str]:
    """The :data:`IMAGE_SUMMARY_COLUMNS` of one prediction as text (empty where unknown, flags joined by "; ")."""
    info, trust = prediction.info, prediction.info.get("trust", {})

    def number(value: Any, digits: int) -> str:
        return "" if value is None else f"{float(value):.{digits}f}"

    return [image, str(prediction.image_size[0]), str(prediction.image_size[1]), str(prediction.num_instances),
            number(info.get("scale"), 4), str(info.get("diameter_source", "")), str(trust.get("image_kind", "")),
            number(trust.get("diameter_px"), 2), number(trust.get("mean_score"), 4), "; ".join(trust.get("flags", ()))]


def write_image_summary(path: str, rows: Sequence[Sequence[str]]) -> None:
    """Write :func:`image_summary_row` rows as CSV under the :data:`IMAGE_SUMMARY_COLUMNS` header."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(IMAGE_SUMMARY_COLUMNS)
            writer.writerows(rows)


# ---------------------------------------------------------------------- Kaggle CSV
def write_kaggle(path: str, predictions: Mapping[str, NucleiPrediction]) -> int:
    """Write the DSB 2018 RLE CSV (``ImageId,EncodedPixels``) of ``{image_id: prediction}``; return the rows."""
    from ..utils.kaggle_rle import write_kaggle_csv  # atomic itself: no half-written CSV

    return write_kaggle_csv(path, {image_id: p.labels for image_id, p in predictions.items()})


# ---------------------------------------------------------------------- per-nucleus table
def nuclei_table(prediction: NucleiPrediction, intensity: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Columns of the per-nucleus table (``NUCLEI_CSV_COLUMNS``), one row per label 1..K.

    Centroids are (row, column) pixel coordinates; bbox max values are exclusive; the mean
    intensity is over ``intensity`` (e.g. :func:`~maskrcnnpp.inference.image_io.intensity_image`
    of the original image), NaN when not given.
    """
    from skimage.measure import regionprops_table

    labels = prediction.labels
    properties = ["label", "area", "centroid", "bbox"] + (["intensity_mean"] if intensity is not None else [])
    table = regionprops_table(labels, intensity_image=intensity, properties=properties)
    ids = np.asarray(table["label"], dtype=np.int64)
    if not np.array_equal(ids, np.arange(1, prediction.num_instances + 1)):
        raise ValueError(f"label image holds labels {ids.tolist()[:10]}..., expected 1..{prediction.num_instances}")
    return {
        "id": ids,
        "area": np.asarray(table["area"], dtype=np.int64),
        "centroid_y": np.asarray(table["centroid-0"], dtype=np.float64),
        "centroid_x": np.asarray(table["centroid-1"], dtype=np.float64),
        "bbox_min_y": np.asarray(table["bbox-0"], dtype=np.int64),
        "bbox_min_x": np.asarray(table["bbox-1"], dtype=np.int64),
        "bbox_max_y": np.asarray(table["bbox-2"], dtype=np.int64),
        "bbox_max_x": np.asarray(table["bbox-3"], dtype=np.int64),
        "score": prediction.scores.astype(np.float64),
        "mean_intensity": (
            np.asarray(table["intensity_mean"], dtype=np.float64) if intensity is not None else np.full(ids.size, np.nan)
        ),
    }


def write_nuclei_csv(path: str, prediction: NucleiPrediction, intensity: Optional[np.ndarray] = None) -> int:
    """Write :func:`nuclei_table` as CSV (header ``NUCLEI_CSV_COLUMNS``); return the number of rows."""
    table = nuclei_table(prediction, intensity)
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(NUCLEI_CSV_COLUMNS)
            for k in range(table["id"].size):
                row = []
                for col in NUCLEI_CSV_COLUMNS:
                    value = table[col][k]
                    row.append(f"{value:.6g}" if isinstance(value, (float, np.floating)) else str(value))
                writer.writerow(row)
    return int(table["id"].size)


# ---------------------------------------------------------------------- ImageJ ROIs
def nucleus_outline(mask: np.ndarray) -> np.ndarray:
    """Polygon ``[n, 2]`` (x, y in ImageJ coordinates: pixel (r, c) spans [c, c+1) x [r, r+1)) around a mask.

    The 0.5 iso-line of the mask (marching squares, scikit-image) through pixel edge midpoints,
    so the polygon encloses each pixel centre of the mask. For a mask in several pieces (possible
    after overlaps were resolved) the outline of the largest piece is returned.
    """
    from skimage.measure import find_contours

    padded = np.pad(mask.astype(np.float32), 1)
    contours = find_contours(padded, 0.5)
    if not contours:
        raise ValueError("empty mask has no outline")

    def polygon_area(c: np.ndarray) -> float:
        y, x = c[:, 0], c[:, 1]
        return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))

    contour = max(contours, key=polygon_area)
    # padded (row, col) -> image (row, col) is -1; pixel centres sit at +0.5 in ImageJ coordinates
    return np.stack([contour[:, 1] - 0.5, contour[:, 0] - 0.5], axis=1)


def write_imagej_rois(path: str, prediction: NucleiPrediction) -> int:
    """Write one polygon ROI per nucleus (named ``nucleus-0001``...) to an ImageJ ROI zip; return the count."""
    import roifile

    if not path.lower().endswith(".zip"):
        raise ValueError(f"ImageJ ROI set {path} must end with .zip")
    from scipy import ndimage as ndi

    rois = []
    pieces = 0
    for k, window in enumerate(ndi.find_objects(prediction.labels), start=1):
        if window is None:
            raise ValueError(f"label {k} has no pixel")
        y0, x0 = window[0].start, window[1].start
        mask = prediction.labels[window] == k
        if ndi.label(mask)[1] > 1:
            pieces += 1
        points = nucleus_outline(mask) + np.array([x0, y0], dtype=np.float64)
        rois.append(roifile.ImagejRoi.frompoints(points.astype(np.float32), name=f"nucleus-{k:04d}"))
    if pieces:
        logger.info("%s: %d nuclei are in several pieces; their ROI outlines the largest piece", path, pieces)
    with atomic_path(path) as tmp:
        os.remove(tmp)  # roiwrite appends to an existing zip
        if rois:
            roifile.roiwrite(tmp, rois)
        else:
            import zipfile

            zipfile.ZipFile(tmp, "w").close()
    return len(rois)
