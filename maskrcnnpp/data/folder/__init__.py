"""A lab's own annotated images -> the prepared COCO folder that training reads (as ``prepare_dsb2018``'s).

Five layouts, detected or named (:mod:`.layouts`):

* ``labels``: images ``<stem>.<png|tif|tiff|jpg|...>`` with instance label images
  ``<stem>_labels.<tif|png>`` (0 = background, ``k`` = nucleus k), as ``tools/predict.py`` writes them;
* ``masks``: one binary mask file per nucleus, the DSB 2018 layout ``<id>/images/<id>.png`` +
  ``<id>/masks/*.png``;
* ``coco``: images plus a COCO instances JSON (polygons or RLE) naming them;
* ``xml``: images with Aperio ImageScope / MoNuSeg XML files ``<stem>.xml``, one ``<Region>`` polygon per
  nucleus (:mod:`.aperio`), paired by stem as ``labels`` pairs;
* ``mat``: images with HoVer-Net style MATLAB files ``<stem>.mat`` holding the instance map ``inst_map``
  (:mod:`.matlab`), paired likewise.

XML polygons and .mat instance maps become the label image they describe and are converted as one.

Output, idempotence, the hidden partial folder, split, checksums and manifest are the DSB
converter's (:mod:`maskrcnnpp.data.dsb2018`, whose steps this package reuses); bad label images
raise :class:`~maskrcnnpp.data.dsb2018.DatasetError` naming the file, or are corrected, counted and
listed in the manifest (``labels_*``, ``xml_*``, ``crowd_dropped``, ``image_not_in_coco`` and the DSB kinds).
Register a prepared folder for training with ``DATASETS.NUCLEI.FOLDERS``
(:func:`maskrcnnpp.data.datasets.register_folders`).
"""
from .layouts import LABEL_EXTENSIONS, LABEL_SUFFIX, LAYOUTS, detect_layout  # noqa: F401
from .prepare import FOLDER_FLAVOUR, prepare_folder

__all__ = ["FOLDER_FLAVOUR", "LABEL_EXTENSIONS", "LABEL_SUFFIX", "LAYOUTS", "detect_layout", "prepare_folder"]
