#!/usr/bin/env python
"""The shipped trained models: list them with their card figures, check their weights, add one.

    python tools/model_zoo.py list                      # name, config, test-split figures, CPU time
    python tools/model_zoo.py check                     # every shipped weights file against its SHA-256
    python tools/model_zoo.py cards                     # docs/MODEL_ZOO.md from the models' cards
    python tools/model_zoo.py diameter --name nuclei_maskrcnnpp_r18 --gt DSB/annotations/train.json
                                                        # the model's nominal nucleus diameter, into its card
    python tools/model_zoo.py export --run runs/zoo/r18_4000/maskrcnnpp_tiny --name nuclei_maskrcnnpp_r18 \\
        --config nuclei_maskrcnnpp_r18 --summary "..." [--cpu-seconds 0.9] [--card notes.json] [--default]

``export`` takes a finished tools/experiment.py run: its selected checkpoint's weights go in fp16 to
maskrcnnpp/weights/<name>.pth (at most 30 MiB); its card (data, recipe, iterations, test figures
overall and per image kind, plus --card's entries) and SHA-256 to maskrcnnpp/weights/zoo.json. The
card's fixed subset of test images is scored with the exported fp16 weights (CI checks that figure).
Mistakes print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import os

import maskrcnnpp  # noqa: F401  (compat measures before detectron2 imports)
from maskrcnnpp import model_zoo
from maskrcnnpp.cli import UserError, exit_on_user_error
from maskrcnnpp.config import setup_cfg
from maskrcnnpp.utils.files import atomic_path, read_json, sha256_of_file


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped models and their figures")
    sub.add_parser("check", help="check every shipped weights file against its SHA-256")
    c = sub.add_parser("cards", help="write the model cards page (docs/MODEL_ZOO.md)")
    c.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "MODEL_ZOO.md"))
    d = sub.add_parser("diameter", help="compute a model's nominal nucleus diameter from its training annotations")
    d.add_argument("--name", required=True, help="the shipped model")
    d.add_argument("--gt", required=True, help="COCO json of the model's training split (annotations with 'area')")
    e = sub.add_parser("export", help="add a trained checkpoint to the zoo (fp16)")
    e.add_argument("--run", required=True, help="a finished tools/experiment.py run folder (OUT/<model>)")
    e.add_argument("--name", required=True, help="the model's name, e.g. nuclei_maskrcnnpp_r18")
    e.add_argument("--config", required=True, help="config name in configs/ that builds it for inference")
    e.add_argument("--summary", required=True, help="one line: what the model is")
    e.add_argument("--cpu-seconds", type=float, default=None,
                   help="CPU seconds per 512x512 image, as tools/benchmark.py measured them")
    e.add_argument("--card", default=None, help="JSON object of further card entries (e.g. commands, notes)")
    e.add_argument("--default", action="store_true", help="make it the default model")
    e.add_argument("--retest", default=None, metavar="OUTPUT_DIR",
                   help="when --config's test-time settings (%s), chosen on val, differ from the run's: the "
                        "OUTPUT_DIR of `tools/train_net.py --config CONFIG --eval-only` on the run's test split with "
                        "the run's weights; the card's test figures are then its" % ", ".join(TEST_TIME_KEYS))
    return parser


INFERENCE_KEYS = ("MODEL", "INPUT.MIN_SIZE_TEST", "INPUT.MAX_SIZE_TEST", "INPUT.FORMAT", "TEST.DETECTIONS_PER_IMAGE",
                  "TEST.NUCLEI")
# Post-processing a model may ship with other values than it was trained and selected with (chosen on
# val afterwards); the card's test figures must then come from an evaluation at those values (--retest).
TEST_TIME_KEYS = ("TEST.NUCLEI.SCORE_THRESH", "TEST.NUCLEI.MASK_THRESH", "MODEL.ROI_HEADS.NMS_THRESH_TEST",
                  "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "TEST.DETECTIONS_PER_IMAGE")


def _frozen(value):
    """Lists as tuples, nested too: a config read back from YAML has lists where the defaults have tuples."""
    return tuple(_frozen(v) for v in value) if isinstance(value, (list, tuple)) else value


def _leaves(node, prefix: str = ""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, _frozen(node)


def inference_differences(run_cfg, zoo_cfg) -> list:
    """Config keys that change predictions (MODEL.* but the weights and device, test size, thresholds)
    whose values differ between the run and the config the model ships with."""
    def pick(cfg):
        values = dict(_leaves(cfg))
        return {k: v for k, v in values.items() if k.startswith(INFERENCE_KEYS)
                and k not in ("MODEL.WEIGHTS", "MODEL.DEVICE")}
    ran, ships = pick(run_cfg), pick(zoo_cfg)
    return sorted(k for k in set(ran) | set(ships) if ran.get(k) != ships.get(k))


def retested_card(args, card: dict, zoo_cfg, differ: list) -> dict:
    """The run's card with the test figures of the --retest evaluation, once it is checked to be one
    of the run's weights, with --config's settings, on the run's test split."""
    from maskrcnnpp.experiment.model_card import card_from_run

    saved = os.path.join(args.retest, "config.yaml")
    if not os.path.isfile(saved):
        raise UserError(f"--retest {args.retest}: no config.yaml (not the OUTPUT_DIR of a tools/train_net.py run)")
    retest_cfg = setup_cfg(saved, device="cpu")
    other = inference_differences(retest_cfg, zoo_cfg)
    if other:
        raise UserError(f"--retest {args.retest} was evaluated with other settings than --config {args.config}: "
                        f"{', '.join(other[:5])} differ")
    retest_weights = model_zoo.resolve_weights(retest_cfg.MODEL.WEIGHTS)
    if not (os.path.isfile(retest_weights) and model_zoo.same_weights(
            retest_weights, os.path.join(args.run, "train", card["checkpoint"]), half=True)):
        raise UserError(f"--retest {args.retest} evaluated {retest_cfg.MODEL.WEIGHTS}, not the run's "
                        f"{card['checkpoint']} (in fp16 or as trained)")
    try:
        retested = card_from_run(args.run, retest_dir=args.retest)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"--retest {args.retest}: no test evaluation of {card['test']['dataset']} ({e})") from None
    retested["test_time_settings"] = {k: cfg_value(zoo_cfg, k) for k in differ}
    return retested


def cfg_value(cfg, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def export(args) -> None:
    from detectron2.data import DatasetCatalog

    from maskrcnnpp.data import register_dsb2018
    from maskrcnnpp.experiment.model_card import card_from_run, subset_records, subset_score
    from maskrcnnpp.inference import NucleiPredictor

    try:
        card = card_from_run(args.run)
        budget = read_json(os.path.join(args.run, "budget.json"), "--run budget", ValueError)
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise UserError(f"--run {args.run}: not a finished tools/experiment.py run ({e})") from None
    if budget["signature"]["data"] != "dsb2018" or not card["test"]["dataset"].startswith("dsb2018_"):
        raise UserError(f"--run {args.run}: trained on {budget['signature']['data']}, scored on "
                        f"{card['test']['dataset']}; a shipped model is a DSB 2018 run scored on its test split")
    zoo_cfg = setup_cfg(args.config, device="cpu")
    differ = inference_differences(setup_cfg(card["config"], card["overrides"], device="cpu"), zoo_cfg)
    if [k for k in differ if k not in TEST_TIME_KEYS]:
        raise UserError(f"--config {args.config} predicts differently from the run ({card['config']} with its "
                        f"overrides): {', '.join(differ[:5])} differ; give the config that matches the run")
    if differ and not args.retest:
        raise UserError(f"--config {args.config} has other test-time settings than the run ({', '.join(differ)}): "
                        "give --retest, an evaluation of the run's weights on its test split with them")
    if args.retest:
        card = retested_card(args, card, zoo_cfg, differ)
    extra = read_json(args.card, "--card", UserError) if args.card else {}
    if not isinstance(extra, dict):
        raise UserError(f"--card {args.card}: expected a JSON object")
    card.update(extra)
    if args.cpu_seconds is not None:
        card["cpu_seconds_per_512px"] = args.cpu_seconds
    weights = model_zoo.WEIGHTS_DIR / f"{args.name}.pth"
    staged = model_zoo.WEIGHTS_DIR / f".export-{args.name}.pth"  # becomes the shipped file only once it scored
    try:
        sha = model_zoo.export_fp16_weights(os.path.join(args.run, "train", card["checkpoint"]), str(staged))
        if weights.is_file() and model_zoo.same_weights(str(staged), str(weights)):
            # every copy of a weights file stays in git history: the same weights keep their file
            staged.unlink()
            staged, sha = weights, sha256_of_file(weights)
        register_dsb2018(budget["signature"]["dsb_root"])
        records = subset_records(DatasetCatalog.get(card["test"]["dataset"]))
        predictor = NucleiPredictor(setup_cfg(args.config, device="cpu"), str(staged))
        card["subset"] = {"image_ids": [r["image_id"] for r in records],
                          "score": round(subset_score(predictor, records), 4),
                          "how": "NucleiPredictor on the fp16 weights, DSB score averaged over the images"}
        if staged != weights:
            os.replace(staged, weights)
    finally:
        if staged != weights and staged.exists():
            staged.unlink()
    model_zoo.register(model_zoo.ZooModel(args.name, args.config, weights.name, sha, args.summary, card), args.default)
    print(f"wrote {weights} (SHA-256 {sha}) and {model_zoo.ZOO_FILE}; subset score {card['subset']['score']}")


def store_nominal_diameter(args) -> None:
    """Compute the nominal diameter of model ``--name`` on ``--gt`` at its config's training resize; store it in its card."""
    from maskrcnnpp.data.nucleus_size import nominal_diameter

    model = model_zoo.get(args.name)
    cfg = setup_cfg(model.config, device="cpu")
    gt = read_json(args.gt, "--gt", UserError)
    try:
        found = nominal_diameter(gt, list(cfg.INPUT.MIN_SIZE_TRAIN), cfg.INPUT.MAX_SIZE_TRAIN)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"--gt {args.gt}: not a COCO json with image sizes and annotation areas ({e})") from None
    found["how"] = (f"median over the {found['images']} training images of the median equivalent diameter of their "
                    f"nuclei after the training resize (INPUT.MIN_SIZE_TRAIN {tuple(cfg.INPUT.MIN_SIZE_TRAIN)}, "
                    f"MAX_SIZE_TRAIN {cfg.INPUT.MAX_SIZE_TRAIN}); {os.path.basename(args.gt)}")
    card = dict(model.card, nominal_diameter={k: (round(v, 3) if isinstance(v, float) else v) for k, v in found.items()})
    model_zoo.register(model_zoo.ZooModel(model.name, model.config, model.weights, model.sha256, model.summary, card),
                       default=model_zoo.default_model() == model.name)
    print(f"{model.name}: nominal nucleus diameter {found['pixels']:.3f} px (median over all nuclei "
          f"{found['all_nuclei_median']:.3f} px; {found['images']} images, {found['nuclei']} nuclei); wrote {model_zoo.ZOO_FILE}")


@exit_on_user_error
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print(model_zoo.model_zoo_table())
    elif args.command == "check":
        models = model_zoo.list_models()
        for m in models:
            print(f"{m.name}: {model_zoo.weights_path(m)} matches its SHA-256")
        if not models:
            print(model_zoo.model_zoo_table())
    elif args.command == "cards":
        with atomic_path(args.out) as tmp, open(tmp, "w", encoding="utf-8") as f:
            f.write(model_zoo.model_zoo_markdown())
        print(f"wrote {os.path.abspath(args.out)}")
    elif args.command == "diameter":
        store_nominal_diameter(args)
    else:
        export(args)
    return 0


if __name__ == "__main__":
    main()
