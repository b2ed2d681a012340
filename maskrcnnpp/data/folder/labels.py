"""Instance label images and arrays (``0`` = background, ``k`` = nucleus k) -> one candidate mask per nucleus."""
from __future__ import annotations

import io
from typing import List, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage

from ...utils.kaggle_rle import coco_rle_from_crop
from ..dsb2018.convert import Candidate
from ..dsb2018.corrections import correction
from ..dsb2018.decode import as_array, load
from ..dsb2018.errors import DatasetError

__all__ = ["TIFF_EXTENSIONS", "check_labels", "compact_labels", "label_array_candidates", "label_candidates",
           "read_label_image"]

TIFF_EXTENSIONS = (".tif", ".tiff")
_EXPECTED = "expected one channel of integer nucleus labels, 0 = background"


def _decode(data: bytes, name: str, display: str) -> np.ndarray:
    if name.lower().endswith(TIFF_EXTENSIONS):
        import tifffile

        try:
            # Label TIFFs (ours, Fiji's, napari's) are often 32-bit or compressed in ways Pillow reads badly.
            arr = tifffile.imread(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001  (tifffile raises many types for damaged files)
            raise DatasetError(f"{display}: cannot decode the TIFF label image (corrupt or truncated?): {e}") from None
        if arr.size == 0:
            raise DatasetError(f"{display}: cannot decode the TIFF label image (corrupt or truncated?): no pixels")
        return np.squeeze(arr) if arr.ndim > 2 else arr
    decoded = load(data, display)
    if isinstance(decoded, Image.Image) and decoded.mode == "P":
        return np.asarray(decoded)  # palette indices are the labels, the palette only their colours
    return as_array(decoded)[0]


def read_label_image(data: bytes, name: str, display: str, image_id: str, corrections: List[dict]) -> np.ndarray:
    """The (H, W) array of non-negative integer labels of a label-image file, recording conversions."""
    return check_labels(_decode(data, name, display), display, image_id, corrections)


def check_labels(arr: np.ndarray, display: str, image_id: str, corrections: List[dict]) -> np.ndarray:
    """``arr`` as (H, W) non-negative integer labels, recording conversions; DatasetError naming ``display``."""
    if arr.ndim == 3 and arr.shape[2] in (2, 3, 4):
        colour = arr[..., :-1] if arr.shape[2] in (2, 4) else arr  # alpha carries no label
        if colour.shape[2] > 1 and not (colour == colour[..., :1]).all():
            raise DatasetError(f"{display}: colour label image (its channels differ); {_EXPECTED}")
        if arr.shape[2] > 1:
            corrections.append(correction("labels_not_grey", image_id, display, f"{arr.shape[2]} channels"))
        arr = colour[..., 0]
    if arr.ndim != 2:
        raise DatasetError(f"{display}: label image of shape {arr.shape}; {_EXPECTED}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind == "f":
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            raise DatasetError(f"{display}: label image with non-integer values (e.g. {arr[bad][0]:g}); {_EXPECTED}")
        corrections.append(correction("labels_float", image_id, display, f"{arr.dtype} values taken as integers"))
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "ui":
        raise DatasetError(f"{display}: label image of type {arr.dtype}; {_EXPECTED}")
    if arr.size and arr.min() < 0:
        raise DatasetError(f"{display}: label image with negative values (min {arr.min()}); {_EXPECTED}")
    return arr


def compact_labels(labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(labels renumbered 1..K with 0 kept as background, the original value of each 1..K)."""
    values, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    if values[0] == 0:
        return inverse, values[1:]
    return inverse + 1, values


def label_candidates(data: bytes, name: str, display: str, image_id: str, image_display: str,
                     height: int, width: int, corrections: List[dict]) -> List[Candidate]:
    """One candidate (provenance ``label`` = its value in the file) per nucleus of a label image."""
    labels = read_label_image(data, name, display, image_id, corrections)
    if labels.shape != (height, width):
        raise DatasetError(f"{display}: label image is {labels.shape[0]}x{labels.shape[1]} but its image "
                           f"{image_display} is {height}x{width}")
    return label_array_candidates(labels, display, image_id, corrections)


def label_array_candidates(labels: np.ndarray, display: str, image_id: str, corrections: List[dict]) -> List[Candidate]:
    """One candidate per nucleus of checked (H, W) labels of the image's size (what a label image gives)."""
    height, width = labels.shape
    compact, values = compact_labels(labels)
    del labels
    if values.size == 0:
        corrections.append(correction("labels_empty", image_id, display, "no nonzero pixel"))
        return []
    key, names = "label", [int(v) for v in values]
    if values.size == 1:
        regions, count = ndimage.label(compact > 0, structure=np.ones((3, 3), dtype=bool))
        if count > 1:
            # One value over many separate blobs: a foreground mask saved where instance labels belong.
            corrections.append(correction("labels_binary", image_id, display,
                                          f"the one value {int(values[0])} covers {count} separate regions"))
            compact, key, names = regions, "region", list(range(1, count + 1))
    candidates = []
    for k, box in enumerate(ndimage.find_objects(compact), start=1):
        if box is None:
            continue
        rle = coco_rle_from_crop(compact[box] == k, box[0].start, box[1].start, height, width)
        candidates.append((key, names[k - 1], f"{display} {key} {names[k - 1]}", rle))
    return candidates
