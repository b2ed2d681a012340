"""The model passes of one image at a scale: whole or in tiles, and the passes of diameter "auto".

A *pass* runs a predictor's model over an 8-bit RGB image resized by one factor (the test resize,
a diameter's factor, or the factor "auto" chose) and returns its instances at the original pixels,
the tiles' merge counts and the factor used. :func:`auto_instances` is diameter "auto"
(:mod:`maskrcnnpp.inference.scale`): a first pass, the diameter its nuclei have, and a second pass
only when that diameter lies outside the model's training range.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from .instances import CroppedInstance
from .scale import auto_scale, estimate_diameter, needs_second_pass
from .tiling import predict_tiled

if TYPE_CHECKING:  # pragma: no cover
    from .predictor import NucleiPredictor

logger = logging.getLogger(__name__)

# the instances of a pass, the tiles' merge counts, and the resize factor it used
Pass = Tuple[List[CroppedInstance], Dict[str, int], float]


def instances_at(predictor: "NucleiPredictor", rgb8: np.ndarray, scale: Optional[float], tile_size: int,
                 tile_overlap: int, progress: bool, batch_size: int = 1) -> Pass:
    """Instances of ``rgb8`` resized by ``scale`` (None: the predictor's test resize), tiled when larger
    than ``tile_size`` (``batch_size`` tiles per pass); also the merge counts and the factor used (of
    the tiles, when tiled: without a scale each tile gets the factor an image of its size would get;
    with one, ``tile_size`` and ``tile_overlap`` are pixels of the rescaled image)."""
    height, width = rgb8.shape[:2]
    if scale is None:
        if tile_size and max(height, width) > tile_size:
            scale = predictor.test_scale(min(tile_size, height), min(tile_size, width))
            tile, overlap = tile_size, tile_overlap
        else:
            return predictor.predict_instances(rgb8), {"tiles": 1}, predictor.test_scale(height, width)
    else:  # tile size and overlap are pixels of the rescaled image: back to original pixels
        tile = max(1, int(round(tile_size / scale))) if tile_size else 0
        overlap = min(int(round(tile_overlap / scale)), tile - 1)
        if not tile or max(height, width) <= tile:
            return predictor.predict_instances(rgb8, scale), {"tiles": 1}, scale
    instances, stats = predict_tiled(
        rgb8, lambda tiles: predictor.predict_instances_batch(tiles, scale, batch_size), tile, overlap,
        progress=progress, batch_size=batch_size,
    )
    return instances, stats, scale


def auto_instances(predictor: "NucleiPredictor", rgb8: np.ndarray, tile_size: int, tile_overlap: int,
                   progress: bool, batch_size: int = 1, first_pass: Optional[Pass] = None
                   ) -> Tuple[List[CroppedInstance], Dict[str, int], dict]:
    """Diameter "auto" of ``rgb8``: its instances, merge counts and scale info (``scale``, ``diameter``,
    ``diameter_source``). ``first_pass`` is the test resize's :func:`instances_at` when already made.

    A first pass that finds no nucleus in a field the test resize shrank is made again at twice the
    factor, up to the image's own pixels; when none is found even there, the empty result is kept
    (with a warning). Otherwise the second pass is made at the factor :func:`auto_scale` gives, unless
    it lies within ``TEST.NUCLEI.AUTO_DIAMETER_TOLERANCE`` of the first pass's.
    """
    first, stats, first_scale = first_pass or instances_at(predictor, rgb8, None, tile_size, tile_overlap, progress,
                                                           batch_size)
    diameter = estimate_diameter(first)
    kept = "auto: first pass kept"
    look = default_scale = first_scale
    while diameter is None and look < 1.0:
        # a large field shrunk by the test resize may show its nuclei too small to be found: look again at
        # twice the factor, up to the image's own pixels (no nucleus there is no nucleus at all)
        look = min(1.0, 2 * look)
        first, stats, _ = instances_at(predictor, rgb8, look, tile_size, tile_overlap, progress, batch_size)
        diameter = estimate_diameter(first)
        first_scale, kept = look, f"auto: found at x{look:.3g}"
    if diameter is None:
        logger.warning("diameter auto: no nucleus scored %s or more at the default resize (x%.3g)%s, so the "
                       "nucleus diameter cannot be estimated: the (empty) result is kept; give the diameter in "
                       "pixels if the image has nuclei", predictor.score_thresh, default_scale,
                       "" if first_scale == default_scale else f" nor at larger factors up to x{first_scale:.3g}")
        return first, stats, {"scale": first_scale, "diameter": None,
                              "diameter_source": "auto: no nucleus found, " + (
                                  "default resize kept" if first_scale == default_scale else f"x{first_scale:.3g} kept")}
    scale = auto_scale(diameter, first_scale, predictor.nominal_diameter, predictor.auto_range)
    if not needs_second_pass(first_scale, scale, predictor.auto_tolerance):
        return first, stats, {"scale": first_scale, "diameter": diameter, "diameter_source": kept}
    instances, stats, _ = instances_at(predictor, rgb8, scale, tile_size, tile_overlap, progress, batch_size)
    return instances, stats, {"scale": scale, "diameter": diameter, "diameter_source": "auto"}
