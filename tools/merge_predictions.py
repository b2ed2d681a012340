#!/usr/bin/env python
"""Join the shards of a `tools/predict.py --shard K/N` run into one run's results.

    python tools/merge_predictions.py pred/

Checks that every shard 1..N wrote its record (predict_shard.shard-K-of-N.json, written when the
shard finished), that no image is in two shards and that together they cover the input folder; then
writes coco_results.json and kaggle_submission.csv (the formats the shards wrote) exactly as one
unsharded run would. Per-image files need no merging: the shards wrote them into the folder already.
A missing or unfinished shard is one error line and exit status 2; nothing is written then.
"""
from __future__ import annotations

import argparse

import maskrcnnpp  # noqa: F401  (compat measures before detectron2 imports)
from maskrcnnpp.cli import ensure_output_dir, exit_on_user_error
from maskrcnnpp.inference.shards import merge_shards


@exit_on_user_error
def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output", metavar="FOLDER", help="the --output folder the shards wrote into")
    args = parser.parse_args(argv)
    ensure_output_dir(args.output, "FOLDER", create=False)
    summary = merge_shards(args.output)
    written = ", ".join(summary["written"]) or "nothing (the shards wrote only per-image files)"
    print(f"merged {summary['shards']} shard(s), {summary['images']} image(s), {summary['nuclei']} nuclei: "
          f"wrote {written} in {args.output}")
    return summary


if __name__ == "__main__":
    main()
