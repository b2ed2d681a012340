#!/usr/bin/env python
"""Score a model on a test split resized by a few factors, without and with --diameter (the scale table of docs/SCALE.md).

    OMP_NUM_THREADS=2 python tools/scale_check.py --gt datasets/dsb2018/annotations/test.json --out runs/scale_check
    python tools/scale_check.py --gt GT.json --config maskrcnnpp_tiny --weights w.pth TEST.NUCLEI.NOMINAL_DIAMETER 18 \\
        --factors 1 0.5 2 --diameters none auto 20 --out runs/scale_check

Images and ground-truth label images are resized in memory (labels nearest-neighbour; nothing is
written but OUT/rows.jsonl, one line of scores per image as it is done, and OUT/scale_check.json);
--summarize OUT summarizes the rows of an interrupted run; a number in --diameters is the nucleus diameter at the original
size, multiplied by each factor; 'resampled' scores the original-size prediction resized like the ground truth
(the cost of the smaller pixel grid to the metric alone). Prints a Markdown table: DSB score overall and per image kind, AJI, PQ.
(maskrcnnpp.experiment.scale_check). Mistakes print one line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import logging
import os

import maskrcnnpp  # noqa: F401  (compat measures before detectron2 imports)
from maskrcnnpp.cli import UserError, add_model_options, choose_model, ensure_output_dir, exit_on_user_error
from maskrcnnpp.experiment.scale_check import RESAMPLED, markdown_table, read_rows, scale_check, summarize_rows
from maskrcnnpp.inference import NucleiPredictor, describe_device
from maskrcnnpp.inference.scale import parse_diameter
from maskrcnnpp.utils.files import read_json, write_json


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summarize", default=None, metavar="OUT",
                        help="only summarize OUT/rows.jsonl of an earlier (possibly interrupted) run")
    parser.add_argument("--gt", default=None, help="COCO ground truth of the test split (e.g. annotations/test.json)")
    parser.add_argument("--images", default=None, help="its image folder (default: images/ beside annotations/)")
    parser.add_argument("--out", default=None, help="folder for rows.jsonl and scale_check.json (rows.jsonl must not exist)")
    add_model_options(parser, short=False)
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.5, 2.0], help="resize factors (default: 1 0.5 2)")
    parser.add_argument("--diameters", nargs="+", default=["none", "auto"],
                        help="'none' (fixed test resize), 'auto', pixels at the original size, or 'resampled' "
                             "(the original-size prediction resized like the ground truth) (default: none auto)")
    parser.add_argument("--mosaic", type=int, default=1, metavar="N",
                        help="repeat every image N x N times first: a wider field of view, nuclei of the same size (default 1)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N images (a quick look)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None)
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return parser


@exit_on_user_error
def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.summarize:
        rows_path = os.path.join(args.summarize, "rows.jsonl")
        if not os.path.isfile(rows_path):
            raise UserError(f"--summarize {args.summarize}: no rows.jsonl there")
        report = summarize_rows(read_rows(rows_path))
        print(markdown_table(report))
        return report
    if not args.gt or not args.out:
        raise UserError("give the test split and where to write: --gt GT.json --out FOLDER")
    if any(f <= 0 for f in args.factors):
        raise UserError(f"--factors must be positive, got {args.factors}")
    if args.mosaic < 1:
        raise UserError(f"--mosaic must be 1 or more, got {args.mosaic}")
    modes = [RESAMPLED if d == RESAMPLED else parse_diameter(d) for d in args.diameters]  # "none" parses to None
    images = args.images or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.gt))), "images")
    if not os.path.isdir(images):
        raise UserError(f"--images {images}: no such folder")
    gt = read_json(args.gt, "--gt", UserError)
    ensure_output_dir(args.out, "--out")
    rows_path = os.path.join(args.out, "rows.jsonl")
    if os.path.exists(rows_path):
        raise UserError(f"--out {args.out}: holds the rows.jsonl of an earlier run; use an empty folder (or --summarize)")
    choice = choose_model(args.model, args.config, args.weights)
    # as before the shared model choice: a shipped model runs on the CPU unless --device says otherwise
    device = args.device or ("cpu" if choice.shipped else None)
    predictor = NucleiPredictor.from_config(choice.config, choice.weights, [*choice.opts, *args.opts], device=device,
                                            config_name=choice.name)
    print(f"device: {describe_device(predictor.device)}; nominal diameter {predictor.nominal_diameter} px", flush=True)
    report = scale_check(predictor, gt, images, args.factors, modes, args.limit, rows_path=rows_path, mosaic=args.mosaic)
    report.update(gt=os.path.abspath(args.gt), factors=args.factors, diameters=args.diameters, mosaic=args.mosaic,
                  score_thresh=predictor.score_thresh, nominal_diameter=predictor.nominal_diameter)
    write_json(os.path.join(args.out, "scale_check.json"), report)
    print(markdown_table(report))
    return report


if __name__ == "__main__":
    main()
