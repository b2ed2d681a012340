"""COCO RLE decoding without full-size masks: one decoder for the training mapper and the evaluation.

pycocotools can only decode a compressed RLE to a full ``H x W`` array, which costs ``O(H W)``
per object; these functions read the runs in ``O(runs)``, vectorised over many RLEs at once.
The compressed format is pycocotools' (``rleToString`` in its maskApi.c): each value in 5-bit
groups, least significant first, as chars offset by 48, bit 0x20 = "more groups follow", bit 0x10
of the last group = sign; from the fourth value on, each is stored as the difference to the value
two places before. The tests check every function against ``pycocotools.mask.decode``.
"""
from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

__all__ = ["decode_compressed_counts", "rle_error", "rle_foreground_runs", "rle_pixel_indices", "rle_run_lengths"]


def rle_error(k: int, message: str) -> ValueError:
    err = ValueError(message)
    err.annotation_index = k  # which of the given segmentations is at fault
    return err


def _split_counts(segms: Sequence[Dict[str, Any]], height: int, width: int
                  ) -> Tuple[Tuple[List[bytes], List[int]], Tuple[List[np.ndarray], List[int]]]:
    """The compressed counts (bytes) and the integer counts of ``segms``, each with the index of its
    segmentation; a ValueError (``annotation_index``) for a malformed one or a wrong size."""
    strings: List[bytes] = []
    string_owner: List[int] = []
    lists: List[np.ndarray] = []
    list_owner: List[int] = []
    for k, segm in enumerate(segms):
        if not isinstance(segm, dict) or "size" not in segm or "counts" not in segm:
            raise rle_error(k, f"segmentation is not a COCO RLE dict with 'size' and 'counts': {str(segm)[:80]}")
        if list(np.asarray(segm["size"]).reshape(-1)) != [int(height), int(width)]:
            raise rle_error(k, f"RLE size {segm['size']} differs from the image size {[int(height), int(width)]}")
        counts = segm["counts"]
        if isinstance(counts, str):
            try:
                strings.append(counts.encode("ascii"))
            except UnicodeEncodeError:
                raise rle_error(k, "compressed RLE counts contain a non-ASCII character") from None
            string_owner.append(k)
        elif isinstance(counts, bytes):
            strings.append(counts)
            string_owner.append(k)
        elif isinstance(counts, (list, tuple, np.ndarray)):
            values = np.asarray(counts)
            if values.size and values.dtype.kind not in "iu":
                raise rle_error(k, f"uncompressed RLE counts must be integers, got {values.dtype} values")
            lists.append(values.astype(np.int64).reshape(-1))
            list_owner.append(k)
        else:
            raise rle_error(k, f"RLE counts of type {type(counts).__name__}; expected str, bytes or a list of ints")
    return (strings, string_owner), (lists, list_owner)


def rle_foreground_runs(segms: Sequence[Dict[str, Any]], height: int, width: int
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Foreground runs of COCO RLEs ``segms`` of a ``height`` x ``width`` image, all decoded at once.

    Returns int64 arrays ``(index, start, length)``: run ``j`` covers column-major (Fortran order)
    pixels ``start[j] .. start[j] + length[j] - 1`` of segmentation ``index[j]``; runs are sorted by
    index, then start. Counts may be compressed (``str``/``bytes``, pycocotools' string format,
    decoded as ``rleFrString`` does) or a list of ints. Raises ValueError (with an
    ``annotation_index`` attribute) for a wrong size or malformed counts.
    """
    n_pixels = int(height) * int(width)
    (strings, string_owner), (lists, list_owner) = _split_counts(segms, height, width)
    owners, cnts = [], []
    if strings:
        o, c = decode_compressed_counts(strings)
        owners.append(np.asarray(string_owner, dtype=np.int64)[o])
        cnts.append(c)
    for k, c in zip(list_owner, lists):
        owners.append(np.full(c.size, k, dtype=np.int64))
        cnts.append(c)
    if not cnts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    owner, counts = np.concatenate(owners), np.concatenate(cnts)
    order = np.argsort(owner, kind="stable")  # runs of one segmentation stay in pixel order
    owner, counts = owner[order], counts[order]

    if counts.size and counts.min() < 0:
        raise rle_error(int(owner[np.argmax(counts < 0)]), "RLE counts contain a negative run length")
    totals = np.bincount(owner, weights=counts, minlength=len(segms))
    bad = np.flatnonzero(totals != n_pixels)
    if bad.size:
        k = int(bad[0])
        raise rle_error(k, f"RLE counts sum to {int(totals[k])} pixels, the {height}x{width} image has {n_pixels}")
    # Position of each count within its segmentation; odd positions are foreground runs.
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    position = np.arange(owner.size) - np.repeat(first, np.diff(np.r_[first, owner.size]))
    ends = np.cumsum(counts)
    starts = ends - counts - np.repeat((ends - counts)[first], np.diff(np.r_[first, owner.size]))
    fg = (position % 2 == 1) & (counts > 0)
    return owner[fg], starts[fg], counts[fg]


def decode_compressed_counts(strings: Sequence[bytes]) -> Tuple[np.ndarray, np.ndarray]:
    """(string index, count) of every count in pycocotools' compressed RLE strings.

    Each count is a little-endian run of 6-bit characters (value + 48): 5 data bits, bit 0x20 =
    more characters follow, bit 0x10 of the last one = negative. Counts from the fourth on are
    stored as differences to the count two before (``rleFrString`` in maskApi.c).
    """
    lengths = np.fromiter((len(s) for s in strings), dtype=np.int64, count=len(strings))
    char = np.frombuffer(b"".join(strings), dtype=np.uint8).astype(np.int64) - 48
    if char.size and (char.min() < 0 or char.max() > 63):
        at = np.flatnonzero((char < 0) | (char > 63))[0]
        k = int(np.searchsorted(np.cumsum(lengths), at, side="right"))
        raise rle_error(k, f"character {chr(int(char[at]) + 48)!r} cannot occur in compressed RLE counts")
    last = np.cumsum(lengths) - 1
    more = (char & 0x20) != 0
    nonempty = lengths > 0
    if more[last[nonempty]].any():
        k = int(np.flatnonzero(nonempty)[np.argmax(more[last[nonempty]])])
        raise rle_error(k, "compressed RLE counts end in the middle of a number (truncated string)")
    number_end = np.flatnonzero(~more)
    if number_end.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    number_start = np.r_[0, number_end[:-1] + 1]
    owner = np.searchsorted(last, number_end)  # a number belongs to the string it ends in
    n_chars = number_end - number_start + 1
    if n_chars.max() > 7:  # 35 bits: more than any uint32 count (or difference of two) needs
        raise rle_error(int(owner[np.argmax(n_chars > 7)]), "compressed RLE counts hold a number of more than 7 characters")
    # Character k of a number carries bits 5k..5k+4.
    number_of_char = np.repeat(np.arange(number_end.size), n_chars)
    shift = 5 * (np.arange(char.size) - number_start[number_of_char])
    value = np.add.reduceat((char & 0x1F) << shift, number_start)
    negative = (char[number_end] & 0x10) != 0
    value[negative] -= np.left_shift(1, 5 * n_chars[negative])  # sign-extend, as maskApi does
    first = np.searchsorted(owner, np.arange(len(strings)))
    m = np.arange(owner.size) - first[owner]
    # Undo the differences: counts 1,3,5,... and 2,4,6,... are two running sums per string.
    chain = owner * 3 + np.where(m == 0, 0, np.where(m % 2 == 1, 1, 2))
    order = np.argsort(chain, kind="stable")
    summed = np.cumsum(value[order])
    chain_sorted = chain[order]
    chain_first = np.flatnonzero(np.r_[True, chain_sorted[1:] != chain_sorted[:-1]])
    before = np.r_[0, summed][chain_first]
    counts = np.empty_like(value)
    counts[order] = summed - np.repeat(before, np.diff(np.r_[chain_first, order.size]))
    # maskApi stores counts as uint32; anything outside that range is a corrupt string.
    if counts.size and (counts.min() < 0 or counts.max() >= 2**32):
        k = int(owner[np.argmax((counts < 0) | (counts >= 2**32))])
        raise rle_error(k, "compressed RLE counts decode to a run length outside 0..2^32-1")
    return owner, counts


def rle_run_lengths(rle: Dict[str, Any]) -> np.ndarray:
    """Run lengths of one COCO RLE: alternating background/foreground runs, column-major, background first.

    Counts may be compressed (``str``/``bytes``) or a list of ints. Raises ValueError for a
    malformed compressed string.
    """
    counts = rle["counts"]
    if isinstance(counts, (list, tuple, np.ndarray)):
        return np.asarray(counts, dtype=np.int64).reshape(-1)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return decode_compressed_counts([counts])[1]


def rle_pixel_indices(rle: Dict[str, Any], num_pixels: int) -> np.ndarray:
    """Column-major (Fortran) flat indices of an RLE's foreground pixels.

    Raises ValueError when the counts are malformed or do not cover ``num_pixels`` pixels.
    """
    runs = rle_run_lengths(rle)
    if runs.sum() != num_pixels or (runs < 0).any():
        raise ValueError(f"RLE counts cover {int(runs.sum())} pixels, not {num_pixels}")
    ends = np.cumsum(runs)
    fg_starts, fg_lengths = (ends - runs)[1::2], runs[1::2]
    nonzero = fg_lengths > 0
    fg_starts, fg_lengths = fg_starts[nonzero], fg_lengths[nonzero]
    offsets = np.repeat(fg_starts - (np.cumsum(fg_lengths) - fg_lengths), fg_lengths)
    return offsets + np.arange(int(fg_lengths.sum()), dtype=np.int64)
