"""Where predictions go: the output formats, their file names in an output folder, and the writer
that sends each prediction to every chosen format. One place owns both (as Cellpose's ``io``), so
``tools/predict.py``, the predictor's users and later tools name and write files the same way.

Per image ``<stem>``: ``label_png`` -> ``<stem>_labels.png``, ``label_tif`` -> ``<stem>_labels.tif``,
``nuclei_csv`` -> ``<stem>_nuclei.csv``, ``imagej_roi`` -> ``<stem>_rois.zip``; for all images
together: ``coco`` -> ``coco_results.json``, ``kaggle_csv`` -> ``kaggle_submission.csv``,
``image_summary`` -> ``image_summary.csv`` (one row per image, with when not to trust it).
"""
from __future__ import annotations

import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import UserError
from .image_io import intensity_image
from .instances import NucleiPrediction
from .writers import (
    FORMATS,
    coco_results,
    image_summary_row,
    write_coco_results,
    write_image_summary,
    write_imagej_rois,
    write_kaggle,
    write_label_image,
    write_nuclei_csv,
)

__all__ = ["COCO_FILE", "DEFAULT_FORMATS", "FORMATS", "IMAGE_SUMMARY_FILE", "KAGGLE_FILE", "PER_IMAGE_FILES", "PredictionWriter",
           "SHARD_RECORD", "earlier_outputs", "output_names", "parse_formats", "shard_file",
           "shard_file_pattern"]

PER_IMAGE_FILES = {
    "label_png": "{stem}_labels.png",
    "label_tif": "{stem}_labels.tif",
    "nuclei_csv": "{stem}_nuclei.csv",
    "imagej_roi": "{stem}_rois.zip",
}
COCO_FILE = "coco_results.json"
KAGGLE_FILE = "kaggle_submission.csv"
IMAGE_SUMMARY_FILE = "image_summary.csv"
DEFAULT_FORMATS = "label_png,coco,nuclei_csv,image_summary"
ALL_IMAGES_FILES = {"coco": COCO_FILE, "kaggle_csv": KAGGLE_FILE, "image_summary": IMAGE_SUMMARY_FILE}
# Shard K of N (inference.shards) writes its share of the all-images files under these names, and a
# record of what it wrote last, which marks the shard complete for the merge.
SHARD_RECORD = "predict_shard.json"


def shard_file(name: str, index: int, count: int) -> str:
    """``name`` of shard ``index`` of ``count``, e.g. ``coco_results.shard-2-of-8.json``."""
    stem, ext = os.path.splitext(name)
    return f"{stem}.shard-{index}-of-{count}{ext}"


def shard_file_pattern(name: str) -> str:
    """A regular expression matching :func:`shard_file` names of ``name``, capturing index and count."""
    stem, ext = os.path.splitext(name)
    return rf"{re.escape(stem)}\.shard-(\d+)-of-(\d+){re.escape(ext)}"


def parse_formats(text: str) -> List[str]:
    """The formats of a comma-separated list, in order, once each; a UserError naming unknown ones."""
    formats = [f.strip() for f in text.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UserError(f"unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(FORMATS)}")
    return list(dict.fromkeys(formats))


def output_names(stems: Sequence[str], formats: Sequence[str]) -> List[str]:
    """The file names written for images ``stems`` in ``formats``."""
    names = [name for fmt, name in ALL_IMAGES_FILES.items() if fmt in formats]
    names += [PER_IMAGE_FILES[fmt].format(stem=stem) for stem in stems for fmt in formats if fmt in PER_IMAGE_FILES]
    return names


def earlier_outputs(folder: str, stems: Sequence[str], formats: Sequence[str]) -> Tuple[List[str], List[str]]:
    """Files in ``folder`` named like prediction outputs, and those of them a run on ``stems`` in
    ``formats`` would not rewrite (they would pass for part of its results)."""
    suffixes = tuple(name.format(stem="") for name in PER_IMAGE_FILES.values())
    present = sorted(n for n in os.listdir(folder)
                     if (n in ALL_IMAGES_FILES.values() or (n.endswith(suffixes) and not n.startswith(".")))
                     and os.path.isfile(os.path.join(folder, n)))
    rewritten = set(output_names(stems, formats))
    return present, [n for n in present if n not in rewritten]


class PredictionWriter:
    """Writes predictions into ``folder`` in ``formats``: per-image files as each image comes
    (:meth:`add`), the files of all images together at :meth:`close`. Every file is written atomically."""

    def __init__(self, folder: str, formats: Sequence[str], shard: Optional[Tuple[int, int]] = None):
        """``shard`` (index, count): write the all-images files under their shard names (:func:`shard_file`)."""
        self.folder = folder
        self.formats = list(formats)
        self.shard = shard
        self._coco: List[dict] = []
        self._kaggle: Dict[str, NucleiPrediction] = {}
        self._summary: List[List[str]] = []

    def path(self, fmt: str, stem: str = "") -> str:
        """The file ``fmt`` is written to (for image ``stem`` when it is a per-image format)."""
        name = ALL_IMAGES_FILES.get(fmt)
        if name is None:
            name = PER_IMAGE_FILES[fmt].format(stem=stem)
        elif self.shard is not None:
            name = shard_file(name, *self.shard)
        return os.path.join(self.folder, name)

    def add(self, stem: str, prediction: NucleiPrediction, image: Optional[np.ndarray] = None) -> None:
        """Write ``prediction`` of image ``stem`` (``image``: its pixels, for the mean intensities)."""
        for fmt in self.formats:
            if fmt in ("label_png", "label_tif"):
                write_label_image(self.path(fmt, stem), prediction)
            elif fmt == "nuclei_csv":
                write_nuclei_csv(self.path(fmt, stem), prediction, None if image is None else intensity_image(image))
            elif fmt == "imagej_roi":
                write_imagej_rois(self.path(fmt, stem), prediction)
            elif fmt == "coco":
                self._coco.extend(coco_results(stem, prediction))
            elif fmt == "kaggle_csv":
                self._kaggle[stem] = prediction
            elif fmt == "image_summary":
                self._summary.append(image_summary_row(stem, prediction))

    def close(self) -> None:
        """Write the files that hold all images (COCO results, Kaggle CSV, image summary)."""
        if "coco" in self.formats:
            write_coco_results(self.path("coco"), self._coco)
        if "kaggle_csv" in self.formats:
            write_kaggle(self.path("kaggle_csv"), self._kaggle)
        if "image_summary" in self.formats:
            write_image_summary(self.path("image_summary"), self._summary)
