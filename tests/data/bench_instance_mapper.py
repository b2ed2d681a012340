#!/usr/bin/env python
"""Time Detectron2's DatasetMapper against NucleiInstanceMapper on real DSB 2018 training images.

    .venv/bin/python tests/data/bench_instance_mapper.py [--images 50] [--repeat 3] [--handoff]

Uses the stage1_train zip converted with the default split (cached in $MASKRCNNPP_CACHE, converted
on first use; or ``--root`` a prepared folder), registered as the project does, and the training
mapper of ``configs/maskrcnnpp_r101_scratch.yaml`` (ResizeShortestEdge 512..768 / 1400, random
horizontal flip, bitmask RLE masks). ``--images`` images evenly spaced over ``dsb2018_train`` are
mapped by both mappers, interleaved (same image, same seed, so the same random transform; the
order alternates), ``--repeat`` times, pinned to one core with one torch/OpenMP thread. Each output
pair is checked equal (untimed). Per image the median over repeats is kept; the summary is the
median and mean of those over images, wall and CPU time. ``--handoff`` also times what a
DataLoader worker does next, moving the output's tensors to shared memory for the main process
(the same for both mappers' outputs, and large: N x H x W bool masks). Not a test: timings are
reported, never asserted.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helpers"))  # dsb2018_data, run as a script

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import io  # noqa: E402
import pickle  # noqa: E402
import time  # noqa: E402
from multiprocessing.reduction import ForkingPickler  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import maskrcnnpp  # noqa: E402,F401  (compat measures before detectron2)
import torch.multiprocessing  # noqa: E402,F401  (registers the shared-memory tensor reducers)
from detectron2.data import DatasetCatalog, DatasetMapper  # noqa: E402

from maskrcnnpp.data import setup_datasets  # noqa: E402
from maskrcnnpp.data.instance_mapper import NucleiInstanceMapper  # noqa: E402
from dsb2018_data import prepared_dsb2018  # noqa: E402
from maskrcnnpp.config import setup_cfg  # noqa: E402


def same_output(a: dict, b: dict) -> bool:
    x, y = a["instances"], b["instances"]
    return (torch.equal(a["image"], b["image"]) and torch.equal(x.gt_boxes.tensor, y.gt_boxes.tensor)
            and torch.equal(x.gt_classes, y.gt_classes) and torch.equal(x.gt_masks.tensor, y.gt_masks.tensor))


def handoff_seconds(output: dict) -> float:
    """Wall seconds to pickle ``output`` as a DataLoader worker does (tensors moved to shared memory)."""
    start = time.perf_counter()
    ForkingPickler(io.BytesIO(), pickle.HIGHEST_PROTOCOL).dump(output)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--config", default="maskrcnnpp_r101_scratch")
    parser.add_argument("--root", help="a folder prepared by datasets/prepare_dsb2018.py (default: the cached conversion of the zip)")
    parser.add_argument("--handoff", action="store_true", help="also time moving each output to shared memory")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    root = args.root or str(prepared_dsb2018())
    cfg = setup_cfg(args.config, ["DATASETS.NUCLEI.DSB2018_ROOT", root], device="cpu")
    setup_datasets(cfg)
    records = DatasetCatalog.get("dsb2018_train")
    records = [records[i] for i in np.linspace(0, len(records) - 1, min(args.images, len(records))).round().astype(int)]
    mappers = {"stock": DatasetMapper(cfg, is_train=True), "new": NucleiInstanceMapper(cfg, is_train=True)}
    nuclei = [len(r["annotations"]) for r in records]
    print(f"{len(records)} dsb2018_train images from {root}: {sum(nuclei)} nuclei ({min(nuclei)}..{max(nuclei)} per image), "
          f"config {args.config}, {args.repeat} repeats, 1 thread")
    for mapper in mappers.values():  # warm-up: imports, caches
        mapper(records[0])

    wall = {k: np.zeros((len(records), args.repeat)) for k in mappers}
    cpu = {k: np.zeros((len(records), args.repeat)) for k in mappers}
    handoff = {k: np.zeros((len(records), args.repeat)) for k in mappers}
    for rep in range(args.repeat):
        for i, record in enumerate(records):
            order = list(mappers) if (i + rep) % 2 == 0 else list(mappers)[::-1]
            outputs = {}
            for name in order:
                np.random.seed(1000 * rep + i)  # both mappers draw the same transform
                t_wall, t_cpu = time.perf_counter(), time.process_time()
                outputs[name] = mappers[name](record)
                wall[name][i, rep] = time.perf_counter() - t_wall
                cpu[name][i, rep] = time.process_time() - t_cpu
                if args.handoff:
                    handoff[name][i, rep] = handoff_seconds(outputs[name])
            if not same_output(outputs["stock"], outputs["new"]):
                raise SystemExit(f"outputs differ on {record['file_name']} (repeat {rep})")
            del outputs

    print("\nms per image (median over repeats per image; then median / mean over images)")
    rows = [("mapper wall", wall), ("mapper CPU", cpu)] + ([("shared-memory handoff", handoff)] if args.handoff else [])
    for label, table in rows:
        per_image = {k: np.median(v, axis=1) * 1e3 for k, v in table.items()}
        s, n = per_image["stock"], per_image["new"]
        print(f"  {label:22s} stock {np.median(s):7.1f} / {np.mean(s):7.1f}   new {np.median(n):7.1f} / {np.mean(n):7.1f}"
              f"   speed-up {np.median(s) / np.median(n):4.1f}x median, {np.mean(s) / np.mean(n):4.1f}x mean")
    speedups = np.median(wall["stock"], axis=1) / np.median(wall["new"], axis=1)
    print(f"  per-image wall speed-up: min {speedups.min():.1f}x, median {np.median(speedups):.1f}x, max {speedups.max():.1f}x")
    print("outputs identical on every image and repeat")
    if os.path.exists("/proc/loadavg"):
        print("load average after: %s" % " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
