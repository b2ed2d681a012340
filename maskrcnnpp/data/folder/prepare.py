"""``prepare_folder``: a lab's annotated folder (or zip) -> the prepared COCO folder of ``prepare_dsb2018``."""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import List, Optional, Sequence, Union

from ...utils.files import sha256_of_file
from ..dsb2018.errors import DatasetError
from ..dsb2018.prepare import PrepareResult, check_existing, run_conversion
from ..dsb2018.source import Source
from ..dsb2018.split import DEFAULT_SPLIT, SPLIT_NAMES, parse_split, split_image_ids
from ..dsb2018.write import FORMAT_VERSION, Flavour, identity_of
from .convert import convert_folder_image
from .layouts import LAYOUTS, detect_layout, plan_folder

__all__ = ["FOLDER_FLAVOUR", "prepare_folder"]

logger = logging.getLogger(__name__)

FOLDER_FLAVOUR = Flavour(
    format="maskrcnnpp-folder",
    info={"description": "nuclei instances converted by maskrcnnpp.data.folder", "version": str(FORMAT_VERSION)},
    licenses=(),
    id_key="stem",
    converter=f"maskrcnnpp.data.folder format {FORMAT_VERSION}",
)


def _empty_split_notes(image_ids: List[str], split: Optional[Sequence[float]], seed: int) -> List[str]:
    """A note for each split given a share of the images that still received none (tiny folders)."""
    if split is None:
        return []
    members = split_image_ids(image_ids, split, seed)
    return [f"split {name!r} has no image ({len(image_ids)} images, fractions {'/'.join(f'{f:g}' for f in split)}); "
            "choose other fractions, or one split's name to keep every image in it"
            for name, fraction in zip(SPLIT_NAMES, split) if fraction > 0 and not members[name]]


def prepare_folder(
    src: Union[str, os.PathLike],
    out: Union[str, os.PathLike],
    *,
    layout: str = "auto",
    coco_json: Optional[Union[str, os.PathLike]] = None,
    split: Union[str, Sequence[float], None] = DEFAULT_SPLIT,
    seed: int = 0,
    workers: Optional[int] = None,
    progress: bool = True,
    compress_level: int = 1,
) -> PrepareResult:
    """Convert annotated images at ``src`` (folder or zip) into a prepared COCO folder ``out``.

    ``layout``: ``"labels"`` (``<stem>.<ext>`` + ``<stem>_labels.<tif|png>``), ``"masks"`` (the DSB
    layout), ``"coco"`` (images + a COCO JSON: ``coco_json``, else the one in ``src``), ``"xml"``
    (``<stem>.<ext>`` + Aperio/MoNuSeg polygons ``<stem>.xml``), ``"mat"`` (``<stem>.<ext>`` + a
    HoVer-Net ``<stem>.mat`` with ``inst_map``) or ``"auto"`` (detected). ``split`` as for :func:`~maskrcnnpp.data.dsb2018.prepare_dsb2018` (default 0.5/0.2/0.3,
    seeded with ``seed``), or a split's name (``"train"``) to keep every image in it. The output,
    its idempotence, errors and counted corrections are those of ``prepare_dsb2018``; the manifest's
    identity also records the layout.
    """
    start = time.time()
    src, out = Path(src), Path(out)
    split = parse_split(split)
    if layout != "auto" and layout not in LAYOUTS:
        raise DatasetError(f"layout {layout!r}: expected 'auto' or one of {', '.join(LAYOUTS)}", argument="layout")
    coco_path = None if coco_json is None else Path(coco_json)
    if coco_path is not None:
        if layout not in ("auto", "coco"):
            raise DatasetError(f"{coco_path}: a COCO JSON goes with layout 'coco', not {layout!r}", argument="layout")
        if not coco_path.is_file():
            raise DatasetError(f"{coco_path}: COCO JSON not found", argument="coco_json")
        layout = "coco"
    with Source(src) as source:  # closes the zip also when detecting or planning fails
        if layout == "auto":
            layout = detect_layout(source)
            logger.info("%s: layout %r", src, layout)
        identity = identity_of(source.sha256(), sha256_of_file(coco_path) if coco_path else None, split, seed,
                               FOLDER_FLAVOUR, layout=layout)
        done, replace = check_existing(out, identity)
        if done is not None:
            return done
        plan = plan_folder(source, layout, coco_path)
        for note in _empty_split_notes([t.image_id for t in plan.tasks], split, seed):
            logger.warning("%s", note)
            plan.notes.append(note)
        return run_conversion(source, out, plan, identity, replace, labels=coco_path, split=split, seed=seed,
                              workers=workers, progress=progress, compress_level=compress_level, start=start,
                              convert=convert_folder_image, flavour=FOLDER_FLAVOUR)
