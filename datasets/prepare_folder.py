#!/usr/bin/env python
"""Convert a folder of your own annotated nuclei images to COCO instances for training.

    python datasets/prepare_folder.py --src mylab/ --out datasets/mylab
    python datasets/prepare_folder.py --src mylab/ --out datasets/mylab --split train      # tiny folder: all in train
    python datasets/prepare_folder.py --src images/ --coco annotations.json --out datasets/mylab

--src (a folder or a zip) holds one of five layouts, detected unless --layout names it:

* labels: images <stem>.png|tif|tiff|jpg|bmp with instance label images <stem>_labels.tif|png
  (0 = background, k = nucleus k; what tools/predict.py writes), paired by stem anywhere below --src;
* masks: one binary mask file per nucleus, <id>/images/<id>.png + <id>/masks/*.png (the DSB 2018 layout);
* coco: images with a COCO instances JSON (polygons or RLE) whose file_name entries name them
  (--coco FILE, else the one COCO JSON inside --src);
* xml: images with Aperio ImageScope / MoNuSeg XML files <stem>.xml (one <Region> of <Vertex X= Y=>
  pixel coordinates per nucleus; where polygons overlap the later one wins), paired by stem as for labels;
* mat: images with HoVer-Net style MATLAB files <stem>.mat holding the instance map 'inst_map'
  (0 = background, k = nucleus k), paired by stem (e.g. Images/ and Labels/ side by side).

OUT receives images/<stem>.png (RGB), annotations/all.json and, unless --split none,
annotations/{train,val,test}.json, and manifest.json (counts, checksums, every correction), as
datasets/prepare_dsb2018.py writes them. Re-running with the same inputs is a no-op. Train on it
by registering it under a name of your choice with the config key DATASETS.NUCLEI.FOLDERS, e.g.

    python tools/train_net.py --config nuclei_maskrcnnpp_r18 MODEL.WEIGHTS zoo:nuclei_maskrcnnpp_r18 \\
        DATASETS.NUCLEI.FOLDERS '[["mylab", "datasets/mylab"]]' \\
        DATASETS.TRAIN '("mylab_train",)' DATASETS.TEST '("mylab_test",)'
"""
from __future__ import annotations

import argparse
import logging
import sys

from maskrcnnpp.cli import add_preparation_options, run_preparation
from maskrcnnpp.data.folder import LAYOUTS, prepare_folder

# The library names its arguments; the command line's options for them.
OPTIONS = {"layout": "--layout", "coco_json": "--coco", "out": "--out", "split": "--split"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_preparation_options(parser, "folder or zip of images with their annotations")
    parser.add_argument("--layout", default="auto", choices=("auto",) + LAYOUTS,
                        help="how the annotations are given: label images, DSB masks, a COCO JSON, Aperio/MoNuSeg "
                             "XML polygons or HoVer-Net .mat instance maps (default: auto, detected)")
    parser.add_argument("--coco", default=None, metavar="FILE", help="COCO instances JSON of the images (layout coco)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Counts of corrections at INFO, each correction that changes pixels at WARNING; all in the manifest.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("maskrcnnpp.data").setLevel(logging.INFO)
    return run_preparation(
        lambda: prepare_folder(args.src, args.out, layout=args.layout, coco_json=args.coco, split=args.split,
                               seed=args.seed, workers=args.workers, progress=not args.no_progress),
        args.out, OPTIONS.get, args.workers)


if __name__ == "__main__":
    sys.exit(main())
