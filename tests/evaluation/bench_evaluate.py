#!/usr/bin/env python
"""Time tools/evaluate.py on 65 real DSB 2018 images (~4,000 nuclei) on one CPU core.

    .venv/bin/python tests/evaluation/bench_evaluate.py [--images 65] [--min-nuclei 17] [--repeat 3]

Builds, in a temporary folder, a COCO ground truth from the stage1_train zip (the first 65
images, by DSB id, with at least 17 nuclei: 4,004 nuclei) and predictions made from it (each
nucleus dilated by one pixel, so neighbours overlap and must be resolved by score, with random
scores; every 20th nucleus missed), then times, pinned to one core with one BLAS/OpenMP thread:
the nuclei metrics alone, the whole ``tools/evaluate.py`` run without and with COCO AP (in
process, imports excluded), and the CLI as a fresh process. Not a test: timings are reported,
never asserted.
"""
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "helpers"))  # run as a script
from nuclei_eval_helpers import REPO, coco_gt_from_masks, dsb_zip_masks, dsb_zip_path, encode_mask  # noqa: E402

import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location("maskrcnnpp_evaluate_tool", os.path.join(REPO, "tools", "evaluate.py"))
evaluate_tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(evaluate_tool)

from maskrcnnpp.evaluation.coco_results import load_coco_gt, load_coco_results  # noqa: E402
from maskrcnnpp.evaluation.label_images import gt_label_image, rles_to_label_image  # noqa: E402
from maskrcnnpp.evaluation.metrics import score_image, summarize_images  # noqa: E402


def predictions_from(images, seed=0):
    rng = np.random.default_rng(seed)
    results = []
    for image_id, (_, masks, _) in images.items():
        for k, mask in enumerate(masks):
            if k % 20 == 19:
                continue
            results.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": encode_mask(ndimage.binary_dilation(mask)),
                    "score": float(rng.uniform(0.5, 1.0)),
                }
            )
    return results


def best_of(repeat, fn):
    """(best wall seconds, best CPU seconds of this process, value); CPU time is what a busy
    shared machine distorts least."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        value = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return (min(walls), min(cpus)), value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=65)
    parser.add_argument("--min-nuclei", type=int, default=17)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    images = dsb_zip_masks(dsb_zip_path(), args.images, args.min_nuclei)
    gt = coco_gt_from_masks(images)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, pred_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "pred.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(pred_path, "w") as f:
            json.dump(predictions_from(images), f)
        num_pred = len(json.load(open(pred_path)))
        print(f"{len(gt['images'])} images, {len(gt['annotations'])} nuclei, {num_pred} predictions")

        # 1. the metrics on ready label images (what the vectorisation is about)
        gt_full, _ = load_coco_gt(gt_path)
        preds = load_coco_results(pred_path, gt_full)
        pairs = []
        for image in gt_full["images"]:
            record = {"image_id": image["id"], "height": image["height"], "width": image["width"],
                      "annotations": [a for a in gt_full["annotations"] if a["image_id"] == image["id"]]}
            res = preds.get(image["id"], [])
            pred_lab = rles_to_label_image([r["segmentation"] for r in res], [r["score"] for r in res], (image["height"], image["width"]))
            pairs.append((gt_label_image(record)[0], pred_lab))
        t_metrics, summary = best_of(args.repeat, lambda: summarize_images(score_image(g, p) for g, p in pairs))
        print(f"score: {summary['score']:.4f}  aji: {summary['aji']:.4f}  pq: {summary['pq']:.4f}")

        # 2./3. the whole tool in process (reading, checking, decoding, metrics, files), imports excluded
        def tool(extra):
            return evaluate_tool.run(evaluate_tool.parse_args(["--gt", gt_path, "--pred", pred_path, "--out", os.path.join(tmp, "out"), *extra]))

        t_nuclei, _ = best_of(args.repeat, lambda: tool(["--no-coco-ap"]))
        t_all, results = best_of(1, lambda: tool([]))
        print(f"segm AP: {results['segm']['AP']:.2f}  bbox AP: {results['bbox']['AP']:.2f}")

        # 4. the CLI as a user runs it (includes ~3-4 s of importing torch and Detectron2)
        cmd = [sys.executable, os.path.join(REPO, "tools", "evaluate.py"), "--gt", gt_path, "--pred", pred_path, "--out", os.path.join(tmp, "cli"), "--no-coco-ap"]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        t_cli = time.perf_counter() - start
        cli_cpu = os.times()
        t_cli_cpu = cli_cpu.children_user + cli_cpu.children_system

    print("\nseconds on one CPU core: wall / CPU (best of %d where repeated)" % args.repeat)
    print("  nuclei metrics on ready label images ........ %7.3f / %7.3f" % t_metrics)
    print("  tools/evaluate.py run(), --no-coco-ap ........ %7.3f / %7.3f" % t_nuclei)
    print("  tools/evaluate.py run(), with COCO segm+bbox . %7.3f / %7.3f" % t_all)
    print("  CLI process, --no-coco-ap (with imports) ..... %7.3f / %7.3f" % (t_cli, t_cli_cpu))
    print("load average after: %s" % " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "")


if __name__ == "__main__":
    main()
