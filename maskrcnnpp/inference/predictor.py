"""``NucleiPredictor``: a trained model (config + weights) applied to numpy images of any kind.

Like Detectron2's ``DefaultPredictor`` (the image is resized with ``INPUT.MIN_SIZE_TEST`` /
``MAX_SIZE_TEST`` for the Mask R-CNN models, kept at native resolution for the ``SemanticUNet``
models as in their evaluation; masks come back at the original size), plus what nuclei images need:

* any grey/RGB/RGBA image of 8 or 16 bits (or float) is converted to the 8-bit 3-channel input
  the models were trained on (:func:`maskrcnnpp.inference.image_io.to_uint8_rgb`);
* a nucleus diameter (``diameter=``, :mod:`maskrcnnpp.inference.scale`) replaces the test resize by
  the factor that brings the image's nuclei to the model's nominal diameter
  (``TEST.NUCLEI.NOMINAL_DIAMETER``), the same for any image size; ``"auto"`` estimates it per image;
* large images can be predicted in tiles with overlap (:mod:`maskrcnnpp.inference.tiling`); without
  a diameter every tile is resized by the factor an image of the tile's size would get, so nuclei
  keep the scale the model was trained at; with a diameter, tile size and overlap count pixels of
  the *rescaled* image (what the model sees: memory is bounded and nuclei there have the nominal
  size, so the default overlap fits whatever the diameter);
* optional test-time augmentation (:mod:`.tta`): Detectron2's ``GeneralizedRCNNWithTTA`` for the Mask R-CNN
  models (original + horizontal flip at the test scale; boxes merged by NMS, masks averaged) and,
  for ``SemanticUNet`` models, the foreground (and boundary) probabilities of the original and its
  horizontal, vertical and double flips averaged before the watershed post-processing;
* the result is a non-overlapping label image with one score per nucleus
  (:class:`maskrcnnpp.inference.instances.NucleiPrediction`), instances below
  ``TEST.NUCLEI.SCORE_THRESH`` (or ``score_thresh``) dropped.

The predictor composes modules of one job each: :mod:`.weights` (loading a checkpoint, the config
and device lines), :mod:`.passes` (one pass at a scale, whole or tiled; the passes of diameter
"auto"), :mod:`.tta` (test-time augmentation) and :mod:`.trust` (when not to trust a result).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from detectron2.config import CfgNode
from detectron2.data import transforms as T
from detectron2.modeling import build_model

from ..config import setup_cfg
from ..errors import UserError, check_probability
from ..modeling.semantic import is_semantic
from ..model_zoo import get as get_zoo_model
from ..model_zoo import weights_path
from ..modeling.meta_arch import NucleiRCNN
from .image_io import RESCALE_MODES, intensity_image, to_uint8_rgb
from .scale import AUTO, Diameter, check_diameter, check_diameter_range, config_diameter, diameter_scale
from .instances import (
    CroppedInstance, NucleiPrediction, crops_from_instances, crops_from_unpasted_instances, paint_labels,
)
from .passes import auto_instances, instances_at
from .trust import TrustSettings, assess_image
from .tta import build_rcnn_tta, rcnn_tta_instances, semantic_flip_instances
from .weights import _ReportingCheckpointer, describe_config, describe_device, load_weights  # noqa: F401  (re-exported)
from .writers import nuclei_table

_PREDICTOR_DIAMETER = object()  # predict(): the predictor's own diameter
CONFIG_DIAMETER = object()  # NucleiPredictor(): the config's TEST.NUCLEI.DIAMETER


class NucleiPredictor:
    """Predict nuclei of single images with a maskrcnnpp model (module doc)."""

    def __init__(
        self,
        cfg: CfgNode,
        weights: Optional[str] = None,
        *,
        tta: bool = False,
        score_thresh: Optional[float] = None,
        rescale: str = "max",
        model: Optional[torch.nn.Module] = None,
        config_name: Optional[str] = None,
        diameter: Union[Diameter, object] = CONFIG_DIAMETER,
    ):
        """
        Args:
            cfg: a maskrcnnpp config (e.g. from :func:`maskrcnnpp.config.setup_cfg`).
            weights: checkpoint to load (default ``cfg.MODEL.WEIGHTS``); ignored when ``model`` is given.
            tta: test-time augmentation (module doc).
            score_thresh: drop instances scoring below this (default ``cfg.TEST.NUCLEI.SCORE_THRESH``).
            rescale: how non-8-bit images become 8-bit: "max" (as prepare_dsb2018.py converts training
                images), "percentile", "minmax" or "none" (see image_io).
            model: an already built and loaded model to use instead of building one from ``cfg``.
            config_name: the config name/path ``cfg`` came from, to name in errors about the weights.
            diameter: typical nucleus diameter of the images in their own pixels, ``"auto"`` (estimated
                per image) or None (the config's test resize); see :mod:`maskrcnnpp.inference.scale`.
                Default: the config's ``TEST.NUCLEI.DIAMETER`` ("auto" for the shipped models whose card says so).

        Raises :class:`UserError` for weights that leave part of the model unloaded (:func:`load_weights`),
        thresholds outside [0, 1], a diameter that is not positive or "auto", and a diameter for a model
        whose ``TEST.NUCLEI.NOMINAL_DIAMETER`` is unknown (0).
        """
        if rescale not in RESCALE_MODES:
            raise UserError(f"rescale must be one of {', '.join(RESCALE_MODES)}, got {rescale!r}")
        if cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise UserError(f"INPUT.FORMAT={cfg.INPUT.FORMAT!r} is not supported for prediction; use RGB or BGR")
        self.cfg = cfg.clone()
        self.rescale = rescale
        self.score_thresh = check_probability(
            cfg.TEST.NUCLEI.SCORE_THRESH if score_thresh is None else score_thresh,
            "TEST.NUCLEI.SCORE_THRESH" if score_thresh is None else "score_thresh")
        self.mask_thresh = check_probability(cfg.TEST.NUCLEI.MASK_THRESH, "TEST.NUCLEI.MASK_THRESH")
        self.input_format = cfg.INPUT.FORMAT
        self.nominal_diameter = float(cfg.TEST.NUCLEI.NOMINAL_DIAMETER)
        self.auto_tolerance = float(cfg.TEST.NUCLEI.AUTO_DIAMETER_TOLERANCE)
        self.auto_range = check_diameter_range(cfg.TEST.NUCLEI.AUTO_DIAMETER_RANGE)
        self.diameter = self._checked_diameter(
            config_diameter(cfg.TEST.NUCLEI.DIAMETER) if diameter is CONFIG_DIAMETER else diameter)
        self.is_semantic = is_semantic(cfg)
        self.trust = TrustSettings.from_config(cfg)
        if model is None:
            try:
                model = build_model(self.cfg)
            except KeyError as e:  # a registry lookup: unknown META_ARCHITECTURE / backbone / head name
                if "No object named" not in str(e):
                    raise
                raise UserError(f"{e.args[0]} (check MODEL.META_ARCHITECTURE and the MODEL.*.NAME keys of {cfg.MODEL.META_ARCHITECTURE})") from None
            load_weights(model, cfg.MODEL.WEIGHTS if weights is None else weights, describe_config(cfg, config_name))
        self.model = model.eval()
        self.resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
        self.tta = tta
        self._rcnn_tta = None
        if tta and not self.is_semantic:
            self._rcnn_tta = build_rcnn_tta(self.cfg, self.model)

    @classmethod
    def from_config(
        cls,
        config: str,
        weights: Optional[str] = None,
        opts: Sequence[str] = (),
        device: Optional[str] = None,
        **kwargs,
    ) -> "NucleiPredictor":
        """Build from a config name/path (+ ``opts`` overrides, ``device``) via :func:`setup_cfg`."""
        kwargs.setdefault("config_name", config)
        return cls(setup_cfg(config, opts, device=device), weights, **kwargs)

    @classmethod
    def from_zoo(cls, name: Optional[str] = None, device: Optional[str] = None, opts: Sequence[str] = (),
                 **kwargs) -> "NucleiPredictor":
        """A shipped trained model by name (None: the default; see :mod:`maskrcnnpp.model_zoo`), its
        weights checked against their SHA-256; ``device`` "cpu"/"cuda" (default: cuda when present).
        The model's nominal nucleus diameter (its card) is set in the config, so ``diameter=`` works."""
        model = get_zoo_model(name)
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        kwargs.setdefault("config_name", f"{model.config} (zoo model {model.name})")
        opts = [*model.config_overrides(), *opts]
        return cls(setup_cfg(model.config, opts, device=device), weights_path(model), **kwargs)

    @property
    def device(self) -> str:
        return self.cfg.MODEL.DEVICE

    # ------------------------------------------------------------------ public API
    def predict(
        self,
        image: np.ndarray,
        tile_size: int = 0,
        tile_overlap: int = 64,
        progress: bool = False,
        batch_size: int = 1,
        diameter: Union[Diameter, object] = _PREDICTOR_DIAMETER,
    ) -> NucleiPrediction:
        """Nuclei of ``image`` (any supported kind) as a label image + scores.

        ``tile_size > 0`` predicts an image larger than ``tile_size`` in tiles overlapping by
        ``tile_overlap`` pixels (original image pixels; with a diameter, pixels of the rescaled image),
        ``batch_size`` tiles per forward pass; ``info`` then has the merge counts. ``diameter``
        overrides the predictor's for this image. ``info`` says how the image was scaled: ``scale``
        (the factor the model input had), ``diameter`` (pixels, None without one) and
        ``diameter_source`` ("none", "given", "auto", "auto: first pass kept", "auto: no nucleus
        found, default resize kept"); ``trust`` says how far the image is from the model's training
        images (:func:`~maskrcnnpp.inference.trust.assess_image`: kind, nucleus size, mean score, flags).
        """
        return self.predict_batch([image], tile_size, tile_overlap, progress, batch_size, diameter)[0]

    def predict_batch(
        self,
        images: Sequence[np.ndarray],
        tile_size: int = 0,
        tile_overlap: int = 64,
        progress: bool = False,
        batch_size: Optional[int] = None,
        diameter: Union[Diameter, object] = _PREDICTOR_DIAMETER,
    ) -> List[NucleiPrediction]:
        """:meth:`predict` of each of ``images``. Without a diameter, and for the first pass of "auto",
        untiled images share forward passes, up to ``batch_size`` (default: all) model inputs of one
        size each (:meth:`predict_instances_batch`); tiled images, images rescaled by a diameter and
        auto's second passes go one at a time, their tiles ``batch_size`` at a time. Equal to
        predicting the images one by one up to float rounding (batched convolutions: scores within 1e-6)."""
        batch_size = max(1, len(images)) if batch_size is None else batch_size
        if batch_size < 1:
            raise UserError(f"batch size must be at least 1, got {batch_size}")
        diameter = self.diameter if diameter is _PREDICTOR_DIAMETER else self._checked_diameter(diameter)
        rgb8s = [to_uint8_rgb(image, self.rescale) for image in images]
        predictions: List[Optional[NucleiPrediction]] = [None] * len(rgb8s)
        shared = [i for i, rgb8 in enumerate(rgb8s)
                  if diameter in (None, AUTO) and not (tile_size and max(rgb8.shape[:2]) > tile_size)]
        for i, instances in zip(shared, self.predict_instances_batch([rgb8s[i] for i in shared], batch_size=batch_size)):
            height, width = rgb8s[i].shape[:2]
            first = (instances, {"tiles": 1}, self.test_scale(height, width))
            if diameter == AUTO:
                instances, stats, info = auto_instances(self, rgb8s[i], tile_size, tile_overlap, progress, batch_size,
                                                              first)
            else:
                stats, info = first[1], {"scale": first[2], "diameter": None, "diameter_source": "none"}
            predictions[i] = paint_labels(instances, (height, width))
            predictions[i].info.update(stats)
            predictions[i].info.update(info)
        for i, rgb8 in enumerate(rgb8s):
            if predictions[i] is None:
                predictions[i] = self._predict_scaled(rgb8, tile_size, tile_overlap, progress, batch_size, diameter)
            predictions[i].info["trust"] = assess_image(rgb8, predictions[i], self.trust)
        return predictions

    def _predict_scaled(self, rgb8: np.ndarray, tile_size: int, tile_overlap: int, progress: bool, batch_size: int,
                        diameter: Diameter) -> NucleiPrediction:
        """:meth:`predict` of one 8-bit RGB image with a resolved ``diameter``."""
        height, width = rgb8.shape[:2]
        if diameter is None:
            instances, stats, scale = instances_at(self, rgb8, None, tile_size, tile_overlap, progress, batch_size)
            info = {"scale": scale, "diameter": None, "diameter_source": "none"}
        elif diameter == AUTO:
            instances, stats, info = auto_instances(self, rgb8, tile_size, tile_overlap, progress, batch_size)
        else:
            scale = diameter_scale(diameter, self.nominal_diameter)
            instances, stats, _ = instances_at(self, rgb8, scale, tile_size, tile_overlap, progress, batch_size)
            info = {"scale": scale, "diameter": float(diameter), "diameter_source": "given"}
        prediction = paint_labels(instances, (height, width))
        prediction.info.update(stats)
        prediction.info.update(info)
        return prediction

    def __call__(self, image: np.ndarray, tile_size: int = 2048, tile_overlap: int = 128
                 ) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
        """The label image of ``image`` (0 = background, nucleus k = k) and its per-nucleus table.

        The table holds numpy columns ``id, area, centroid_y, centroid_x, bbox_min_y, bbox_min_x,
        bbox_max_y, bbox_max_x, score, mean_intensity`` (one row per label, in the image's own
        intensity units; ``pandas.DataFrame(table)`` makes a data frame of it). Images larger than
        ``tile_size`` are predicted in overlapping tiles (0: never).
        """
        prediction = self.predict(image, tile_size=tile_size, tile_overlap=tile_overlap)
        return prediction.labels, nuclei_table(prediction, intensity_image(image))

    def test_scale(self, height: int, width: int) -> float:
        """The factor by which the test resize (MIN_SIZE_TEST/MAX_SIZE_TEST) scales a ``height x width`` image.

        Always 1 for ``SemanticUNet`` models: they are trained on native-resolution crops and
        evaluated unresized (``SemanticNucleiMapper``), so they predict at native resolution.
        """
        if self.is_semantic or self.resize.short_edge_length[0] == 0:  # MIN_SIZE_TEST = 0 disables resizing
            return 1.0
        new_h, _ = self.resize.get_output_shape(height, width, self.resize.short_edge_length[0], self.resize.max_size)
        return new_h / height

    @torch.no_grad()
    def predict_instances(self, rgb8: np.ndarray, scale: Optional[float] = None) -> List[CroppedInstance]:
        """Instances (score >= threshold) of an 8-bit RGB image; ``scale`` overrides the test resize."""
        return self.predict_instances_batch([rgb8], scale)[0]

    @torch.no_grad()
    def predict_instances_batch(self, rgb8s: Sequence[np.ndarray], scale: Optional[float] = None,
                                batch_size: int = 1) -> List[List[CroppedInstance]]:
        """:meth:`predict_instances` of each 8-bit RGB image. The Mask R-CNN models without TTA run up
        to ``batch_size`` inputs of the same resized shape in one forward pass: a batch is zero-padded
        to its largest input and GroupNorm's statistics would take in the padding of smaller ones, so
        only equal shapes share a pass and every result equals the single-image one up to float rounding.
        Other models and TTA predict one image at a time."""
        if not (isinstance(self.model, NucleiRCNN) and self._rcnn_tta is None):
            return [self._predict_one(rgb8, scale) for rgb8 in rgb8s]
        inputs = [self._model_input(self._model_image(rgb8), self.test_scale(*rgb8.shape[:2]) if scale is None else scale)
                  for rgb8 in rgb8s]
        by_shape: Dict[Tuple[int, ...], List[int]] = {}
        for i, model_input in enumerate(inputs):
            by_shape.setdefault(tuple(model_input["image"].shape), []).append(i)
        found: List[List[CroppedInstance]] = [[] for _ in rgb8s]
        for indices in by_shape.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start:start + batch_size]
                # masks pasted one box at a time: never N full-image masks (GBs on a large untiled image)
                results = self.model.inference([inputs[i] for i in chunk], do_postprocess=False)
                for i, result in zip(chunk, results):
                    found[i] = crops_from_unpasted_instances(result, inputs[i]["height"], inputs[i]["width"],
                                                             self.score_thresh, self.mask_thresh)
        return found

    def _predict_one(self, rgb8: np.ndarray, scale: Optional[float]) -> List[CroppedInstance]:
        height, width = rgb8.shape[:2]
        if scale is None:
            scale = self.test_scale(height, width)
        model_image = self._model_image(rgb8)
        if self._rcnn_tta is not None:
            instances = rcnn_tta_instances(self._rcnn_tta, model_image, scale)
        elif self.is_semantic and self.tta:
            instances = semantic_flip_instances(self.model, self._model_input, model_image, scale)
        else:
            instances = self.model([self._model_input(model_image, scale)])[0]["instances"]
        return crops_from_instances(instances, self.score_thresh, self.mask_thresh)

    # ------------------------------------------------------------------ internals
    def _model_image(self, rgb8: np.ndarray) -> np.ndarray:
        return rgb8[:, :, ::-1] if self.input_format == "BGR" else rgb8

    def _checked_diameter(self, diameter: Diameter) -> Diameter:
        diameter = check_diameter(diameter)
        if diameter is not None:
            diameter_scale(1.0, self.nominal_diameter)  # a UserError now when the nominal diameter is unknown
        return diameter

    @staticmethod
    def _resized(image: np.ndarray, scale: float) -> np.ndarray:
        height, width = image.shape[:2]
        new_h, new_w = max(1, int(round(height * scale))), max(1, int(round(width * scale)))
        if (new_h, new_w) == (height, width):
            return image
        return T.ResizeTransform(height, width, new_h, new_w).apply_image(np.ascontiguousarray(image))

    def _model_input(self, model_image: np.ndarray, scale: float) -> dict:
        height, width = model_image.shape[:2]
        resized = self._resized(model_image, scale)
        tensor = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)).astype("float32"))
        return {"image": tensor, "height": height, "width": width}
