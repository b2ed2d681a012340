"""``NucleiEvaluator``: DSB score, foreground IoU/Dice, AJI, PQ and COCO AP in one pass.

The nuclei metrics are defined in :mod:`maskrcnnpp.evaluation.metrics`; COCO mask/box AP comes
from Detectron2's own ``COCOEvaluator`` (official pycocotools code path, ``maxDets`` raised to
``cfg.TEST.NUCLEI.MAX_DETS`` through its ``max_dets_per_image`` argument).
"""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import itertools
import logging
import os
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import detectron2.utils.comm as comm
from detectron2.data import DatasetCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator
from detectron2.evaluation.coco_evaluation import COCOevalMaxDets
from detectron2.structures import BitMasks, Instances
from detectron2.utils.logger import create_small_table

from ..compat import has_compiled_ops
from ..config import get_maskrcnnpp_cfg
from ..utils.files import atomic_path, finite_or_none, write_json
from .image_types import IMAGE_TYPES, image_type_of_file, scores_by_image_type
from .label_images import (
    NucleiEvaluationInputError,
    gt_label_image,
    instances_to_label_image,
    results_label_image,
)
from .metrics import PRECISION_KEYS, score_image, summarize_images

logger = logging.getLogger(__name__)

__all__ = ["NucleiEvaluator"]

# Used when the cfg lacks TEST.NUCLEI (e.g. a plain Detectron2 cfg); same as maskrcnnpp.config.
HEADLINE_KEYS = ["score", "iou", "dice", "aji", "pq", "sq", "dq"]
CSV_COLUMNS = (
    ["image_id", "file_name", "num_gt", "num_pred"]
    + HEADLINE_KEYS
    + PRECISION_KEYS
    + ["tp", "fp", "fn", "tp_iou_sum", "aji_c", "aji_u", "fg_inter", "fg_gt_area", "fg_pred_area"]
    + ["gt_crowd", "gt_empty", "gt_overlap_pixels", "gt_dropped", "image_type"]
)


class _NucleiCOCOEvaluator(COCOEvaluator):
    """Detectron2's ``COCOEvaluator`` that also takes results already in COCO results format.

    ``tools/evaluate.py`` scores a ``coco_instances_results.json``; its entries are exactly what
    ``COCOEvaluator.process`` stores per image, so they are added as is (category ids mapped
    back to the contiguous ids ``COCOEvaluator`` expects) instead of being decoded to masks and
    re-encoded.
    """

    _img_ids: Optional[List[Any]] = None  # the image ids of the last evaluation (None: all of the dataset)

    def add_coco_results(self, image_id: Any, results: List[Dict[str, Any]]) -> None:
        id_map = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        results = copy.deepcopy(results)
        if id_map:
            for res in results:
                res["category_id"] = id_map[res["category_id"]]
        self._predictions.append({"image_id": image_id, "instances": results})

    # what COCOEvaluator writes into output_dir, in place (not through a temporary file)
    WRITTEN = ("instances_predictions.pth", "coco_instances_results.json")

    def evaluate(self, img_ids=None):
        """COCOEvaluator.evaluate; a failed write (a full disk) leaves none of its files half-written."""
        started = time.time()
        try:
            return super().evaluate(img_ids)
        except OSError:
            for name in self.WRITTEN if self._output_dir else ():
                path = os.path.join(self._output_dir, name)
                if os.path.isfile(path) and os.path.getmtime(path) >= started - 1:  # this evaluation's
                    os.remove(path)
            raise

    def _eval_predictions(self, predictions, img_ids=None) -> None:
        self._img_ids = img_ids
        super()._eval_predictions(predictions, img_ids=img_ids)

    def _derive_coco_results(self, coco_eval, iou_type: str, class_names=None) -> Dict[str, float]:
        # Detectron2 does not call pycocotools when nothing was predicted and reports NaN, which a
        # results table shows as "not measured". pycocotools scores an empty detection set 0 where
        # there is ground truth (as it does a single wrong detection), so a model that finds no
        # nuclei is scored, not hidden; NaN stays where there is no ground truth either.
        if coco_eval is None and iou_type in ("bbox", "segm"):
            self._logger.warning("No predictions from the model: COCO %s AP is 0 wherever there is ground truth", iou_type)
            coco_eval = self._evaluate_no_detections(iou_type)
        return super()._derive_coco_results(coco_eval, iou_type, class_names=class_names)

    def _evaluate_no_detections(self, iou_type: str) -> COCOeval:
        """pycocotools' evaluation of an empty detection set (``COCO.loadRes`` rejects an empty list)."""
        coco_dt = COCO()
        gt = self._coco_api.dataset
        coco_dt.dataset = {"images": list(gt["images"]), "categories": copy.deepcopy(gt.get("categories", [])),
                           "annotations": []}
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt.createIndex()
        max_dets = self._max_dets_per_image or [1, 10, 100]
        # the same COCOeval class and settings as Detectron2's _evaluate_predictions_on_coco
        coco_eval = (COCOevalMaxDets if max_dets[2] != 100 else COCOeval)(self._coco_api, coco_dt, iou_type)
        coco_eval.params.maxDets = max_dets
        if self._img_ids is not None:
            coco_eval.params.imgIds = self._img_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        return coco_eval


def _setting(cfg, key: str, override):
    if override is not None:
        return override
    nuclei = getattr(getattr(cfg, "TEST", None), "NUCLEI", None) if cfg is not None else None
    if nuclei is not None and key in nuclei:
        return nuclei[key]
    return get_maskrcnnpp_cfg().TEST.NUCLEI[key]  # the defaults live in the config only


class NucleiEvaluator(DatasetEvaluator):
    """Scores nuclei instance segmentation on a registered dataset, like any Detectron2 evaluator.

    Per image it builds the ground-truth label image from the dataset dict (RLE or polygons,
    via pycocotools) and the predicted label image from the model output, then computes the
    DSB 2018 leaderboard score, foreground IoU/Dice, AJI and PQ/SQ/DQ
    (:func:`maskrcnnpp.evaluation.metrics.score_image`). Model outputs per image:

    * ``{"instances": Instances(pred_masks, scores, pred_boxes, pred_classes)}``: instances
      scoring below ``TEST.NUCLEI.SCORE_THRESH`` are dropped, soft masks are binarised at
      ``TEST.NUCLEI.MASK_THRESH``, overlaps go to the higher score;
    * optionally ``"sem_seg"``: a foreground probability ``[1, H, W]``; when present, the
      foreground IoU/Dice score ``sem_seg > MODEL.SEMANTIC_UNET.THRESHOLD`` (the semantic
      models' own threshold, via ``maskrcnnpp.utils.postprocess``) instead of the union of instances;
    * only ``"sem_seg"``: instances come from
      ``maskrcnnpp.utils.postprocess.probability_to_instances(prob, cfg)`` (each with score 1 for AP).

    COCO mask and box AP (all instances, no score threshold) come from Detectron2's
    ``COCOEvaluator`` with ``max_dets_per_image=TEST.NUCLEI.MAX_DETS`` and
    ``use_fast_impl=False`` unless Detectron2's compiled extension is present. A model that
    predicts nothing gets pycocotools' AP of an empty detection set (0 where there is ground
    truth) rather than Detectron2's NaN.

    :meth:`evaluate` returns ``{"nuclei": {...}, "segm": {...}, "bbox": {...}}`` (nuclei values
    are fractions, COCO values percentages) and, with ``output_dir``, writes ``per_image.csv``
    and ``summary.json`` there (plus COCOEvaluator's ``coco_instances_results.json``).
    """

    def __init__(
        self,
        dataset_name: str,
        cfg=None,
        output_dir: Optional[str] = None,
        *,
        distributed: bool = True,
        score_thresh: Optional[float] = None,
        mask_thresh: Optional[float] = None,
        max_dets: Optional[int] = None,
        coco_ap: Optional[bool] = None,
        save_coco_results: bool = True,
    ):
        """
        Args:
            dataset_name: a dataset registered in Detectron2's ``DatasetCatalog`` with masks.
            cfg: config supplying ``TEST.NUCLEI.*`` (optional; the keyword overrides win).
            output_dir: folder for ``per_image.csv``/``summary.json`` (None: write nothing).
            distributed: gather per-image results from all workers, as Detectron2 evaluators do.
            score_thresh, mask_thresh, max_dets, coco_ap: override ``TEST.NUCLEI.*``.
            save_coco_results: let COCOEvaluator write its results files into ``output_dir``.
        """
        self._dataset_name = dataset_name
        self._cfg = cfg
        self._output_dir = output_dir
        self._distributed = distributed
        self._score_thresh = float(_setting(cfg, "SCORE_THRESH", score_thresh))
        self._mask_thresh = float(_setting(cfg, "MASK_THRESH", mask_thresh))
        self._max_dets = int(_setting(cfg, "MAX_DETS", max_dets))
        self._records = {r["image_id"]: r for r in DatasetCatalog.get(dataset_name)}
        self._coco: Optional[_NucleiCOCOEvaluator] = None
        if bool(_setting(cfg, "COCO_AP", coco_ap)):
            self._coco = _NucleiCOCOEvaluator(
                dataset_name,
                tasks=("bbox", "segm"),
                distributed=distributed,
                output_dir=output_dir if save_coco_results else None,
                max_dets_per_image=self._max_dets,
                use_fast_impl=has_compiled_ops(),
            )
        self.reset()

    @property
    def settings(self) -> Dict[str, Any]:
        """The thresholds in use (also written to summary.json)."""
        return {
            "score_thresh": self._score_thresh,
            "mask_thresh": self._mask_thresh,
            "max_dets": self._max_dets,
            "coco_ap": self._coco is not None,
        }

    def reset(self) -> None:
        self._rows: List[Dict[str, Any]] = []
        if self._coco is not None:
            self._coco.reset()

    # ------------------------------------------------------------------ per image
    def _record(self, image_id: Any) -> Dict[str, Any]:
        if image_id not in self._records:
            raise NucleiEvaluationInputError(f"image id {image_id!r} is not in dataset '{self._dataset_name}'")
        return self._records[image_id]

    def _add_row(self, record: Dict[str, Any], pred_labels: np.ndarray, pred_fg: Optional[np.ndarray] = None) -> None:
        gt_labels, gt_stats = gt_label_image(record)
        if pred_labels.shape != gt_labels.shape:
            raise NucleiEvaluationInputError(
                f"image id {record['image_id']!r}: prediction is {pred_labels.shape} (H, W) but the ground "
                f"truth is {gt_labels.shape}; predictions must be at the original image resolution"
            )
        if int(gt_labels.max(initial=0)) > self._max_dets and self._coco is not None:
            logger.warning(
                "image id %r has %d nuclei, more than TEST.NUCLEI.MAX_DETS=%d: COCO AP undercounts it",
                record["image_id"], int(gt_labels.max()), self._max_dets,
            )
        row: Dict[str, Any] = {"image_id": record["image_id"], "file_name": record.get("file_name", ""),
                               "image_type": image_type_of_file(record.get("file_name", ""))}
        row.update(score_image(gt_labels, pred_labels, pred_fg=pred_fg))
        row.update({f"gt_{k}": v for k, v in gt_stats.items()})
        self._rows.append(row)

    def _semantic_threshold(self) -> float:
        """The semantic models' own foreground threshold (``MODEL.SEMANTIC_UNET.THRESHOLD``)."""
        from ..utils.postprocess import postprocess_params

        return float(postprocess_params(self._cfg)["threshold"])

    def _semantic_instances(self, prob: np.ndarray) -> np.ndarray:
        from ..utils.postprocess import probability_to_instances  # looked up per call: tests replace it

        return np.asarray(probability_to_instances(prob, self._cfg)).astype(np.int32, copy=False)

    @staticmethod
    def _label_image_to_instances(labels: np.ndarray) -> Instances:
        """Instances (score 1, class 0) of the objects of a label image, for COCO AP."""
        ids = np.unique(labels)
        ids = ids[ids > 0]
        masks = torch.from_numpy(labels[None] == ids[:, None, None])
        instances = Instances(labels.shape)
        instances.pred_masks = masks
        instances.pred_boxes = BitMasks(masks).get_bounding_boxes()
        instances.scores = torch.ones(len(ids))
        instances.pred_classes = torch.zeros(len(ids), dtype=torch.int64)
        return instances

    def _binary_masks(self, instances: Instances) -> Instances:
        """``instances`` with soft (float) ``pred_masks`` binarised at ``MASK_THRESH``, for COCO AP.

        Detectron2's ``instances_to_coco_json`` casts masks to uint8, which would turn a soft
        mask's 0.9 into 0; the nuclei metrics binarise the same masks the same way.
        """
        if not instances.has("pred_masks") or not getattr(instances.pred_masks, "dtype", torch.bool).is_floating_point:
            return instances
        binary = Instances(instances.image_size, **instances.get_fields())
        binary.pred_masks = instances.pred_masks >= self._mask_thresh
        return binary

    def process(self, inputs, outputs) -> None:
        """Score each (input, output) pair; see the class docstring for the output forms."""
        for inp, out in zip(inputs, outputs):
            record = self._record(inp["image_id"])
            pred_fg = None
            if "sem_seg" in out:
                prob = out["sem_seg"].detach().to("cpu").float().numpy()
                if prob.ndim == 3:
                    if prob.shape[0] != 1:
                        raise NucleiEvaluationInputError(
                            f"image id {inp['image_id']!r}: sem_seg must be a foreground probability "
                            f"[1, H, W], got {tuple(prob.shape)}"
                        )
                    prob = prob[0]
                pred_fg = prob > self._semantic_threshold()
            if "instances" in out:
                # binarised once, for the nuclei metrics and COCO AP alike
                instances = self._binary_masks(out["instances"])
                pred_labels = instances_to_label_image(instances, self._score_thresh, self._mask_thresh)
                coco_output = {"instances": instances}
            elif "sem_seg" in out:
                pred_labels = self._semantic_instances(prob)
                coco_output = {"instances": self._label_image_to_instances(pred_labels)}
            else:
                raise NucleiEvaluationInputError(
                    f"image id {inp['image_id']!r}: model output has neither 'instances' nor 'sem_seg' "
                    f"(keys: {sorted(out)})"
                )
            self._add_row(record, pred_labels, pred_fg)
            if self._coco is not None:
                self._coco.process([inp], [coco_output])

    def process_coco_results(self, image_id: Any, results: List[Dict[str, Any]]) -> None:
        """Score one image's predictions given in COCO results format (compressed RLE, score).

        The ``segmentation`` sizes must already match the image (see
        :func:`maskrcnnpp.evaluation.coco_results.load_coco_results`).
        """
        record = self._record(image_id)
        pred_labels = results_label_image(results, (record["height"], record["width"]), self._score_thresh,
                                          f"results of image id {image_id!r}")
        self._add_row(record, pred_labels)
        if self._coco is not None:
            self._coco.add_coco_results(image_id, results)

    # ------------------------------------------------------------------ dataset
    def evaluate(self):
        """Gather, aggregate, write per_image.csv/summary.json and return the metrics dict."""
        coco_results = self._coco.evaluate() if self._coco is not None else {}  # gathers on all ranks
        rows = self._rows
        if self._distributed:
            comm.synchronize()
            rows = list(itertools.chain(*comm.gather(rows, dst=0)))
            if not comm.is_main_process():
                return {}
        if not rows:
            logger.warning("[NucleiEvaluator] no image was processed on '%s'", self._dataset_name)
            return {}
        seen = set()
        for row in rows:
            if row["image_id"] in seen:
                raise RuntimeError(f"image id {row['image_id']!r} was scored twice; call reset() between evaluations")
            seen.add(row["image_id"])
        rows = sorted(rows, key=lambda r: (str(type(r["image_id"])), r["image_id"]))
        nuclei = summarize_images(rows)
        results: "OrderedDict[str, Dict[str, float]]" = OrderedDict(nuclei=nuclei)
        for task in ("segm", "bbox"):
            if task in coco_results:
                results[task] = coco_results[task]
        logger.info(
            "Nuclei metrics on %s (%d images):\n%s", self._dataset_name, len(rows),
            create_small_table({k: nuclei[k] for k in HEADLINE_KEYS}),
        )
        if self._output_dir:
            self._write(rows, results)
        return copy.deepcopy(results)

    def _write(self, rows: List[Dict[str, Any]], results: Dict[str, Dict[str, float]]) -> None:
        os.makedirs(self._output_dir, exist_ok=True)
        corrections = {k: int(sum(r[f"gt_{k}"] for r in rows)) for k in ("crowd", "empty", "overlap_pixels", "dropped")}
        summary: Dict[str, Any] = dict(results["nuclei"])
        summary.update({task: dict(values) for task, values in results.items() if task != "nuclei"})
        summary["dataset"] = self._dataset_name
        summary["settings"] = self.settings
        summary["ground_truth_corrections"] = corrections
        known = [r for r in rows if r["image_type"] in IMAGE_TYPES]
        summary["by_image_type"] = scores_by_image_type(known, {r["image_id"]: r["image_type"] for r in known})

        with atomic_path(os.path.join(self._output_dir, "per_image.csv")) as tmp, \
                open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        write_json(os.path.join(self._output_dir, "summary.json"), finite_or_none(summary), indent=2,
                   allow_nan=False, newline=False)
