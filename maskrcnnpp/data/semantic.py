"""Batches for the semantic baselines from the same COCO-format nuclei datasets as Mask R-CNN.

:class:`SemanticNucleiMapper` turns a Detectron2 dataset dict into ``{"image", "sem_seg",
["boundary"]}``: the target is the union of the instance masks (1 = nucleus, 0 = background,
255 = ignored: crowd regions), the optional boundary target marks each instance's inner contour
(so touching nuclei are separated by it). Training takes random ``TRAIN_CROP`` x ``TRAIN_CROP``
crops with horizontal and vertical flips (the UNet++ paper trains on 96x96 patches); test keeps
the whole image (the model tiles large ones itself).
"""
from __future__ import annotations

import copy
import logging
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
from skimage.segmentation import find_boundaries

from detectron2.config import configurable
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from .augmentations import build_nuclei_augmentations

logger = logging.getLogger(__name__)

IGNORE_VALUE = 255


Window = Tuple[int, int, int, int]  # (y0, x0, y1, x1), a half-open pixel rectangle


def _segmentation_rle(segm, height: int, width: int, where: str) -> dict:
    """Compressed RLE of one COCO segmentation: polygons, uncompressed or compressed RLE."""
    if isinstance(segm, list):
        if not segm:
            raise ValueError(f"{where}: empty polygon list")
        return mask_util.merge(mask_util.frPyObjects(segm, height, width))
    if isinstance(segm, dict):
        if list(segm.get("size", [])) != [height, width]:
            raise ValueError(f"{where}: RLE size {segm.get('size')} != image size {[height, width]}")
        return mask_util.frPyObjects(segm, height, width) if isinstance(segm.get("counts"), list) else segm
    raise ValueError(f"{where}: unsupported segmentation of type {type(segm).__name__}")


def _rle_touches(rle: dict, window: Window) -> bool:
    """Whether the mask's bounding box (read from the RLE, no decoding) meets ``window``."""
    x, y, w, h = mask_util.toBbox(rle)
    y0, x0, y1, x1 = window
    return w > 0 and h > 0 and x < x1 and x + w > x0 and y < y1 and y + h > y0


def annotations_to_label_image(
    annotations: List[dict], height: int, width: int, source: str = "<dataset dict>", window: Optional[Window] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """(int32 label image, bool crowd mask) from COCO-style annotations, of the whole image or
    of ``window`` only (then only the instances whose box meets it are decoded).

    Instance k (1-based, in annotation order) paints label k; where instances overlap the later
    one keeps the pixel (counted in a debug log; the union target is unaffected). Crowd
    annotations go to the crowd mask, which the mapper marks as ignored.
    """
    y0, x0, y1, x1 = window or (0, 0, height, width)
    labels = np.zeros((y1 - y0, x1 - x0), dtype=np.int32)
    crowd = np.zeros_like(labels, dtype=bool)
    overlapped = 0
    for k, anno in enumerate(annotations, start=1):
        where = f"{source}, annotation {k - 1}"
        if "segmentation" not in anno:
            raise ValueError(f"{where}: no 'segmentation' (semantic training needs instance masks)")
        rle = _segmentation_rle(anno["segmentation"], height, width, where)
        if window is not None and not _rle_touches(rle, window):
            continue
        mask = mask_util.decode(rle)[y0:y1, x0:x1].astype(bool)
        if anno.get("iscrowd", 0):
            crowd |= mask
            continue
        overlapped += int(np.count_nonzero(labels[mask]))
        labels[mask] = k
    if overlapped:
        logger.debug("%s: %d pixels covered by more than one instance (later instance kept)", source, overlapped)
    return labels, crowd


def semantic_targets(labels: np.ndarray, crowd: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(foreground, boundary) uint8 targets: 1/0, IGNORE_VALUE on crowd pixels.

    The boundary is every instance's inner contour (``find_boundaries(mode="inner")``): pixels of a
    nucleus that touch background or another nucleus.
    """
    fg = (labels > 0).astype(np.uint8)
    boundary = find_boundaries(labels, mode="inner").astype(np.uint8)
    if crowd is not None:
        fg[crowd] = IGNORE_VALUE
        boundary[crowd] = IGNORE_VALUE
    return fg, boundary


def _target_code(annotations: List[dict], height: int, width: int, source: str, window: Optional[Window] = None) -> np.ndarray:
    """uint8 map of the whole image or of ``window``: bit 0 foreground, bit 1 boundary, IGNORE_VALUE on crowd.

    One map carries both targets through the (nearest-neighbour) geometric transforms. A window
    is computed with a one-pixel margin (cut off again) so its boundary pixels are exactly those
    of the whole image: an instance's inner contour depends on the neighbouring pixels.
    """
    if window is None:
        labels, crowd = annotations_to_label_image(annotations, height, width, source)
        return _code(labels, crowd)
    y0, x0, y1, x1 = window
    ey0, ex0, ey1, ex1 = max(y0 - 1, 0), max(x0 - 1, 0), min(y1 + 1, height), min(x1 + 1, width)
    labels, crowd = annotations_to_label_image(annotations, height, width, source, (ey0, ex0, ey1, ex1))
    return _code(labels, crowd)[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]


def _code(labels: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    fg, boundary = semantic_targets(labels, crowd)
    return np.where(fg == IGNORE_VALUE, IGNORE_VALUE, fg | (boundary << 1)).astype(np.uint8)


def _mirror_pad_to(image: np.ndarray, target: np.ndarray, size: int) -> Tuple[np.ndarray, np.ndarray]:
    h, w = target.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph == 0 and pw == 0:
        return image, target
    pad2 = ((0, ph), (0, pw))
    return np.pad(image, pad2 + ((0, 0),) * (image.ndim - 2), mode="reflect"), np.pad(target, pad2, mode="reflect")


class SemanticNucleiMapper:
    """Dataset dict -> ``{"image": uint8 [C,H,W], "sem_seg": uint8 [H,W], ["boundary"]: uint8 [H,W], ...}``.

    Training: random ``crop_size`` crops (images smaller than a crop are mirror-padded first;
    ``crop_size`` 0 keeps whole images), random horizontal/vertical flips and
    ``extra_augmentations`` (the ``INPUT.NUCLEI_AUG`` rotation and photometric ones), applied
    identically to image and targets. Test: whole image, targets included when the dict has annotations.
    """

    @configurable
    def __init__(self, is_train: bool = True, *, image_format: str = "BGR", crop_size: int = 96, boundary: bool = False,
                 extra_augmentations: Sequence[T.Augmentation] = ()):
        self.is_train = is_train
        self.image_format = image_format
        self.crop_size = crop_size
        self.boundary = boundary
        augs: List[T.Augmentation] = []
        if is_train:
            if crop_size:
                augs.append(T.RandomCrop("absolute", (crop_size, crop_size)))
            augs += [T.RandomFlip(horizontal=True, vertical=False), T.RandomFlip(horizontal=False, vertical=True)]
            augs += list(extra_augmentations)
        self.augmentations = T.AugmentationList(augs)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "crop_size": cfg.MODEL.SEMANTIC_UNET.TRAIN_CROP,
            "boundary": cfg.MODEL.SEMANTIC_UNET.BOUNDARY,
            # Both flips are always on here; the rotation and photometric ones follow the config.
            "extra_augmentations": [
                a for a in build_nuclei_augmentations(cfg, is_train)
                if not (isinstance(a, T.RandomFlip) and a.vertical)
            ],
        }

    def __call__(self, dataset_dict: dict) -> dict:
        dataset_dict = copy.deepcopy(dataset_dict)
        image = utils.read_image(dataset_dict["file_name"], format=self.image_format)
        utils.check_image_size(dataset_dict, image)
        annotations = dataset_dict.pop("annotations", None)
        if annotations is None:
            if self.is_train:
                raise ValueError(f"{dataset_dict['file_name']}: no 'annotations' to build a training target from")
            dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
            return dataset_dict
        h, w = image.shape[:2]
        source = dataset_dict["file_name"]
        if self.is_train and self.crop_size and min(h, w) >= self.crop_size:
            # The crop depends only on the image size: draw it first and build the targets of
            # the crop alone (decoding a few masks instead of up to hundreds of full-size ones).
            aug_input = T.AugInput(image)
            transforms = self.augmentations(aug_input)
            crop = transforms.transforms[0]
            code = _target_code(annotations, h, w, source, (crop.y0, crop.x0, crop.y0 + crop.h, crop.x0 + crop.w))
            image, code = aug_input.image, T.TransformList(transforms.transforms[1:]).apply_segmentation(code)
        else:
            code = _target_code(annotations, h, w, source)
            if self.is_train and self.crop_size:
                image, code = _mirror_pad_to(image, code, self.crop_size)
            aug_input = T.AugInput(image, sem_seg=code)
            self.augmentations(aug_input)
            image, code = aug_input.image, aug_input.sem_seg
        ignore = code == IGNORE_VALUE
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        dataset_dict["sem_seg"] = torch.as_tensor(np.where(ignore, IGNORE_VALUE, code & 1).astype(np.uint8))
        if self.boundary:
            dataset_dict["boundary"] = torch.as_tensor(np.where(ignore, IGNORE_VALUE, (code >> 1) & 1).astype(np.uint8))
        return dataset_dict


def build_semantic_train_loader(cfg):
    """Detectron2's training loader over cfg.DATASETS.TRAIN with :class:`SemanticNucleiMapper`."""
    return build_detection_train_loader(cfg, mapper=SemanticNucleiMapper(cfg, is_train=True))


def build_semantic_test_loader(cfg, dataset_name: str):
    """Detectron2's test loader (whole images, batch 1) with :class:`SemanticNucleiMapper`."""
    return build_detection_test_loader(cfg, dataset_name, mapper=SemanticNucleiMapper(cfg, is_train=False))
