#!/usr/bin/env python
"""Score COCO instance results against COCO ground truth with the nuclei metrics and COCO AP.

    python tools/evaluate.py --gt GT.json --pred coco_instances_results.json [--images DIR] [--out DIR]

A model's predictions, scored (the default shipped model, as tools/predict.py and tools/train_net.py
--eval-only use it when no model is named):

    python tools/predict.py --input my_images/ --output pred/ --formats coco
    python tools/evaluate.py --gt my_annotations.json --pred pred/coco_results.json --images my_images/
    python tools/train_net.py --eval-only      # the same model on the prepared DSB 2018 test split, in one go

Prints one table and writes OUT/summary.json (top-level ``score``, ``iou``, ``dice``, ``aji``,
``pq``, ... as fractions in [0, 1], plus the COCO ``segm``/``bbox`` results in percent) and
OUT/per_image.csv. The nuclei metrics score predictions with score >= ``--score-thresh``
(default 0.5, as training's evaluation does); COCO AP uses every prediction. Image ids are the
ground truth's ids, or file-name stems as tools/predict.py writes them. Input problems (a file
that is not COCO results format, predictions for image ids absent from the ground truth, an RLE
whose size is not its image's) end the run with a message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import sys
import tempfile


import maskrcnnpp  # noqa: E402,F401  (compat measures before detectron2)
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.datasets import register_coco_instances  # noqa: E402
from tabulate import tabulate  # noqa: E402

from maskrcnnpp.config import get_maskrcnnpp_cfg  # noqa: E402
from maskrcnnpp.cli import UserError, check_threshold, ensure_output_dir, exit_on_user_error  # noqa: E402
from maskrcnnpp.evaluation import NucleiEvaluationInputError, NucleiEvaluator  # noqa: E402
from maskrcnnpp.evaluation.coco_results import load_coco_gt, load_coco_results  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    defaults = get_maskrcnnpp_cfg().TEST.NUCLEI
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, help="COCO ground-truth json (images, annotations with masks, categories)")
    parser.add_argument("--pred", required=True, help="COCO results json, e.g. Detectron2's coco_instances_results.json")
    parser.add_argument("--images", default=None, help="image folder; sizes missing from --gt are read from the files")
    parser.add_argument("--out", default=None, help="output folder for summary.json and per_image.csv (default: the folder of --pred)")
    parser.add_argument("--score-thresh", type=float, default=defaults.SCORE_THRESH,
                        help="nuclei metrics score only predictions with score >= this (default: %(default)s, training's "
                             "TEST.NUCLEI.SCORE_THRESH, so a training run's results file gives its summary.json again; "
                             "0 scores all); COCO AP always uses every prediction")
    parser.add_argument("--max-dets", type=int, default=defaults.MAX_DETS, help="COCO AP max detections per image (default: %(default)s)")
    parser.add_argument("--no-coco-ap", action="store_true", help="skip COCO mask/box AP (nuclei metrics only)")
    parser.add_argument("--only-predicted-images", action="store_true",
                        help="score only the ground-truth images that have at least one prediction (default: every "
                             "image; those without predictions count as all nuclei missed)")
    parser.add_argument("--overwrite", action="store_true",
                        help="without --out, replace a summary.json already in the folder of --pred (e.g. the one "
                             "training wrote, at its own threshold)")
    return parser.parse_args(argv)


def default_image_root(gt_path: str) -> str:
    """Where the ground truth's file names are relative to without --images: the images/ folder
    beside an annotations/ folder (the prepared DSB layout), else the ground truth's own folder."""
    folder = os.path.dirname(os.path.abspath(gt_path))
    images = os.path.join(os.path.dirname(folder), "images")
    return images if os.path.basename(folder) == "annotations" and os.path.isdir(images) else folder


def only_images(gt: dict, image_ids) -> dict:
    """``gt`` restricted to ``image_ids`` (images and their annotations)."""
    keep = set(image_ids)
    return {**gt, "images": [i for i in gt["images"] if i["id"] in keep],
            "annotations": [a for a in gt["annotations"] if a["image_id"] in keep]}


def _register_ground_truth(gt: dict, gt_path: str, images_dir, fills: dict, workdir: str, part: str = "") -> str:
    """Register the (completed) ground truth as a Detectron2 dataset named by its file (and
    ``part``, what of it is scored); return the name.

    The name is what summary.json records as its ``dataset``: the ground-truth file scored.
    """
    name = os.path.abspath(gt_path) + part
    image_root = images_dir or default_image_root(gt_path)
    if any(fills.values()):  # derived fields were added (or images left out): score against the completed copy
        gt_path = os.path.join(workdir, "ground_truth.json")
        with open(gt_path, "w", encoding="utf-8") as f:
            json.dump(gt, f)
    register_coco_instances(name, {}, gt_path, image_root)
    return name


def _table(results: dict) -> str:
    nuclei = results.get("nuclei", {})
    rows = [(key, nuclei.get(key)) for key in ("score", "iou", "dice", "aji", "pq", "sq", "dq")]
    for task in ("segm", "bbox"):
        for key in ("AP", "AP50", "AP75"):
            if task in results:
                value = results[task].get(key)
                rows.append((f"{task} {key} (%)", value))
    rows.append(("images", int(nuclei.get("num_images", 0))))
    rows.append(("nuclei (gt / pred)", f"{int(nuclei.get('num_gt', 0))} / {int(nuclei.get('num_pred', 0))}"))
    fmt = [(k, f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else ("nan" if isinstance(v, float) else v)) for k, v in rows]
    return tabulate(fmt, headers=["metric", "value"], tablefmt="github", colalign=("left", "right"))


def run(args: argparse.Namespace) -> dict:
    """Check the inputs, score them, write OUT/summary.json + OUT/per_image.csv; return the results."""
    gt, fills = load_coco_gt(args.gt, args.images)
    predictions = load_coco_results(args.pred, gt)
    predicted = [i["id"] for i in gt["images"] if predictions.get(i["id"])]
    total = len(gt["images"])
    if args.only_predicted_images:
        if not predicted:
            raise NucleiEvaluationInputError(f"--only-predicted-images: {args.pred} predicts nothing for any image")
        gt = only_images(gt, predicted)
        fills = {**fills, "images_left_out": total - len(predicted)}
        print(f"evaluate.py: scoring the {len(predicted)} of {total} ground-truth images that have predictions",
              file=sys.stderr)
    elif len(predicted) < total:
        print(f"evaluate.py: warning: {args.pred} has predictions for {len(predicted)} of the {total} ground-truth "
              f"images; the {total - len(predicted)} others count as all nuclei missed (--only-predicted-images "
              "scores the predicted ones alone)", file=sys.stderr)
    out_dir = args.out or os.path.dirname(os.path.abspath(args.pred))
    with tempfile.TemporaryDirectory(prefix="maskrcnnpp_evaluate_") as workdir:
        part = f" (only the {len(predicted)} of {total} images with predictions)" if args.only_predicted_images else ""
        name = _register_ground_truth(gt, args.gt, args.images, fills, workdir, part)
        try:
            evaluator = NucleiEvaluator(
                name,
                cfg=None,
                output_dir=out_dir,
                distributed=False,
                score_thresh=args.score_thresh,
                max_dets=args.max_dets,
                coco_ap=not args.no_coco_ap,
                save_coco_results=False,  # the results file is the input: leave it alone
            )
            evaluator.reset()
            for image in gt["images"]:
                evaluator.process_coco_results(image["id"], predictions.get(image["id"], []))
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its own summary
                results = evaluator.evaluate()
        finally:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
    return results


@exit_on_user_error(prefix="evaluate.py: error: ")
def main(argv=None) -> int:
    args = parse_args(argv)
    out_dir = args.out or os.path.dirname(os.path.abspath(args.pred))
    check_threshold(args.score_thresh, "--score-thresh")
    ensure_output_dir(out_dir, "--out" if args.out else "the folder of --pred", create=False)
    summary = os.path.join(out_dir, "summary.json")
    if not args.out and not args.overwrite and os.path.isfile(summary):
        raise UserError(f"{summary} exists (training writes one beside its results, at its own threshold): "
                        "give --out DIR for this evaluation, or --overwrite to replace it")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = run(args)  # bad input files: a NucleiEvaluationInputError (a UserError) naming the file
    print(_table(results))
    print(f"\nwrote {os.path.join(out_dir, 'summary.json')} and {os.path.join(out_dir, 'per_image.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
