#!/usr/bin/env python
"""The demo behind ``make demo``: Mask RCNN++ vs Mask R-CNN on nuclei, trained and scored end to end.

On a fresh machine with no data and no GPU it generates the synthetic nuclei sets, trains the
tiny Mask RCNN++ and Mask R-CNN configs for a few hundred iterations each, scores both on the
synthetic test split with the nuclei evaluator, prints one comparison table and writes
visualisation PNGs (under 10 minutes on 2 CPU cores). With prepared DSB 2018 data:

    python tools/demo.py --data dsb2018 --device cuda     # R-101 scratch configs, same code path
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


import maskrcnnpp  # noqa: E402,F401
from detectron2.utils.logger import setup_logger  # noqa: E402

from maskrcnnpp.data import setup_datasets  # noqa: E402
from maskrcnnpp.engine import NucleiTrainer  # noqa: E402
from maskrcnnpp.cli import UserError, exit_on_user_error  # noqa: E402
from maskrcnnpp.config import setup_cfg  # noqa: E402
from maskrcnnpp.engine.trainer import check_datasets  # noqa: E402
from maskrcnnpp.utils.files import finite_or_none, write_json, write_text  # noqa: E402

DEFAULT_CONFIGS = {
    "synthetic": ["maskrcnnpp_tiny", "maskrcnn_tiny"],
    "dsb2018": ["maskrcnnpp_r101_scratch", "maskrcnn_r101_scratch"],
}
DATASETS = {
    "synthetic": ("nuclei_synth_train", "nuclei_synth_val", "nuclei_synth_test"),
    "dsb2018": ("dsb2018_train", "dsb2018_val", "dsb2018_test"),
}
COLUMNS = [("score", "nuclei", "score"), ("IoU", "nuclei", "iou"), ("Dice", "nuclei", "dice"),
           ("AJI", "nuclei", "aji"), ("PQ", "nuclei", "pq"), ("mask AP", "segm", "AP"), ("box AP", "bbox", "AP")]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_argument_group("input")
    g.add_argument("--data", choices=sorted(DATASETS), default="synthetic", help="synthetic nuclei (default) or prepared DSB 2018")
    g = ap.add_argument_group("model")
    g.add_argument("--configs", nargs="+", help="configs to compare (default: tiny ones on synthetic, R-101 scratch on DSB)")
    g.add_argument("--iters", type=int, default=None, help="training iterations per model (default: the config's)")
    g = ap.add_argument_group("output")
    g.add_argument("--output", default="output/demo", help="folder for checkpoints, metrics, tables and PNGs")
    g.add_argument("--max-images", type=int, default=4, help="test images to visualise per model")
    g = ap.add_argument_group("hardware")
    g.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available, else cpu")
    ap.add_argument("opts", nargs=argparse.REMAINDER, metavar="KEY VALUE", help="config overrides for every model")
    return ap.parse_args(argv)


def train_and_score(config: str, args) -> dict:
    """Train ``config`` on the chosen data, validate, score the test split; return its metrics."""
    train, val, test = DATASETS[args.data]
    out = os.path.join(args.output, os.path.splitext(os.path.basename(config))[0])
    opts = ["OUTPUT_DIR", out, "DATASETS.TRAIN", f"('{train}',)", "DATASETS.VAL", f"('{val}',)", "DATASETS.TEST", f"('{test}',)",
            *args.opts]
    if args.iters is not None:
        opts += ["SOLVER.MAX_ITER", str(args.iters), "SOLVER.STEPS", f"({int(args.iters * 0.8)},)",
                 "SOLVER.WARMUP_ITERS", str(min(100, args.iters // 5)), "SOLVER.CHECKPOINT_PERIOD", str(args.iters)]
    device = args.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    cfg = setup_cfg(config, opts, device=device)
    os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
    setup_datasets(cfg)
    check_datasets(cfg)
    trainer = NucleiTrainer(cfg)
    trainer.resume_or_load(resume=False)
    start = time.perf_counter()
    trainer.train()
    # Training alone: the validations inside train() and the final test are not counted.
    train_seconds = time.perf_counter() - start - trainer.validation_seconds
    results = trainer.final_test()[test]
    results["train_seconds"] = train_seconds
    # Draw the checkpoint that was scored: final_test uses model_best.pth when validation kept one.
    best = os.path.join(cfg.OUTPUT_DIR, "model_best.pth")
    weights = best if os.path.isfile(best) else os.path.join(cfg.OUTPUT_DIR, "model_final.pth")
    visualize(config, weights, test, os.path.join(cfg.OUTPUT_DIR, "vis"), device, args, opts)
    return results


def visualize(config: str, weights: str, dataset: str, out: str, device: str, args, opts) -> None:
    """Error maps (paper Fig. 4 colours) and instance overlays of the first test images."""
    for mode in ("errors", "overlay"):
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "visualize.py"),
               "--config", config, "--weights", weights, "--dataset", dataset, "--mode", mode,
               "--max-images", str(args.max_images), "--output", os.path.join(out, mode), "--device", device, *opts]
        if subprocess.call(cmd) != 0:
            raise UserError(f"visualisation failed: {' '.join(cmd)}")


def table(rows: dict) -> str:
    """Markdown comparison table of the headline metrics (fractions shown as %, AP as COCO's 0-100)."""
    head = "| model | " + " | ".join(c[0] for c in COLUMNS) + " | train s |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for name, res in rows.items():
        cells = []
        for _, group, key in COLUMNS:
            value = res.get(group, {}).get(key)
            if value is None:
                cells.append("n/a")
            else:
                cells.append(f"{100 * value:.2f}" if group == "nuclei" else f"{value:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {res['train_seconds']:.0f} |")
    return "\n".join(lines)


@exit_on_user_error
def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logger(name="maskrcnnpp")
    setup_logger(name="detectron2")  # training ETA lines and evaluation progress
    configs = args.configs or DEFAULT_CONFIGS[args.data]
    rows = {}
    for config in configs:
        print(f"== training {config} on {args.data} ==", flush=True)
        rows[os.path.splitext(os.path.basename(config))[0]] = train_and_score(config, args)
    md = table(rows)
    os.makedirs(args.output, exist_ok=True)
    write_text(os.path.join(args.output, "comparison.md"), md + "\n")
    # strict JSON: NaN (e.g. APl) as null
    write_json(os.path.join(args.output, "comparison.json"), finite_or_none(rows), indent=2, allow_nan=False,
               newline=False)
    print("\n" + md)
    print(f"\nwrote {args.output}/comparison.md, comparison.json and <model>/vis/*.png")


if __name__ == "__main__":
    main()
