"""Data Science Bowl 2018 nuclei (BBBC038) -> COCO instances, with the paper's image split.

Sources, as users download them:

* the Kaggle zip or its extracted folder: ``<id>/images/<id>.png`` and one binary PNG per
  nucleus in ``<id>/masks/<mask_id>.png`` (any leading folder inside the zip is fine);
* images only (``<id>/images/<id>.png`` or ``<id>.png``) plus ``labels``: the released RLE CSV
  (``stage1_train_labels.csv``, ``stage1_solution.csv``, ``stage2_solution_final.csv``). Mask
  files in the source are then ignored.

Output (``prepare_dsb2018``)::

    OUT/images/<id>.png            RGB, 8-bit, lossless
    OUT/annotations/all.json       COCO instances: category "nucleus", compressed-RLE segmentation
    OUT/annotations/{train,val,test}.json   the split (by image), unless split=None
    OUT/manifest.json              counts, source sha256, every correction, output checksums

Bad input raises :class:`DatasetError` naming the file, or is corrected, counted, logged and
listed in the manifest (see ``CORRECTION_KINDS``). The output is built in a hidden sibling folder
and renamed into place, so an interrupted run never leaves a complete-looking dataset; re-running
on the same source and options is a no-op, and a different dataset already in OUT is an error.

Modules, in the order of a conversion: :mod:`.source` (the zip or folder), :mod:`.scan` (the
plan: images, masks, ignored files), :mod:`.pool` (worker processes) running :mod:`.convert`
(one image) with :mod:`.decode` (files -> pixels -> 8-bit RGB), :mod:`.write` (COCO JSON,
manifest, verification, commit); :mod:`.prepare` drives them, :mod:`.split` assigns the images,
:mod:`.corrections` and :mod:`.errors` say what went wrong, :mod:`.checksums` keys caches.
"""
from ...utils.files import sha256_of_file
from .checksums import converter_digest
from .corrections import CORRECTION_KINDS, FORMAT_CONVERSIONS  # noqa: F401
from .errors import DatasetError
from .prepare import PrepareResult, prepare_dsb2018
from .scan import IMAGE_EXTENSIONS  # noqa: F401
from .split import DEFAULT_SPLIT, SPLIT_NAMES, parse_split, split_image_ids
from .write import CATEGORY, FORMAT, FORMAT_VERSION  # noqa: F401

__all__ = [
    "DatasetError",
    "PrepareResult",
    "DEFAULT_SPLIT",
    "SPLIT_NAMES",
    "CORRECTION_KINDS",
    "prepare_dsb2018",
    "parse_split",
    "split_image_ids",
    "sha256_of_file",
    "converter_digest",
]
