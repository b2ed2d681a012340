"""Parameters used, GMACs, convs run and latency of each inference mode (ensemble, pruned L1..L4)
of semantic models, random weights, one square image:

    python tools/benchmark_pruning.py --config-file unet_r101 unetpp_r101 --size 256 --device cpu --repeats 9 --threads 1
"""
from __future__ import annotations

import argparse
from typing import Optional, Sequence

import torch

import maskrcnnpp  # noqa: F401  (compat measures, registrations)
from maskrcnnpp.benchmark.pruning import compare_pruned_levels, format_rows
from maskrcnnpp.cli import UserError, exit_on_user_error
from maskrcnnpp.config import setup_cfg


@exit_on_user_error
def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", nargs="+", default=["unet_r101", "unetpp_r101"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ...")
    args = parser.parse_args(argv)
    for option, value, least in (("--size", args.size, 1), ("--repeats", args.repeats, 1), ("--threads", args.threads, 0)):
        if value < least:
            raise UserError(f"{option} must be >= {least}, got {value}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but torch.cuda.is_available() is False on this machine")
    if args.threads:
        torch.set_num_threads(args.threads)
    cfgs = {name: setup_cfg(name, args.opts, device=args.device) for name in args.config_file}
    for name, rows in compare_pruned_levels(cfgs, args.size, args.device, args.repeats).items():
        print(f"# {name} at {args.size}x{args.size} on {args.device}, params total {rows[0]['params_total'] / 1e6:.2f} M")
        print(format_rows(name, rows))


if __name__ == "__main__":
    main()
