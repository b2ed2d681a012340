"""Read microscopy images of any kind and convert them to the models' 8-bit, 3-channel input.

Files are read with their original type and channels (:func:`read_image`); the conversion to
the 8-bit RGB model input (:func:`to_uint8_rgb`, the ``rescale`` rules) is
:mod:`maskrcnnpp.utils.images`, the same one ``prepare_dsb2018`` applies to training images.
A grey+alpha PNG is read as grey (its alpha dropped); :func:`image_kind` still says what the file holds.
A multi-channel image (e.g. a 2-channel TIFF) is read by choosing its nuclear channel, and
optionally a cytoplasm channel (:class:`ChannelChoice`, :func:`select_channels`), by the TIFF's
axis names where it has them.

Per-nucleus intensities are measured on the *original* values (:func:`intensity_image`), not on
the 8-bit model input.
"""
from __future__ import annotations

import fnmatch
import logging
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

from ..errors import UserError
from ..utils.images import (
    RESCALE_MODES,
    check_layout,
    decode_with_opencv,
    intensity_image,
    png_ihdr,
    to_uint8_rgb,
)

__all__ = [
    # the conversion's names that other modules import from here
    "RESCALE_MODES", "intensity_image", "to_uint8_rgb",
    "IMAGE_SUFFIXES", "TIFF_SUFFIXES", "PNG_GREY_ALPHA", "STACK_AXES", "CHANNEL_AXES",
    "ImageReadError", "ChannelChoiceNeeded", "ChannelChoice",
    "read_image", "select_channels", "png_colour_type", "image_kind", "list_image_files",
]

logger = logging.getLogger(__name__)

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_GREY_ALPHA = 4  # IHDR colour type of grey + alpha (PNG spec 11.2.2)
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


class ImageReadError(UserError, ValueError):
    """An image file that cannot be read or has an unsupported layout; the message names the file."""


STACK_AXES = "ZTI"  # tifffile's axis letters of the planes of a stack: depth, time, image sequence
CHANNEL_AXES = "CS"  # tifffile's axis letters of channels and (colour) samples


class ChannelChoiceNeeded(ImageReadError):
    """A multi-channel image (not grey, RGB or RGBA) read without saying which channel holds the nuclei."""


@dataclass(frozen=True)
class ChannelChoice:
    """Which channels of a multi-channel image to segment, numbered from 1 as Fiji numbers them.

    The nuclear channel alone becomes a grey image. With a cytoplasm channel the model gets the
    RGB image Cellpose users know (cytoplasm green, nuclei blue, red empty), both channels in their
    original units (so they share one 8-bit conversion, as colour channels do).
    """

    nuclear: int
    cyto: Optional[int] = None

    def __post_init__(self):
        for what, k in (("nuclear", self.nuclear), ("cytoplasm", self.cyto)):
            if k is not None and (isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1):
                raise ValueError(f"{what} channel must be a channel number from 1 (as in Fiji), got {k!r}")
        if self.cyto is not None and self.cyto == self.nuclear:
            raise ValueError(f"the nuclear and cytoplasm channels must differ, both are {self.nuclear}")

    def nuclear_plane(self, selected: np.ndarray) -> np.ndarray:
        """The nuclear channel of an image :func:`select_channels` made with this choice (for intensities)."""
        return selected[:, :, 2] if self.cyto is not None else selected


def read_image(path: str, log: bool = True, channels: Optional[ChannelChoice] = None) -> np.ndarray:
    """Pixels of ``path`` with their original type and channels (``[H, W]`` or ``[H, W, C]``).

    TIFF files are read with tifffile (first series, with its axis letters from the ImageJ/OME
    metadata or the TIFF tags; singleton axes are squeezed; a channels-first [3 or 4, H, W] image,
    as ImageJ writes colour, is moved to channels-last; a stack whose axes say planes (Z/T/I) is
    refused, and planes of unknown meaning are read as colour with a warning), everything else with
    OpenCV (which keeps 16-bit grey *and* colour PNGs; Pillow truncates 16-bit colour to 8 bits),
    falling back to Pillow for what OpenCV cannot decode. Palette images become RGB; colour comes
    back in RGB(A) order; grey+alpha comes back grey ``[H, W]``. With ``log`` False the reader's
    notes (channels moved, planes read as colour) are not logged again.

    ``channels`` picks the nuclear (and cytoplasm) channel of a multi-channel image
    (:func:`select_channels`); without it an image of other than 1, 3 or 4 channels raises
    :class:`ChannelChoiceNeeded` naming the channels found.
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
    image, axes = _squeeze(image, axes)
    stacked = [(a, n) for a, n in zip(axes or "", image.shape) if a in STACK_AXES]
    if stacked:  # planes of a stack, named so by the file: not colour, not channels
        planes = " x ".join(str(n) for _, n in stacked)
        raise ImageReadError(f"image {path}: a stack of {planes} planes (TIFF axes {axes}); "
                             "multi-page stacks are not supported: save one plane per file")
    if channels is not None:
        return select_channels(image, axes, channels, path)
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[2] not in (1, 3, 4):
        first = axes[0] if axes else None
        if log and first in CHANNEL_AXES:
            logger.info("%s: channels-first %s image (TIFF axes %s) read as channels-last", path, image.shape, axes)
        elif log:  # e.g. tifffile's "Q" (unknown): as often planar colour as a 3- or 4-page grey stack
            logger.warning("%s: %s planes of unknown meaning (TIFF axes %s) read as %s colour channels; if they are "
                           "the pages of a grey stack, save one page per file", path, image.shape[0], axes,
                           "RGB" if image.shape[0] == 3 else "RGBA")
        image = np.ascontiguousarray(np.moveaxis(image, 0, 2))
    try:
        check_layout(image)
    except ValueError as e:
        found = _channel_axis(image, axes)
        if found is not None:
            index, letter = found
            count = image.shape[index]
            where = f"TIFF axes {axes}" if axes else f"shape {image.shape}"
            if letter in CHANNEL_AXES or not letter:
                what = f"{count} channels ({where}{f', channels along {letter}' if letter else ''})"
                pages = ""
            else:  # e.g. tifffile's "Q" (unknown): channels or the pages of a stack
                what = f"{count} planes of unknown meaning ({where})"
                pages = "; if they are the pages of a stack, save one page per file"
            raise ChannelChoiceNeeded(
                f"image {path}: {what}, not a grey, RGB or RGBA image: choose the nuclear channel (1..{count}) and "
                f"optionally a cytoplasm channel{pages}") from None
        raise ImageReadError(f"image {path}: {e}") from None
    return image


def _squeeze(image: np.ndarray, axes: Optional[str]):
    """Drop singleton axes (with their letters): all but Y/X when the axes are known, else the leading ones."""
    if axes and len(axes) == image.ndim:
        keep = [k for k, (a, n) in enumerate(zip(axes, image.shape)) if n != 1 or a in "YX"]
        return image.reshape([image.shape[k] for k in keep]), "".join(axes[k] for k in keep)
    while image.ndim > 3 and image.shape[0] == 1:
        image, axes = image[0], axes[1:] if axes else axes
    return image, axes


def _channel_axis(image: np.ndarray, axes: Optional[str]) -> Optional[Tuple[int, str]]:
    """(index, letter) of the channel axis of a 3-D image: the C (else S) axis, else its one axis other
    than Y and X (letter "" when the file names none: the last axis of a non-TIFF colour image)."""
    if image.ndim != 3:
        return None
    if axes and len(axes) == 3:
        for letter in CHANNEL_AXES:
            if letter in axes:
                return axes.index(letter), letter
        others = [k for k, a in enumerate(axes) if a not in "YX"]
        return (others[0], axes[others[0]]) if len(others) == 1 else None
    return 2, ""


def select_channels(image: np.ndarray, axes: Optional[str], choice: ChannelChoice, path: str = "the image") -> np.ndarray:
    """The nuclear channel of ``image`` as grey ``[H, W]``, or with a cytoplasm channel the RGB image
    (0, cytoplasm, nuclear) ``[H, W, 3]`` (:class:`ChannelChoice`); original type kept.

    The channel axis is the C axis of the TIFF's axes, else its S (samples) axis, else its one
    axis besides Y and X; without axis names (PNG, JPEG, ...) the colour axis. A grey image has
    one channel. Raises :class:`ImageReadError` naming the number of channels available when a
    channel is out of range, or when the image has axes besides one channel axis and Y, X.
    """
    if image.ndim == 2:
        found, count = None, 1
    else:
        found = _channel_axis(image, axes)
        if found is None:
            raise ImageReadError(f"image {path}: cannot tell its channel axis (shape {image.shape}, TIFF axes "
                                 f"{axes or 'unknown'}): expected channels and Y, X axes")
        count = image.shape[found[0]]
    desc = f"TIFF axes {axes}" if axes else ("grey" if image.ndim == 2 else f"shape {image.shape}")
    for what, k in (("nuclear", choice.nuclear), ("cytoplasm", choice.cyto)):
        if k is not None and k > count:
            raise ImageReadError(f"image {path}: {what} channel {k} asked for, but the image has {count} "
                                 f"channel{'s' if count != 1 else ''} ({desc}); channels are numbered 1..{count}")

    def plane(k: int) -> np.ndarray:
        return image if found is None else np.take(image, k - 1, axis=found[0])

    nuclear = plane(choice.nuclear)
    if choice.cyto is None:
        return np.ascontiguousarray(nuclear)
    return np.ascontiguousarray(np.stack([np.zeros_like(nuclear), plane(choice.cyto), nuclear], axis=2))


def _read_with_opencv(path: str) -> Optional[np.ndarray]:
    with open(path, "rb") as f:
        return decode_with_opencv(f.read())


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
            header = png_ihdr(f.read(26))
    except OSError:
        return None
    return None if header is None else header[1]


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
