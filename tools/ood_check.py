#!/usr/bin/env python
"""Score a model on the out-of-distribution check: DSB test, held-out groups and external sets, in one table.

    python tools/ood_check.py --out runs/ood_check/shipped                      # the default model, default sets
    python tools/ood_check.py --config runs/x/config.yaml --weights runs/x/model_best.pth --out runs/ood_check/x \\
        --set dsb=datasets/dsb2018:test --set monuseg=datasets/ext_monuseg_test TEST.NUCLEI.DIAMETER "'23'"
    python tools/ood_check.py --classical --out runs/ood_check/otsu             # the Otsu + watershed baseline
    python tools/ood_check.py --summarize runs/ood_check/shipped                # the table of an earlier run
    python tools/ood_check.py --compare runs/ood_check/shipped runs/ood_check/x   # paired per-image differences

Every image is predicted as tools/predict.py predicts it with no options (the model's own resize,
--diameter default and thresholds) and scored against its ground truth. A set is NAME=FOLDER[:SPLIT],
a folder prepared by datasets/prepare_dsb2018.py or datasets/prepare_folder.py (split test by default);
without --set, the sets of docs/DATA.md that are prepared here (the others are named and skipped).
Prints one Markdown table (all images, per set, per set and image kind, per kind, per acquisition
group) and how well the predictor's trust flags pick out images scoring below 0.3; writes
OUT/rows.jsonl (one line per image as it is done) and OUT/ood_check.json. Mistakes print one line on
stderr and exit with status 2 (maskrcnnpp.experiment.ood_check).
"""
from __future__ import annotations

import argparse
import json
import logging
import os

import maskrcnnpp  # noqa: F401  (compat measures before detectron2 imports)
from maskrcnnpp.cli import UserError, add_model_options, choose_model, ensure_output_dir, exit_on_user_error
from maskrcnnpp.experiment.ood_check import (
    DEFAULT_SETS, check_markdown, compare_markdown, compare_rows, parse_check_set, run_check, summarize_check,
)
from maskrcnnpp.inference import NucleiPredictor, describe_device
from maskrcnnpp.inference.classical import OtsuWatershed
from maskrcnnpp.utils.files import write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", dest="sets", action="append", default=None, metavar="NAME=FOLDER[:SPLIT]",
                        help="a check set; repeat for more (default: those of docs/DATA.md prepared here: "
                             + ", ".join(DEFAULT_SETS) + ")")
    parser.add_argument("--out", default=None, help="folder for rows.jsonl and ood_check.json (rows.jsonl must not exist)")
    parser.add_argument("--summarize", default=None, metavar="OUT", help="only print the table of OUT/rows.jsonl")
    parser.add_argument("--compare", nargs=2, default=None, metavar=("OUT_A", "OUT_B"),
                        help="only compare two earlier checks of the same images: per-image score differences B - A, "
                             "their mean and standard error, overall, per set and per set and kind")
    add_model_options(parser, short=False)
    parser.add_argument("--classical", action="store_true",
                        help="score the classical baseline (Otsu threshold + watershed) instead of a model")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images of each set (a quick look)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return parser


def read_rows(out: str, option: str) -> list:
    """The complete lines of OUT/rows.jsonl; a UserError naming ``option`` when there is none."""
    path = os.path.join(out, "rows.jsonl")
    if not os.path.isfile(path):
        raise UserError(f"{option} {out}: no rows.jsonl there")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


@exit_on_user_error
def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.summarize:
        summary = summarize_check(read_rows(args.summarize, "--summarize"))
        print(check_markdown(summary))
        return summary
    if args.compare:
        comparison = compare_rows(*(read_rows(out, "--compare") for out in args.compare))
        print(compare_markdown(comparison))
        return comparison
    if not args.out:
        raise UserError("give where to write the rows and the table: --out FOLDER")
    if args.sets:
        sets = [parse_check_set(text) for text in args.sets]
    else:
        sets = []
        for text in DEFAULT_SETS:
            try:
                sets.append(parse_check_set(text))
            except UserError as e:
                print(f"skipped: {e}")
        if not sets:
            raise UserError("none of the default check sets is prepared here (docs/DATA.md says how); or give --set")
    ensure_output_dir(args.out, "--out")
    rows_path = os.path.join(args.out, "rows.jsonl")
    if os.path.exists(rows_path):
        raise UserError(f"--out {args.out}: holds the rows.jsonl of an earlier run; use an empty folder (or --summarize)")
    if args.classical:
        if args.model or args.config or args.weights:
            raise UserError("--classical scores Otsu + watershed, not a model: leave out --model, --config and --weights")
        predictor = OtsuWatershed()
    else:
        choice = choose_model(args.model, args.config, args.weights)
        predictor = NucleiPredictor.from_config(choice.config, choice.weights, [*choice.opts, *args.opts],
                                                device=args.device, config_name=choice.name)
    print(f"device: {describe_device(predictor.device)}; sets: {', '.join(s.name for s in sets)}", flush=True)
    rows = run_check(predictor, sets, args.limit, rows_path=rows_path)
    summary = summarize_check(rows)
    summary["sets"] = {s.name: {"root": s.root, "split": s.split} for s in sets}
    write_json(os.path.join(args.out, "ood_check.json"), summary)
    print(check_markdown(summary))
    return summary


if __name__ == "__main__":
    main()
