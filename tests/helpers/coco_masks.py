"""Small COCO masks for tests: a box mask and its RLE in every count format."""
import numpy as np
from pycocotools import mask as mask_util


def rle(mask: np.ndarray, counts: str = "str") -> dict:
    """COCO RLE of ``mask`` with counts as a str (as in the json), bytes, or an uncompressed list."""
    encoded = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    if counts == "bytes":
        return encoded
    if counts == "str":
        return {"size": encoded["size"], "counts": encoded["counts"].decode()}
    flat = mask.astype(bool).ravel(order="F")
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.r_[0, change, flat.size]
    runs = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] + runs) if flat[0] else runs}


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask
