#!/usr/bin/env python
"""Plot training curves, speed vs accuracy of pruned UNet++ levels, and score by nucleus size.

    python tools/plot.py curves --metrics output/maskrcnnpp_tiny/metrics.json [more/metrics.json ...] --output curves.png
    python tools/plot.py speed --benchmark bench.json [--summary 'unetpp_r101[L1]=eval_L1/summary.json' ...] --output fig5.png
    python tools/plot.py sizes --gt datasets/dsb2018/annotations/test.json \\
        --pred "Mask R-CNN=out_rcnn/inference/dsb2018_test/coco_instances_results.json" \\
        --pred "Mask RCNN++=out_pp/inference/dsb2018_test/coco_instances_results.json" --output fig7.png

curves: losses and validation metrics (nuclei/score, nuclei/iou, ...) by iteration from Detectron2's
        metrics.json; --keys picks the curves.
speed:  the paper's Fig. 5: IoU and score against inference time, one point per inference mode
        (UNet++ L1..L4, ensemble), one line per model and image size (the size is in the legend;
        points of different sizes are never joined). Rows need a time (latency_ms, latency_median_ms
        or network_ms, as tools/benchmark.py writes) and 'iou'/'score': in the row, or from the
        evaluator's summary.json via --summary NAME=PATH, NAME being the row's name as
        tools/benchmark.py labels it (CONFIG[MODE], e.g. 'unetpp_r101[L2]', or CONFIG for models
        without modes, e.g. maskrcnn_r101; quote the brackets in the shell). A bare MODE=PATH
        (L2=PATH) works while only one model in the benchmark files has that mode.
sizes:  the paper's Fig. 7: DSB score of each model within nucleus-area buckets (--edges), from COCO
        results files scored against COCO ground truth; also writes the numbers to --csv.
"""
from __future__ import annotations

import argparse
import csv
import math
import os
from typing import Dict, List, Tuple


import maskrcnnpp  # noqa: E402,F401  (compat measures before detectron2 imports)
from maskrcnnpp.cli import UserError, check_threshold, ensure_output_dir, exit_on_user_error  # noqa: E402
from maskrcnnpp.evaluation.size_buckets import DEFAULT_EDGES, bucket_names, size_bucket_scores  # noqa: E402
from maskrcnnpp.vis.plot_inputs import read_speed_rows, speed_series  # noqa: E402
from maskrcnnpp.utils.files import atomic_path  # noqa: E402
from maskrcnnpp.vis.plots import image_formats, plot_size_buckets, plot_speed_accuracy, plot_training_curves  # noqa: E402


OUTPUT_HELP = "image file (.png, .pdf, .svg, ...; its folder is created if missing)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("curves", help="training curves from metrics.json")
    c.add_argument("--metrics", nargs="+", required=True, metavar="[NAME=]PATH", help="metrics.json file(s)")
    c.add_argument("--keys", default=None, help="comma-separated keys to draw (default: losses and nuclei/* metrics)")
    c.add_argument("--output", "-o", required=True, help=OUTPUT_HELP)
    s = sub.add_parser("speed", help="IoU/score vs inference time of inference modes (Fig. 5)")
    s.add_argument("--benchmark", nargs="+", action="extend", required=True, metavar="JSON",
                   help="benchmark JSON file(s) of tools/benchmark.py (or lists of rows)")
    s.add_argument("--summary", nargs="*", action="extend", default=[], metavar="NAME=PATH",
                   help="evaluator summary.json of a benchmark row: NAME is the row's name, 'CONFIG[MODE]' "
                        "(e.g. 'unetpp_r101[L2]') or CONFIG for a model without modes; a bare MODE (L2) "
                        "only while one model has that mode. It applies to that row at every size")
    s.add_argument("--output", "-o", required=True, help=OUTPUT_HELP)
    z = sub.add_parser("sizes", help="score by nucleus-size bucket for two or more models (Fig. 7)")
    z.add_argument("--gt", required=True, help="COCO ground-truth json")
    z.add_argument("--images", default=None, help="image folder (only for image sizes missing from --gt)")
    z.add_argument("--pred", action="append", required=True, metavar="NAME=RESULTS_JSON", help="COCO results of a model (repeat)")
    z.add_argument("--score-thresh", type=float, default=0.5, help="keep predictions scoring at least this (default: %(default)s)")
    z.add_argument("--edges", default=",".join(f"{e:g}" for e in DEFAULT_EDGES),
                   help="bucket edges on nucleus area in pixels (default: %(default)s)")
    z.add_argument("--output", "-o", required=True, help=OUTPUT_HELP)
    z.add_argument("--csv", default=None, help="table of the plotted numbers (default: --output with .csv)")
    return parser


def named(items: List[str], what: str) -> Dict[str, str]:
    """``NAME=PATH`` items (a bare PATH is named after its folder) as an ordered dict."""
    out: Dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep:
            name, path = os.path.basename(os.path.dirname(os.path.abspath(item))) or item, item
        if not name or not path:
            raise UserError(f"{what} {item!r}: expected NAME=PATH")
        if name in out:
            name = f"{name} ({len(out)})"
        out[name] = path
    return out


def summary_paths(items: List[str]) -> Dict[str, str]:
    """``--summary NAME=PATH`` items as ``{NAME: PATH}`` (which rows a NAME means is checked against the rows)."""
    out: Dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"--summary {item!r}: expected NAME=PATH, NAME a benchmark row's name such as 'unetpp_r101[L2]'")
        if name in out:
            raise UserError(f"--summary {name} is given twice ({out[name]} and {path})")
        out[name] = path
    return out


def check_output(path: str, option: str) -> None:
    """Fail before any work when ``path`` cannot be written as a figure or table; create its folder."""
    if os.path.isdir(path):
        raise UserError(f"{option} {path}: is a folder; give a file name")
    ensure_output_dir(os.path.dirname(os.path.abspath(path)), f"{option} {path}: its folder")
    if option == "--output":
        ext = os.path.splitext(path)[1].lstrip(".").lower()
        # no extension is written as PNG (maskrcnnpp.vis.plots._save)
        if ext and ext not in image_formats():
            raise UserError(f"--output {path}: cannot write .{ext} images; use one of {', '.join(image_formats())}")


def parse_edges(text: str) -> List[float]:
    try:
        edges = [math.inf if v.strip() in ("inf", "Inf") else float(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--edges {text!r}: expected comma-separated numbers (and 'inf')") from None
    if len(edges) < 2 or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
        raise UserError(f"--edges {text!r}: need at least two increasing values")
    return edges


def load_pairs(gt_path: str, images: str | None, results_path: str, score_thresh: float) -> List[Tuple]:
    """(gt label image, predicted label image) of every ground-truth image."""
    from maskrcnnpp.evaluation import gt_label_image
    from maskrcnnpp.evaluation.coco_results import coco_records, load_coco_gt, load_coco_results
    from maskrcnnpp.evaluation.label_images import results_label_image

    gt, _ = load_coco_gt(gt_path, images)
    results = load_coco_results(results_path, gt)
    pairs = []
    for record in coco_records(gt):
        gt_labels, _ = gt_label_image(record)
        pairs.append((gt_labels, results_label_image(results.get(record["image_id"], []), gt_labels.shape, score_thresh)))
    return pairs


def run_sizes(args) -> None:
    check_threshold(args.score_thresh, "--score-thresh")

    edges = parse_edges(args.edges)
    preds = named(args.pred, "--pred")
    results = {}
    for name, path in preds.items():
        results[name] = size_bucket_scores(load_pairs(args.gt, args.images, path, args.score_thresh), edges)
    plot_size_buckets(results, edges, args.output)
    table = args.csv or os.path.splitext(args.output)[0] + ".csv"
    with atomic_path(table) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["model", "bucket", "area_min", "area_max", "num_gt", "score", "recall@0.5"])
        for name, values in results.items():
            for k, bucket in enumerate(bucket_names(edges)):
                writer.writerow([name, bucket, f"{edges[k]:g}", f"{edges[k + 1]:g}", int(values["num_gt"][k]),
                                 f"{values['score'][k]:.6f}", f"{values['recall@0.5'][k]:.6f}"])
    for name, values in results.items():
        print(name + ": " + ", ".join(f"{b} {s:.3f}" for b, s in zip(bucket_names(edges), values["score"])))
    print(f"wrote {args.output} and {table}")


@exit_on_user_error
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    check_output(args.output, "--output")
    if getattr(args, "csv", None):
        check_output(args.csv, "--csv")
    if args.command == "curves":
        keys = [k.strip() for k in args.keys.split(",") if k.strip()] if args.keys else None
        drawn = plot_training_curves(named(args.metrics, "--metrics"), args.output, keys)
        for run, counts in drawn.items():
            print(f"{run}: " + ", ".join(f"{k} ({n} points)" for k, n in counts.items()))
        print(f"wrote {args.output}")
    elif args.command == "speed":
        rows = read_speed_rows(args.benchmark, summary_paths(args.summary))
        drawn = plot_speed_accuracy(rows, args.output)
        for label, group in speed_series(rows).items():
            print(f"{label}: " + ", ".join(f"{r['mode'] or r['name']} {r['time_ms']:.1f} ms" for r in group))
        print(f"wrote {args.output} ({drawn['iou']} IoU points, {drawn['score']} score points)")
    else:
        run_sizes(args)


if __name__ == "__main__":
    main()
