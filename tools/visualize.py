#!/usr/bin/env python
"""Draw nuclei instance masks: coloured overlays, contours, or the error map beside ground truth.

    python tools/visualize.py --config maskrcnnpp_tiny --weights out/model_best.pth --dataset nuclei_synth_test \\
        --mode errors --max-images 8 --output vis/
    python tools/visualize.py --results out/inference/dsb2018_test/coco_instances_results.json \\
        --dataset dsb2018_test --mode contour --output vis/
    python tools/visualize.py --config maskrcnnpp_r101 --weights model_best.pth --images my_folder/ --output vis/
    python tools/visualize.py --images my_folder/ --output vis/          # the default shipped model
    python tools/visualize.py --model none --dataset dsb2018_val --output vis/   # the ground truth alone

Predictions come from a model (--model, or --config + --weights; the default shipped model, as in
tools/predict.py, when none of --model, --config and --results is given) or a COCO results file (--results; image ids
are matched to the dataset's image ids, or else to file stems as tools/predict.py writes them; a
file matching none of the images drawn is an error). Images come from a registered dataset split (--dataset, which also gives the
ground truth) or from files (--images FILE_OR_FOLDER). With --dataset and --model none the
ground truth alone is drawn. One PNG grid per image, named after the image file's stem (plus
the image id where two drawn images share a stem), is written to --output:
  overlay   image | ground truth | prediction, each nucleus filled in its own colour
  contour   the same with outlines only (crowded nuclei)
  errors    image | ground truth | prediction (contours) | error map: true positive, false negative
            and false positive areas (the paper's Fig. 4; needs --dataset and predictions)
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple


import maskrcnnpp  # noqa: E402,F401  (compat measures before detectron2 imports)
import numpy as np  # noqa: E402

from maskrcnnpp.config import get_maskrcnnpp_cfg  # noqa: E402
from maskrcnnpp.config import setup_cfg  # noqa: E402
from maskrcnnpp.cli import (  # noqa: E402
    UserError, add_model_options, check_threshold, choose_model, ensure_output_dir, exit_on_user_error,
)
from maskrcnnpp.inference import NucleiPredictor, describe_device, read_image, to_uint8_rgb  # noqa: E402
from maskrcnnpp.evaluation.coco_results import file_stem, group_results_file, unique_stems  # noqa: E402
from maskrcnnpp.evaluation.label_images import results_label_image  # noqa: E402
from maskrcnnpp.inference.image_io import list_image_files  # noqa: E402
from maskrcnnpp.vis.images import MODES, comparison_panels, compose_grid, save_png  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = parser.add_argument_group("predictions (one of)")
    add_model_options(src)
    src.add_argument("--results", metavar="JSON", help="COCO results file (e.g. coco_instances_results.json)")
    imgs = parser.add_argument_group("images (one of)")
    imgs.add_argument("--dataset", metavar="NAME", help="registered dataset split, e.g. nuclei_synth_test, dsb2018_val")
    imgs.add_argument("--images", metavar="FILE_OR_FOLDER", help="image file or folder (no ground truth)")
    imgs.add_argument("--pattern", default=None, help="glob of the files to take from --images")
    parser.add_argument("--mode", choices=MODES, default="overlay", help="what to draw (default: %(default)s)")
    parser.add_argument("--max-images", type=int, default=8, help="draw at most this many images (default: %(default)s; 0: all)")
    parser.add_argument("--output", "-o", required=True, metavar="FOLDER", help="folder for the PNG grids")
    parser.add_argument("--scale", type=float, default=1.0, help="magnify panels by this factor (default: %(default)s)")
    parser.add_argument("--score-thresh", type=float, default=None,
                        help="draw predictions scoring at least this (default: the config's TEST.NUCLEI.SCORE_THRESH)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None,
                        help="run the model on cpu or cuda (default: the config's MODEL.DEVICE, auto: the GPU when "
                             "there is one)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides")
    return parser


NO_MODEL = "none"  # --model none: no predictions (the ground truth of --dataset alone)


def check_args(args) -> None:
    """Check the options; a model chosen (:func:`choose_model`, the default shipped model when neither
    --model, --config nor --results is given) is put in ``args.choice`` (None: no model)."""
    for option in ("model", "config", "weights"):
        if args.results and getattr(args, option):
            what = "a shipped model" if option == "model" else "a model"
            raise UserError(f"give either --{option} ({what}) or --results (a COCO results file), not both")
    args.choice = None
    if args.model == NO_MODEL:
        if args.config or args.weights:
            raise UserError("--model none draws no predictions: give it without --config/--weights")
    elif not args.results:
        args.choice = choose_model(args.model, args.config, args.weights)
    if not (args.dataset or args.images):
        raise UserError("give the images: --dataset NAME (with ground truth) or --images FILE_OR_FOLDER")
    if args.dataset and args.images:
        raise UserError("give either --dataset or --images, not both")
    predictions = args.choice is not None or bool(args.results)
    if not predictions and not args.dataset:
        raise UserError("nothing to draw: --model none with --images; give predictions (a model or --results) "
                        "or a --dataset with ground truth")
    if args.mode == "errors" and not (args.dataset and predictions):
        raise UserError("--mode errors compares predictions with ground truth: it needs --dataset and a model or --results")
    if args.max_images < 0:
        raise UserError(f"--max-images must be >= 0, got {args.max_images}")
    if args.scale <= 0:
        raise UserError(f"--scale must be positive, got {args.scale}")
    if args.score_thresh is not None:
        check_threshold(args.score_thresh, "--score-thresh")


def dataset_items(name: str, cfg) -> List[Dict]:
    """The records of dataset ``name`` (a clear error when unknown or not prepared)."""
    from detectron2.data import DatasetCatalog

    from maskrcnnpp.data import setup_datasets
    from maskrcnnpp.engine.trainer import check_datasets

    setup_datasets(cfg)
    check_cfg = cfg.clone()
    check_cfg.defrost()
    check_cfg.DATASETS.TRAIN, check_cfg.DATASETS.VAL, check_cfg.DATASETS.TEST = (), (), (name,)
    check_datasets(check_cfg)
    return DatasetCatalog.get(name)


def iterate_images(args, cfg) -> Iterator[Tuple[Optional[Any], str, Optional[np.ndarray]]]:
    """(dataset image id or None, file, ground-truth label image or None) of the images to draw."""
    limit = args.max_images or None
    if args.dataset:
        from maskrcnnpp.evaluation import gt_label_image

        for record in dataset_items(args.dataset, cfg)[:limit]:
            yield record["image_id"], record["file_name"], gt_label_image(record)[0]
    else:
        for path in list_image_files(args.images, args.pattern, "--images")[:limit]:
            yield None, path, None


def match_results(items, results: Dict[Any, List[dict]], path: str) -> List[Optional[Any]]:
    """The results key of each item (None where the file has no entry); an error when none matches.

    A results file names images by the dataset's image ids (Detectron2's evaluator) or by file
    stems (tools/predict.py): ids are used when any drawn image's id is in the file, else the
    stems that name one drawn image each.
    """
    by_id = [image_id if image_id is not None and image_id in results else None for image_id, _, _ in items]
    if any(k is not None for k in by_id):
        return by_id
    stems = unique_stems([(k, file) for k, (_, file, _) in enumerate(items)])
    keys = [file_stem(file) if stems.get(file_stem(file)) == k and file_stem(file) in results else None
            for k, (_, file, _) in enumerate(items)]
    if items and not any(k is not None for k in keys):
        theirs = ", ".join(repr(k) for k in list(results)[:3]) or "none"
        ours = ", ".join(file_stem(file) if i is None else f"{i!r} / {file_stem(file)}" for i, file, _ in items[:3])
        raise UserError(f"--results {path}: none of the {len(items)} image(s) to draw has an entry: the file's image "
                        f"ids ({theirs}, ...) match neither the images' ids nor their file stems ({ours}, ...)")
    return keys


def output_names(items) -> List[str]:
    """File-name stem of each drawn image; where two share a stem, their ids (or suffixes) too."""
    stems = [file_stem(file) for _, file, _ in items]
    shared = {s for s in stems if stems.count(s) > 1}
    return [stem if stem not in shared else (f"{stem}_id{image_id}" if image_id is not None else os.path.basename(file))
            for stem, (image_id, file, _) in zip(stems, items)]


def load_checked_image(path: str, gt: Optional[np.ndarray]) -> np.ndarray:
    """The image at ``path`` as read (a UserError if unreadable or not the size of its ground truth)."""
    raw = read_image(path)
    if gt is not None and gt.shape != raw.shape[:2]:
        raise UserError(f"{path}: image is {raw.shape[:2]} but its ground truth is {gt.shape}")
    return raw


def safe_name(image_id: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in image_id)


@exit_on_user_error
def main(argv=None) -> List[str]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    check_args(args)
    if args.choice is not None:
        cfg = setup_cfg(args.choice.config, [*args.choice.opts, *args.opts], device=args.device)
    else:
        cfg = get_maskrcnnpp_cfg()
        try:
            cfg.merge_from_list(list(args.opts))
        except (KeyError, ValueError) as e:
            raise UserError(f"bad override in {list(args.opts)}: {e}") from None
    ensure_output_dir(args.output, "--output", create=False)
    items = list(iterate_images(args, cfg))
    # grouped by image_id as stored: 1 and "1" are different images
    results = group_results_file(args.results, "--results") if args.results else None
    result_keys = match_results(items, results, args.results) if results is not None else [None] * len(items)
    score_thresh = cfg.TEST.NUCLEI.SCORE_THRESH if args.score_thresh is None else args.score_thresh
    # every input is read and checked before the model is built or anything is written, so a bad
    # third image does not leave two grids behind (each image is read again when drawn)
    for (_, path, gt), key in zip(items, result_keys):
        shape = load_checked_image(path, gt).shape[:2]
        if results is not None:
            results_label_image(results.get(key, []), shape, score_thresh, f"{args.results} (image {key})")
    predictor = None
    if args.choice is not None:
        print(f"device: {describe_device(cfg.MODEL.DEVICE)}", flush=True)
        predictor = NucleiPredictor(cfg, args.choice.weights, score_thresh=args.score_thresh,
                                    config_name=args.choice.name)
    ensure_output_dir(args.output, "--output")

    written = []
    missing = 0
    for (_, path, gt), key, name in zip(items, result_keys, output_names(items)):
        raw = load_checked_image(path, gt)
        image = to_uint8_rgb(raw)
        pred = None
        if predictor is not None:
            pred = predictor.predict(raw).labels
        elif results is not None:
            missing += key is None
            pred = results_label_image(results.get(key, []), image.shape[:2], score_thresh,
                                       f"{args.results} (image {key})")
        panels = comparison_panels(image, args.mode, gt, pred, scale=args.scale)
        target = os.path.join(args.output, f"{safe_name(name)}_{args.mode}.png")
        save_png(target, compose_grid(panels))
        written.append(target)
    if results is not None and missing:
        logging.getLogger("visualize").warning(
            "%d of %d drawn image(s) have no entry in %s (matched by %s): drawn without predictions",
            missing, len(written), args.results,
            "image id" if any(i is not None and i in results for i, _, _ in items) else "file stem")
    print(f"wrote {len(written)} {args.mode} grid(s) to {args.output}")
    return written


if __name__ == "__main__":
    main()
