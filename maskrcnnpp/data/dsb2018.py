"""Data Science Bowl 2018 nuclei (BBBC038) -> COCO instances, with the paper's image split.

Sources, as users download them:

* the Kaggle zip or its extracted folder: ``<id>/images/<id>.png`` and one binary PNG per
  nucleus in ``<id>/masks/<mask_id>.png`` (any leading folder inside the zip is fine);
* images only (``<id>/images/<id>.png`` or ``<id>.png``) plus ``labels``: the released RLE CSV
  (``stage1_train_labels.csv``, ``stage1_solution.csv``, ``stage2_solution_final.csv``). Mask
  files in the source are then ignored.

Output (``prepare_dsb2018``)::

    OUT/images/<id>.png            RGB, 8-bit, lossless
    OUT/annotations/all.json       COCO instances: category "nucleus", compressed-RLE segmentation
    OUT/annotations/{train,val,test}.json   the split (by image), unless split=None
    OUT/manifest.json              counts, source sha256, every correction, output checksums

Bad input raises :class:`DatasetError` naming the file, or is corrected, counted, logged and
listed in the manifest (see ``CORRECTION_KINDS``). The output is built in a hidden sibling folder
and renamed into place, so an interrupted run never leaves a complete-looking dataset; re-running
on the same source and options is a no-op, and a different dataset already in OUT is an error.
"""
from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import time
import uuid
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from pycocotools import mask as mask_util

from ..utils.files import partial_dir, remove_stale_partials
from ..utils.kaggle_rle import KaggleCsvError, RLEError, coco_rle_from_crop, coco_rle_from_runs, kaggle_to_coco_rle, read_kaggle_csv

__all__ = [
    "DatasetError",
    "PrepareResult",
    "DEFAULT_SPLIT",
    "SPLIT_NAMES",
    "CORRECTION_KINDS",
    "prepare_dsb2018",
    "parse_split",
    "split_image_ids",
    "sha256_of_file",
    "converter_digest",
]

logger = logging.getLogger(__name__)

FORMAT = "maskrcnnpp-dsb2018"
FORMAT_VERSION = 1
DEFAULT_SPLIT = (0.5, 0.2, 0.3)  # train / val / test fractions of the images, as in the paper
SPLIT_NAMES = ("train", "val", "test")
CATEGORY = {"id": 1, "name": "nucleus", "supercategory": "nucleus"}
IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# What each correction kind means. Kinds in FORMAT_CONVERSIONS change no pixel value.
CORRECTION_KINDS = {
    "alpha_removed": "RGBA/grey+alpha image: fully opaque alpha channel dropped",
    "alpha_not_opaque": "alpha channel with transparent pixels dropped; colours kept as stored",
    "grey_to_rgb": "single-channel image: grey replicated into R, G, B",
    "palette_to_rgb": "palette image expanded to RGB",
    "mode_to_rgb": "image in another colour mode (CMYK, YCbCr, ...) converted to RGB",
    "depth_to_8bit": "image deeper than 8 bits: scaled linearly by 255/max to 8 bits",
    "mask_not_grey": "colour/palette mask: foreground = any nonzero colour channel",
    "mask_not_binary": "mask with more than one nonzero value: foreground = nonzero",
    "empty_mask": "mask without foreground pixels: dropped",
    "duplicate_mask": "the same mask twice in one image: the repeat dropped",
    "overlap_removed": "pixels claimed by an earlier mask of the image (mask file / CSV order) removed",
    "mask_emptied_by_overlap": "mask entirely inside earlier masks: dropped",
    "image_without_labels": "image absent from the --labels CSV: not converted",
    "usage_ignored": "image whose CSV Usage is 'Ignored': not converted",
}
FORMAT_CONVERSIONS = {"alpha_removed", "grey_to_rgb", "palette_to_rgb"}


class DatasetError(ValueError):
    """Input that cannot be converted; the message names the file (and line) at fault."""


# ----------------------------------------------------------------------------- small helpers


def sha256_of_file(path: Union[str, os.PathLike], chunk: int = 1 << 22) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


@functools.lru_cache(maxsize=None)
def converter_digest() -> str:
    """sha256 of this converter's source code (keys caches of converted data)."""
    h = hashlib.sha256()
    package = Path(__file__).resolve().parent.parent
    for path in (package / "data" / "dsb2018.py", package / "utils" / "kaggle_rle.py"):
        h.update(path.read_bytes())
    return h.hexdigest()


def parse_split(text: Union[str, Sequence[float], None]) -> Optional[Tuple[float, float, float]]:
    """Validated (train, val, test) fractions from ``"0.5,0.2,0.3"``/a sequence, or None for ``"none"``."""
    if text is None or (isinstance(text, str) and text.strip().lower() == "none"):
        return None
    if isinstance(text, str):
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            raise DatasetError(f"split {text!r}: expected three numbers like 0.5,0.2,0.3 or 'none'") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3:
        raise DatasetError(f"split {text!r}: expected three fractions (train, val, test), got {len(values)}")
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise DatasetError(f"split {text!r}: fractions must be finite and non-negative")
    if abs(sum(values) - 1.0) > 1e-6:
        raise DatasetError(f"split {text!r}: fractions must sum to 1, they sum to {sum(values):.6g}")
    return tuple(values)  # type: ignore[return-value]


def split_image_ids(image_ids: Sequence[str], fractions: Sequence[float], seed: int) -> Dict[str, List[str]]:
    """Deterministic disjoint split of ``image_ids`` by a seeded permutation.

    Counts are ``floor(f * n)`` with the remaining images given to the largest fractional parts
    (ties to the earlier split); each split is returned sorted.
    """
    ids = sorted(image_ids)
    n = len(ids)
    exact = np.asarray(fractions, dtype=np.float64) * n
    counts = np.floor(exact + 1e-9).astype(int)
    remainder = n - int(counts.sum())
    for i in sorted(range(len(counts)), key=lambda k: (-(exact[k] - counts[k]), k))[:remainder]:
        counts[i] += 1
    order = np.random.default_rng(seed).permutation(n)
    out, start = {}, 0
    for name, count in zip(SPLIT_NAMES, counts):
        out[name] = sorted(ids[j] for j in order[start : start + count])
        start += count
    return out


# ----------------------------------------------------------------------------- source access


class _Source:
    """Read-only access to the files of a zip or a folder by '/'-separated relative names."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_dir():
            self.kind = "folder"
        elif path.is_file():
            if not zipfile.is_zipfile(path):
                raise DatasetError(f"{path}: neither a folder nor a zip file")
            self.kind = "zip"
        else:
            raise DatasetError(f"{path}: no such file or folder")
        self._zip: Optional[zipfile.ZipFile] = None

    def __getstate__(self):
        # A ZipFile's file handle must not be shared between processes.
        return {"path": self.path, "kind": self.kind, "_zip": None}

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None:
            try:
                self._zip = zipfile.ZipFile(self.path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DatasetError(f"{self.path}: cannot open the zip: {e}") from None
        return self._zip

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def names(self) -> List[str]:
        if self.kind == "zip":
            return [i.filename for i in self._zipfile().infolist() if not i.is_dir()]
        names = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            dirnames.sort()
            rel = Path(dirpath).relative_to(self.path).as_posix()
            names.extend(f if rel == "." else f"{rel}/{f}" for f in sorted(filenames))
        return names

    def read(self, name: str) -> bytes:
        try:
            if self.kind == "zip":
                return self._zipfile().read(name)
            return (self.path / name).read_bytes()
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
            raise DatasetError(f"{self.display(name)}: cannot read: {e}") from None

    def display(self, name: str) -> str:
        return f"{self.path}:{name}" if self.kind == "zip" else str(self.path / name)

    def sha256(self) -> str:
        if self.kind == "zip":
            return sha256_of_file(self.path)
        # A folder's checksum covers every file's relative name and content.
        h = hashlib.sha256()
        for name in self.names():
            h.update(name.encode("utf-8") + b"\0")
            h.update(hashlib.sha256((self.path / name).read_bytes()).digest())
        return h.hexdigest()


@dataclass
class _ImageTask:
    image_id: str
    image_name: str
    mask_names: Tuple[str, ...] = ()
    rles: Optional[Tuple[str, ...]] = None  # --labels mode
    rle_lines: Tuple[int, ...] = ()
    csv_size: Optional[Tuple[int, int]] = None
    labels_path: str = ""

    @property
    def work(self) -> int:
        return len(self.rles) if self.rles is not None else len(self.mask_names)


@dataclass
class _Plan:
    tasks: List[_ImageTask]
    ignored_files: List[str]
    corrections: List[dict]
    notes: List[str] = field(default_factory=list)


def _is_junk(parts: List[str]) -> bool:
    return "__MACOSX" in parts or parts[-1].startswith(".")


def _scan(source: _Source, labels) -> _Plan:
    """Match images with their masks (or CSV rows); raise on structural problems."""
    image_files: Dict[str, List[str]] = {}
    mask_files: Dict[str, List[str]] = {}
    folders: Dict[str, str] = {}
    flat: Dict[str, List[str]] = {}
    ignored: List[str] = []
    for name in source.names():
        parts = name.split("/")
        if _is_junk(parts):
            ignored.append(name)
            continue
        if len(parts) >= 3 and parts[-2] in ("images", "masks"):
            image_id, folder = parts[-3], "/".join(parts[:-2])
            if folders.setdefault(image_id, folder) != folder:
                raise DatasetError(
                    f"{source.display(folder)}: image id {image_id} appears in two folders "
                    f"({folders[image_id]} and {folder})"
                )
            (image_files if parts[-2] == "images" else mask_files).setdefault(image_id, []).append(name)
        elif name.lower().endswith(IMAGE_EXTENSIONS):
            flat.setdefault(Path(parts[-1]).stem, []).append(name)
        else:
            ignored.append(name)

    for image_id, names in image_files.items():
        if len(names) != 1:
            raise DatasetError(
                f"{source.display(folders[image_id] + '/images')}: {len(names)} files, expected one image"
            )
    orphan = sorted(set(mask_files) - set(image_files))
    if orphan:
        raise DatasetError(
            f"{source.display(folders[orphan[0]])}: masks without an image "
            f"(no {orphan[0]}/images/<image>.png); {len(orphan)} such folder(s)"
        )

    if labels is None:
        ignored.extend(n for names in flat.values() for n in names)
        if not image_files:
            raise DatasetError(f"{source.path}: no images found (expected <id>/images/<id>.png entries)")
        if not mask_files:
            raise DatasetError(
                f"{source.path}: no mask files (<id>/masks/<mask_id>.png) found; for images-only "
                "data (e.g. stage1_test) pass --labels with the released RLE CSV"
            )
        for image_id in sorted(image_files):
            if image_id not in mask_files:
                raise DatasetError(
                    f"{source.display(folders[image_id])}: image folder without masks "
                    f"(no {folders[image_id]}/masks/<mask_id>.png)"
                )
        tasks = [
            _ImageTask(image_id, image_files[image_id][0], tuple(sorted(mask_files[image_id])))
            for image_id in sorted(image_files)
        ]
        return _Plan(tasks, ignored, [])

    # --labels mode: images from the folder layout or flat files, labels from the CSV.
    images: Dict[str, str] = {k: v[0] for k, v in image_files.items()}
    for image_id, names in flat.items():
        if image_id in images or len(names) > 1:
            raise DatasetError(f"{source.display(names[0])}: image id {image_id} is given by more than one file")
        images[image_id] = names[0]
    n_mask_files = sum(len(v) for v in mask_files.values())
    notes = [f"{n_mask_files} mask files in the source ignored: labels come from {labels.path}"] if n_mask_files else []
    missing = sorted(set(labels) - set(images))
    if missing:
        raise DatasetError(
            f"{labels.path}: {len(missing)} ImageId(s) have no image in {source.path}, e.g. "
            + ", ".join(missing[:5])
        )
    tasks, corrections = [], []
    for image_id in sorted(images):
        if image_id not in labels:
            corrections.append(_correction("image_without_labels", image_id, source.display(images[image_id]),
                                           f"no row in {labels.path}"))
            continue
        if labels.usage.get(image_id, "").lower() == "ignored":
            corrections.append(_correction("usage_ignored", image_id, labels.path, "Usage=Ignored"))
            continue
        tasks.append(_ImageTask(
            image_id, images[image_id], rles=tuple(labels[image_id]), rle_lines=tuple(labels.lines[image_id]),
            csv_size=labels.sizes.get(image_id), labels_path=labels.path,
        ))
    if not tasks:
        raise DatasetError(f"{labels.path}: no image of {source.path} has labels to convert")
    return _Plan(tasks, ignored, corrections, notes)


def _correction(kind: str, image_id: str, file: str, detail: str) -> dict:
    return {"kind": kind, "image": image_id, "file": file, "detail": detail}


# ----------------------------------------------------------------------------- per-image work


def _load(data: bytes, display: str) -> Union[Image.Image, np.ndarray]:
    """Decoded image file: a loaded PIL image, or an array for 16-bit PNGs."""
    if data[:8] == _PNG_SIGNATURE and len(data) >= 26 and data[12:16] == b"IHDR" and data[24] == 16:
        # Pillow reduces 16-bit colour PNGs to 8 bits on load; OpenCV keeps all 16.
        import cv2

        arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if arr is None:
            raise DatasetError(f"{display}: cannot decode the 16-bit PNG (corrupt or truncated)")
        if arr.ndim == 3 and arr.shape[2] in (3, 4):
            arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]  # BGR(A) -> RGB(A)
        return arr
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError) as e:
        raise DatasetError(f"{display}: cannot decode the image (corrupt or truncated?): {e}") from None
    return im


def _as_array(decoded: Union[Image.Image, np.ndarray]) -> Tuple[np.ndarray, str, str]:
    """Pixel array (H, W[, C]) of a decoded file, its format description and PIL-like mode."""
    if isinstance(decoded, np.ndarray):
        mode = "L" if decoded.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}.get(decoded.shape[2], "?")
        return decoded, f"{mode} 16-bit", mode
    im, mode = decoded, decoded.mode
    desc = f"{mode} {'16-bit' if mode.startswith('I;16') else '32-bit' if mode in ('I', 'F') else '8-bit'}"
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in ("L", "LA", "RGB", "RGBA") and not mode.startswith("I") and mode != "F":
        im = im.convert("RGB")
    return np.asarray(im), desc, mode


def _size_of(decoded: Union[Image.Image, np.ndarray]) -> Tuple[int, int]:
    return decoded.shape[:2] if isinstance(decoded, np.ndarray) else (decoded.height, decoded.width)


def _to_rgb8(arr: np.ndarray, mode: str, image_id: str, display: str, corrections: List[dict]) -> np.ndarray:
    """8-bit RGB version of a decoded image array, recording each conversion."""
    alpha = None
    if arr.ndim == 2:
        colour = arr
    elif arr.ndim == 3 and arr.shape[2] in (2, 4):
        colour, alpha = arr[..., :-1], arr[..., -1]
    elif arr.ndim == 3 and arr.shape[2] == 3:
        colour = arr
    else:
        raise DatasetError(f"{display}: unsupported image shape {arr.shape}")
    if colour.ndim == 3 and colour.shape[2] == 1:
        colour = colour[..., 0]
    if mode in ("P", "PA"):
        corrections.append(_correction("palette_to_rgb", image_id, display, f"mode {mode}"))
    elif mode not in ("L", "LA", "RGB", "RGBA", "1", "F") and not mode.startswith("I"):
        corrections.append(_correction("mode_to_rgb", image_id, display, f"mode {mode}"))
    if alpha is not None:
        full = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
        low = alpha.min()
        if low >= full:
            corrections.append(_correction("alpha_removed", image_id, display, "alpha fully opaque"))
        else:
            transparent = int(np.count_nonzero(alpha < full))
            corrections.append(_correction("alpha_not_opaque", image_id, display,
                                           f"{transparent} pixels not opaque (alpha min {low}); alpha dropped"))
    if colour.dtype != np.uint8:
        # The conversion tools/predict.py applies by default, so predictions see training's pixels.
        from ..inference.image_io import rescale_to_uint8

        colour, (_, top) = rescale_to_uint8(colour, "max")
        corrections.append(_correction("depth_to_8bit", image_id, display,
                                       f"{arr.dtype} values up to {top:g} scaled by 255/{top:g}"))
    if colour.ndim == 2:
        corrections.append(_correction("grey_to_rgb", image_id, display, "grey replicated to R, G, B"))
        colour = np.repeat(colour[..., None], 3, axis=2)
    return np.ascontiguousarray(colour)


def _mask_rle(decoded: Union[Image.Image, np.ndarray], image_id: str, display: str,
              corrections: List[dict]) -> dict:
    """COCO RLE of a decoded mask file (foreground = nonzero), recording non-binary/colour masks."""
    height, width = _size_of(decoded)
    if isinstance(decoded, Image.Image) and decoded.mode in ("L", "1"):
        # Common case: crop to the nonzero box in C before touching pixels in NumPy.
        box = decoded.getbbox()
        if box is None:
            return coco_rle_from_runs(np.zeros(0), np.zeros(0), height, width)
        left, top = box[0], box[1]
        values = np.asarray(decoded.crop(box))
    else:
        arr, _, mode = _as_array(decoded)
        if arr.ndim == 3:
            arr = (arr[..., :-1] if arr.shape[2] in (2, 4) else arr).max(axis=2)
            corrections.append(_correction("mask_not_grey", image_id, display, f"mode {mode}"))
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
        corrections.append(_correction("mask_not_binary", image_id, display,
                                       f"{found.size} nonzero values ({shown}); foreground = nonzero"))
    return coco_rle_from_crop(foreground, top, left, height, width)


def _encode(mask: np.ndarray) -> dict:
    """pycocotools compressed RLE of a boolean mask."""
    return mask_util.encode(np.asfortranarray(mask.view(np.uint8)))


_WORKER: dict = {}


def _init_worker(source: _Source, images_dir: str, compress_level: int) -> None:
    # Ctrl-C reaches the whole process group: the parent alone stops the pool, instead of every
    # worker printing a KeyboardInterrupt traceback; the pool's terminate() (SIGTERM) then ends
    # the workers quietly, whatever handler a forked worker inherited from its parent
    if mp.current_process().name != "MainProcess":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _WORKER.update(source=source, images_dir=images_dir, compress_level=compress_level)


def _convert_image(task: _ImageTask) -> dict:
    """Convert one image and its masks: write the RGB PNG, return its COCO annotations and corrections."""
    source: _Source = _WORKER["source"]
    corrections: List[dict] = []
    display = source.display(task.image_name)
    arr, desc, mode = _as_array(_load(source.read(task.image_name), display))
    rgb = _to_rgb8(arr, mode, task.image_id, display, corrections)
    del arr
    height, width = rgb.shape[:2]
    if task.csv_size is not None and task.csv_size != (height, width):
        raise DatasetError(
            f"{task.labels_path}:{task.rle_lines[0] if task.rle_lines else '?'}: image {task.image_id} is "
            f"{task.csv_size[0]}x{task.csv_size[1]} (Height x Width) in the CSV but {height}x{width} in {display}"
        )
    Image.fromarray(rgb).save(
        os.path.join(_WORKER["images_dir"], f"{task.image_id}.png"), format="PNG",
        compress_level=_WORKER["compress_level"],
    )
    del rgb

    # (provenance key, provenance value, file for messages, RLE)
    candidates: List[Tuple[str, object, str, dict]] = []
    if task.rles is None:
        for name in task.mask_names:
            mdisplay = source.display(name)
            decoded = _load(source.read(name), mdisplay)
            if _size_of(decoded) != (height, width):
                mh, mw = _size_of(decoded)
                raise DatasetError(f"{mdisplay}: mask is {mh}x{mw} but its image is {height}x{width}")
            rle = _mask_rle(decoded, task.image_id, mdisplay, corrections)
            candidates.append(("mask_id", Path(name).stem, mdisplay, rle))
    else:
        for rle_text, line in zip(task.rles, task.rle_lines):
            try:
                rle = kaggle_to_coco_rle(rle_text, (height, width))
            except RLEError as e:
                raise DatasetError(f"{task.labels_path}:{line}: image {task.image_id} ({height}x{width}): {e}") from None
            candidates.append(("csv_line", line, f"{task.labels_path}:{line}", rle))

    kept: List[Tuple[str, object, str, dict]] = []
    seen: Dict[bytes, str] = {}
    for key, value, where, rle in candidates:
        if mask_util.area(rle) == 0:
            corrections.append(_correction("empty_mask", task.image_id, where, "no foreground pixel"))
            continue
        first = seen.setdefault(rle["counts"], where)
        if first != where:
            corrections.append(_correction("duplicate_mask", task.image_id, where, f"same pixels as {first}"))
            continue
        kept.append((key, value, where, rle))
    kept = _remove_overlaps(kept, task.image_id, corrections)

    annotations = []
    for key, value, _, rle in kept:
        annotations.append({
            key: value,
            "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            "area": int(mask_util.area(rle)),
            "bbox": [float(v) for v in mask_util.toBbox(rle)],
        })
    return {"image_id": task.image_id, "height": height, "width": width, "format": desc,
            "annotations": annotations, "corrections": corrections}


def _remove_overlaps(kept, image_id: str, corrections: List[dict]):
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
            corrections.append(_correction("mask_emptied_by_overlap", image_id, where,
                                           f"all {removed} pixels belong to earlier masks"))
            continue
        if removed:
            corrections.append(_correction("overlap_removed", image_id, where,
                                           f"{removed} pixels shared with earlier masks removed"))
            rle = _encode(own)
        claimed |= own
        out.append((key, value, where, rle))
    return out


# ----------------------------------------------------------------------------- output


@dataclass
class PrepareResult:
    """Outcome of :func:`prepare_dsb2018`: where the dataset is, its manifest, and what was done."""

    root: Path
    manifest: dict
    status: str  # "created", "rebuilt" (an incomplete copy was replaced) or "unchanged"


def _identity(source_sha: str, labels_sha: Optional[str], split, seed: int) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source_sha256": source_sha,
        "labels_sha256": labels_sha,
        "split": None if split is None else {"fractions": list(split), "seed": int(seed)},
    }


def _file_record(path: Path) -> dict:
    return {"sha256": sha256_of_file(path), "bytes": path.stat().st_size}


def _verify_output(root: Path, manifest: dict) -> Optional[str]:
    """None when every file the manifest lists is present and unchanged, else what is wrong."""
    for rel, record in manifest.get("files", {}).items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != record["bytes"] or sha256_of_file(path) != record["sha256"]:
            return f"{path} missing or changed"
    for name, size in manifest.get("images", {}).items():
        path = root / "images" / name
        try:
            if path.stat().st_size != size:
                return f"{path} changed"
        except FileNotFoundError:
            return f"{path} missing"
    return None


def _read_manifest(out: Path) -> Optional[dict]:
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e}); remove {out} or choose another --out") from None


def _describe_difference(old: dict, new: dict) -> str:
    diffs = [f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in new if old.get(k) != new[k]]
    return "; ".join(diffs) or "unknown difference"


def _coco(images: List[dict], annotations: List[dict]) -> dict:
    return {
        "info": {"description": "Data Science Bowl 2018 nuclei (BBBC038), converted by maskrcnnpp",
                 "url": "https://bbbc.broadinstitute.org/BBBC038", "version": str(FORMAT_VERSION)},
        "licenses": [{"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"}],
        "images": images,
        "annotations": annotations,
        "categories": [dict(CATEGORY)],
    }


def _write_json(path: Path, obj: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, separators=(",", ":"))


def _log_corrections(corrections: List[dict]) -> None:
    counts = Counter(c["kind"] for c in corrections)
    for kind, count in sorted(counts.items()):
        logger.info("correction %s x%d: %s", kind, count, CORRECTION_KINDS.get(kind, kind))
    for c in corrections:
        if c["kind"] not in FORMAT_CONVERSIONS:
            logger.warning("%s: %s (%s)", c["file"], c["kind"], c["detail"])


def _commit(tmp: Path, out: Path, identity: dict, replace: bool) -> str:
    """Move the finished ``tmp`` folder to ``out``; return the resulting status."""
    if replace and out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return "rebuilt"
    try:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        os.rename(tmp, out)
        return "created"
    except OSError:
        # Another process may have finished the same conversion first.
        other = _read_manifest(out) if out.is_dir() else None
        if other is not None and other.get("identity") == identity and _verify_output(out, other) is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return "unchanged"
        raise DatasetError(f"{out}: appeared while converting and holds something else; output left in {tmp}") from None


def prepare_dsb2018(
    src: Union[str, os.PathLike],
    out: Union[str, os.PathLike],
    *,
    labels: Optional[Union[str, os.PathLike]] = None,
    split: Union[str, Sequence[float], None] = DEFAULT_SPLIT,
    seed: int = 0,
    workers: Optional[int] = None,
    progress: bool = True,
    compress_level: int = 1,
) -> PrepareResult:
    """Convert DSB 2018 data at ``src`` (zip or folder; + ``labels`` CSV) to a COCO dataset at ``out``.

    ``split``: (train, val, test) fractions summing to 1 (default 0.5/0.2/0.3), ``"none"``/None
    for all.json only; images are assigned by a permutation seeded with ``seed``. ``workers``
    processes (default ``os.cpu_count()``) convert images in parallel. Idempotent: an ``out``
    holding this very dataset is left as is ("unchanged"); one holding another dataset is an error.
    """
    start = time.time()
    src, out = Path(src), Path(out)
    split = parse_split(split)
    source = _Source(src)
    kaggle = None
    if labels is not None:
        labels = Path(labels)
        if not labels.is_file():
            raise DatasetError(f"{labels}: labels CSV not found")
        try:
            kaggle = read_kaggle_csv(labels)
        except KaggleCsvError as e:
            raise DatasetError(str(e)) from None
    identity = _identity(source.sha256(), sha256_of_file(labels) if labels else None, split, seed)

    replace = False
    if out.exists():
        if not out.is_dir():
            raise DatasetError(f"{out}: exists and is not a folder")
        existing = _read_manifest(out)
        if existing is not None:
            if existing.get("identity") != identity:
                raise DatasetError(
                    f"{out}: already holds a different dataset ({_describe_difference(existing.get('identity') or {}, identity)}); "
                    "choose another --out or remove it"
                )
            problem = _verify_output(out, existing)
            if problem is None:
                logger.info("%s already holds this dataset (source sha256 %s): nothing to do", out, identity["source_sha256"][:12])
                return PrepareResult(out, existing, "unchanged")
            logger.warning("%s holds this dataset but %s: converting again", out, problem)
            replace = True
        elif any(out.iterdir()):
            raise DatasetError(f"{out}: folder is not empty and holds no manifest.json of a prepared dataset; refusing to write there")

    plan = _scan(source, kaggle)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = partial_dir(out)
    (tmp / "images").mkdir(parents=True)
    (tmp / "annotations").mkdir()
    try:
        results = _run_tasks(source, plan.tasks, tmp / "images", workers, progress, compress_level)
        manifest = _write_dataset(tmp, results, plan, identity, source, labels, split, seed)
        manifest["seconds"] = round(time.time() - start, 2)
        _write_json(tmp / "manifest.json", manifest)
        _log_corrections(manifest["corrections"])
        status = _commit(tmp, out, identity, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        source.close()
    if status == "unchanged":
        manifest = _read_manifest(out)
    logger.info("%s: %d images, %d annotations (%s) in %.1f s", out, manifest["counts"]["images"],
                manifest["counts"]["annotations"], status, time.time() - start)
    return PrepareResult(out, manifest, status)


def _run_tasks(source: _Source, tasks: List[_ImageTask], images_dir: Path, workers: Optional[int],
               progress: bool, compress_level: int) -> List[dict]:
    from tqdm import tqdm

    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    # Biggest images first so that no worker is left with a large one at the end.
    ordered = sorted(tasks, key=lambda t: -t.work)
    bar = tqdm(total=len(tasks), unit="image", desc="dsb2018", disable=not progress, dynamic_ncols=True)
    results = []
    try:
        if workers == 1:
            _init_worker(source, str(images_dir), compress_level)
            try:
                for task in ordered:
                    results.append(_convert_image(task))
                    bar.update()
            finally:
                _WORKER.clear()
        else:
            source.close()  # children open their own zip handle
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers, _init_worker, (source, str(images_dir), compress_level)) as pool:
                for result in pool.imap_unordered(_convert_image, ordered, chunksize=1):
                    results.append(result)
                    bar.update()
    finally:
        bar.close()
    return results


def _write_dataset(tmp: Path, results: List[dict], plan: _Plan, identity: dict, source: _Source,
                   labels: Optional[Path], split, seed: int) -> dict:
    """Write the COCO jsons into ``tmp`` and return the manifest (without writing it)."""
    by_id = {r["image_id"]: r for r in results}
    image_entries, annotations, per_image = [], [], {}
    corrections = list(plan.corrections)
    next_ann = 1
    for number, image_id in enumerate(sorted(by_id), start=1):
        r = by_id[image_id]
        image_entries.append({"id": number, "file_name": f"{image_id}.png", "height": r["height"],
                              "width": r["width"], "dsb_id": image_id, "license": 1})
        anns = []
        for a in r["annotations"]:
            anns.append({"id": next_ann, "image_id": number, "category_id": CATEGORY["id"], "iscrowd": 0, **a})
            next_ann += 1
        per_image[image_id] = anns
        annotations.extend(anns)
        corrections.extend(r["corrections"])

    files = {}
    splits = {"all": sorted(by_id)}
    if split is not None:
        splits.update(split_image_ids(sorted(by_id), split, seed))
    counts = {"images": len(image_entries), "annotations": len(annotations), "splits": {}}
    entry_of = {e["dsb_id"]: e for e in image_entries}
    for name, ids in splits.items():
        anns = [a for i in ids for a in per_image[i]]
        path = tmp / "annotations" / f"{name}.json"
        _write_json(path, _coco([entry_of[i] for i in ids], anns))
        files[f"annotations/{name}.json"] = _file_record(path)
        counts["splits"][name] = {"images": len(ids), "annotations": len(anns)}
    counts["corrections"] = dict(sorted(Counter(c["kind"] for c in corrections).items()))
    counts["images_without_annotations"] = sum(1 for i in per_image if not per_image[i])
    counts["ignored_files"] = len(plan.ignored_files)

    return {
        "identity": identity,
        "source": {
            "path": str(source.path.resolve()),
            "kind": source.kind,
            "sha256": identity["source_sha256"],
            "labels": None if labels is None else {"path": str(Path(labels).resolve()), "sha256": identity["labels_sha256"]},
        },
        "split": identity["split"],
        "counts": counts,
        "source_formats": dict(Counter(r["format"] for r in results)),
        "corrections": corrections,
        "correction_kinds": {k: CORRECTION_KINDS[k] for k in counts["corrections"] if k in CORRECTION_KINDS},
        "ignored_files": plan.ignored_files,
        "notes": plan.notes,
        "files": files,
        "images": {f"{i}.png": (tmp / "images" / f"{i}.png").stat().st_size for i in sorted(by_id)},
        "converter": f"maskrcnnpp.data.dsb2018 format {FORMAT_VERSION}",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
