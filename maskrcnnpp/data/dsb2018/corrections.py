"""The counted corrections of bad input: their kinds, how one is recorded, how they are logged."""
from __future__ import annotations

import logging
from collections import Counter
from typing import List

__all__ = ["CORRECTION_KINDS", "FORMAT_CONVERSIONS", "correction", "log_corrections"]

logger = logging.getLogger(__name__)

# What each correction kind means. Kinds in FORMAT_CONVERSIONS change no pixel value.
CORRECTION_KINDS = {
    "alpha_removed": "RGBA/grey+alpha image: fully opaque alpha channel dropped",
    "alpha_not_opaque": "alpha channel with transparent pixels dropped; colours kept as stored",
    "grey_to_rgb": "single-channel image: grey replicated into R, G, B",
    "palette_to_rgb": "palette image expanded to RGB",
    "mode_to_rgb": "image in another colour mode (CMYK, YCbCr, ...) converted to RGB",
    "depth_to_8bit": "image deeper than 8 bits: scaled linearly by 255/max to 8 bits",
    "mask_not_grey": "colour/palette mask: foreground = any nonzero colour channel",
    "mask_not_binary": "mask with more than one nonzero value: foreground = nonzero",
    "empty_mask": "mask without foreground pixels: dropped",
    "duplicate_mask": "the same mask twice in one image: the repeat dropped",
    "overlap_removed": "pixels claimed by an earlier mask of the image (mask file / CSV order) removed",
    "mask_emptied_by_overlap": "mask entirely inside earlier masks: dropped",
    # The text is written into manifests; "--labels" stays so that existing manifests keep their bytes.
    "image_without_labels": "image absent from the --labels CSV: not converted",
    "usage_ignored": "image whose CSV Usage is 'Ignored': not converted",
    # Label images and COCO JSONs of the folder converter (maskrcnnpp.data.folder)
    "labels_not_grey": "label image with identical colour channels: the first channel taken as the labels",
    "labels_float": "label image of floats holding whole numbers: taken as integer labels",
    "labels_binary": "label image with a single nonzero value (a foreground mask): each 8-connected region "
                     "taken as one nucleus",
    "labels_empty": "label image without any nucleus: the image kept with no annotations",
    "crowd_dropped": "COCO annotation with iscrowd 1 (a region, not one nucleus): dropped",
    "image_not_in_coco": "image file not listed in the COCO JSON: not converted",
    # Aperio / MoNuSeg XML polygons of the folder converter (maskrcnnpp.data.folder.aperio)
    "xml_degenerate": "XML region with fewer than 3 vertices or no pixel centre inside the image: dropped",
    "xml_overlap": "XML region over pixels of earlier regions: the later region takes them (MoNuSeg's rule)",
    "xml_overwritten": "XML region whose every pixel a later region took: dropped",
}
FORMAT_CONVERSIONS = {"alpha_removed", "grey_to_rgb", "palette_to_rgb"}


def correction(kind: str, image_id: str, file: str, detail: str) -> dict:
    """One manifest entry: what was corrected, in which image and file, and how."""
    return {"kind": kind, "image": image_id, "file": file, "detail": detail}


def log_corrections(corrections: List[dict]) -> None:
    """Counts per kind at INFO; each correction that changes pixels at WARNING."""
    counts = Counter(c["kind"] for c in corrections)
    for kind, count in sorted(counts.items()):
        logger.info("correction %s x%d: %s", kind, count, CORRECTION_KINDS.get(kind, kind))
    for c in corrections:
        if c["kind"] not in FORMAT_CONVERSIONS:
            logger.warning("%s: %s (%s)", c["file"], c["kind"], c["detail"])
