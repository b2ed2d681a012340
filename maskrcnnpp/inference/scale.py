"""Image scale from the nucleus diameter: the factor an image is resized by before the model sees it.

A model knows nuclei at the size it was trained on, its *nominal diameter* (config key
``TEST.NUCLEI.NOMINAL_DIAMETER``, :mod:`maskrcnnpp.data.nucleus_size`). Without a diameter the
predictor resizes every image to a fixed short side (``INPUT.MIN_SIZE_TEST``), so the size of a
nucleus in the model's input depends on the size of the image. Given the typical nucleus
diameter ``d`` of an image (in its own pixels) the image is resized by ``nominal / d`` instead,
whatever its size; masks are pasted back at the original pixels.

``diameter="auto"`` estimates ``d`` per image (:func:`estimate_diameter`): a first pass at the
default resize, the median equivalent diameter of the nuclei it finds (those scoring at least
the predictor's threshold), then a second pass at the factor :func:`auto_scale` chooses -- skipped
when that factor is within ``TEST.NUCLEI.AUTO_DIAMETER_TOLERANCE`` of the first pass's (its result
is kept). When the first pass finds no nucleus in an image the test resize shrank, it looks again
at twice the factor, up to the image's own pixels; finding none there either, that (empty) result is
kept and ``info["diameter_source"]`` says so. With the model's training range of diameters
(``TEST.NUCLEI.AUTO_DIAMETER_RANGE``) the nuclei are only brought into that range: the model has
learnt each kind of image at the size the training resize gave it, and forcing every image to the
one nominal diameter costs it on images like its training images (docs/SCALE.md).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..data.nucleus_size import equivalent_diameter
from ..errors import UserError
from .instances import CroppedInstance

__all__ = ["AUTO", "NONE", "Diameter", "auto_scale", "check_diameter", "check_diameter_range", "config_diameter",
           "diameter_scale", "estimate_diameter", "needs_second_pass",
           "parse_diameter"]

AUTO = "auto"
NONE = "none"  # the text of no diameter: the config's test resize
Diameter = Union[None, float, str]  # None: the config's test resize; a number of pixels; "auto"


def parse_diameter(text: str) -> Diameter:
    """``"auto"``, ``"none"`` (None) or a positive finite number of pixels from ``text``; a UserError saying what is allowed."""
    if text.strip().lower() == AUTO:
        return AUTO
    if text.strip().lower() == NONE:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    return check_diameter(value if math.isfinite(value) else text)


def check_diameter(diameter: Diameter) -> Diameter:
    """``diameter`` if it is None, ``"auto"`` or a positive finite number (as float); else a UserError."""
    if diameter is None or diameter == AUTO:
        return diameter
    if isinstance(diameter, (int, float, np.integer, np.floating)) and not isinstance(diameter, bool):
        value = float(diameter)
        if math.isfinite(value) and value > 0:
            return value
    raise UserError(f"nucleus diameter must be a positive number of pixels, 'auto' or 'none', got {diameter!r}")


def config_diameter(value: str, key: str = "TEST.NUCLEI.DIAMETER") -> Diameter:
    """The diameter config key ``key`` holds: "" or "none" (None), "auto", or pixels as text; a UserError naming the key."""
    text = str(value)
    if not text.strip():
        return None
    try:
        return parse_diameter(text)
    except UserError as e:
        raise UserError(f"{key}: {e}") from None


def diameter_scale(diameter: float, nominal: float) -> float:
    """The resize factor that brings nuclei of ``diameter`` pixels to the model's ``nominal`` diameter."""
    if not nominal > 0:
        raise UserError("the model's nominal nucleus diameter is unknown (TEST.NUCLEI.NOMINAL_DIAMETER is 0): "
                        "set it for your model to predict with a nucleus diameter (maskrcnnpp.data.nucleus_size.nominal_diameter "
                        "computes it from the training annotations; tools/model_zoo.py diameter stores it for a "
                        "shipped model)")
    return float(nominal) / float(check_diameter(diameter))


def check_diameter_range(value: Sequence[float], key: str = "TEST.NUCLEI.AUTO_DIAMETER_RANGE") -> Tuple[float, float]:
    """``value`` as a (low, high) pair of diameters with 0 < low <= high, or (0, 0) for no range; a UserError naming ``key``."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = float("nan")
    if (low, high) == (0.0, 0.0) or (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
        return low, high
    raise UserError(f"{key} must be (low, high) nucleus diameters in pixels with 0 < low <= high, or (0, 0) for "
                    f"none; got {tuple(value) if isinstance(value, (list, tuple)) else value!r}")


def auto_scale(diameter: float, first_scale: float, nominal: float, diameter_range: Tuple[float, float]) -> float:
    """The factor "auto" predicts at, for nuclei of ``diameter`` pixels (the image's own) found by a
    first pass at ``first_scale``: the first pass's factor when they were seen inside
    ``diameter_range`` (model-input pixels), else the factor that puts them on its nearer end; with
    no range (0, 0), the factor that brings them to ``nominal``."""
    low, high = diameter_range
    if high <= 0:
        return diameter_scale(diameter, nominal)
    seen = diameter * first_scale
    return first_scale * min(max(seen, low), high) / seen


def estimate_diameter(instances: Sequence[CroppedInstance]) -> Optional[float]:
    """Median equivalent diameter (pixels) of ``instances``; None when there are none."""
    if not instances:
        return None
    return float(np.median(equivalent_diameter([inst.area for inst in instances])))


def needs_second_pass(first_scale: float, new_scale: float, tolerance: float) -> bool:
    """Whether ``new_scale`` differs from ``first_scale`` by more than ``tolerance`` (relative)."""
    return abs(new_scale / first_scale - 1.0) > tolerance
