"""Which datasets an experiment trains, validates and tests on, and their registration (the
data choice's splits, an external test folder, the DSB 2018 root in effect)."""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from ..config import setup_cfg
from ..errors import UserError
from .plan import DATA_SPLITS, ExperimentPlan, Run, plan_error

__all__ = [
    "EXTERNAL_TEST_NAME", "dataset_opts", "dsb_root_in_effect", "external_test_json", "register_experiment_datasets",
    "resolved_test_split",
]

EXTERNAL_TEST_NAME = "experiment_external_test"


def external_test_json(test_root: str, split: Optional[str]) -> Tuple[str, str]:
    """(json, image root) of a folder prepared by ``datasets/prepare_dsb2018.py``.

    ``split`` names ``annotations/<split>.json``; by default "test" when present, else "all".
    """
    ann_dir = os.path.join(test_root, "annotations")
    images = os.path.join(test_root, "images")
    if not os.path.isdir(ann_dir) or not os.path.isdir(images):
        raise plan_error(f"test_root {test_root} is not a folder prepared by datasets/prepare_dsb2018.py "
                         "(it needs images/ and annotations/<split>.json)", "test_root")
    candidates = [split] if split else ["test", "all"]
    for name in candidates:
        path = os.path.join(ann_dir, f"{name}.json")
        if os.path.isfile(path):
            return path, images
    found = sorted(f[:-5] for f in os.listdir(ann_dir) if f.endswith(".json"))
    raise plan_error(f"test_root {test_root}: no annotations/{candidates[0]}.json (splits there: "
                     f"{', '.join(found) or 'none'}); choose one as test_split", "test_root", "test_split")


def resolved_test_split(plan: ExperimentPlan) -> Optional[str]:
    """The split of ``test_root`` the runs are scored on (None without ``test_root``, where
    ``test_split`` has no effect); with ``report_only`` an unreadable folder gives the field as
    given (a report trains and tests nothing)."""
    if not plan.test_root:
        return None
    try:
        json_file, _ = external_test_json(plan.test_root, plan.test_split)
    except UserError:
        if plan.report_only:
            return plan.test_split
        raise
    return os.path.splitext(os.path.basename(json_file))[0]


def dataset_opts(plan: ExperimentPlan) -> List[str]:
    """Overrides selecting the experiment's train/val/test datasets."""
    train, val, test = DATA_SPLITS[plan.data]
    if plan.test_root:
        test = EXTERNAL_TEST_NAME
    opts = ["DATASETS.TRAIN", f"('{train}',)", "DATASETS.VAL", f"('{val}',)", "DATASETS.TEST", f"('{test}',)"]
    if plan.dsb_root:
        opts += ["DATASETS.NUCLEI.DSB2018_ROOT", plan.dsb_root]
    return opts


def dsb_root_in_effect(plan: ExperimentPlan, run: Run) -> str:
    """Real path of the DSB 2018 folder ``run`` trains on: the plan's ``dsb_root``, else the config's
    DATASETS.NUCLEI.DSB2018_ROOT, else $MASKRCNNPP_DSB2018 or the default (``dsb2018_root``)."""
    from ..data import dsb2018_root, register_dsb2018

    # device "cpu": the root does not depend on it, and a report on a machine without CUDA still works
    cfg = setup_cfg(run.config, list(plan.opts) + dataset_opts(plan), device="cpu")
    register_dsb2018(cfg.DATASETS.NUCLEI.DSB2018_ROOT or None)  # as the run's setup_datasets does
    return os.path.realpath(dsb2018_root())


def register_experiment_datasets(cfg: CfgNode, plan: ExperimentPlan) -> None:
    """Register the configured nuclei datasets (and the external test folder) and check they load."""
    from ..data import register_nuclei_coco, setup_datasets
    from ..engine.trainer import check_datasets

    setup_datasets(cfg)
    if plan.test_root:
        json_file, image_root = external_test_json(plan.test_root, plan.test_split)
        registered = MetadataCatalog.get(EXTERNAL_TEST_NAME) if EXTERNAL_TEST_NAME in DatasetCatalog.list() else None
        wanted = (str(json_file), str(image_root))
        if registered is not None and (registered.get("json_file"), registered.get("image_root")) != wanted:
            # the experiment's own name: an earlier experiment of this process scored another folder
            DatasetCatalog.remove(EXTERNAL_TEST_NAME)
            MetadataCatalog.remove(EXTERNAL_TEST_NAME)
        register_nuclei_coco(EXTERNAL_TEST_NAME, json_file, image_root)
    check_datasets(cfg)
