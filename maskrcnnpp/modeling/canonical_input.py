"""Canonical model input: every image made to look like fluorescence before the network sees it.

Users bring fluorescence, bright-field and stained-tissue (H&E) images; DSB 2018 train is mostly
fluorescence, so a model learns bright nuclei on a dark background and little else. With the
``MODEL.CANONICAL_INPUT`` keys the model itself (in ``preprocess_image``, so training, evaluation
and :class:`~maskrcnnpp.inference.NucleiPredictor` all see the same input) maps each image to:

1. ``GREY``: the mean of its channels, copied to the 3 input channels (stain colours vary between
   labs; the nuclei's darkness or brightness is what carries over);
2. ``INVERT_BRIGHT``: ``255 - v`` when the background is bright, i.e. when the image's median
   lies above the middle of its low and high percentiles (``PERCENTILES``, or 1 and 99 when
   those are off): bright-field and H&E nuclei are dark on a bright background, and become bright
   on a dark one, as in fluorescence. The rule compares the image with itself, so it holds for
   any exposure;
3. ``PERCENTILES`` ``[low, high]``: values stretched so that the image's ``low`` and ``high``
   percentiles map to 0 and 255 (clipped), as StarDist and Cellpose normalise their input; dim
   and over-exposed images then look alike.

Percentiles are taken over a regular subsample of at most :data:`MAX_SAMPLES` pixels (exact for
smaller images), so the cost stays small for large fields.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import torch

__all__ = ["CanonicalInput", "MAX_SAMPLES", "canonical_input_from_config"]

MAX_SAMPLES = 1 << 18
# The percentiles the bright-background rule compares the median with when PERCENTILES is off.
DEFAULT_RULE_PERCENTILES = (1.0, 99.0)


def _quantiles(grey: torch.Tensor, qs: Sequence[float]) -> torch.Tensor:
    flat = grey.reshape(-1)
    step = max(1, flat.numel() // MAX_SAMPLES)
    sample = flat[::step].float()
    return torch.quantile(sample, torch.tensor(qs, dtype=sample.dtype, device=sample.device))


@dataclass(frozen=True)
class CanonicalInput:
    """The ``MODEL.CANONICAL_INPUT`` mapping of one C x H x W image with values in [0, 255]."""

    grey: bool = False
    invert_bright: bool = False
    percentiles: Optional[Tuple[float, float]] = None

    @property
    def active(self) -> bool:
        return self.grey or self.invert_bright or self.percentiles is not None

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        """The canonical float32 image, same shape as ``image`` (C x H x W, values 0..255)."""
        x = image.float()
        if not self.active:
            return x
        if self.grey and x.shape[0] > 1:
            x = x.mean(dim=0, keepdim=True).expand_as(x)
        lo_q, hi_q = self.percentiles or DEFAULT_RULE_PERCENTILES
        # the rule and the stretch read one channel when the image is grey, else the channel mean
        grey = x[0] if self.grey or x.shape[0] == 1 else x.mean(dim=0)
        lo, median, hi = _quantiles(grey, (lo_q / 100.0, 0.5, hi_q / 100.0)).tolist()
        if self.invert_bright and median > 0.5 * (lo + hi):
            x = 255.0 - x
            lo, hi = 255.0 - hi, 255.0 - lo
        if self.percentiles is not None:
            span = max(hi - lo, 1e-3)
            x = ((x - lo) * (255.0 / span)).clamp_(0.0, 255.0)
        return x.contiguous()


def canonical_input_from_config(cfg) -> CanonicalInput:
    """The :class:`CanonicalInput` of ``cfg.MODEL.CANONICAL_INPUT``; raises ValueError naming the key."""
    c = cfg.MODEL.CANONICAL_INPUT
    raw = list(c.PERCENTILES)
    percentiles = None
    if raw:
        try:
            lo, hi = (float(v) for v in raw)
        except (TypeError, ValueError):
            lo = hi = float("nan")
        if not 0.0 <= lo < hi <= 100.0:  # also rejects NaN and a wrong count
            raise ValueError(f"MODEL.CANONICAL_INPUT.PERCENTILES must be [] (off) or [low, high] with "
                             f"0 <= low < high <= 100, got {c.PERCENTILES!r}")
        percentiles = (lo, hi)
    return CanonicalInput(grey=bool(c.GREY), invert_bright=bool(c.INVERT_BRIGHT), percentiles=percentiles)
