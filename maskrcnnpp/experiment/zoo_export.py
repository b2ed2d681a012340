"""Add a finished ``tools/experiment.py`` run to the model zoo, and store a zoo model's nominal
nucleus diameter (``tools/model_zoo.py export`` / ``diameter``).

Export writes the run's selected checkpoint in fp16 to ``maskrcnnpp/weights/<name>.pth`` (kept as it
is when it already holds the same tensors: every copy of a weights file stays in git history), scores
the card's fixed subset of test images with those weights, and registers the card in ``zoo.json``.
The config the model ships with must predict as the run did, except for post-processing chosen on
val after training (:data:`TEST_TIME_KEYS`); the card's test figures then come from an evaluation of
the run's weights at those values (the *re-test*).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from .. import model_zoo
from ..config import setup_cfg
from ..errors import UserError
from ..utils.files import read_json, sha256_of_file
from .model_card import card_from_run, subset_records, subset_score

__all__ = ["INFERENCE_KEYS", "TEST_TIME_KEYS", "ExportResult", "export_run", "inference_differences",
           "store_nominal_diameter"]

INFERENCE_KEYS = ("MODEL", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "INPUT.FORMAT", "TEST.DETECTIONS_PER_IMAGE",
                  "TEST.NUCLEI")
# Post-processing a model may ship with other values than it was trained and selected with (chosen on
# val afterwards); the card's test figures must then come from an evaluation at those values.
TEST_TIME_KEYS = ("TEST.NUCLEI.SCORE_THRESH", "TEST.NUCLEI.MASK_THRESH", "MODEL.ROI_HEADS.NMS_THRESH_TEST",
                  "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "TEST.DETECTIONS_PER_IMAGE")


def _frozen(value: Any) -> Any:
    """Lists as tuples, nested too: a config read back from YAML has lists where the defaults have tuples."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _leaves(node: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, _frozen(node)


def inference_differences(run_cfg, zoo_cfg) -> List[str]:
    """Config keys that change predictions (MODEL.* but the weights and device, test size, thresholds)
    whose values differ between the run and the config the model ships with."""
    def pick(cfg):  # the trust flags say how far an image is from training; they change no prediction
        return {k: v for k, v in _leaves(cfg) if k.startswith(INFERENCE_KEYS) and k not in ("MODEL.WEIGHTS", "MODEL.DEVICE")
                and not k.startswith("TEST.NUCLEI.TRUST.")}

    ran, ships = pick(run_cfg), pick(zoo_cfg)
    return sorted(k for k in set(ran) | set(ships) if ran.get(k) != ships.get(k))


def _cfg_value(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _retested_card(run: str, card: Dict[str, Any], config: str, zoo_cfg, differ: List[str], retest: str
                   ) -> Dict[str, Any]:
    """The run's card with the test figures of the evaluation in ``retest``, once it is checked to be of
    the run's weights, with ``config``'s settings, on the run's test split."""
    saved = os.path.join(retest, "config.yaml")
    if not os.path.isfile(saved):
        raise UserError(f"re-test folder {retest}: no config.yaml (not the OUTPUT_DIR of a tools/train_net.py run)")
    retest_cfg = setup_cfg(saved, device="cpu")
    other = inference_differences(retest_cfg, zoo_cfg)
    if other:
        raise UserError(f"re-test folder {retest} was evaluated with other settings than config {config}: "
                        f"{', '.join(other[:5])} differ")
    weights = model_zoo.resolve_weights(retest_cfg.MODEL.WEIGHTS)
    if not (os.path.isfile(weights) and model_zoo.same_weights(
            weights, os.path.join(run, "train", card["checkpoint"]), half=True)):
        raise UserError(f"re-test folder {retest} evaluated {retest_cfg.MODEL.WEIGHTS}, not the run's "
                        f"{card['checkpoint']} (in fp16 or as trained)")
    try:
        retested = card_from_run(run, retest_dir=retest)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"re-test folder {retest}: no test evaluation of {card['test']['dataset']} ({e})") from None
    retested["test_time_settings"] = {k: _cfg_value(zoo_cfg, k) for k in differ}
    return retested


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the weights file, its SHA-256 and the subset score."""

    weights: str
    sha256: str
    subset_score: float


def export_run(run: str, name: str, config: str, summary: str, *, extra_card: Optional[Mapping[str, Any]] = None,
               cpu_seconds: Optional[float] = None, default: bool = False, retest: Optional[str] = None
               ) -> ExportResult:
    """Add the experiment run in ``run`` to the zoo as ``name``, built by ``config`` (module doc);
    ``extra_card`` entries and ``cpu_seconds`` (per 512x512 image) go into its card; ``retest``: the
    OUTPUT_DIR of the run's weights evaluated on its test split with ``config``'s test-time settings,
    needed when those differ from the run's."""
    from detectron2.data import DatasetCatalog

    from ..data import register_dsb2018
    from ..inference import NucleiPredictor

    try:
        card = card_from_run(run)
        budget = read_json(os.path.join(run, "budget.json"), "run budget", ValueError)
        data, dsb_root = budget["signature"]["data"], budget["signature"].get("dsb_root")
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"run {run}: not a finished tools/experiment.py run ({e})") from None
    if data != "dsb2018" or not card["test"]["dataset"].startswith("dsb2018_"):
        raise UserError(f"run {run}: trained on {data}, scored on {card['test']['dataset']}; a shipped model is a "
                        "DSB 2018 run scored on its test split")
    zoo_cfg = setup_cfg(config, device="cpu")
    differ = inference_differences(setup_cfg(card["config"], card["overrides"], device="cpu"), zoo_cfg)
    if [k for k in differ if k not in TEST_TIME_KEYS]:
        raise UserError(f"config {config} predicts differently from the run ({card['config']} with its "
                        f"overrides): {', '.join(differ[:5])} differ; give the config that matches the run")
    if differ and not retest:
        raise UserError(f"config {config} has other test-time settings than the run ({', '.join(differ)}): "
                        "an evaluation of the run's weights on its test split with them is needed (the re-test)")
    if retest:
        card = _retested_card(run, card, config, zoo_cfg, differ, retest)
    card.update(extra_card or {})
    if cpu_seconds is not None:
        card["cpu_seconds_per_512px"] = cpu_seconds
    model_zoo.list_models()  # a malformed zoo.json is an error now, before any weights file is touched
    weights = model_zoo.WEIGHTS_DIR / f"{name}.pth"
    staged = model_zoo.WEIGHTS_DIR / f".export-{name}.pth"  # becomes the shipped file only once it scored
    try:
        sha = model_zoo.export_fp16_weights(os.path.join(run, "train", card["checkpoint"]), str(staged))
        if weights.is_file() and model_zoo.same_weights(str(staged), str(weights)):
            staged.unlink()  # every copy of a weights file stays in git history: the same weights keep their file
            staged, sha = weights, sha256_of_file(weights)
        register_dsb2018(dsb_root)
        records = subset_records(DatasetCatalog.get(card["test"]["dataset"]))
        predictor = NucleiPredictor(zoo_cfg, str(staged))
        card["subset"] = {"image_ids": [r["image_id"] for r in records],
                          "score": round(subset_score(predictor, records), 4),
                          "how": "NucleiPredictor on the fp16 weights, DSB score averaged over the images"}
        if staged != weights:
            os.replace(staged, weights)
    finally:
        if staged != weights and staged.exists():
            staged.unlink()
    model_zoo.register(model_zoo.ZooModel(name, config, weights.name, sha, summary, card), default)
    return ExportResult(str(weights), sha, card["subset"]["score"])


def store_nominal_diameter(name: str, gt_path: str, default_diameter: Optional[str] = None) -> Dict[str, Any]:
    """Compute zoo model ``name``'s nominal nucleus diameter and training range on the COCO json ``gt_path``
    (its training split) at its config's training resize, store them in its card and return them;
    ``default_diameter`` ("auto" / "none") also sets the card's ``default_diameter`` (the model's
    ``TEST.NUCLEI.DIAMETER``; "none" removes it)."""
    from ..data.nucleus_size import nominal_diameter

    model = model_zoo.get(name)
    cfg = setup_cfg(model.config, device="cpu")
    gt = read_json(gt_path, "training annotations", UserError)
    try:
        found = nominal_diameter(gt, list(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{gt_path}: not a COCO json with image sizes and annotation areas ({e})") from None
    found["how"] = (f"median over the {found['images']} training images of the median equivalent diameter of their "
                    f"nuclei after the training resize (INPUT.MIN_SIZE_TRAIN {tuple(cfg.INPUT.MIN_SIZE_TRAIN)}, "
                    f"MAX_SIZE_TRAIN {cfg.INPUT.MAX_SIZE_TRAIN}); {os.path.basename(gt_path)}")
    def rounded(value):
        return round(value, 3) if isinstance(value, float) else [rounded(v) for v in value] if isinstance(value, list) else value

    card = dict(model.card, nominal_diameter={k: rounded(v) for k, v in found.items()})
    if default_diameter == "none":
        card.pop("default_diameter", None)
    elif default_diameter:
        card["default_diameter"] = default_diameter
    model_zoo.register(model_zoo.ZooModel(model.name, model.config, model.weights, model.sha256, model.summary, card),
                       default=model_zoo.default_model() == model.name)
    return found


def store_ood_check(name: str, check_dir: str, command: str, date: str) -> Dict[str, Any]:
    """Store the out-of-distribution check in ``check_dir`` (``tools/ood_check.py --out``, made with zoo
    model ``name``) in its card: overall, external sets, per set, per kind, per set and group and the trust
    flags, with the ``command`` that made it and its ``date``; returns what was stored."""
    summary = read_json(os.path.join(check_dir, "ood_check.json"), "out-of-distribution check", UserError)
    try:
        stored = {key: summary[key] for key in ("overall", "external", "by_set", "by_kind", "by_group", "flags")}
    except KeyError as e:
        raise UserError(f"{check_dir}/ood_check.json: not written by tools/ood_check.py (no {e})") from None
    stored.update(command=command, date=date, sets=summary.get("sets", {}))
    model = model_zoo.get(name)
    card = dict(model.card, ood_check=stored)
    model_zoo.register(model_zoo.ZooModel(model.name, model.config, model.weights, model.sha256, model.summary, card),
                       default=model_zoo.default_model() == model.name)
    return stored
