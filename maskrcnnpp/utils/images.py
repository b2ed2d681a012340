"""Any image array -> the models' 8-bit RGB input: the one conversion of dataset preparation and prediction.

Accepted arrays: grey ``[H, W]`` or ``[H, W, 1]``, RGB ``[H, W, 3]``, RGBA ``[H, W, 4]`` and, when
the caller says so (``grey_alpha=True``), grey+alpha ``[H, W, 2]``; alpha is dropped, not composited
(microscopy RGBA files carry an opaque or meaningless alpha). Pixels may be ``uint8``, ``uint16``
(or any other integer type), ``bool`` or float.

Conversion to ``uint8``: ``uint8`` is used as is; any other type is rescaled linearly so that
intensity ``lo`` maps to 0 and ``hi`` to 255 (values outside are clipped), with ``(lo, hi)`` taken
over all colour channels together (so colours keep their ratios) by the ``rescale`` rule:

* ``"max"`` (default): ``lo = 0``, ``hi`` = the maximum -- what ``prepare_dsb2018`` applies to
  deeper-than-8-bit training images, so prediction sees the pixels training saw;
* ``"percentile"``: the 0.1th and 99.9th percentiles, robust to a few hot or dead pixels;
* ``"minmax"``: the minimum and maximum;
* ``"none"``: the full range of the type (0..65535 for ``uint16``; 0..1 for floats).

``hi == lo`` (an all-zero image, or a constant one with "percentile" or "minmax") gives all zeros.
Grey becomes RGB by repeating the channel.

Also the decoding both readers share: PNG header fields and OpenCV decoding in RGB order (OpenCV
keeps 16-bit colour PNGs, which Pillow reduces to 8 bits).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from ..errors import UserError

__all__ = [
    "PERCENTILES",
    "PNG_SIGNATURE",
    "RESCALE_MODES",
    "ImageLayoutError",
    "Rgb8",
    "check_layout",
    "colour_channels",
    "decode_with_opencv",
    "intensity_image",
    "intensity_range",
    "png_ihdr",
    "rescale_to_uint8",
    "split_alpha",
    "to_rgb8",
    "to_uint8_rgb",
]

RESCALE_MODES = ("max", "percentile", "minmax", "none")
PERCENTILES = (0.1, 99.9)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageLayoutError(UserError, ValueError):
    """An array that is not a grey, RGB or RGBA (or, where allowed, grey+alpha) image."""


# ----------------------------------------------------------------------------- decoding


def png_ihdr(head: bytes) -> Optional[Tuple[int, int]]:
    """(bit depth, colour type) from the first 26 bytes of a PNG file, or None when they are not a PNG's.

    Colour types: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA (PNG spec 11.2.2).
    """
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[24], head[25]


def decode_with_opencv(data: bytes) -> Optional[np.ndarray]:
    """Pixels of an encoded image file with their original type, colour in RGB(A) order; None if OpenCV cannot decode it."""
    import cv2

    if not data:  # imdecode asserts on an empty buffer instead of failing like imread
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is not None and image.ndim == 3 and image.shape[2] in (3, 4):
        image = np.ascontiguousarray(image[..., [2, 1, 0, 3][: image.shape[2]]])
    return image


# ----------------------------------------------------------------------------- layout


def check_layout(image: np.ndarray) -> None:
    """Raise ImageLayoutError unless ``image`` is ``[H, W]`` or ``[H, W, C]`` with C in 1, 3, 4 and H, W > 0."""
    if image.ndim == 3 and image.shape[2] in (1, 3, 4) and image.shape[0] > 0 and image.shape[1] > 0:
        return
    if image.ndim == 2 and image.shape[0] > 0 and image.shape[1] > 0:
        return
    raise ImageLayoutError(
        f"unsupported image layout {image.shape} ({image.dtype}): expected [H, W] grey, [H, W, 3] RGB "
        "or [H, W, 4] RGBA (multi-page stacks and other channel counts are not supported)"
    )


def split_alpha(image: np.ndarray, grey_alpha: bool = False) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """``(colour [H, W, 1 or 3], alpha [H, W] or None)``; ``grey_alpha`` accepts ``[H, W, 2]`` as grey+alpha."""
    if grey_alpha and image.ndim == 3 and image.shape[2] == 2 and image.shape[0] > 0 and image.shape[1] > 0:
        return image[:, :, :1], image[:, :, 1]
    check_layout(image)
    if image.ndim == 2:
        return image[:, :, None], None
    if image.shape[2] == 4:
        return image[:, :, :3], image[:, :, 3]
    return image, None


def colour_channels(image: np.ndarray) -> np.ndarray:
    """``image`` as ``[H, W, C]`` with C = 1 (grey) or 3 (RGB); an alpha channel is dropped."""
    return split_alpha(image)[0]


# ----------------------------------------------------------------------------- conversion


def intensity_range(image: np.ndarray, rescale: str = "max") -> Tuple[float, float]:
    """The ``(lo, hi)`` intensities mapped to 0 and 255 by :func:`to_uint8_rgb` (see module doc)."""
    if rescale not in RESCALE_MODES:
        raise ValueError(f"rescale must be one of {RESCALE_MODES}, got {rescale!r}")
    values = colour_channels(image)
    if values.dtype == bool:
        return 0.0, 1.0
    if rescale == "none":
        if np.issubdtype(values.dtype, np.integer):
            info = np.iinfo(values.dtype)
            return float(max(info.min, 0)), float(info.max)
        return 0.0, 1.0
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        return 0.0, 0.0
    if rescale == "max":
        return 0.0, float(finite.max())
    if rescale == "minmax":
        return float(finite.min()), float(finite.max())
    lo, hi = np.percentile(finite, PERCENTILES)
    return float(lo), float(hi)


def rescale_to_uint8(values: np.ndarray, rescale: str = "max") -> Tuple[np.ndarray, Tuple[float, float]]:
    """``values`` (any non-8-bit type, same shape out) mapped linearly from ``(lo, hi)`` to 0..255, and that range."""
    lo, hi = intensity_range(values, rescale)
    scaled = values.astype(np.float64)
    if values.dtype.kind == "f":
        scaled = np.nan_to_num(scaled, nan=lo, posinf=hi, neginf=lo)
    if hi > lo:
        scaled = (scaled - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(scaled)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), (lo, hi)


@dataclass(frozen=True)
class Rgb8:
    """An image converted by :func:`to_rgb8`, and what the conversion did."""

    rgb: np.ndarray  # uint8 [H, W, 3], C-contiguous
    alpha: Optional[np.ndarray]  # the dropped alpha channel (original values), or None
    grey: bool  # one colour channel, repeated into R, G, B
    value_range: Optional[Tuple[float, float]]  # (lo, hi) mapped to 0..255; None when already uint8


def to_rgb8(image: np.ndarray, rescale: str = "max", *, grey_alpha: bool = False) -> Rgb8:
    """8-bit RGB of any supported image array (module doc), with the alpha dropped and the range rescaled."""
    colour, alpha = split_alpha(np.asarray(image), grey_alpha)
    value_range = None
    if colour.dtype != np.uint8:
        colour, value_range = rescale_to_uint8(colour, rescale)
    grey = colour.shape[2] == 1
    if grey:
        colour = np.repeat(colour, 3, axis=2)
    return Rgb8(np.ascontiguousarray(colour), alpha, grey, value_range)


def to_uint8_rgb(image: np.ndarray, rescale: str = "max") -> np.ndarray:
    """The model input ``uint8 [H, W, 3]`` (RGB order) of any supported image (module doc)."""
    return to_rgb8(image, rescale).rgb


def intensity_image(image: np.ndarray) -> np.ndarray:
    """Float ``[H, W]`` intensity in the image's original units: grey as is, colour = mean of R, G, B."""
    values = colour_channels(np.asarray(image)).astype(np.float64)
    return values.mean(axis=2)
