"""Foreground probability -> nucleus instances: one implementation for the semantic models, the
evaluator and the predictor.

One place turns a semantic model's per-pixel foreground probability into an integer label image:
threshold, drop connected components smaller than ``min_size``, then split touching nuclei by a
marker-controlled watershed (scikit-image) seeded either

* from a predicted boundary channel: seeds are foreground pixels with boundary probability below
  ``boundary_threshold``, flooding the boundary probability inside the foreground; or
* from the distance transform: seeds are its h-maxima (regional maxima at least ``watershed_h``
  pixels above the saddle joining them to another maximum), flooding -distance inside the
  foreground. h-maxima rather than raw ``peak_local_max`` peaks: the distance ridge of an
  elongated nucleus has many near-equal local peaks that would cut it into pieces.

Defaults come from ``cfg.MODEL.SEMANTIC_UNET`` when a cfg is given; explicit keywords win.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage import segmentation as skseg

from detectron2.structures import Boxes, Instances

from ..config import get_maskrcnnpp_cfg

_CFG_KEYS = {
    "threshold": "THRESHOLD",
    "min_size": "MIN_SIZE",
    "watershed": "WATERSHED",
    "watershed_h": "WATERSHED_H",
    "boundary_threshold": "BOUNDARY_THRESHOLD",
}


@functools.lru_cache(maxsize=1)
def _default_params() -> Tuple[Tuple[str, object], ...]:
    node = get_maskrcnnpp_cfg().MODEL.SEMANTIC_UNET  # the defaults live in the config only
    return tuple((name, node[key]) for name, key in _CFG_KEYS.items())


def postprocess_params(cfg=None, **overrides) -> dict:
    """The post-processing parameters: config defaults < ``cfg.MODEL.SEMANTIC_UNET`` < non-None overrides."""
    if cfg is not None:
        node = cfg.MODEL.SEMANTIC_UNET
        params = {name: node[key] for name, key in _CFG_KEYS.items()}
    else:
        params = dict(_default_params())
    params.update({k: v for k, v in overrides.items() if v is not None})
    return params


def _as_2d(array, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be [H, W] or [1, H, W], got shape {array.shape}")
    return array


def probability_to_instances(
    prob,
    cfg=None,
    *,
    threshold: Optional[float] = None,
    min_size: Optional[int] = None,
    watershed: Optional[bool] = None,
    boundary=None,
    boundary_threshold: Optional[float] = None,
    watershed_h: Optional[float] = None,
) -> np.ndarray:
    """Label image (int32, 0 = background, 1..N = nuclei) from a foreground probability map.

    Args:
        prob: [H, W] (or [1, H, W]) foreground probability.
        cfg: optional config; its MODEL.SEMANTIC_UNET THRESHOLD / MIN_SIZE / WATERSHED /
            WATERSHED_H / BOUNDARY_THRESHOLD replace the config defaults.
        threshold: foreground where prob > threshold.
        min_size: connected components of the foreground smaller than this (pixels) are dropped.
        watershed: split touching nuclei by watershed (False: connected components only).
        boundary: optional [H, W] boundary probability; when given, it seeds and guides the
            watershed instead of the distance transform.
    """
    p = postprocess_params(
        cfg,
        threshold=threshold,
        min_size=min_size,
        watershed=watershed,
        boundary_threshold=boundary_threshold,
        watershed_h=watershed_h,
    )
    prob = _as_2d(prob, "prob")
    if boundary is not None:
        boundary = _as_2d(boundary, "boundary")
        if boundary.shape != prob.shape:
            raise ValueError(f"boundary shape {boundary.shape} != prob shape {prob.shape}")
    fg = prob > p["threshold"]
    components, n = ndi.label(fg)
    if n and p["min_size"] > 1:
        small = np.bincount(components.ravel()) < p["min_size"]
        small[0] = False
        fg[small[components]] = False
        components[~fg] = 0
    if not fg.any():
        return np.zeros(prob.shape, dtype=np.int32)

    if not p["watershed"]:
        labels = components
    elif boundary is not None:
        markers, _ = ndi.label(fg & (boundary < p["boundary_threshold"]))
        labels = skseg.watershed(boundary, markers, mask=fg)
    else:
        dist = ndi.distance_transform_edt(fg)
        markers, _ = ndi.label(h_maxima(dist, p["watershed_h"]).astype(bool) & fg)
        labels = skseg.watershed(-dist, markers, mask=fg)

    # A foreground component without any seed is one nucleus of its own, not background.
    unseeded, n_unseeded = ndi.label(fg & (labels == 0))
    if n_unseeded:
        labels = labels.copy()
        labels[unseeded > 0] = unseeded[unseeded > 0] + labels.max()
    return skseg.relabel_sequential(labels.astype(np.int32))[0].astype(np.int32)


def labels_to_instances(labels: np.ndarray, prob, image_size: Optional[Tuple[int, int]] = None) -> Instances:
    """Detectron2 ``Instances`` (CPU) from a label image: bool masks, mean-probability scores, boxes, class 0."""
    labels = np.asarray(labels)
    prob = _as_2d(prob, "prob")
    h, w = labels.shape
    image_size = image_size or (h, w)
    ids = np.arange(1, int(labels.max()) + 1)
    ids = ids[np.bincount(labels.ravel(), minlength=len(ids) + 1)[1:] > 0] if len(ids) else ids
    out = Instances(image_size)
    masks = torch.from_numpy(labels[None] == ids[:, None, None]) if len(ids) else torch.zeros((0, h, w), dtype=torch.bool)
    boxes = np.zeros((len(ids), 4), dtype=np.float32)
    for k, sl in enumerate(ndi.find_objects(labels)):
        if sl is not None:
            idx = np.searchsorted(ids, k + 1)
            boxes[idx] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
    out.pred_masks = masks
    out.pred_boxes = Boxes(torch.from_numpy(boxes))
    out.scores = torch.from_numpy(np.asarray(ndi.mean(prob, labels, ids), dtype=np.float32).reshape(-1))
    out.pred_classes = torch.zeros(len(ids), dtype=torch.int64)
    return out
