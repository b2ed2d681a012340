#!/usr/bin/env python
"""Measure speed and size of maskrcnnpp models side by side; write JSON and a Markdown table.

    python tools/benchmark.py --configs maskrcnn_r101.yaml maskrcnnpp_r101.yaml unet_r101.yaml unetpp_r101.yaml \\
        --device cuda --sizes 256 512 1024 --amp --out bench.json
    python tools/benchmark.py --configs unet_r101 unetpp_r101 --semantic-modes auto --sizes 256  # UNet++ L1..L4

Per config and size: parameters (and those used by the inference mode), FLOPs (fvcore), dense
network latency, end-to-end inference latency (median, p90), throughput (batch doubled until
out of memory or --max-batch), training time per iteration, peak memory (CUDA allocator or
RSS), training data loader images/s, and every figure's ratio to the first config. Models have
random weights (BatchNorm statistics calibrated on the input) unless --load-weights: speed does
not depend on the weights, except through the number of detections (reported per row).
The table is written to FILE.md beside --out and printed. Both files are rewritten after each
config, marked "complete": false until the last one, so a run stopped at a time limit keeps what
it measured.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys


import maskrcnnpp  # noqa: E402,F401  (compat measures before detectron2)
from maskrcnnpp.benchmark import Settings, expand_targets, run_benchmark  # noqa: E402
from maskrcnnpp.benchmark.report import report_markdown  # noqa: E402
from maskrcnnpp.cli import UserError, ensure_output_dir, exit_on_user_error  # noqa: E402
from maskrcnnpp.utils.files import write_json, write_text  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", required=True, metavar="NAME_OR_FILE",
                   help="configs to compare (bare names are looked up in configs/); ratios are to the first")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--sizes", nargs="+", type=int, default=[512], help="square input sizes in pixels")
    p.add_argument("--amp", action="store_true", help="mixed precision (float16 on CUDA, bfloat16 on CPU)")
    p.add_argument("--channels-last", action="store_true", help="channels_last weights (and inputs for Mask RCNN++)")
    p.add_argument("--out", default="benchmark.json", help="JSON output; the Markdown table goes to the same name .md (default: %(default)s)")
    p.add_argument("--iters", type=int, default=5,
                   help="timed iterations of the latency figures (default: %(default)s); the throughput search "
                        "times at most 3 calls per batch size, training --train-iters")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed iterations before the latency figures (default: %(default)s); throughput and "
                        "training take one")
    p.add_argument("--semantic-modes", nargs="+", default=[], metavar="MODE",
                   help="inference modes of semantic configs, each measured as its own row: ensemble final L1 L2 L3 L4, "
                        "or 'auto' for every mode the model offers")
    p.add_argument("--max-batch", type=int, default=None,
                   help="largest throughput batch (default 2 on CPU, 64 on CUDA); the search doubles the batch from 1, "
                        "so semantic models, whose watershed runs on the CPU, take minutes per row at 64")
    p.add_argument("--train-batch", type=int, default=2, help="images per measured training iteration (default: %(default)s)")
    p.add_argument("--train-iters", type=int, default=None, help="timed training iterations (default --iters)")
    p.add_argument("--loader-batches", type=int, default=10, help="batches timed from the training data loader (default: %(default)s)")
    p.add_argument("--loader-dataset", default=None,
                   help="dataset for the loader figure (default: the config's DATASETS.TRAIN)")
    p.add_argument("--load-weights", action="store_true",
                   help="load each config's MODEL.WEIGHTS (default: random weights with BatchNorm statistics calibrated)")
    for name, what in (("flops", "FLOP counting"), ("throughput", "the throughput search"),
                       ("train", "the training-step figures"), ("loader", "the data loader figure")):
        p.add_argument(f"--no-{name}", dest=name, action="store_false", help=f"skip {what} (fields become null)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ... applied to every config")
    return p


@exit_on_user_error
def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch.cuda.is_available() is False on this machine")
    if args.iters < 1 or args.warmup < 0 or any(s < 32 for s in args.sizes):
        raise UserError("--iters must be >= 1, --warmup >= 0 and every --sizes value >= 32")
    for option, value in (("--max-batch", args.max_batch), ("--train-batch", args.train_batch),
                          ("--train-iters", args.train_iters), ("--loader-batches", args.loader_batches)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be >= 1, got {value}")
    if args.out.lower().endswith(".md"):
        raise UserError(f"--out {args.out}: give the JSON file name; the Markdown table goes beside it as .md")
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(
        device=args.device, sizes=tuple(args.sizes), amp=args.amp, channels_last=args.channels_last,
        iters=args.iters, warmup=args.warmup, max_batch=args.max_batch, train_batch=args.train_batch,
        train_iters=args.train_iters, loader_batches=args.loader_batches, loader_dataset=args.loader_dataset,
        load_weights=args.load_weights, flops=args.flops, throughput=args.throughput, train=args.train, loader=args.loader,
    )
    command = "python tools/benchmark.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    ensure_output_dir(os.path.dirname(os.path.abspath(args.out)), f"--out {args.out}: its folder")
    md_path = os.path.splitext(args.out)[0] + ".md"
    targets, skipped = expand_targets(args.configs, args.semantic_modes, args.opts)

    def write(report: dict) -> str:
        report["command"] = command
        markdown = report_markdown(report, command)
        # never a half-written file; a partial report says "complete": false
        write_json(args.out, report, indent=2, newline=False)
        write_text(md_path, markdown)
        return markdown

    report = run_benchmark(targets, settings, skipped, progress=write)
    print(write(report))
    print(f"wrote {args.out} and {md_path}")
    return report


if __name__ == "__main__":
    main()
