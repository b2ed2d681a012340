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
from typing import List, Optional, Tuple

import numpy as np
import pycocotools.mask as mask_util
import torch
from skimage.segmentation import find_boundaries

from detectron2.config import configurable
from detectron2.data import build_detection_test_loader, build_detection_train_loader
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

logger = logging.getLogger(__name__)

IGNORE_VALUE = 255


def _decode_segmentation(segm, height: int, width: int, where: str) -> np.ndarray:
    """Bool [H, W] mask of one COCO segmentation: polygons, uncompressed or compressed RLE."""
    if isinstance(segm, list):
        if not segm:
            raise ValueError(f"{where}: empty polygon list")
        rle = mask_util.merge(mask_util.frPyObjects(segm, height, width))
    elif isinstance(segm, dict):
        if list(segm.get("size", [])) != [height, width]:
            raise ValueError(f"{where}: RLE size {segm.get('size')} != image size {[height, width]}")
        rle = mask_util.frPyObjects(segm, height, width) if isinstance(segm.get("counts"), list) else segm
    else:
        raise ValueError(f"{where}: unsupported segmentation of type {type(segm).__name__}")
    return mask_util.decode(rle).astype(bool)


def annotations_to_label_image(
    annotations: List[dict], height: int, width: int, source: str = "<dataset dict>"
) -> Tuple[np.ndarray, np.ndarray]:
    """(int32 label image, bool crowd mask) from COCO-style annotations.

    Instance k (1-based, in annotation order) paints label k; where instances overlap the later
    one keeps the pixel (counted in a debug log; the union target is unaffected). Crowd
    annotations go to the crowd mask, which the mapper marks as ignored.
    """
    labels = np.zeros((height, width), dtype=np.int32)
    crowd = np.zeros((height, width), dtype=bool)
    overlapped = 0
    for k, anno in enumerate(annotations, start=1):
        where = f"{source}, annotation {k - 1}"
        if "segmentation" not in anno:
            raise ValueError(f"{where}: no 'segmentation' (semantic training needs instance masks)")
        mask = _decode_segmentation(anno["segmentation"], height, width, where)
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
    ``crop_size`` 0 keeps whole images) and random horizontal/vertical flips, applied identically
    to image and targets. Test: whole image, targets included when the dict has annotations.
    """

    @configurable
    def __init__(self, is_train: bool = True, *, image_format: str = "BGR", crop_size: int = 96, boundary: bool = False):
        self.is_train = is_train
        self.image_format = image_format
        self.crop_size = crop_size
        self.boundary = boundary
        augs: List[T.Augmentation] = []
        if is_train:
            if crop_size:
                augs.append(T.RandomCrop("absolute", (crop_size, crop_size)))
            augs += [T.RandomFlip(horizontal=True, vertical=False), T.RandomFlip(horizontal=False, vertical=True)]
        self.augmentations = T.AugmentationList(augs)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "crop_size": cfg.MODEL.SEMANTIC_UNET.TRAIN_CROP,
            "boundary": cfg.MODEL.SEMANTIC_UNET.BOUNDARY,
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
        labels, crowd = annotations_to_label_image(annotations, h, w, dataset_dict["file_name"])
        fg, boundary = semantic_targets(labels, crowd)
        # One uint8 map carries both targets through the (nearest-neighbour) geometric transforms.
        code = np.where(fg == IGNORE_VALUE, IGNORE_VALUE, fg | (boundary << 1)).astype(np.uint8)
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
