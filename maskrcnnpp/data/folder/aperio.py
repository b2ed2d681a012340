"""Aperio ImageScope / MoNuSeg XML annotations: nucleus polygons -> an instance label array.

Each ``<Region>`` holds the ``<Vertex X=".." Y=".."/>`` corners of one nucleus in pixel coordinates
(X = column, Y = row). The polygons are filled in file order, pixel centres inside, and where they
overlap the later one wins, as the MoNuSeg challenge's own MATLAB code (``he_to_binary_mask``) does.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Iterator, List, Tuple

import numpy as np

from ..dsb2018.corrections import correction
from ..dsb2018.errors import DatasetError
from .labels import compact_labels

__all__ = ["xml_labels"]

def _regions(data: bytes, display: str) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """(where, vertex rows, vertex columns) of each ``<Region>`` in file order."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as e:
        raise DatasetError(f"{display}: cannot parse the XML annotation file: {e}") from None
    for position, region in enumerate(root.iter("Region"), start=1):
        region_id = region.get("Id")
        where = f"{display}: Region {position}" + (f" (Id {region_id})" if region_id is not None else "")
        try:
            xy = np.array([(float(v.get("X")), float(v.get("Y"))) for v in region.iter("Vertex")],
                          dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: a <Vertex> without numeric X and Y attributes") from None
        if not np.isfinite(xy).all():
            raise DatasetError(f"{where}: a <Vertex> with a non-finite coordinate")
        yield where, xy[:, 1], xy[:, 0]


def xml_labels(data: bytes, display: str, image_id: str, height: int, width: int,
               corrections: List[dict]) -> np.ndarray:
    """The (height, width) labels of an XML's nuclei, 1..N in file order; 0 = background.

    Records dropped (``xml_degenerate``, ``xml_overwritten``) and overlapping (``xml_overlap``) regions.
    The labels are those the reference conversion writes as a label image, so that this file converts
    as that label image would in layout ``labels``.
    """
    from skimage.draw import polygon  # only this layout needs scikit-image

    labels = np.zeros((height, width), dtype=np.int32)
    drawn: List[str] = []  # where each region drawn is; its label is its place + 1
    for where, rows, cols in _regions(data, display):
        if rows.size < 3:
            corrections.append(correction("xml_degenerate", image_id, where,
                                          f"{rows.size} vertices; a polygon needs 3"))
            continue
        rr, cc = polygon(rows, cols, shape=(height, width))
        if rr.size == 0:
            corrections.append(correction("xml_degenerate", image_id, where,
                                          f"no pixel centre of the {height}x{width} image inside"))
            continue
        overlap = int(np.count_nonzero(labels[rr, cc]))
        if overlap:
            corrections.append(correction("xml_overlap", image_id, where,
                                          f"{overlap} pixels of earlier regions taken by this later one"))
        drawn.append(where)
        labels[rr, cc] = len(drawn)
    present = np.zeros(len(drawn) + 1, dtype=bool)
    present[np.unique(labels)] = True
    for value, where in enumerate(drawn, start=1):
        if not present[value]:
            corrections.append(correction("xml_overwritten", image_id, where,
                                          "every pixel taken by later regions: dropped"))
    # Renumbered 1..N without the overwritten ones, as the reference label images are: the labels
    # become the annotations' provenance, so gaps would make the output differ from theirs.
    return compact_labels(labels)[0]
