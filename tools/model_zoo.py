#!/usr/bin/env python
"""The shipped trained models: list them with their card figures, check their weights, add one.

    python tools/model_zoo.py list                      # name, config, test-split figures, CPU time
    python tools/model_zoo.py check                     # every shipped weights file against its SHA-256
    python tools/model_zoo.py cards                     # docs/MODEL_ZOO.md from the models' cards
    python tools/model_zoo.py diameter --name nuclei_maskrcnnpp_r18 --gt DSB/annotations/train.json [--default-diameter auto]
                                                        # the model's nominal nucleus diameter and range, into its card
    python tools/model_zoo.py ood --name nuclei_maskrcnnpp_r18 --check runs/ood_check/shipped \
        --command "python tools/ood_check.py --out runs/ood_check/shipped" --date 2026-12-06
                                                        # its out-of-distribution check (tools/ood_check.py), into its card
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
from maskrcnnpp.experiment.zoo_export import TEST_TIME_KEYS, export_run, store_nominal_diameter, store_ood_check
from maskrcnnpp.utils.files import atomic_path, read_json


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
    d.add_argument("--default-diameter", choices=["auto", "none"], default=None,
                   help="also store the diameter the model predicts with when none is given (default: keep the card's)")
    o = sub.add_parser("ood", help="store a model's out-of-distribution check (tools/ood_check.py --out) in its card")
    o.add_argument("--name", required=True, help="the shipped model the check was made with")
    o.add_argument("--check", required=True, metavar="OUT", help="the --out folder of tools/ood_check.py")
    o.add_argument("--command", dest="command_line", required=True, help="the tools/ood_check.py command that made it, for the card")
    o.add_argument("--date", required=True, help="when it was made, e.g. 2026-12-06")
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


def export(args) -> None:
    extra = read_json(args.card, "--card", UserError) if args.card else {}
    if not isinstance(extra, dict):
        raise UserError(f"--card {args.card}: expected a JSON object")
    result = export_run(args.run, args.name, args.config, args.summary, extra_card=extra, cpu_seconds=args.cpu_seconds,
                        default=args.default, retest=args.retest)
    print(f"wrote {result.weights} (SHA-256 {result.sha256}) and {model_zoo.ZOO_FILE}; subset score {result.subset_score}")


def store_diameter(args) -> None:
    found = store_nominal_diameter(args.name, args.gt, args.default_diameter)
    print(f"{args.name}: nominal nucleus diameter {found['pixels']:.3f} px (median over all nuclei "
          f"{found['all_nuclei_median']:.3f} px; {found['images']} images, {found['nuclei']} nuclei), training range "
          f"{found['range'][0]:.3f}-{found['range'][1]:.3f} px; wrote {model_zoo.ZOO_FILE}")


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
        store_diameter(args)
    elif args.command == "ood":
        stored = store_ood_check(args.name, args.check, args.command_line, args.date)
        print(f"{args.name}: out-of-distribution check stored ({stored['overall']['images']} images, score "
              f"{stored['overall']['score']:.3f}); wrote {model_zoo.ZOO_FILE}")
    else:
        export(args)
    return 0


if __name__ == "__main__":
    main()
