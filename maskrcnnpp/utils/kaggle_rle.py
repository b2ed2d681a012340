"""Kaggle Data Science Bowl 2018 run-length encoding: reader, writer and mask codec.

The competition's convention (``stage1_train_labels.csv``, ``stage1_solution.csv``,
``stage2_solution_final.csv`` and submissions): a mask is flattened column-major (top to bottom,
then left to right) and written as ``"start length start length ..."`` pairs whose starts are
1-indexed pixel numbers, sorted and non-overlapping. One CSV row per nucleus:
``ImageId,EncodedPixels[,Height,Width,Usage]``; an image without nuclei is one row with an empty
``EncodedPixels``. Submissions could not contain overlapping pixels, so the writer removes them.

This is not COCO's RLE (pycocotools, also column-major but 0-based, compressed counts); the
converter uses pycocotools for the COCO side.
"""
from __future__ import annotations

import csv
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import UserError
from .files import atomic_path

__all__ = [
    "RLEError",
    "KaggleCsvError",
    "KaggleLabels",
    "KAGGLE_COLUMNS",
    "rle_encode",
    "rle_decode",
    "read_kaggle_csv",
    "write_kaggle_csv",
    "masks_from_prediction",
    "label_image_rles",
    "parse_rle",
    "coco_rle_from_runs",
    "coco_rle_from_crop",
    "kaggle_to_coco_rle",
]

# Required first two columns, then the optional ones found in the solution files.
KAGGLE_COLUMNS = ("ImageId", "EncodedPixels")
KAGGLE_OPTIONAL_COLUMNS = ("Height", "Width", "Usage")


class RLEError(UserError, ValueError):
    """A run-length string that is malformed or does not fit the image it is decoded into."""


class KaggleCsvError(UserError, ValueError):
    """A Kaggle RLE CSV that cannot be read (wrong header, bad row); the message names file and line."""


def rle_encode(mask: np.ndarray) -> str:
    """Kaggle run-length string of a 2-D mask (nonzero = foreground): 1-indexed, column-major pairs.

    An empty mask gives ``""``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode expects a 2-D mask, got shape {mask.shape}")
    flat = mask.astype(bool, copy=False).ravel(order="F")
    return _runs_to_string(*_runs(flat))


def _runs(flat: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    # Positions where the value changes, on a sequence padded with background at both ends.
    padded = np.zeros(flat.size + 2, dtype=np.int8)
    padded[1:-1] = flat
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    starts, ends = edges[0::2], edges[1::2]
    return starts, ends - starts


def _runs_to_string(starts: np.ndarray, lengths: np.ndarray) -> str:
    pairs = np.empty(2 * starts.size, dtype=np.int64)
    pairs[0::2] = starts + 1
    pairs[1::2] = lengths
    return " ".join(map(str, pairs.tolist()))


def parse_rle(rle: str) -> Tuple[np.ndarray, np.ndarray]:
    """0-based run starts and lengths of a Kaggle run-length string, validated for syntax and order."""
    tokens = rle.split()
    if not tokens:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(tokens) % 2:
        raise RLEError(f"odd number of values ({len(tokens)}): run-length pairs expected")
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise RLEError(f"non-integer value {bad!r} in run-length string") from None
    starts, lengths = values[0::2] - 1, values[1::2]
    if (starts < 0).any():
        raise RLEError(f"run start {int(starts.min()) + 1} is below 1 (starts are 1-indexed)")
    if (lengths < 1).any():
        raise RLEError(f"run length {int(lengths.min())} is below 1")
    if starts.size > 1 and (starts[1:] < starts[:-1] + lengths[:-1]).any():
        i = int(np.flatnonzero(starts[1:] < starts[:-1] + lengths[:-1])[0])
        raise RLEError(
            f"runs not sorted or overlapping: run {i + 2} starts at {int(starts[i + 1]) + 1}, "
            f"before the end of run {i + 1} ({int(starts[i] + lengths[i])})"
        )
    return starts, lengths


def rle_decode(rle: str, shape: Tuple[int, int]) -> np.ndarray:
    """Boolean mask of ``shape`` (H, W) from a Kaggle run-length string (1-indexed, column-major).

    Raises :class:`RLEError` for malformed strings and runs that leave the image.
    """
    height, width = int(shape[0]), int(shape[1])
    n = height * width
    starts, lengths = parse_rle(rle)
    if starts.size and int(starts[-1] + lengths[-1]) > n:
        raise RLEError(
            f"run {int(starts[-1]) + 1} {int(lengths[-1])} ends at pixel {int(starts[-1] + lengths[-1])}, "
            f"beyond the {height}x{width} image ({n} pixels)"
        )
    flat = np.zeros(n, dtype=bool)
    if starts.size:
        # Index of every foreground pixel: run start plus the offset within the run.
        offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        flat[np.repeat(starts, lengths) + offsets] = True
    return flat.reshape((height, width), order="F")


def coco_rle_from_runs(starts: np.ndarray, lengths: np.ndarray, height: int, width: int) -> dict:
    """pycocotools compressed RLE from 0-based column-major foreground runs (sorted, disjoint)."""
    from pycocotools import mask as mask_util

    starts = np.asarray(starts, dtype=np.int64)
    ends = starts + np.asarray(lengths, dtype=np.int64)
    if starts.size > 1:
        # Runs that touch are one run for COCO (its counts alternate background/foreground).
        keep = np.ones(starts.size, dtype=bool)
        keep[1:] = starts[1:] != ends[:-1]
        starts, ends = starts[keep], ends[np.append(keep[1:], True)]
    n = height * width
    if starts.size == 0:
        counts = [n]
    else:
        c = np.empty(2 * starts.size + 1, dtype=np.int64)
        c[0] = starts[0]
        c[1:-1:2] = ends - starts
        c[2:-1:2] = starts[1:] - ends[:-1]
        c[-1] = n - ends[-1]
        counts = (c if c[-1] else c[:-1]).tolist()  # pycocotools ends on the last run
    return mask_util.frPyObjects({"size": [height, width], "counts": counts}, height, width)


def coco_rle_from_crop(crop: np.ndarray, top: int, left: int, height: int, width: int) -> dict:
    """Compressed COCO RLE of a ``height`` x ``width`` mask that is zero outside ``crop``.

    ``crop`` (nonzero = foreground) sits at row ``top``, column ``left``. Encoding only the crop
    avoids a column-major copy of the whole image per mask, which dominates on large images.
    """
    crop = np.asarray(crop)
    h, w = crop.shape
    # Column-major order of the crop, each column followed by a background pixel so that runs
    # never continue from one column into the next.
    padded = np.zeros((w, h + 1), dtype=np.int8)
    padded[:, :h] = crop.T != 0
    edges = np.flatnonzero(np.diff(padded.ravel(), prepend=0))
    starts, ends = edges[0::2], edges[1::2]
    column, row = np.divmod(starts, h + 1)
    full_starts = (left + column) * height + top + row
    return coco_rle_from_runs(full_starts, ends - starts, height, width)


def kaggle_to_coco_rle(rle: str, shape: Tuple[int, int]) -> dict:
    """Compressed COCO RLE of a Kaggle run-length string, checked like :func:`rle_decode`."""
    height, width = int(shape[0]), int(shape[1])
    starts, lengths = parse_rle(rle)
    if starts.size and int(starts[-1] + lengths[-1]) > height * width:
        raise RLEError(
            f"run {int(starts[-1]) + 1} {int(lengths[-1])} ends at pixel {int(starts[-1] + lengths[-1])}, "
            f"beyond the {height}x{width} image ({height * width} pixels)"
        )
    return coco_rle_from_runs(starts, lengths, height, width)


class KaggleLabels(dict):
    """``{image_id: [run-length string, ...]}`` read from a Kaggle CSV, in file order.

    Extra attributes: ``sizes`` ``{image_id: (H, W)}`` and ``usage`` ``{image_id: str}`` when the
    file has those columns, ``lines`` ``{image_id: [CSV line of each string]}`` for error messages,
    and ``path``.
    """

    def __init__(self, path: Union[str, os.PathLike]):
        super().__init__()
        self.path = str(path)
        self.sizes: Dict[str, Tuple[int, int]] = {}
        self.usage: Dict[str, str] = {}
        self.lines: Dict[str, List[int]] = {}


def read_kaggle_csv(path: Union[str, os.PathLike]) -> KaggleLabels:
    """Read a Kaggle RLE CSV (``ImageId,EncodedPixels[,Height,Width,Usage]``) into :class:`KaggleLabels`.

    Checks the header, each row's width, the run-length syntax, and that Height/Width agree across
    an image's rows; a problem raises :class:`KaggleCsvError` naming the file and line. Run bounds
    need the image size and are checked when decoding (by the converter, with the line number).
    """
    labels = KaggleLabels(path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise KaggleCsvError(f"{path}: empty file, expected the header {','.join(KAGGLE_COLUMNS)}[,Height,Width,Usage]")
        header = [h.strip() for h in header]
        extra = header[2:]
        if tuple(header[:2]) != KAGGLE_COLUMNS or any(h not in KAGGLE_OPTIONAL_COLUMNS for h in extra) or len(set(extra)) != len(extra):
            raise KaggleCsvError(
                f"{path}: wrong header {','.join(header)!r}; expected ImageId,EncodedPixels optionally "
                "followed by Height, Width, Usage (the released stage1_train_labels.csv / stage1_solution.csv format)"
            )
        if ("Height" in extra) != ("Width" in extra):
            raise KaggleCsvError(f"{path}: header has only one of Height/Width")
        col = {name: i for i, name in enumerate(header)}
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                raise KaggleCsvError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
            image_id = row[0].strip()
            if not image_id:
                raise KaggleCsvError(f"{path}:{line}: empty ImageId")
            rles = labels.setdefault(image_id, [])
            line_list = labels.lines.setdefault(image_id, [])
            if "Height" in col:
                try:
                    size = (int(row[col["Height"]]), int(row[col["Width"]]))
                except ValueError:
                    raise KaggleCsvError(f"{path}:{line}: Height/Width are not integers: {row[col['Height']]!r}, {row[col['Width']]!r}") from None
                if size[0] < 1 or size[1] < 1:
                    raise KaggleCsvError(f"{path}:{line}: Height/Width must be positive, got {size}")
                if labels.sizes.setdefault(image_id, size) != size:
                    raise KaggleCsvError(f"{path}:{line}: image {image_id} is {size[0]}x{size[1]} here but {labels.sizes[image_id][0]}x{labels.sizes[image_id][1]} on an earlier row")
            if "Usage" in col:
                labels.usage.setdefault(image_id, row[col["Usage"]].strip())
            rle = row[1].strip()
            if not rle:
                continue  # an image listed without nuclei
            try:
                starts, lengths = parse_rle(rle)
            except RLEError as e:
                raise KaggleCsvError(f"{path}:{line}: image {image_id}: {e}") from None
            if image_id in labels.sizes:
                h, w = labels.sizes[image_id]
                if int(starts[-1] + lengths[-1]) > h * w:
                    raise KaggleCsvError(
                        f"{path}:{line}: image {image_id}: run-length out of bounds: ends at pixel "
                        f"{int(starts[-1] + lengths[-1])}, the {h}x{w} image has {h * w}"
                    )
            rles.append(rle)
            line_list.append(line)
    return labels


Prediction = Any  # label image [H,W] int, masks [N,H,W] / list of [H,W] bool, or Instances


def masks_from_prediction(prediction: Prediction) -> List[np.ndarray]:
    """Boolean masks of one image's prediction, highest priority first.

    Accepts a label image (2-D int, 0 = background; instances in increasing label order), an
    ``[N, H, W]`` array or a list of ``[H, W]`` masks (given order), or a Detectron2 ``Instances``
    with ``pred_masks`` (sorted by descending ``scores`` when present).
    """
    if hasattr(prediction, "pred_masks"):
        masks = prediction.pred_masks
        masks = masks.detach().cpu().numpy() if hasattr(masks, "detach") else np.asarray(masks)
        if hasattr(prediction, "scores"):
            scores = prediction.scores
            scores = scores.detach().cpu().numpy() if hasattr(scores, "detach") else np.asarray(scores)
            masks = masks[np.argsort(-scores, kind="stable")]
        return [m > 0.5 if m.dtype.kind == "f" else m.astype(bool) for m in masks]
    if isinstance(prediction, np.ndarray) and prediction.ndim == 2:
        labels = prediction
        ids = np.unique(labels)
        return [labels == i for i in ids[ids != 0]]
    return [np.asarray(m).astype(bool) for m in prediction]


def write_kaggle_csv(
    path: Union[str, os.PathLike],
    predictions: Mapping[str, Prediction],
    *,
    with_size: bool = False,
) -> int:
    """Write predictions as a Kaggle RLE CSV; return the number of nucleus rows written.

    ``predictions`` maps image id to a label image, a list/array of masks or ``Instances``
    (see :func:`masks_from_prediction`). Overlapping pixels are removed as the competition required:
    each pixel stays with the first mask claiming it (highest score for ``Instances``); masks left
    empty are dropped. Every image gets at least one row (empty ``EncodedPixels`` when it has no
    nuclei). ``with_size`` adds Height and Width columns as in the solution files.
    """
    # Written beside the target and renamed when complete: a bad prediction never leaves half a CSV.
    with atomic_path(os.fspath(path)) as tmp:
        return _write_kaggle_rows(tmp, predictions, with_size)


def _write_kaggle_rows(path: str, predictions: Mapping[str, Prediction], with_size: bool) -> int:
    n_rows = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(list(KAGGLE_COLUMNS) + (["Height", "Width"] if with_size else []))
        for image_id, prediction in predictions.items():
            if isinstance(prediction, np.ndarray) and prediction.ndim == 2:
                rles, shape = label_image_rles(prediction), prediction.shape  # disjoint by construction
            else:
                masks = masks_from_prediction(prediction)
                rles, shape = _non_overlapping_rles(masks), _shape_of(prediction, masks) if with_size else None
            size = [] if not with_size else [int(shape[0]), int(shape[1])]
            for rle in rles or [""]:
                writer.writerow([image_id, rle] + size)
            n_rows += len(rles)
    return n_rows


def label_image_rles(labels: np.ndarray) -> List[str]:
    """Kaggle run-length strings of the instances of a label image (0 = background), by increasing label."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"a label image is 2-D, got shape {labels.shape}")
    flat = labels.ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], change])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    values = flat[starts]
    keep = values != 0
    starts, lengths, values = starts[keep], lengths[keep], values[keep]
    order = np.argsort(values, kind="stable")  # runs of one label stay in pixel order
    starts, lengths, values = starts[order], lengths[order], values[order]
    bounds = np.flatnonzero(np.diff(values)) + 1
    return [_runs_to_string(s, n) for s, n in zip(np.split(starts, bounds), np.split(lengths, bounds)) if s.size]


def _shape_of(prediction: Prediction, masks: Sequence[np.ndarray]) -> Tuple[int, int]:
    if masks:
        return masks[0].shape
    if hasattr(prediction, "image_size"):
        return tuple(prediction.image_size)
    shape = np.shape(prediction)
    if len(shape) >= 2:
        return shape[-2:]
    raise ValueError("with_size=True needs the image size, which an empty list of masks does not carry")


def _non_overlapping_rles(masks: Iterable[np.ndarray]) -> List[str]:
    rles: List[str] = []
    claimed: Optional[np.ndarray] = None
    for mask in masks:
        if claimed is None:
            claimed = np.zeros(mask.shape, dtype=bool)
        elif mask.shape != claimed.shape:
            raise ValueError(f"masks of one image differ in shape: {mask.shape} vs {claimed.shape}")
        own = mask & ~claimed
        if own.any():
            claimed |= own
            rles.append(rle_encode(own))
    return rles
