#!/usr/bin/env python
"""The shipped trained models: list them with their card figures, check their weights, add one.

    python tools/model_zoo.py list                      # name, config, test-split figures, CPU time
    python tools/model_zoo.py check                     # every shipped weights file against its SHA-256
    python tools/model_zoo.py export --checkpoint runs/x/model_best.pth --name nuclei_maskrcnnpp_r18 \\
        --config nuclei_maskrcnnpp_r18 --summary "..." --card card.json [--default]

``export`` writes the model's weights in fp16 to maskrcnnpp/weights/<name>.pth (at most 30 MiB),
its SHA-256 and card (a JSON object: data, recipe, budget, hardware, measured figures) to
maskrcnnpp/weights/zoo.json. Mistakes print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse

import maskrcnnpp  # noqa: F401  (compat measures before detectron2 imports)
from maskrcnnpp import model_zoo
from maskrcnnpp.cli import UserError, exit_on_user_error
from maskrcnnpp.config import resolve_config_path
from maskrcnnpp.utils.files import read_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the shipped models and their figures")
    sub.add_parser("check", help="check every shipped weights file against its SHA-256")
    e = sub.add_parser("export", help="add a trained checkpoint to the zoo (fp16)")
    e.add_argument("--checkpoint", required=True, help="training checkpoint (.pth with a 'model' entry)")
    e.add_argument("--name", required=True, help="the model's name, e.g. nuclei_maskrcnnpp_r18")
    e.add_argument("--config", required=True, help="config name in configs/ it was trained with")
    e.add_argument("--summary", required=True, help="one line: what the model is")
    e.add_argument("--card", required=True, help="JSON file of the model card (data, recipe, budget, figures)")
    e.add_argument("--default", action="store_true", help="make it the default model")
    return parser


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
    else:
        try:
            resolve_config_path(args.config)
        except FileNotFoundError as e:
            raise UserError(f"--config: {e}") from None
        card = read_json(args.card, "--card", UserError)
        if not isinstance(card, dict):
            raise UserError(f"--card {args.card}: expected a JSON object")
        weights = f"{args.name}.pth"
        sha = model_zoo.export_fp16_weights(args.checkpoint, str(model_zoo.WEIGHTS_DIR / weights))
        model_zoo.register(model_zoo.ZooModel(args.name, args.config, weights, sha, args.summary, card), args.default)
        print(f"wrote {model_zoo.WEIGHTS_DIR / weights} (SHA-256 {sha}) and {model_zoo.ZOO_FILE}")
    return 0


if __name__ == "__main__":
    main()
