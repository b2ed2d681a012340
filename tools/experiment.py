#!/usr/bin/env python
"""Reproduce the paper's Table V protocol: same budget, select on val, score on test, one table.

    # short run on prepared DSB 2018 (minutes on one GPU), from scratch (no ImageNet download)
    python tools/experiment.py --data dsb2018 --dsb-root datasets/dsb2018 --budget-iters 2000 --device cuda \\
        --configs maskrcnn_r101_scratch maskrcnnpp_r101_scratch unet_r101_scratch unetpp_r101_scratch --out runs/table5
    # the same with an equal wall-clock budget, plus synthetic backbone pretraining variants
    python tools/experiment.py --data dsb2018 --budget-minutes 60 --pretrain-synthetic 1000 --out runs/table5_60min
    # three runs at once on one GPU: two from scratch, Mask RCNN++ also after synthetic pretraining
    python tools/experiment.py --data dsb2018 --budget-iters 2000 --jobs 3 --pretrain-synthetic 500 \\
        --pretrain-configs maskrcnnpp_r101_scratch --configs maskrcnn_r101_scratch maskrcnnpp_r101_scratch --out runs/t5
    # score on another prepared folder (e.g. DSB stage 1 test with its released solution)
    python tools/experiment.py --data dsb2018 --budget-iters 2000 --test-root datasets/dsb2018_stage1_test --out runs/s1test
    # a long run where each command is stopped after minutes: checkpoint often, rerun until done
    python tools/experiment.py --data dsb2018 --budget-iters 27000 --checkpoint-period 500 --out runs/table5_full
    # leave-group-out: train without whole acquisition groups, score on them, per group (docs/DATA.md)
    python tools/experiment.py --list-groups --dsb-root datasets/dsb2018 --out runs/logo
    python tools/experiment.py --holdout-groups --budget-iters 1000 --configs maskrcnnpp_tiny --out runs/logo
    python tools/experiment.py --group-fold 2/5 --budget-iters 1000 --configs maskrcnnpp_tiny --out runs/logo_f2

With --holdout-groups (default: the groups of maskrcnnpp.experiment.group_holdout.DEFAULT_HOLDOUT) or
--group-fold I/K, OUT/holdout_data becomes the DSB root: its test split is those whole groups and
every other image trains; the table is followed by each run's score per held-out group.

Each model is trained on DATASETS' train split with the same budget, validated periodically on
val (best checkpoint by SOLVER.BEST_CHECKPOINT_METRIC, default nuclei/score), and that checkpoint
is scored on test (or --test-root) with the nuclei evaluator. Rows: IoU, Dice, leaderboard score,
AJI, PQ, mask AP, parameters and inference latency. Results go to OUT/<model>/result.json as
each model finishes; rerunning skips finished models and resumes interrupted ones from their
last checkpoint (if they were made with the same data and DSB root, test set, budget, --evals and
overrides: otherwise it stops and names the folder; --report-only only warns; --checkpoint-period
may differ). OUT/experiment.json and OUT/experiment.md hold the table of the last command that
ended. Several commands may work in one OUT at once (e.g. one budget for the R-CNN family and
another for the U-Nets), but a run is trained by one process at a time (OUT/<run>/.run.lock: a
second is refused with the PID holding it); SIGTERM or Ctrl-C to a --jobs N command stops its
training processes too.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys


import maskrcnnpp  # noqa: E402,F401  (compat measures before detectron2)
from detectron2.utils.logger import setup_logger  # noqa: E402

from maskrcnnpp.utils.files import write_json, write_text  # noqa: E402
from maskrcnnpp.experiment import ExperimentPlan, experiment_markdown, run_experiment  # noqa: E402
from maskrcnnpp.experiment.group_holdout import (  # noqa: E402
    DEFAULT_HOLDOUT, dsb_groups, fold_groups, group_counts_markdown, scores_by_group, write_holdout_root,
)
from maskrcnnpp.cli import UserError, ensure_output_dir, exit_on_user_error  # noqa: E402

DEFAULT_CONFIGS = ["maskrcnn_r101_scratch", "maskrcnnpp_r101_scratch", "unet_r101_scratch", "unetpp_r101_scratch"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS, metavar="NAME_OR_FILE",
                   help=f"models to compare (default: {' '.join(DEFAULT_CONFIGS)})")
    p.add_argument("--data", choices=["synthetic", "dsb2018"], default="dsb2018",
                   help="train/val/test splits: dsb2018_* (prepared DSB 2018) or nuclei_synth_* (default: %(default)s)")
    p.add_argument("--dsb-root", default=None, help="folder prepared by datasets/prepare_dsb2018.py (DATASETS.NUCLEI.DSB2018_ROOT)")
    holdout = p.add_mutually_exclusive_group()
    holdout.add_argument("--holdout-groups", nargs="*", default=None, metavar="GROUP",
                         help="leave-group-out: test on these acquisition groups of --dsb-root, train on the others "
                              "(no names: the default held-out groups; --list-groups lists them)")
    holdout.add_argument("--group-fold", default=None, metavar="I/K",
                         help="leave-group-out: test on fold I of K folds of whole groups, train on the others")
    holdout.add_argument("--list-groups", action="store_true",
                         help="print the acquisition groups of --dsb-root with their image counts and the K-fold split, "
                              "then stop")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--budget-iters", type=int, help="training iterations per model (pretraining included)")
    budget.add_argument("--budget-minutes", type=float,
                        help="training minutes per model, turned into iterations from each model's measured speed")
    p.add_argument("--evals", type=int, default=4,
                   help="validations during each training (each also a checkpoint, unless --checkpoint-period)")
    p.add_argument("--checkpoint-period", type=int, default=None, metavar="N",
                   help="iterations between checkpoints, which a rerun resumes from (default: one at every "
                        "validation; only the newest is kept); not part of the experiment's options, so a rerun may "
                        "change it. SOLVER.CHECKPOINT_PERIOD N among the overrides means the same")
    p.add_argument("--pretrain-synthetic", type=int, default=0, metavar="N",
                   help="also run every model after N iterations of pretraining on synthetic nuclei (backbone "
                        "transferred), within the same total budget; measured at CPU scale it did not raise the score "
                        "(docs/results.md), so it is an experiment arm, not a recipe")
    p.add_argument("--pretrain-configs", nargs="+", default=[], metavar="NAME_OR_FILE",
                   help="only these of --configs also get the pretrained run (default: all)")
    p.add_argument("--pretrain-opts", nargs="+", default=[], metavar="KEY VALUE",
                   help="config overrides for the pretraining only, e.g. DATASETS.NUCLEI.SYNTH_IMAGES [400,12,12]")
    p.add_argument("--test-root", default=None, help="score on this folder prepared by datasets/prepare_dsb2018.py instead")
    p.add_argument("--test-split", default=None, help="annotations/<split>.json of --test-root (default: test, else all)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="override MODEL.DEVICE")
    p.add_argument("--jobs", type=int, default=1,
                   help="runs trained at once, each in its own process sharing the device (latency is measured "
                        "afterwards, one model at a time); a failed run does not stop the others")
    p.add_argument("--latency-size", type=int, default=512, help="square input size of the latency figure (>= 32)")
    p.add_argument("--latency-iters", type=int, default=5, help="timed inferences for the latency figure")
    p.add_argument("--calibration-iters", type=int, default=5, help="iterations timed to convert --budget-minutes")
    p.add_argument("--report-only", action="store_true",
                   help="write the table of the runs that have finished (their latency measured if missing); train nothing")
    p.add_argument("--force", action="store_true", help="redo models whose result.json exists (checkpoints are reused)")
    p.add_argument("--out", required=True, help="experiment folder (resumable)")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides KEY VALUE ... for every model")
    return p


# The option of each ExperimentPlan field, for the library's errors (which name the fields).
OPTIONS = {
    "configs": "--configs", "data": "--data", "dsb_root": "--dsb-root", "budget_iters": "--budget-iters",
    "budget_minutes": "--budget-minutes", "evals": "--evals", "checkpoint_period": "--checkpoint-period",
    "pretrain_iters": "--pretrain-synthetic", "pretrain_configs": "--pretrain-configs",
    "pretrain_opts": "--pretrain-opts", "test_root": "--test-root", "test_split": "--test-split", "jobs": "--jobs",
    "latency_size": "--latency-size", "latency_iters": "--latency-iters",
    "calibration_iters": "--calibration-iters", "out_dir": "--out",
}
# What an error about these fields together means on this command line.
HINTS = {("configs", "opts"): "config overrides KEY VALUE go last, after every option"}


def in_options(error: UserError) -> UserError:
    """``error`` worded for this command line: the plan fields it names (``error.fields``) as options."""
    fields = getattr(error, "fields", ())
    message = str(error)
    for field in fields:
        if field in OPTIONS:  # a field name, not part of a path or of a longer name
            message = re.sub(rf"(?<![\w/.-]){field}(?![\w/.-])", OPTIONS[field], message)
    hint = HINTS.get(tuple(fields))
    return UserError(f"{message} ({hint})" if hint else message)


@exit_on_user_error
def main(argv=None) -> dict:
    try:
        return _main(argv)
    except UserError as e:
        raise in_options(e) from None


def source_dsb_root(args) -> str:
    """The prepared DSB 2018 folder the groups are taken from: --dsb-root, else the default one."""
    from maskrcnnpp.data import dsb2018_root

    return args.dsb_root or str(dsb2018_root())


def list_groups(args) -> dict:
    """--list-groups: the groups, their counts, the default held-out ones and the 5-fold split (fewer
    folds when there are fewer groups)."""
    _, groups = dsb_groups(source_dsb_root(args))
    print(group_counts_markdown(groups, DEFAULT_HOLDOUT))
    k = min(5, len(set(groups.values())))
    folds = {f"{i}/{k}": fold_groups(groups, f"{i}/{k}") for i in range(1, k + 1)} if k >= 2 else {}
    for name, members in folds.items():
        print(f"--group-fold {name}: {', '.join(members)}")
    return {"groups": groups, "folds": folds}


def holdout_tables(report: dict, out: str, groups: dict) -> str:
    """Each finished run's test score per held-out group, as Markdown (also stored in ``report``)."""
    lines = ["", "| model | held-out group | images | score | IoU | Dice | AJI | PQ |", "|---|---|---|---|---|---|---|---|"]
    report["by_group"] = {}
    for row in report.get("rows", []):
        per_image = os.path.join(out, row["model"], "train", "inference", row["test_dataset"], "per_image.csv")
        by_group = scores_by_group(per_image, groups)
        report["by_group"][row["model"]] = by_group
        for group, m in by_group.items():
            lines.append(f"| {row['model']} | {group} | {m['images']} | {m['score']:.3f} | {m['iou']:.3f} | "
                         f"{m['dice']:.3f} | {m['aji']:.3f} | {m['pq']:.3f} |")
    return "\n".join(lines)


def _main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    setup_logger(name="detectron2")
    setup_logger(name="maskrcnnpp")
    logging.getLogger("maskrcnnpp").setLevel(logging.INFO)
    if args.list_groups:
        return list_groups(args)
    if args.budget_iters is None and args.budget_minutes is None:
        raise UserError("give a training budget: --budget-iters N or --budget-minutes M")
    groups = None
    if args.holdout_groups is not None or args.group_fold:
        if args.data != "dsb2018" or args.test_root:
            raise UserError("--holdout-groups / --group-fold hold out groups of the DSB 2018 data: use --data dsb2018 "
                            "without --test-root")
        grouped = dsb_groups(source_dsb_root(args))
        groups = grouped[1]
        holdout = (fold_groups(groups, args.group_fold) if args.group_fold
                   else args.holdout_groups or list(DEFAULT_HOLDOUT))
        ensure_output_dir(args.out, "--out")
        args.dsb_root = write_holdout_root(source_dsb_root(args), holdout, os.path.join(args.out, "holdout_data"),
                                           grouped)
        print(f"leave-group-out: testing on {', '.join(holdout)}; DSB root {args.dsb_root}", flush=True)
    plan = ExperimentPlan(
        configs=args.configs, out_dir=args.out, data=args.data, budget_iters=args.budget_iters,
        budget_minutes=args.budget_minutes, evals=args.evals, pretrain_iters=args.pretrain_synthetic,
        pretrain_opts=args.pretrain_opts, test_root=args.test_root, test_split=args.test_split,
        dsb_root=args.dsb_root, device=args.device, opts=args.opts, latency_size=args.latency_size,
        latency_iters=args.latency_iters, calibration_iters=args.calibration_iters, force=args.force,
        pretrain_configs=args.pretrain_configs, jobs=args.jobs, report_only=args.report_only,
        checkpoint_period=args.checkpoint_period,
    )
    ensure_output_dir(args.out, "--out")
    report = run_experiment(plan)
    command = "python tools/experiment.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    report["command"] = command
    markdown = experiment_markdown(report, command)
    if groups is not None:
        markdown += "\n" + holdout_tables(report, args.out, groups) + "\n"
    # temporary names of this process (another command may write the same table at once)
    write_json(os.path.join(args.out, "experiment.json"), report, indent=2, newline=False)
    write_text(os.path.join(args.out, "experiment.md"), markdown)
    print(markdown)
    if report["failed"] and not args.report_only:
        sys.exit(f"{len(report['failed'])} run(s) failed (the table holds the others): "
                 + "; ".join(f"{k}: {v}" for k, v in report["failed"].items()))
    return report


if __name__ == "__main__":
    main()
