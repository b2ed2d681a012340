#!/usr/bin/env python
"""Segment nuclei in new images with a trained model and write label images, tables and ROIs.

    python tools/predict.py --input folder/ --output pred/            # the default shipped model
    python tools/predict.py --model list                              # the shipped models and their figures
    python tools/predict.py --input img.tif --config maskrcnnpp_r101 --weights out/model_best.pth --output pred/
    python tools/predict.py --input folder/ --pattern "*.tif" --config maskrcnnpp_tiny --weights w.pth \\
        --output pred/ --formats label_tif,nuclei_csv,imagej_roi --tile-size 512 --tile-overlap 64 --device cuda
    python tools/predict.py --input big/ --output pred/ --device cuda --batch-size 8 --shard $SLURM_ARRAY_TASK_ID/16
    python tools/merge_predictions.py pred/                           # once all 16 shards are done

Images may be grey, RGB or RGBA, 8 or 16 bits (16-bit and float images become 8 bits by --rescale;
the default, max, scales by 255/max exactly as prepare_dsb2018.py converts training images).
Outputs (in --output), per image <stem>:
  label_png   <stem>_labels.png   16-bit label image (0 background, nucleus k = k)
  label_tif   <stem>_labels.tif   the same as TIFF
  nuclei_csv  <stem>_nuclei.csv   id, area, centroid, bbox, score, mean intensity (original units)
  imagej_roi  <stem>_rois.zip     one polygon ROI per nucleus for the ImageJ/Fiji ROI Manager
and for all images together:
  coco        coco_results.json   COCO results (image_id = <stem>), for tools/evaluate.py
  kaggle_csv  kaggle_submission.csv   Data Science Bowl 2018 run-length CSV (ImageId = <stem>)
With --shard K/N the run predicts every N-th image (from the K-th) of the sorted list and writes
coco_results.shard-K-of-N.json (and the Kaggle CSV likewise) plus predict_shard.shard-K-of-N.json
last; tools/merge_predictions.py joins the N shards into coco_results.json / kaggle_submission.csv.
Image scale: without a diameter every image is resized to the model's test short side
(INPUT.MIN_SIZE_TEST), whatever the size of its nuclei. --diameter PIXELS (the typical nucleus
diameter in your images) rescales each image so that nuclei have the size the model was trained on
(its nominal diameter); --diameter auto (the shipped model's default) makes a first pass at the
default resize and a second only when the nuclei it found lie outside the sizes the model was
trained on; --diameter none forces the fixed resize. Results are always at the original pixels.
With a diameter, --tile-size and --tile-overlap count pixels of the rescaled image.
Channels: --channel K segments channel K (numbered from 1, as in Fiji) of a multi-channel image,
found by the TIFF's axis names (C, else S; ImageJ/OME metadata); --cyto-channel K adds a cytoplasm
channel (model input: cytoplasm green, nuclei blue, as Cellpose users lay out RGB images).
Label k is the same nucleus in every output. Mistakes (missing input, an image that cannot be read
or is not a single grey/RGB/RGBA plane, unknown format, --device cuda without a GPU, a bad config key,
weights of another architecture than --config) print one line on stderr and exit with status 2;
every input is read and checked before the model is built, so a mistake writes nothing. Files an
earlier run left in --output are kept (a warning says how many).
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Dict, List, Optional, Tuple


import maskrcnnpp  # noqa: E402,F401  (compat measures before detectron2 imports)
from maskrcnnpp.cli import (  # noqa: E402
    UserError, add_model_options, check_threshold, choose_model, ensure_output_dir, exit_on_user_error,
)
from maskrcnnpp.config import setup_cfg  # noqa: E402
from maskrcnnpp.model_zoo import model_zoo_table  # noqa: E402
from maskrcnnpp.inference import ImageReadError, NucleiPredictor, describe_device, outputs, read_image  # noqa: E402
from maskrcnnpp.evaluation.coco_results import file_stem  # noqa: E402
from maskrcnnpp.inference.outputs import DEFAULT_FORMATS, FORMATS  # noqa: E402
from maskrcnnpp.inference.image_io import (  # noqa: E402
    IMAGE_SUFFIXES, RESCALE_MODES, ChannelChoice, ChannelChoiceNeeded, image_kind, list_image_files,
)
from maskrcnnpp.inference.predictor import CONFIG_DIAMETER  # noqa: E402
from maskrcnnpp.inference.scale import parse_diameter  # noqa: E402
from maskrcnnpp.inference.shards import Shard, write_shard_record  # noqa: E402
from maskrcnnpp.inference.trust import describe_flags  # noqa: E402

logger = logging.getLogger("predict")

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inp = parser.add_argument_group("input")
    inp.add_argument("--input", "-i", metavar="FILE_OR_FOLDER", help="an image file or a folder of images")
    inp.add_argument("--pattern", default=None,
                     help="glob of the files to take from a folder, e.g. '*.tif' (default: all of %s)" % ", ".join(IMAGE_SUFFIXES))
    inp.add_argument("--rescale", choices=RESCALE_MODES, default="max",
                     help="how 16-bit/float images become 8-bit: max (x 255/max, as prepare_dsb2018.py converts "
                          "training images), percentile (0.1..99.9), minmax, none (default: %(default)s)")
    inp.add_argument("--channel", type=int, default=None, metavar="K",
                     help="the nuclear channel of multi-channel images, numbered from 1 (as in Fiji); the TIFF's "
                          "channel axis (C, else S) is found from its axis names")
    inp.add_argument("--cyto-channel", type=int, default=None, metavar="K",
                     help="with --channel: a cytoplasm channel, fed to the model as green with the nuclei blue "
                          "(the shipped models were trained without one: --channel alone is their input)")
    inp.add_argument("--diameter", default=None, metavar="PIXELS|auto",
                     help="typical nucleus diameter in your images, in pixels: images are rescaled so nuclei have "
                          "the size the model was trained on; 'auto' estimates it per image; 'none' keeps the "
                          "model's fixed test resize (default: the model's TEST.NUCLEI.DIAMETER: auto for the "
                          "shipped model, none for your own)")
    model = parser.add_argument_group("model")
    add_model_options(model)
    model.add_argument("--tta", action="store_true",
                       help="test-time augmentation (flip; Detectron2's TTA for Mask R-CNN models, h/v flips for U-Nets)")
    model.add_argument("--score-thresh", type=float, default=None,
                       help="keep nuclei scoring at least this (default: the config's TEST.NUCLEI.SCORE_THRESH)")
    out = parser.add_argument_group("output")
    out.add_argument("--output", "-o", metavar="FOLDER", help="folder for the results (created)")
    out.add_argument("--formats", default=DEFAULT_FORMATS,
                     help=f"comma-separated, any of {','.join(FORMATS)} (default: %(default)s)")
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--device", choices=["cpu", "cuda"], default=None,
                    help="run on cpu or cuda (default: the config's MODEL.DEVICE, cpu when no GPU is present)")
    hw.add_argument("--batch-size", type=int, default=1,
                    help="images (or tiles of a large image) per forward pass: those of the same size after the "
                         "test resize share one; results equal --batch-size 1 (default: %(default)s)")
    hw.add_argument("--shard", default=None, metavar="K/N",
                    help="predict only shard K of N (K from 1: every N-th image from the K-th), e.g. "
                         "$SLURM_ARRAY_TASK_ID/16 in an array job; merge with tools/merge_predictions.py")
    tiling = parser.add_argument_group("tiling (large images)")
    tiling.add_argument("--tile-size", type=int, default=0,
                        help="predict images larger than this many pixels in tiles of this size (default 0: never tile)")
    tiling.add_argument("--tile-overlap", type=int, default=64,
                        help="overlap of neighbouring tiles in pixels; at least the largest nucleus diameter (default: %(default)s)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE",
                        help="config overrides, e.g. TEST.NUCLEI.SCORE_THRESH 0.6")
    return parser


def parse_formats(text: str) -> List[str]:
    try:
        return outputs.parse_formats(text)
    except UserError as e:
        raise UserError(f"--formats {text!r}: {e}") from None


def parse_shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except UserError as e:
        raise UserError(f"--shard: {e}") from None


def check_tiling(tile_size: int, tile_overlap: int) -> None:
    if tile_size < 0:
        raise UserError(f"--tile-size must be >= 0, got {tile_size}")
    if tile_size and not 0 <= tile_overlap < tile_size:
        raise UserError(f"--tile-overlap must be in [0, --tile-size {tile_size}), got {tile_overlap}")


def channel_choice(args) -> Optional[ChannelChoice]:
    """The --channel / --cyto-channel choice (None without --channel)."""
    if args.channel is None:
        if args.cyto_channel is not None:
            raise UserError("--cyto-channel needs --channel (the nuclear channel)")
        return None
    try:
        return ChannelChoice(args.channel, args.cyto_channel)
    except ValueError as e:
        raise UserError(f"--channel {args.channel}{'' if args.cyto_channel is None else f' --cyto-channel {args.cyto_channel}'}: {e}") from None


def diameter_choice(text: Optional[str]):
    """--diameter: the model's default (not given), None ('none'), a positive number of pixels or 'auto'."""
    if text is None:
        return CONFIG_DIAMETER
    try:
        return parse_diameter(text)
    except UserError:
        raise UserError(f"--diameter must be a positive number of pixels, 'auto' or 'none', got {text!r}") from None


def read_problem(e: ImageReadError) -> str:
    """An image's problem; for a multi-channel image without --channel, with how to choose one."""
    if not isinstance(e, ChannelChoiceNeeded):
        return str(e)
    return str(e).replace("optionally a cytoplasm channel", "optionally a cytoplasm channel with --channel K "
                                                            "(and optionally --cyto-channel K)", 1)


def describe_scale(info: dict) -> str:
    """``, diameter 12.3 px (auto), x1.50`` for a prediction made with a diameter; "" without one."""
    source = info.get("diameter_source", "none")
    if source == "none":
        return ""
    diameter = info.get("diameter")
    size = f"diameter {diameter:.1f} px" if diameter is not None else "diameter unknown"
    return f", {size} ({source}), model input x{info['scale']:.3g}"


def describe_image(path: str, image) -> str:
    """``HxW kind dtype`` of an image read from ``path`` (kind as the file has it, e.g. grey+alpha)."""
    return f"{image.shape[0]}x{image.shape[1]} {image_kind(path, image)} {image.dtype}"


def load_image(path: str, channels: Optional[ChannelChoice] = None):
    """The pixels of ``path`` (read_image), a UserError naming the file when it cannot be used."""
    try:
        return read_image(path, log=False, channels=channels)  # check_images already logged what the reader noticed
    except ImageReadError as e:
        raise UserError(read_problem(e)) from None


def check_images(files: List[str], channels: Optional[ChannelChoice] = None) -> None:
    """Read every input as the prediction will (same reader, same layout checks) before the model is
    built, so a bad file fails the run before anything is written. All bad files are named at once."""
    from tqdm import tqdm

    problems = []
    for path in tqdm(files, desc="checking images", unit="img", disable=len(files) < 2, leave=False):
        try:
            read_image(path, channels=channels)
        except ImageReadError as e:
            problems.append(read_problem(e))
    if problems:
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        raise UserError(f"{len(problems)} of {len(files)} input image(s) cannot be used, nothing was written: "
                        f"{'; '.join(problems[:3])}{more}")


def warn_earlier_outputs(output: str, stems: List[str], formats: List[str]) -> None:
    """Log how many files named like predict's outputs already are in ``output`` (kept, never deleted)."""
    present, stale = outputs.earlier_outputs(output, stems, formats)
    if not present:
        return
    if stale:
        what = (f"{len(present) - len(stale)} will be replaced; {len(stale)} are not outputs of this run and stay "
                f"as they are (e.g. {', '.join(stale[:3])}{', ...' if len(stale) > 3 else ''}); use an empty "
                "--output folder to keep runs apart")
    else:
        what = "all will be replaced by this run"
    logger.warning("--output %s already holds %d file(s) of an earlier predict run: %s", output, len(present), what)


def model_choice(args) -> Tuple[str, Optional[str], str]:
    """(config, weights, name in messages) of --model / --config --weights (:func:`choose_model`: the
    default shipped model when neither is given); a shipped model's card overrides, e.g. its nominal
    nucleus diameter, go before ``args.opts``."""
    choice = choose_model(args.model, args.config, args.weights)
    args.opts = [*choice.opts, *args.opts]
    return choice.config, choice.weights, choice.name


@exit_on_user_error
def main(argv=None) -> Dict[str, int]:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.model == "list":
        print(model_zoo_table())
        return {}
    if not args.input or not args.output:
        raise UserError("give the images and where to write the results: --input FILE_OR_FOLDER --output FOLDER")
    config, weights, config_name = model_choice(args)
    formats = parse_formats(args.formats)
    check_tiling(args.tile_size, args.tile_overlap)
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    channels = channel_choice(args)
    diameter = diameter_choice(args.diameter)
    if args.score_thresh is not None:
        check_threshold(args.score_thresh, "--score-thresh")
    all_files = list_image_files(args.input, args.pattern, "--input")  # an ImageReadError when there are none
    shard = parse_shard(args.shard) if args.shard else None
    files = shard.select(all_files) if shard else all_files
    cfg = setup_cfg(config, args.opts, device=args.device)
    check_images(files, channels)
    ensure_output_dir(args.output, "--output", create=False)
    print(f"device: {describe_device(cfg.MODEL.DEVICE)}", flush=True)
    predictor = NucleiPredictor(cfg, weights, tta=args.tta, score_thresh=args.score_thresh, rescale=args.rescale,
                                config_name=config_name, diameter=diameter)
    ensure_output_dir(args.output, "--output")  # created only once inputs and weights are known to be usable
    # every shard writes into the same folder: the other shards' images are this run's too
    warn_earlier_outputs(args.output, [file_stem(f) for f in all_files], formats)
    print(f"model: {cfg.MODEL.META_ARCHITECTURE}, {config_name}, from {weights or cfg.MODEL.WEIGHTS}"
          f"{' with TTA' if args.tta else ''}; score threshold {predictor.score_thresh}", flush=True)

    from tqdm import tqdm

    writer = outputs.PredictionWriter(args.output, formats, shard=(shard.index, shard.count) if shard else None)
    counts: Dict[str, int] = {}
    flagged: List[str] = []
    bar = tqdm(total=len(files), desc="images" + (f" (shard {shard})" if shard else ""), unit="img",
               disable=len(files) < 2)
    for start in range(0, len(files), args.batch_size):
        batch = files[start:start + args.batch_size]
        images = [load_image(path, channels) for path in batch]
        predictions = predictor.predict_batch(images, tile_size=args.tile_size, tile_overlap=args.tile_overlap,
                                              progress=True, batch_size=args.batch_size)
        for path, image, prediction in zip(batch, images, predictions):
            stem = file_stem(path)
            tiles = prediction.info.get("tiles", 1)
            note = f", {tiles} tiles, {prediction.info.get('duplicates', 0)} border duplicates merged" if tiles > 1 else ""
            note += describe_scale(prediction.info)
            tqdm.write(f"{os.path.basename(path)}: {describe_image(path, image)} -> {prediction.num_instances} nuclei{note}")
            writer.add(stem, prediction, channels.nuclear_plane(image) if channels else image)
            counts[stem] = prediction.num_instances
            doubts = describe_flags(prediction.info.get("trust", {}))
            if doubts:
                flagged.append(stem)
                tqdm.write(f"WARNING predict: {os.path.basename(path)}: check its nuclei: {doubts}")
        bar.update(len(batch))
    bar.close()
    writer.close()
    where = args.output
    if shard:
        record = write_shard_record(args.output, shard, list(counts), formats, len(all_files), sum(counts.values()),
                                    config_name)
        where += f" as shard {shard} of {len(all_files)} image(s) (record {os.path.basename(record)})"
    print(f"wrote {', '.join(formats)} for {len(files)} image(s), {sum(counts.values())} nuclei, to {where}")
    if flagged:
        print(f"{len(flagged)} of {len(files)} image(s) are unlike the model's training images (warnings above"
              f"{'; columns image_kind, diameter_px, mean_score, flags of ' + outputs.IMAGE_SUMMARY_FILE if 'image_summary' in formats else ''}): "
              "check their masks before you trust them")
    if files and not any(counts.values()):
        logging.getLogger("predict").warning(
            "no nucleus scored %s or more in any of the %d image(s): the weights may be untrained (or for other "
            "images), or the threshold too high (--score-thresh)", predictor.score_thresh, len(files))
    return counts


if __name__ == "__main__":
    main()
