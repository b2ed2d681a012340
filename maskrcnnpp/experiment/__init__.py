"""The paper's Table V protocol: train each model with one budget, select on val, score on test.

For every model (config) of an experiment: train on the TRAIN split for the same number of
iterations (``budget_iters``, or a wall-clock ``budget_minutes`` converted to iterations from
the model's measured training speed), validate periodically on VAL keeping the best checkpoint
by ``SOLVER.BEST_CHECKPOINT_METRIC`` (``NucleiTrainer``), score that checkpoint on TEST with the
nuclei evaluator, and measure parameters and inference latency. Each model's row is written
to ``<out_dir>/<model>/result.json`` as soon as it is known; a rerun skips finished models and
resumes a partly trained one from its last checkpoint (``<out_dir>/<model>/train``, written every
``checkpoint_period`` iterations, by default at every validation; only the newest is kept, beside
``model_best.pth`` and ``model_final.pth``), provided they were made with the same options
(``run_signature``: data and DSB root, test set, budget, validations, overrides; not the
checkpoint period, which changes no result); a folder made with other options is an error (with
``report_only``, a logged warning), never a silently mixed table. Several commands may work in one
``out_dir`` at once (e.g. the R-CNN family at one budget and the U-Nets at another, sharing a GPU),
but one process at a time trains a run (``<out_dir>/<run>/.run.lock``).

Optional synthetic pretraining (``pretrain_iters`` > 0) first trains the model on the synthetic
nuclei set, then starts the real training from its backbone weights; the pretraining iterations
(or minutes) are taken out of the same total budget.

With ``jobs`` > 1 the runs train concurrently in separate processes (one GPU is shared; a single
R-101 Mask R-CNN training leaves an H100 partly idle). Iteration budgets and accuracy do not
depend on this; wall-clock budgets do (calibrated under the same sharing), and latency is then
measured afterwards, one model at a time, so it is never taken under contention. SIGTERM or
SIGINT to the parent terminates the training processes before it exits.

Modules: :mod:`.plan` (the plan and its runs), :mod:`.datasets`, :mod:`.signature` (resume
compatibility), :mod:`.budget` (time budget, schedule), :mod:`.configs`, :mod:`.store` (run
folder files), :mod:`.runs` (one run), :mod:`.processes` and :mod:`.parallel` (runs at once),
:mod:`.protocol` (the whole experiment), :mod:`.report` (its table), :mod:`.seed_table` (a table
over several seeds' experiments).
"""
from .budget import resolve_budget, schedule_opts, seconds_per_iteration
from .datasets import EXTERNAL_TEST_NAME, external_test_json, register_experiment_datasets
from .plan import DATA_SPLITS, ExperimentPlan, Run, plan_runs
from .processes import exclusive_lock
from .protocol import run_experiment
from .report import PAPER_TABLE_V, TABLE_FIELDS, experiment_markdown
from .runs import measure_row_latency, run_one, table_values, train_resuming
from .seed_table import seed_table, seed_table_markdown
from .signature import check_same_experiment, run_signature, signature_diff

__all__ = [
    "DATA_SPLITS", "EXTERNAL_TEST_NAME", "PAPER_TABLE_V", "TABLE_FIELDS", "ExperimentPlan", "Run",
    "check_same_experiment", "exclusive_lock", "experiment_markdown", "external_test_json", "measure_row_latency",
    "plan_runs", "register_experiment_datasets", "resolve_budget", "run_experiment", "run_one", "run_signature",
    "schedule_opts", "seconds_per_iteration", "seed_table", "seed_table_markdown", "signature_diff", "table_values",
    "train_resuming",
]
