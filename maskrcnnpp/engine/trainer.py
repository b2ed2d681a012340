"""Detectron2 ``DefaultTrainer`` for every maskrcnnpp model, scored by the nuclei evaluator.

Periodic validation on ``DATASETS.VAL`` keeps the best checkpoint (``model_best.pth`` by
``SOLVER.BEST_CHECKPOINT_METRIC``); :meth:`NucleiTrainer.final_test` then scores
``DATASETS.TEST`` with that checkpoint, so the test split is never used for selection.
"""
from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict
from typing import Dict, List, Optional

from detectron2.config import CfgNode
from detectron2.data import (DatasetCatalog, DatasetMapper, MetadataCatalog, build_detection_test_loader,
                             build_detection_train_loader)
from detectron2.data import transforms as T
from detectron2.engine import DefaultTrainer, hooks
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

from .checkpointer import NucleiCheckpointer, SaveOnStopSignal
from ..errors import UserError
from ..modeling.semantic import is_semantic
from ..utils.files import read_json, write_json
from .console import EarlyProgressWriter

logger = logging.getLogger(__name__)

BEST_PREFIX = "model_best"  # hooks.BestCheckpointer's file prefix: model_best.pth, model_best.json


class KeepBestCheckpointer(hooks.BestCheckpointer):
    """Detectron2's BestCheckpointer that survives ``--resume``.

    Saving ``model_best`` through the trainer's checkpointer would tag it as the last checkpoint,
    so a resume would restart from the best iteration and lose later progress: the previous tag
    is restored after each save. The best value is kept in ``model_best.json`` and read back
    before training, so a resumed run does not overwrite a better ``model_best.pth``.
    """

    def _state_file(self) -> str:
        return os.path.join(self._checkpointer.save_dir, f"{self._file_prefix}.json")

    def before_train(self) -> None:
        if self.trainer.start_iter > 0 and os.path.isfile(self._state_file()):
            # a truncated file (a run killed mid-write before writes were atomic) is one error naming it
            state = read_json(self._state_file(), "best-checkpoint record", UserError)
            if not isinstance(state, dict) or not {"value", "iteration"} <= state.keys():
                raise UserError(f"best-checkpoint record {self._state_file()} has no \"value\" and \"iteration\"")
            self.best_metric, self.best_iter = state["value"], state["iteration"]

    def _best_checking(self) -> None:
        last = self._checkpointer.get_checkpoint_file() if self._checkpointer.has_checkpoint() else None
        before = (self.best_metric, self.best_iter)
        super()._best_checking()
        if (self.best_metric, self.best_iter) != before:
            if last is not None:
                self._checkpointer.tag_last_checkpoint(os.path.basename(last))
            else:  # no periodic checkpoint yet: --resume must start afresh, not from model_best
                os.remove(os.path.join(self._checkpointer.save_dir, "last_checkpoint"))
            write_json(self._state_file(), {"metric": self._val_metric, "value": self.best_metric,
                                            "iteration": self.best_iter}, indent=None, newline=False)


def check_datasets(cfg: CfgNode, test_only: bool = False) -> None:
    """Fail early, with the fix, when a configured dataset is unknown or not prepared (with
    ``test_only``, as for scoring a model, only those of DATASETS.TEST)."""
    names = ([] if test_only else list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.VAL)) + list(cfg.DATASETS.TEST)
    registered = set(DatasetCatalog.list())
    for name in dict.fromkeys(names):
        if name not in registered:
            nuclei = sorted(n for n in registered if MetadataCatalog.get(n).get("evaluator_type") == "nuclei")
            raise UserError(f"dataset {name!r} is not registered; nuclei datasets available: {', '.join(nuclei)} "
                            "(register a folder prepared by datasets/prepare_folder.py by name with "
                            "DATASETS.NUCLEI.FOLDERS [[NAME, FOLDER]], or your own COCO json with "
                            "maskrcnnpp.data.register_nuclei_coco)")
        DatasetCatalog.get(name)  # an unprepared dataset raises DatasetNotPreparedError (a UserError) here


class NucleiTrainer(DefaultTrainer):
    """DefaultTrainer with the nuclei evaluator, semantic data loading and best-checkpoint keeping."""

    validation_seconds: float = 0.0  # wall time of the validations inside train(), this process

    @classmethod
    def is_semantic(cls, cfg: CfgNode) -> bool:
        return is_semantic(cfg)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_folder: Optional[str] = None) -> DatasetEvaluator:
        from ..evaluation import NucleiEvaluator

        output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
        return NucleiEvaluator(dataset_name, cfg=cfg, output_dir=output_folder)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        if cls.is_semantic(cfg):
            from ..data.semantic import build_semantic_train_loader

            return build_semantic_train_loader(cfg)
        if cfg.DATALOADER.FAST_INSTANCE_MAPPER and cfg.MODEL.MASK_ON and cfg.INPUT.MASK_FORMAT == "bitmask":
            # Same training inputs as the stock DatasetMapper; images whose annotations it cannot
            # speed up (polygons, other transforms) take the stock path inside the mapper.
            from ..data.instance_mapper import NucleiInstanceMapper

            return build_detection_train_loader(cfg, mapper=NucleiInstanceMapper(cfg, is_train=True))
        from ..data.augmentations import build_nuclei_augmentations

        mapper = DatasetMapper(cfg, is_train=True)
        mapper.augmentations = T.AugmentationList(mapper.augmentations.augs + build_nuclei_augmentations(cfg, True))
        return build_detection_train_loader(cfg, mapper=mapper)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        if cls.is_semantic(cfg):
            from ..data.semantic import SemanticNucleiMapper

            return build_detection_test_loader(cfg, dataset_name, mapper=SemanticNucleiMapper(cfg, is_train=False))
        return build_detection_test_loader(cfg, dataset_name)

    @classmethod
    def evaluate_datasets(cls, cfg: CfgNode, model, dataset_names: List[str]) -> Dict:
        """Evaluate ``model`` on ``dataset_names`` (DefaultTrainer.test on those names)."""
        cfg = cfg.clone()
        cfg.defrost()
        cfg.DATASETS.TEST = tuple(dataset_names)
        return cls.test(cfg, model)

    def build_hooks(self) -> List[hooks.HookBase]:
        # DefaultTrainer.__init__ makes its DetectionCheckpointer and then calls build_hooks: swap in
        # the atomic one first, so the periodic and best-checkpoint hooks save through it too.
        if not isinstance(self.checkpointer, NucleiCheckpointer):
            self.checkpointer = NucleiCheckpointer.like(self.checkpointer)
        # last: the step's own hooks (validation, periodic checkpoint) have run when it saves
        return self._validation_hooks(super().build_hooks()) + [SaveOnStopSignal(self.checkpointer)]

    def _validation_hooks(self, ret: List[hooks.HookBase]) -> List[hooks.HookBase]:
        """DefaultTrainer's hooks with early progress lines and validation on DATASETS.VAL."""
        ret = [EarlyProgressWriter(h._writers, h._period) if type(h) is hooks.PeriodicWriter else h for h in ret]
        val = list(self.cfg.DATASETS.VAL)
        period = self.cfg.TEST.EVAL_PERIOD
        # Replace the default EvalHook (which scores DATASETS.TEST) by validation on DATASETS.VAL;
        # without a validation set nothing is evaluated during training (the test split is never
        # used for selection) and the final weights are tested.
        ret = [h for h in ret if not isinstance(h, hooks.EvalHook)]
        if not val:
            if period > 0:
                logger.warning("TEST.EVAL_PERIOD=%d but DATASETS.VAL is empty: no validation, no model_best.pth", period)
            return ret

        def validate():
            start = time.perf_counter()
            self._last_eval_results = self.evaluate_datasets(self.cfg, self.model, val)
            self.validation_seconds += time.perf_counter() - start
            return self._last_eval_results

        writer_at = next((k for k, h in enumerate(ret) if isinstance(h, hooks.PeriodicWriter)), len(ret))
        new = [hooks.EvalHook(period, validate)]
        metric = self.cfg.SOLVER.BEST_CHECKPOINT_METRIC
        if period > 0 and metric:
            # DefaultTrainer.test keys results by dataset when there are several: select on the first.
            metric = metric if len(val) == 1 else f"{val[0]}/{metric}"
            new.append(KeepBestCheckpointer(period, self.checkpointer, metric, mode="max", file_prefix=BEST_PREFIX))
        return ret[:writer_at] + new + ret[writer_at:]

    def train(self):
        """Train (DefaultTrainer.train); a fresh run first sets aside an earlier run's files.

        A run that starts at iteration 0 in an ``OUTPUT_DIR`` that already holds another run's
        ``model_best.*`` or ``last_checkpoint`` would otherwise test that run's best weights when it
        validates nothing itself, and a ``--resume`` after a crash before its first checkpoint
        would continue the other run.
        """
        if self.start_iter == 0 and comm.is_main_process():
            self._set_aside_earlier_run()
        return super().train()

    def _set_aside_earlier_run(self) -> None:
        out = self.cfg.OUTPUT_DIR
        for ext in (".pth", ".json"):
            path = os.path.join(out, BEST_PREFIX + ext)
            if os.path.isfile(path):
                aside = os.path.join(out, f"{BEST_PREFIX}.previous{ext}")
                replaced = " (replacing an older one)" if os.path.exists(aside) else ""
                os.replace(path, aside)
                logger.warning("Training starts at iteration 0 in %s: an earlier run's %s is moved to %s%s; this "
                               "run keeps and tests only its own best checkpoint", out, path, aside, replaced)
        tag = os.path.join(out, "last_checkpoint")
        if os.path.isfile(tag):
            with open(tag) as f:
                named = f.read().strip()
            os.remove(tag)
            logger.warning("Training starts at iteration 0 in %s: the 'last_checkpoint' tag (%s, an earlier run's) "
                           "is removed, so resuming continues this run, not that one", out, named)

    def final_test(self) -> "OrderedDict[str, Dict]":
        """Score DATASETS.TEST with the best validated checkpoint (or the final weights).

        Returns ``{dataset_name: results}`` for every test dataset (DefaultTrainer.test unwraps a
        single dataset's results; this does not, so callers index by name).
        """
        best = os.path.join(self.cfg.OUTPUT_DIR, BEST_PREFIX + ".pth")
        if os.path.isfile(best):
            logger.info("Final test with the best validated checkpoint %s", best)
            self.checkpointer.load(best, checkpointables=[])
        results = self.test(self.cfg, self.model)
        names = list(self.cfg.DATASETS.TEST)
        return OrderedDict([(names[0], results)]) if len(names) == 1 else results
