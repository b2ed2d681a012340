#!/usr/bin/env python
"""Convert the Data Science Bowl 2018 nuclei data to COCO instances for Detectron2.

    python datasets/prepare_dsb2018.py --src ../shared/data/dsb2018/stage1_train.zip --out datasets/dsb2018
    python datasets/prepare_dsb2018.py --src stage1_test.zip --labels stage1_solution.csv --out datasets/dsb2018_stage1_test --split none

--src is the Kaggle zip or its extracted folder (``<id>/images/<id>.png`` + ``<id>/masks/*.png``),
or images only together with --labels, the released RLE CSV (ImageId,EncodedPixels[,Height,Width,Usage]).
OUT receives images/<id>.png (RGB), annotations/all.json and, unless --split none,
annotations/{train,val,test}.json (default 50/20/30 of the images, fixed by --seed), and
manifest.json (counts, source sha256, every correction). Re-running with the same inputs is a
no-op; OUT holding a different dataset is an error. Use the result with the config override
`DATASETS.NUCLEI.DSB2018_ROOT OUT` (e.g. at the end of a tools/train_net.py command) or the
environment variable MASKRCNNPP_DSB2018=OUT.
"""
from __future__ import annotations

import argparse
import logging
import sys


from maskrcnnpp.data.dsb2018 import parse_split, prepare_dsb2018  # noqa: E402
from maskrcnnpp.cli import add_preparation_options, run_preparation  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_preparation_options(parser, "Kaggle zip or folder (stage1_train.zip), or images-only zip/folder with --labels")
    parser.add_argument("--labels", default=None, help="Kaggle RLE CSV (stage1_train_labels.csv, stage1_solution.csv, ...)")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    # Counts of corrections at INFO, each correction that changes pixels at WARNING; all in the manifest.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    logging.getLogger("maskrcnnpp.data.dsb2018").setLevel(logging.INFO)
    return run_preparation(
        lambda: prepare_dsb2018(args.src, args.out, labels=args.labels, split=parse_split(args.split), seed=args.seed,
                                workers=args.workers, progress=not args.no_progress),
        args.out, lambda argument: f"--{argument}" if argument else None, args.workers)


if __name__ == "__main__":
    sys.exit(main())
