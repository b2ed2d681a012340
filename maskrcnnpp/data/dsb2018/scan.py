"""The plan of a conversion: which images, with which mask files or CSV rows, and which files are ignored."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from ...utils.kaggle_rle import KaggleLabels
from .corrections import correction
from .errors import DatasetError
from .source import Source

__all__ = ["IMAGE_EXTENSIONS", "ImageTask", "Plan", "is_junk", "scan"]

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


@dataclass
class ImageTask:
    """One image to convert and where its labels come from (mask files, or CSV rows in labels mode)."""

    image_id: str
    image_name: str
    mask_names: Tuple[str, ...] = ()
    rles: Optional[Tuple[str, ...]] = None  # labels mode
    rle_lines: Tuple[int, ...] = ()
    csv_size: Optional[Tuple[int, int]] = None
    labels_path: str = ""

    @property
    def work(self) -> int:
        """How many masks the task decodes (orders the tasks, biggest first)."""
        return len(self.rles) if self.rles is not None else len(self.mask_names)


@dataclass
class Plan:
    """The tasks of a conversion, the source files it ignores, and the corrections made while planning."""

    tasks: List[ImageTask]
    ignored_files: List[str]
    corrections: List[dict]
    notes: List[str] = field(default_factory=list)


@dataclass
class _Index:
    """The source's files sorted by role."""

    image_files: Dict[str, List[str]] = field(default_factory=dict)  # image id -> <id>/images/* files
    mask_files: Dict[str, List[str]] = field(default_factory=dict)  # image id -> <id>/masks/* files
    folders: Dict[str, str] = field(default_factory=dict)  # image id -> its <id> folder
    flat: Dict[str, List[str]] = field(default_factory=dict)  # stem -> image files outside that layout
    ignored: List[str] = field(default_factory=list)


def is_junk(parts: List[str]) -> bool:
    """Whether a file (its name split at '/') is never read: hidden files and macOS zip leftovers."""
    return "__MACOSX" in parts or parts[-1].startswith(".")


def _index(source: Source) -> _Index:
    """Sort the source's files into images, masks, flat images and ignored files."""
    index = _Index()
    for name in source.names():
        parts = name.split("/")
        if is_junk(parts):
            index.ignored.append(name)
        elif len(parts) >= 3 and parts[-2] in ("images", "masks"):
            image_id, folder = parts[-3], "/".join(parts[:-2])
            if index.folders.setdefault(image_id, folder) != folder:
                raise DatasetError(
                    f"{source.display(folder)}: image id {image_id} appears in two folders "
                    f"({index.folders[image_id]} and {folder})"
                )
            (index.image_files if parts[-2] == "images" else index.mask_files).setdefault(image_id, []).append(name)
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            index.flat.setdefault(Path(parts[-1]).stem, []).append(name)
        else:
            index.ignored.append(name)
    return index


def _check_folders(source: Source, index: _Index) -> None:
    """One image per <id>/images folder, and no masks without their image."""
    for image_id, names in index.image_files.items():
        if len(names) != 1:
            raise DatasetError(
                f"{source.display(index.folders[image_id] + '/images')}: {len(names)} files, expected one image"
            )
    orphan = sorted(set(index.mask_files) - set(index.image_files))
    if orphan:
        raise DatasetError(
            f"{source.display(index.folders[orphan[0]])}: masks without an image "
            f"(no {orphan[0]}/images/<image>.png); {len(orphan)} such folder(s)"
        )


def _plan_from_masks(source: Source, index: _Index) -> Plan:
    """Every <id>/images image with its <id>/masks files; flat images are ignored."""
    ignored = index.ignored + [n for names in index.flat.values() for n in names]
    if not index.image_files:
        raise DatasetError(f"{source.path}: no images found (expected <id>/images/<id>.png entries)")
    if not index.mask_files:
        raise DatasetError(
            f"{source.path}: no mask files (<id>/masks/<mask_id>.png) found; images-only data "
            "(e.g. stage1_test) need labels: the released RLE CSV", argument="labels",
        )
    for image_id in sorted(index.image_files):
        if image_id not in index.mask_files:
            folder = index.folders[image_id]
            raise DatasetError(f"{source.display(folder)}: image folder without masks (no {folder}/masks/<mask_id>.png)")
    tasks = [
        ImageTask(image_id, index.image_files[image_id][0], tuple(sorted(index.mask_files[image_id])))
        for image_id in sorted(index.image_files)
    ]
    return Plan(tasks, ignored, [])


def _images_for_labels(source: Source, index: _Index) -> Dict[str, str]:
    """Image id -> file, from the folder layout and flat files; each id given by one file."""
    images: Dict[str, str] = {k: v[0] for k, v in index.image_files.items()}
    for image_id, names in index.flat.items():
        if image_id in images or len(names) > 1:
            raise DatasetError(f"{source.display(names[0])}: image id {image_id} is given by more than one file")
        images[image_id] = names[0]
    return images


def _plan_from_labels(source: Source, index: _Index, labels: KaggleLabels) -> Plan:
    """Every image that has rows in the labels CSV, with those rows; mask files are ignored."""
    images = _images_for_labels(source, index)
    n_mask_files = sum(len(v) for v in index.mask_files.values())
    notes = [f"{n_mask_files} mask files in the source ignored: labels come from {labels.path}"] if n_mask_files else []
    missing = sorted(set(labels) - set(images))
    if missing:
        raise DatasetError(
            f"{labels.path}: {len(missing)} ImageId(s) have no image in {source.path}, e.g. " + ", ".join(missing[:5])
        )
    tasks, corrections = [], []
    for image_id in sorted(images):
        if image_id not in labels:
            corrections.append(correction("image_without_labels", image_id, source.display(images[image_id]),
                                          f"no row in {labels.path}"))
        elif labels.usage.get(image_id, "").lower() == "ignored":
            corrections.append(correction("usage_ignored", image_id, labels.path, "Usage=Ignored"))
        else:
            tasks.append(ImageTask(
                image_id, images[image_id], rles=tuple(labels[image_id]), rle_lines=tuple(labels.lines[image_id]),
                csv_size=labels.sizes.get(image_id), labels_path=labels.path,
            ))
    if not tasks:
        raise DatasetError(f"{labels.path}: no image of {source.path} has labels to convert")
    return Plan(tasks, index.ignored, corrections, notes)


def scan(source: Source, labels: Optional[KaggleLabels]) -> Plan:
    """Match images with their masks (or CSV rows); raise on structural problems."""
    index = _index(source)
    _check_folders(source, index)
    return _plan_from_masks(source, index) if labels is None else _plan_from_labels(source, index, labels)
