"""Read microscopy images of any kind and convert them to the models' 8-bit, 3-channel input.

Accepted arrays: grey ``[H, W]`` or ``[H, W, 1]``, RGB ``[H, W, 3]``, RGBA ``[H, W, 4]`` (alpha is
dropped, not composited: microscopy RGBA files carry an opaque or meaningless alpha), with
``uint8``, ``uint16`` (or any other integer type), ``bool`` or float pixels. A grey+alpha PNG is
read as grey (its alpha dropped likewise); :func:`image_kind` still says what the file holds.

Conversion to ``uint8`` (:func:`to_uint8_rgb`):

* ``uint8`` is used as is;
* any other type is rescaled linearly so that intensity ``lo`` maps to 0 and ``hi`` to 255
  (values outside are clipped), with ``(lo, hi)`` taken over all channels together (so colours
  keep their ratios) by the ``rescale`` rule:

  - ``"max"`` (default): ``lo = 0``, ``hi`` = the maximum, which is how ``prepare_dsb2018.py``
    converts deeper-than-8-bit training images; a model trained on data it prepared therefore sees
    the same pixels at prediction as in training;
  - ``"percentile"``: ``lo, hi`` = the 0.1th and 99.9th percentiles of the pixel values, robust to
    a few hot or dead pixels (a contrast stretch the training images did not get);
  - ``"minmax"``: ``lo, hi`` = the minimum and maximum;
  - ``"none"``: ``lo, hi`` = the full range of the type (0..65535 for ``uint16``; 0..1 for
    floats), i.e. no contrast stretch.

  ``hi == lo`` (an all-zero image, or a constant one with "percentile" or "minmax") gives all zeros.
* grey becomes RGB by repeating the channel.

Per-nucleus intensities are measured on the *original* values (:func:`intensity_image`), not on
the 8-bit model input.
"""
from __future__ import annotations

import fnmatch
import logging
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

logger = logging.getLogger(__name__)

RESCALE_MODES = ("max", "percentile", "minmax", "none")
PERCENTILES = (0.1, 99.9)
TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_GREY_ALPHA = 4  # IHDR colour type of grey + alpha (PNG spec 11.2.2)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


class ImageReadError(ValueError):
    """An image file that cannot be read or has an unsupported layout; the message names the file."""


def read_image(path: str, log: bool = True) -> np.ndarray:
    """Pixels of ``path`` with their original type and channels (``[H, W]`` or ``[H, W, C]``).

    TIFF files are read with tifffile (first series; leading singleton axes are squeezed; a
    channels-first [3 or 4, H, W] image, as ImageJ writes colour, is moved to channels-last, a
    stack whose axes say planes (Z/T/I) is refused, and planes of unknown meaning are read as
    colour with a warning),
    everything else with OpenCV (which keeps 16-bit grey *and* colour PNGs; Pillow truncates
    16-bit colour to 8 bits), falling back to Pillow for what OpenCV cannot decode. Palette images
    become RGB; colour comes back in RGB(A) order; grey+alpha comes back grey ``[H, W]``. With
    ``log`` False the reader's notes (channels moved, planes read as colour) are not logged again.
    """
    if not os.path.isfile(path):
        raise ImageReadError(f"image {path} does not exist")
    axes = None  # tifffile's axis letters of a TIFF series (C/S channels, Z/T/I planes, Q unknown)
    try:
        if path.lower().endswith(TIFF_SUFFIXES):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                image, axes = np.asarray(series.asarray()), series.axes
        else:
            image = _read_with_opencv(path)
            if image is None:
                image = _read_with_pillow(path)
            if image.ndim == 3 and image.shape[2] == 4 and png_colour_type(path) == PNG_GREY_ALPHA:
                # OpenCV (and Pillow, at 16 bits) expand grey+alpha to RGBA with R = G = B: keep the
                # one grey channel, so the file reads as the grey image it is whichever library decodes it.
                image = np.ascontiguousarray(image[:, :, 0])
    except ImageReadError:
        raise
    except Exception as e:  # noqa: BLE001  (PIL/tifffile raise many types for corrupt files)
        raise ImageReadError(f"cannot read image {path}: {type(e).__name__}: {e}") from None
    while image.ndim > 3 and image.shape[0] == 1:
        image, axes = image[0], axes[1:] if axes else axes
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[2] not in (1, 3, 4):
        first = axes[0] if axes else None
        if first in ("Z", "T", "I"):  # planes of a stack, named so by the file: not colour
            raise ImageReadError(f"image {path}: a stack of {image.shape[0]} planes (TIFF axes {axes}); "
                                 "multi-page stacks are not supported: save one plane per file")
        if log and first in ("C", "S"):
            logger.info("%s: channels-first %s image (TIFF axes %s) read as channels-last", path, image.shape, axes)
        elif log:  # e.g. tifffile's "Q" (unknown): as often planar colour as a 3- or 4-page grey stack
            logger.warning("%s: %s planes of unknown meaning (TIFF axes %s) read as %s colour channels; if they are "
                           "the pages of a grey stack, save one page per file", path, image.shape[0], axes,
                           "RGB" if image.shape[0] == 3 else "RGBA")
        image = np.ascontiguousarray(np.moveaxis(image, 0, 2))
    try:
        check_layout(image)
    except ValueError as e:
        raise ImageReadError(f"image {path}: {e}") from None
    return image


def _read_with_opencv(path: str) -> Optional[np.ndarray]:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        return None
    if image.ndim == 3 and image.shape[2] == 3:
        return np.ascontiguousarray(image[:, :, ::-1])  # BGR -> RGB
    if image.ndim == 3 and image.shape[2] == 4:
        return np.ascontiguousarray(image[:, :, [2, 1, 0, 3]])  # BGRA -> RGBA
    return image


def _read_with_pillow(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
        elif im.mode == "LA":
            im = im.convert("L")
        image = np.asarray(im)
        if im.mode == "I" and image.size and image.min() >= 0 and image.max() <= 65535:
            image = image.astype(np.uint16)
    return image


def png_colour_type(path: str) -> Optional[int]:
    """The colour type byte of a PNG file's IHDR header (0 grey, 2 RGB, 3 palette, 4 grey+alpha,
    6 RGBA), or None when ``path`` is not a PNG. Pillow cannot tell: it opens 16-bit grey+alpha as RGBA."""
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[25]


def image_kind(path: str, image: np.ndarray) -> str:
    """What ``image`` (as :func:`read_image` returned it from ``path``) holds: "grey", "grey+alpha",
    "RGB" or "RGBA" -- from the file where reading changed it (a grey+alpha PNG reads as grey)."""
    if not path.lower().endswith(TIFF_SUFFIXES) and png_colour_type(path) == PNG_GREY_ALPHA:
        return "grey+alpha"
    if image.ndim == 2 or image.shape[-1] == 1:
        return "grey"
    return {3: "RGB", 4: "RGBA"}.get(image.shape[-1], f"{image.shape[-1]}-channel")


def list_image_files(path: str, pattern: Optional[str] = None, option: str = "input") -> List[str]:
    """The image files named by ``path`` (a file, or a folder filtered by the glob ``pattern``), sorted.

    Without ``pattern`` a folder contributes its files ending in ``IMAGE_SUFFIXES``. Raises
    :class:`ImageReadError` (its message starting with ``option``) when ``path`` does not exist,
    nothing matches, or two files share a stem (their outputs would collide).
    """
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise ImageReadError(f"{option} {path} does not exist")
    names = sorted(os.listdir(path))
    if pattern:
        chosen = [n for n in names if fnmatch.fnmatch(n, pattern)]
    else:
        chosen = [n for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    files = [os.path.join(path, n) for n in chosen if os.path.isfile(os.path.join(path, n))]
    if not files:
        raise ImageReadError(f"{option} {path}: no images matching {pattern or ' / '.join('*' + s for s in IMAGE_SUFFIXES)}")
    stems: Dict[str, str] = {}
    for f in files:
        stem = os.path.splitext(os.path.basename(f))[0]
        if stem in stems:
            raise ImageReadError(f"{option}: {stems[stem]} and {f} share the name {stem!r} (outputs would collide); "
                                 "pick one with a pattern")
        stems[stem] = f
    return files


def check_layout(image: np.ndarray) -> None:
    """Raise ValueError unless ``image`` is ``[H, W]`` or ``[H, W, C]`` with C in 1, 3, 4 and H, W > 0."""
    if image.ndim == 3 and image.shape[2] in (1, 3, 4) and image.shape[0] > 0 and image.shape[1] > 0:
        return
    if image.ndim == 2 and image.shape[0] > 0 and image.shape[1] > 0:
        return
    raise ValueError(
        f"unsupported image layout {image.shape} ({image.dtype}): expected [H, W] grey, [H, W, 3] RGB "
        "or [H, W, 4] RGBA (multi-page stacks and other channel counts are not supported)"
    )


def colour_channels(image: np.ndarray) -> np.ndarray:
    """``image`` as ``[H, W, C]`` with C = 1 (grey) or 3 (RGB); an alpha channel is dropped."""
    check_layout(image)
    if image.ndim == 2:
        return image[:, :, None]
    return image[:, :, :3] if image.shape[2] == 4 else image


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
    """``values`` (any non-8-bit type, same shape out) mapped linearly from ``(lo, hi)`` to 0..255, and
    that range (module doc). The one conversion of both ``prepare_dsb2018.py`` and prediction."""
    lo, hi = intensity_range(values, rescale)
    scaled = values.astype(np.float64)
    if values.dtype.kind == "f":
        scaled = np.nan_to_num(scaled, nan=lo, posinf=hi, neginf=lo)
    if hi > lo:
        scaled = (scaled - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(scaled)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8), (lo, hi)


def to_uint8_rgb(image: np.ndarray, rescale: str = "max") -> np.ndarray:
    """The model input ``uint8 [H, W, 3]`` (RGB order) of any supported image (module doc)."""
    values = colour_channels(np.asarray(image))
    out = values if values.dtype == np.uint8 else rescale_to_uint8(values, rescale)[0]
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)


def intensity_image(image: np.ndarray) -> np.ndarray:
    """Float ``[H, W]`` intensity in the image's original units: grey as is, colour = mean of R, G, B."""
    values = colour_channels(np.asarray(image)).astype(np.float64)
    return values.mean(axis=2)
