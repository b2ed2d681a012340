"""Tiled instance prediction of large images, merged so that no nucleus is counted twice.

Tiles of ``tile_size`` pixels start every ``tile_size - overlap`` pixels; the last tile of a row
or column is shifted back to end at the image border, so every tile has the same size (unless the
image is smaller than a tile along that axis). Each tile owns a *core*: the part of the image
closer to its centre than to any neighbour's (cores meet in the middle of each overlap strip and
partition the image).

Merging (:func:`merge_tile_instances`): a nucleus lying in an overlap strip is predicted by two
(or four) tiles, and a nucleus crossing a tile's inner edge is predicted cut in that tile. All
candidates are ranked by

1. whether they are *whole*, i.e. do not touch an inner edge of their tile (image borders are not
   inner edges),
2. whether their centroid lies in their own tile's core (of two whole copies, the one from the tile
   that saw the nucleus with most context around it),
3. score,

and accepted greedily; a candidate is a duplicate, and dropped, when it covers more than
``duplicate_overlap`` of the smaller of itself and an already accepted instance *from another
tile* (intersection over the smaller area, so a cut piece is recognised as part of its whole
copy). Instances of the same tile are never merged: what one forward pass predicts is kept as is,
as in untiled prediction. If the overlap is at least the largest nucleus' diameter, every nucleus
is whole in some tile, so the result equals untiled prediction for a translation-equivariant
model; nuclei still cut after merging are counted in ``info["cut_at_tile_border"]`` and logged.
"""
from __future__ import annotations

import logging
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

from .instances import CroppedInstance

logger = logging.getLogger(__name__)

TilePredictor = Callable[[np.ndarray], List[CroppedInstance]]
# Tiles of one image are equal in size, so a batch of them can share one forward pass.
TileBatchPredictor = Callable[[List[np.ndarray]], List[List[CroppedInstance]]]


def one_by_one(predict_tile: TilePredictor) -> TileBatchPredictor:
    """A batch predictor that calls ``predict_tile`` on each tile in turn."""
    return lambda tiles: [predict_tile(tile) for tile in tiles]


def tile_starts(length: int, tile_size: int, overlap: int) -> List[int]:
    """Start offsets of tiles covering ``[0, length)``: stride ``tile_size - overlap``, last tile flush with the end."""
    if tile_size <= 0:
        raise ValueError(f"tile size must be positive, got {tile_size}")
    if not 0 <= overlap < tile_size:
        raise ValueError(f"tile overlap must be in [0, tile size {tile_size}), got {overlap}")
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    starts = list(range(0, length - tile_size, stride))
    starts.append(length - tile_size)
    return starts


def core_limits(starts: Sequence[int], tile_size: int, length: int) -> List[Tuple[int, int]]:
    """``[lo, hi)`` of each tile's core along one axis: cuts in the middle of each overlap."""
    size = min(tile_size, length)
    cuts = [0] + [(s + prev + size) // 2 for prev, s in zip(starts[:-1], starts[1:])] + [length]
    return [(cuts[k], cuts[k + 1]) for k in range(len(starts))]


class Tile:
    """One tile: its window in the image, its core and which of its edges are inner edges."""

    def __init__(self, index: int, y: int, x: int, h: int, w: int, core: Tuple[int, int, int, int], image_hw: Tuple[int, int]):
        self.index, self.y, self.x, self.h, self.w = index, y, x, h, w
        self.core = core  # (y_lo, y_hi, x_lo, x_hi), image coordinates
        height, width = image_hw
        # inner edges: top, bottom, left, right
        self.inner = (y > 0, y + h < height, x > 0, x + w < width)

    def window(self) -> Tuple[slice, slice]:
        return slice(self.y, self.y + self.h), slice(self.x, self.x + self.w)

    def is_cut(self, inst: CroppedInstance) -> bool:
        """Whether ``inst`` (image coordinates) touches an inner edge of this tile."""
        y0, x0, y1, x1 = inst.box
        top, bottom, left, right = self.inner
        return (top and y0 <= self.y) or (bottom and y1 >= self.y + self.h) or (left and x0 <= self.x) or (right and x1 >= self.x + self.w)

    def owns(self, inst: CroppedInstance) -> bool:
        """Whether the centroid of ``inst`` lies in this tile's core."""
        cy, cx = inst.centroid
        y_lo, y_hi, x_lo, x_hi = self.core
        return y_lo <= cy < y_hi and x_lo <= cx < x_hi


def make_tiles(image_hw: Tuple[int, int], tile_size: int, overlap: int) -> List[Tile]:
    """The tiles covering an image of ``image_hw``, row by row."""
    height, width = image_hw
    ys, xs = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    y_cores, x_cores = core_limits(ys, tile_size, height), core_limits(xs, tile_size, width)
    h, w = min(tile_size, height), min(tile_size, width)
    tiles = []
    for (y, yc) in zip(ys, y_cores):
        for (x, xc) in zip(xs, x_cores):
            tiles.append(Tile(len(tiles), y, x, h, w, (yc[0], yc[1], xc[0], xc[1]), image_hw))
    return tiles


def _intersection(a: CroppedInstance, b: CroppedInstance) -> int:
    ay0, ax0, ay1, ax1 = a.box
    by0, bx0, by1, bx1 = b.box
    y0, x0, y1, x1 = max(ay0, by0), max(ax0, bx0), min(ay1, by1), min(ax1, bx1)
    if y0 >= y1 or x0 >= x1:
        return 0
    pa = a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
    pb = b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    return int(np.count_nonzero(pa & pb))


def merge_tile_instances(
    per_tile: Sequence[Tuple[Tile, Sequence[CroppedInstance]]],
    duplicate_overlap: float = 0.5,
) -> Tuple[List[CroppedInstance], Dict[str, int]]:
    """Merge per-tile instances (image coordinates) into one set without duplicates (module doc).

    Returns the kept instances (in acceptance order) and counts: ``candidates``, ``duplicates``
    (dropped), ``cut_at_tile_border`` (kept instances still touching an inner tile edge).
    """
    candidates = []
    for tile, instances in per_tile:
        for k, inst in enumerate(instances):
            candidates.append((tile.is_cut(inst), not tile.owns(inst), -inst.score, tile.index, k, tile, inst))
    candidates.sort(key=lambda c: c[:5])
    kept: List[CroppedInstance] = []
    kept_cut: List[bool] = []
    # boxes (y0, x0, y1, x1), areas and tile of the kept instances, in preallocated arrays
    boxes = np.zeros((len(candidates), 4), dtype=np.int64)
    areas = np.zeros(len(candidates), dtype=np.int64)
    tiles = np.zeros(len(candidates), dtype=np.int64)
    duplicates = 0
    for cut, _, _, tile_index, _, _, inst in candidates:
        y0, x0, y1, x1 = inst.box
        area = inst.area
        n = len(kept)
        b = boxes[:n]
        near = np.flatnonzero((b[:, 0] < y1) & (b[:, 2] > y0) & (b[:, 1] < x1) & (b[:, 3] > x0) & (tiles[:n] != tile_index))
        if any(_intersection(inst, kept[j]) > duplicate_overlap * min(area, int(areas[j])) for j in near):
            duplicates += 1
            continue
        boxes[n], areas[n], tiles[n] = inst.box, area, tile_index
        kept.append(inst)
        kept_cut.append(cut)
    stats = {"candidates": len(candidates), "duplicates": duplicates, "cut_at_tile_border": int(sum(kept_cut))}
    return kept, stats


def predict_tiled(
    image: np.ndarray,
    predict_tiles: TileBatchPredictor,
    tile_size: int,
    overlap: int,
    duplicate_overlap: float = 0.5,
    progress: bool = False,
    batch_size: int = 1,
) -> Tuple[List[CroppedInstance], Dict[str, int]]:
    """Run ``predict_tiles`` (tile arrays -> instances in tile coordinates, one list per tile) over
    the tiles of ``image``, ``batch_size`` tiles per call, and merge (:func:`merge_tile_instances`).

    Returns instances in image coordinates and the merge counts (plus ``tiles``).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be positive, got {batch_size}")
    height, width = image.shape[:2]
    tiles = make_tiles((height, width), tile_size, overlap)
    per_tile = []
    batches = [tiles[i:i + batch_size] for i in range(0, len(tiles), batch_size)]
    bar = None
    if progress and len(tiles) > 1:
        from tqdm import tqdm

        bar = tqdm(total=len(tiles), desc="tiles", unit="tile", leave=False)
    for batch in batches:
        arrays = [np.ascontiguousarray(image[tile.window()]) for tile in batch]
        for tile, found in zip(batch, predict_tiles(arrays)):
            per_tile.append((tile, [inst.shifted(tile.y, tile.x) for inst in found]))
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    kept, stats = merge_tile_instances(per_tile, duplicate_overlap)
    stats["tiles"] = len(tiles)
    if stats["cut_at_tile_border"]:
        largest = max(max(i.mask.shape) for i in kept)
        logger.warning(
            "%d nuclei touch a tile border with no whole copy in a neighbouring tile (largest nucleus "
            "seen: %d px across); use a tile overlap of at least the largest nucleus diameter (now %d px)",
            stats["cut_at_tile_border"], largest, overlap,
        )
    return kept, stats
