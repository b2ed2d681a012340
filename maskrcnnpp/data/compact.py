"""A smaller copy of a prepared DSB 2018 folder that trains and scores exactly like the original.

``datasets/prepare_dsb2018.py`` writes every image as 3-channel RGB PNG; 562 of the 670
stage1_train images are grey (R = G = B), so the prepared folder is 89 MB, more than a GPU
machine's 64 MiB transfer allows. :func:`compact_copy` writes such images as 8-bit
single-channel PNG, which Detectron2's ``read_image`` (PIL ``convert("RGB")``) reads back to the
same pixels, re-encodes the colour ones at the highest zlib level, and keeps only the annotation
splits asked for. Every written image is decoded again and compared with its source, so a copy
that would read differently is never produced. The copy has no ``manifest.json`` (its files are
not the converter's); ``compact.json`` records its source's identity and counts.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Dict, Sequence, Union

import numpy as np
from PIL import Image

from ..utils.files import partial_dir, remove_stale_partials
from .dsb2018 import DatasetError

__all__ = ["COMPACT_RECORD", "compact_copy"]

logger = logging.getLogger(__name__)

COMPACT_RECORD = "compact.json"


def _rgb_pixels(path: Path) -> np.ndarray:
    """The image as Detectron2's ``read_image`` sees it before its BGR flip: uint8 H x W x 3."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _write_compact_image(src: Path, dst: Path) -> bool:
    """Write ``src`` to ``dst`` as grey PNG when its channels are equal, else as RGB PNG; return
    whether it became grey. Raises DatasetError if the written file does not read back equal."""
    pixels = _rgb_pixels(src)
    grey = bool((pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all())
    Image.fromarray(pixels[..., 0] if grey else pixels).save(dst, format="PNG", optimize=True)
    if not np.array_equal(_rgb_pixels(dst), pixels):
        raise DatasetError(f"{dst}: the compact image does not read back as {src}")
    return grey


def compact_copy(src: Union[str, Path], out: Union[str, Path],
                 splits: Sequence[str] = ("train", "val", "test")) -> Dict:
    """Write the compact copy of the prepared folder ``src`` to ``out``; return its record.

    Only the images that ``annotations/<split>.json`` of ``splits`` name are copied. ``out`` must
    not exist (the copy is built beside it and renamed into place when complete).
    """
    src, out = Path(src), Path(out)
    ann_dir = src / "annotations"
    missing = [s for s in splits if not (ann_dir / f"{s}.json").is_file()]
    if not (src / "images").is_dir() or missing:
        raise DatasetError(f"{src} is not a folder prepared by datasets/prepare_dsb2018.py with the splits "
                           f"{', '.join(splits)} (missing: {', '.join(missing) or 'images/'})")
    if out.exists():
        raise DatasetError(f"{out} exists: give a new folder for the compact copy")
    remove_stale_partials(out)
    tmp = partial_dir(out)
    (tmp / "annotations").mkdir(parents=True)
    (tmp / "images").mkdir()
    try:
        files = set()
        for split in splits:
            shutil.copyfile(ann_dir / f"{split}.json", tmp / "annotations" / f"{split}.json")
            with open(ann_dir / f"{split}.json") as f:
                files.update(image["file_name"] for image in json.load(f)["images"])
        grey = sum(_write_compact_image(src / "images" / name, tmp / "images" / name) for name in sorted(files))
        manifest_path = src / "manifest.json"
        source_manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        record = {
            "source": str(src.resolve()), "source_identity": source_manifest.get("identity"),
            "splits": list(splits), "images": len(files), "grey_as_single_channel": grey,
            "bytes": sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file()),
        }
        (tmp / COMPACT_RECORD).write_text(json.dumps(record, indent=2))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("%s: %d images (%d grey as single channel), %.1f MB", out, len(files), grey, record["bytes"] / 1e6)
    return record
