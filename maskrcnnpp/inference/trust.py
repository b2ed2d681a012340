"""How far an image is from what the model was trained on, so a user knows which results to check.

A model trained on DSB 2018 is good on fluorescence and weak on stained tissue and bright-field,
and it misses nuclei much smaller or larger (as it sees them) than its training nuclei. For each
prediction :func:`assess_image` reports

* ``image_kind``: fluorescence, bright-field or stained tissue (:mod:`maskrcnnpp.utils.image_kind`);
* ``diameter_px``: the median equivalent diameter of the nuclei found, in model-input pixels (the
  image's pixels times the prediction's ``scale``), against the model's training range
  (``TEST.NUCLEI.AUTO_DIAMETER_RANGE``) widened by ``TEST.NUCLEI.TRUST.DIAMETER_MARGIN`` (``--diameter
  auto`` brings nuclei to the ends of the range, where the measured median lands a little either side);
* ``mean_score``: the mean detection score of the nuclei kept (lower on images unlike training);

and ``flags``, the reasons to distrust it: a kind in ``TEST.NUCLEI.TRUST.WEAK_KINDS``, nuclei outside
the training range, a mean score below ``TEST.NUCLEI.TRUST.MIN_MEAN_SCORE``, or no nucleus at all.
How well the flags pick out the images the model fails on is measured by ``tools/ood_check.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ..data.nucleus_size import equivalent_diameter
from ..errors import UserError
from ..utils.image_kind import IMAGE_TYPES, image_type
from .instances import NucleiPrediction
from .scale import check_diameter_range

__all__ = ["TRUST_COLUMNS", "TrustSettings", "assess_image", "describe_flags"]

# The per-image summary's trust columns, in order (tools/predict.py's summary.csv).
TRUST_COLUMNS = ("image_kind", "diameter_px", "mean_score", "flags")


@dataclass(frozen=True)
class TrustSettings:
    """The model's known weak image kinds, its training range of nucleus diameters (model-input
    pixels; (0, 0) unknown) with the relative margin allowed outside it, and the mean detection score
    below which a result is doubtful (0: off)."""

    weak_kinds: Tuple[str, ...] = ()
    diameter_range: Tuple[float, float] = (0.0, 0.0)
    min_mean_score: float = 0.0
    diameter_margin: float = 0.25

    @classmethod
    def from_config(cls, cfg) -> "TrustSettings":
        """From ``TEST.NUCLEI.TRUST`` and ``TEST.NUCLEI.AUTO_DIAMETER_RANGE``; UserError naming a bad key."""
        trust = cfg.TEST.NUCLEI.TRUST
        kinds = tuple(str(k) for k in trust.WEAK_KINDS)
        unknown = [k for k in kinds if k not in IMAGE_TYPES]
        if unknown:
            raise UserError(f"TEST.NUCLEI.TRUST.WEAK_KINDS: unknown image kind(s) {', '.join(map(repr, unknown))}; "
                            f"the kinds are {', '.join(IMAGE_TYPES)}")
        score = float(trust.MIN_MEAN_SCORE)
        if not 0.0 <= score <= 1.0:
            raise UserError(f"TEST.NUCLEI.TRUST.MIN_MEAN_SCORE must be in [0, 1], got {trust.MIN_MEAN_SCORE!r}")
        margin = float(trust.DIAMETER_MARGIN)
        if not 0.0 <= margin < 1.0:
            raise UserError(f"TEST.NUCLEI.TRUST.DIAMETER_MARGIN must be in [0, 1), got {trust.DIAMETER_MARGIN!r}")
        return cls(kinds, check_diameter_range(cfg.TEST.NUCLEI.AUTO_DIAMETER_RANGE), score, margin)


def _median_diameter(labels: np.ndarray) -> Optional[float]:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(equivalent_diameter(areas))) if areas.size else None


def assess_image(rgb8: np.ndarray, prediction: NucleiPrediction, settings: TrustSettings) -> Dict[str, Any]:
    """The trust columns of one prediction of the 8-bit image ``rgb8`` (H x W x 3, as the model got it):
    ``{"image_kind", "diameter_px" (None without nuclei), "mean_score" (None without nuclei), "flags"
    (a list of short reasons, empty when nothing is known to be wrong)}``."""
    kind = image_type(rgb8)
    flags = []
    if kind in settings.weak_kinds:
        flags.append(f"{kind} is a weak image kind of this model")
    diameter = _median_diameter(prediction.labels)
    if diameter is not None:
        diameter *= float(prediction.info.get("scale", 1.0))
    mean_score = float(np.mean(prediction.scores)) if prediction.num_instances else None
    if prediction.num_instances == 0:
        flags.append("no nucleus found")
    else:
        low, high = settings.diameter_range
        margin = settings.diameter_margin
        if high > 0 and not (1 - margin) * low <= diameter <= (1 + margin) * high:
            flags.append(f"nuclei {diameter:.1f} px as the model saw them, outside its training range "
                         f"{low:.1f}-{high:.1f} px by more than {100 * margin:.0f} %")
        if mean_score < settings.min_mean_score:
            flags.append(f"mean detection score {mean_score:.2f} below {settings.min_mean_score:.2f}")
    # rounded as summary.csv writes them: batched forward passes move scores in the 7th digit
    return {"image_kind": kind, "diameter_px": None if diameter is None else round(diameter, 3),
            "mean_score": None if mean_score is None else round(mean_score, 4), "flags": flags}


def describe_flags(trust: Dict[str, Any]) -> str:
    """The flags of :func:`assess_image` in one line ("" when there are none)."""
    return "; ".join(trust.get("flags", ()))
