"""Image and mask files -> pixel arrays, and a source image -> 8-bit RGB with its corrections recorded."""
from __future__ import annotations

import io
import zlib
from typing import List, Tuple, Union

import numpy as np
from PIL import Image

from ...utils.images import ImageLayoutError, decode_with_opencv, png_ihdr, to_rgb8
from .corrections import correction
from .errors import DatasetError

__all__ = ["Decoded", "as_array", "image_to_rgb8", "load", "size_of"]

Decoded = Union[Image.Image, np.ndarray]
_PLAIN_MODES = ("L", "LA", "RGB", "RGBA")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def load(data: bytes, display: str) -> Decoded:
    """Decoded image file: a loaded PIL image, or an array (16-bit PNGs, TIFFs Pillow cannot read)."""
    header = png_ihdr(data[:26])
    if header is not None and header[0] == 16:
        # Pillow reduces 16-bit colour PNGs to 8 bits on load; OpenCV keeps all 16.
        arr = decode_with_opencv(data)
        if arr is None:
            raise DatasetError(f"{display}: cannot decode the 16-bit PNG (corrupt or truncated)")
        return arr
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError) as e:
        if data[:4] in _TIFF_MAGIC:  # 16-bit colour, float or tiled TIFFs that Pillow cannot read
            return _load_tiff(data, display, e)
        raise DatasetError(f"{display}: cannot decode the image (corrupt or truncated?): {e}") from None
    return im


def _load_tiff(data: bytes, display: str, pillow_error: Exception) -> np.ndarray:
    import tifffile

    try:
        arr = tifffile.imread(io.BytesIO(data))
    except Exception:  # noqa: BLE001  (tifffile raises many types for damaged files)
        raise DatasetError(f"{display}: cannot decode the image (corrupt or truncated?): {pillow_error}") from None
    return np.squeeze(arr) if arr.ndim > 3 or (arr.ndim == 3 and 1 in arr.shape) else arr


def as_array(decoded: Decoded) -> Tuple[np.ndarray, str, str]:
    """Pixel array (H, W[, C]) of a decoded file, its format description and PIL-like mode."""
    if isinstance(decoded, np.ndarray):
        mode = "L" if decoded.ndim == 2 else {2: "LA", 3: "RGB", 4: "RGBA"}.get(decoded.shape[2], "?")
        return decoded, f"{mode} {decoded.dtype.itemsize * 8}-bit", mode
    im, mode = decoded, decoded.mode
    desc = f"{mode} {'16-bit' if mode.startswith('I;16') else '32-bit' if mode in ('I', 'F') else '8-bit'}"
    if mode in ("P", "PA"):
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode not in _PLAIN_MODES and not mode.startswith("I") and mode != "F":
        im = im.convert("RGB")
    return np.asarray(im), desc, mode


def size_of(decoded: Decoded) -> Tuple[int, int]:
    """(height, width) of a decoded file."""
    return decoded.shape[:2] if isinstance(decoded, np.ndarray) else (decoded.height, decoded.width)


def image_to_rgb8(arr: np.ndarray, mode: str, image_id: str, display: str, corrections: List[dict]) -> np.ndarray:
    """8-bit RGB version of a decoded image array, recording each conversion."""
    try:
        # "max": the conversion tools/predict.py applies by default, so predictions see training's pixels.
        converted = to_rgb8(arr, "max", grey_alpha=True)
    except ImageLayoutError:
        raise DatasetError(f"{display}: unsupported image shape {arr.shape}") from None
    if mode in ("P", "PA"):
        corrections.append(correction("palette_to_rgb", image_id, display, f"mode {mode}"))
    elif mode not in _PLAIN_MODES + ("1", "F") and not mode.startswith("I"):
        corrections.append(correction("mode_to_rgb", image_id, display, f"mode {mode}"))
    if converted.alpha is not None:
        corrections.append(_alpha_correction(converted.alpha, image_id, display))
    if converted.value_range is not None:
        top = converted.value_range[1]
        corrections.append(correction("depth_to_8bit", image_id, display,
                                      f"{arr.dtype} values up to {top:g} scaled by 255/{top:g}"))
    if converted.grey:
        corrections.append(correction("grey_to_rgb", image_id, display, "grey replicated to R, G, B"))
    return converted.rgb


def _alpha_correction(alpha: np.ndarray, image_id: str, display: str) -> dict:
    full = np.iinfo(alpha.dtype).max if alpha.dtype.kind in "ui" else 1.0
    low = alpha.min()
    if low >= full:
        return correction("alpha_removed", image_id, display, "alpha fully opaque")
    transparent = int(np.count_nonzero(alpha < full))
    return correction("alpha_not_opaque", image_id, display,
                      f"{transparent} pixels not opaque (alpha min {low}); alpha dropped")
