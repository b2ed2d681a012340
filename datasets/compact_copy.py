#!/usr/bin/env python
"""Make a smaller copy of a prepared DSB 2018 folder, e.g. to send it to a GPU machine.

    python datasets/compact_copy.py --src datasets/dsb2018 --out .gpu_data/dsb2018

Grey images (R = G = B) are written as single-channel PNG, which Detectron2 reads back to the same
RGB pixels (each written image is checked); only annotations/{train,val,test}.json (or --splits)
and the images they name are copied. Train and score on the copy with
`DATASETS.NUCLEI.DSB2018_ROOT OUT` as on the original. The stage1_train copy is ~51 MB (89 MB
prepared).
"""
from __future__ import annotations

import argparse
import logging
import sys


from maskrcnnpp.data.compact import compact_copy  # noqa: E402
from maskrcnnpp.cli import DISK_ERRNOS, UserError, exit_on_user_error  # noqa: E402


@exit_on_user_error
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="folder prepared by datasets/prepare_dsb2018.py")
    parser.add_argument("--out", required=True, help="new folder for the copy (must not exist)")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"],
                        help="annotation splits to keep (default: train val test)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:  # a DatasetError (the source or --out) is a UserError: one line, exit status 2
        record = compact_copy(args.src, args.out, args.splits)
    except OSError as e:  # an image listed but missing, a full or read-only disk: the partial copy is removed
        if e.errno in DISK_ERRNOS:
            raise  # one line naming the file and what to do, from exit_on_user_error
        raise UserError(str(e)) from None
    print(f"{args.out}: {record['images']} images ({record['grey_as_single_channel']} grey as single channel), "
          f"{record['bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
