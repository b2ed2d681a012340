#!/usr/bin/env python
"""The table over seeds of experiments run one per seed (tools/gpu_table5.sh does this).

    python tools/seed_table.py runs/gpu_table5 --out results/

reads ROOT/seed<S>/<run>/result.json (one tools/experiment.py --out per seed) and writes
OUT/table5.md and OUT/table5.json: each run's test-split row (score, IoU, Dice, AJI, PQ, mask
AP, iterations, validation value of the scored checkpoint, training wall time, seconds per
iteration) and each model's mean ± standard deviation over its seeds. Unfinished runs are listed
with the iteration they reached, so it can be called while they train.
"""
from __future__ import annotations

import argparse
import os
import sys


from maskrcnnpp.utils.files import write_json, write_text  # noqa: E402
from maskrcnnpp.experiment import seed_table, seed_table_markdown  # noqa: E402
from maskrcnnpp.cli import UserError, ensure_output_dir, exit_on_user_error  # noqa: E402


@exit_on_user_error
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="folder holding seed<S>/ experiment folders")
    parser.add_argument("--out", default=None, help="folder for table5.md and table5.json (default: ROOT)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        raise UserError(f"{args.root} is not a folder")
    out = args.out or args.root
    ensure_output_dir(out, "--out")
    table = seed_table(args.root)
    markdown = seed_table_markdown(table)
    write_json(os.path.join(out, "table5.json"), table, indent=2, newline=False)
    write_text(os.path.join(out, "table5.md"), markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
