"""tools/experiment.py under interruption and reruns: checkpoint period, locks, SIGTERM with
--jobs, options checked up front, run signatures (DSB root, test split), missing latencies and
the Markdown table of failed runs."""
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from maskrcnnpp.experiment import (
    ExperimentPlan, Run, check_same_experiment, exclusive_lock, experiment_markdown, run_one, run_signature,
    schedule_opts, train_resuming,
)
from maskrcnnpp.data import build_synthetic_dataset, setup_datasets
from maskrcnnpp.errors import UserError
from maskrcnnpp.config import setup_cfg

from experiment_testutils import FAST_OPTS, REPO, finished_experiment, load_tool


def args_for(out, test_root, *extra, overrides=()):
    """One tiny U-Net run: 3 iterations, one validation, scored on ``test_root``."""
    return ["--data", "synthetic", "--configs", "unet_tiny", "--budget-iters", "3", "--evals", "1",
            "--test-root", str(test_root), "--latency-size", "64", "--latency-iters", "1", *extra, "--out", str(out),
            *FAST_OPTS, "SOLVER.IMS_PER_BATCH", "1", *overrides]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run made with --checkpoint-period 2 (the tests work on copies of its --out)."""
    return finished_experiment(tmp_path_factory, "resume",
                               lambda out, test_root: args_for(out, test_root, "--checkpoint-period", "2"))


def copy_out(finished, tmp_path):
    _, base, _, _ = finished
    out = tmp_path / "out"
    shutil.copytree(base / "out", out)
    return out


def refused(tool, argv, capsys) -> str:
    """The error message of a command that must exit with status 2."""
    with pytest.raises(SystemExit, match="2"):
        tool.main(argv)
    return capsys.readouterr().err


# --------------------------------------------------------------------------- checkpoint period


def test_checkpoint_period_is_honoured_and_a_resume_may_change_it(finished, tmp_path):
    tool, base, test_root, report = finished
    train = base / "out" / "unet_tiny" / "train"
    # iteration 1 ends a period of 2 (by default the period is the validation's, 3: model_0000002)
    assert sorted(p.name for p in train.glob("model_*.pth")) == ["model_0000001.pth", "model_best.pth", "model_final.pth"]
    budget = json.loads((base / "out" / "unet_tiny" / "budget.json").read_text())
    assert (budget["checkpoint_period"], budget["pretrain_checkpoint_period"]) == (2, None)
    assert report["rows"][0]["budget"]["checkpoint_period"] == 2
    assert "checkpoint_period" not in budget["signature"]
    # stopped after iteration 1's checkpoint; resumed with another period, given as a config override
    out = copy_out(finished, tmp_path)
    (out / "unet_tiny" / "result.json").unlink()
    (out / "unet_tiny" / "train" / "model_final.pth").unlink()
    (out / "unet_tiny" / "train" / "last_checkpoint").write_text("model_0000001.pth")
    row = tool.main(args_for(out, test_root, overrides=["SOLVER.CHECKPOINT_PERIOD", "1"]))["rows"][0]
    assert (row["start_iter"], row["train_iters"]) == (2, 3)
    assert json.loads((out / "unet_tiny" / "budget.json").read_text())["checkpoint_period"] == 1
    assert row["budget"]["checkpoint_period"] == 1
    # iteration 2 checkpointed (a period of 1), and the older checkpoint it supersedes deleted
    assert sorted(p.name for p in (out / "unet_tiny" / "train").glob("model_*.pth")) == [
        "model_0000002.pth", "model_best.pth", "model_final.pth"]


def test_only_the_newest_periodic_checkpoint_is_kept(tmp_path):
    cfg = setup_cfg("unet_tiny", list(FAST_OPTS) + [
        "SOLVER.IMS_PER_BATCH", "1", "SOLVER.MAX_ITER", "5", "SOLVER.CHECKPOINT_PERIOD", "1", "TEST.EVAL_PERIOD", "2",
        "DATASETS.TRAIN", "('nuclei_synth_train',)", "DATASETS.VAL", "('nuclei_synth_val',)", "OUTPUT_DIR", str(tmp_path)])
    setup_datasets(cfg)
    train_resuming(cfg)
    # model_best (validated at iterations 2 and 4) and the last of the five periodic ones remain
    assert sorted(p.name for p in tmp_path.glob("model_*.pth")) == ["model_0000004.pth", "model_best.pth", "model_final.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"


def test_checkpoint_period_leaves_validations_alone_and_overrides_are_checked(tmp_path):
    cfg = setup_cfg("unet_tiny")
    opts = schedule_opts(cfg, 100, 4, str(tmp_path), checkpoint_period=5)
    values = dict(zip(opts[0::2], opts[1::2]))
    assert (values["SOLVER.CHECKPOINT_PERIOD"], values["TEST.EVAL_PERIOD"]) == ("5", "25")
    default = dict(zip(*[iter(schedule_opts(cfg, 100, 4, str(tmp_path)))] * 2))
    assert (default["SOLVER.CHECKPOINT_PERIOD"], default["TEST.EVAL_PERIOD"]) == ("25", "25")

    def plan(**kw):
        return ExperimentPlan(configs=["unet_tiny"], out_dir=str(tmp_path), budget_iters=100, **kw)

    # the override is the option, and leaves the overrides (the signature's opts)
    honoured = plan(opts=["SEED", "1", "SOLVER.CHECKPOINT_PERIOD", "7"])
    assert (honoured.checkpoint_period, list(honoured.opts)) == (7, ["SEED", "1"])
    assert plan(opts=["SOLVER.CHECKPOINT_PERIOD", "7"], checkpoint_period=7).checkpoint_period == 7
    with pytest.raises(UserError, match=r"checkpoint_period and config override SOLVER.CHECKPOINT_PERIOD disagree \(\[7, 8\]\)"):
        plan(opts=["SOLVER.CHECKPOINT_PERIOD", "7"], checkpoint_period=8)
    with pytest.raises(UserError, match="SOLVER.CHECKPOINT_PERIOD often: give a number of iterations"):
        plan(opts=["SOLVER.CHECKPOINT_PERIOD", "often"])
    with pytest.raises(UserError, match="pretrain_opts override SOLVER.CHECKPOINT_PERIOD: set checkpoint_period instead"):
        plan(pretrain_iters=1, pretrain_opts=["SOLVER.CHECKPOINT_PERIOD", "7"])
    with pytest.raises(UserError, match=r"config override TEST.EVAL_PERIOD: the experiment sets it \(from evals\)"):
        plan(opts=["TEST.EVAL_PERIOD", "7"])
    # a folder made before the override left opts is still this experiment
    made = {"signature": {**run_signature(honoured, Run("unet_tiny")), "opts": ["SEED", "1", "SOLVER.CHECKPOINT_PERIOD", "3"]}}
    assert check_same_experiment("b.json", made, run_signature(honoured, Run("unet_tiny"))) == []


# --------------------------------------------------------------------------- options checked up front


@pytest.mark.parametrize("option, value, message", [
    ("--latency-iters", "0", "--latency-iters must be >= 1, got 0"),
    ("--calibration-iters", "0", "--calibration-iters must be >= 1, got 0"),
    ("--latency-size", "0", "--latency-size must be >= 32, got 0"),
    ("--checkpoint-period", "0", "--checkpoint-period must be >= 1, got 0"),
    ("--pretrain-synthetic", "3", "--pretrain-synthetic 3 leaves no iterations of the --budget-iters 3"),
])
def test_counts_are_checked_before_anything_runs(tmp_path, capsys, option, value, message):
    test_root = tmp_path / "external"
    build_synthetic_dataset(test_root, num_images=1, size=64, seed=7, split="test")
    out = tmp_path / "out"
    argv = args_for(out, test_root)
    argv[argv.index("--out"):argv.index("--out")] = [option, value]  # the last of a repeated option counts
    if option == "--calibration-iters":  # only a budget in minutes is calibrated
        argv[argv.index("--budget-iters"):argv.index("--budget-iters") + 2] = ["--budget-minutes", "0.05"]
    assert f"error: {message}" in refused(load_tool("experiment"), argv, capsys)
    assert not out.exists()  # nothing trained, nothing written


def test_test_split_without_test_root_is_an_error(tmp_path):
    with pytest.raises(UserError, match="test_split needs test_root"):
        ExperimentPlan(configs=["unet_tiny"], out_dir=str(tmp_path), budget_iters=1, test_split="test")


# --------------------------------------------------------------------------- locks and signals


def test_one_process_per_run(finished, tmp_path, capsys):
    # Several commands may share an --out (one budget per model family), but never a run: e.g. a
    # child of a killed --jobs N command still training it; this command does not train it too.
    tool, _, test_root, _ = finished
    out = copy_out(finished, tmp_path)
    (out / "unet_tiny" / "result.json").unlink()
    shutil.rmtree(out / "unet_tiny" / "train")
    argv = args_for(out, test_root)
    run_lock = out / "unet_tiny" / ".run.lock"
    with exclusive_lock(str(run_lock), "run"):
        err = refused(tool, argv, capsys)
    assert f"error: {out / 'unet_tiny'} (run unet_tiny) is in use by another process (lock {run_lock} held by PID {os.getpid()})" in err
    assert not (out / "unet_tiny" / "train").exists()
    assert tool.main(argv)["rows"][0]["train_iters"] == 3  # locks released: the run trains


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _lock_free(path) -> bool:
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


def test_sigterm_to_a_jobs_command_terminates_its_training_processes(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--data", "synthetic", "--configs", "unet_tiny", "--budget-iters", "100000", "--evals", "1", "--jobs", "2",
            "--out", str(out), *FAST_OPTS, "SOLVER.IMS_PER_BATCH", "1"]
    console = tmp_path / "console.txt"  # a file, not a pipe nobody reads while the command runs
    with open(console, "w") as f:
        parent = subprocess.Popen([sys.executable, str(REPO / "tools" / "experiment.py"), *argv],
                                  stdout=f, stderr=subprocess.STDOUT)
    run_lock, log = out / "unet_tiny" / ".run.lock", out / "unet_tiny" / "log.txt"
    child = None
    try:
        deadline = time.monotonic() + 240
        while child is None and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.5)
            pid = run_lock.read_text().strip() if run_lock.is_file() else ""
            if pid and log.is_file() and "Starting training" in log.read_text():
                child = int(pid)
        assert child is not None and child != parent.pid, f"no training child started: {parent.poll()}"
        # a second command on the same --out meanwhile does not train that run too: refused, naming its trainer
        sequential = [a if a != "2" else "1" for a in argv]  # --jobs 1: the refusal is the command's error
        assert f"held by PID {child})" in refused(load_tool("experiment"), sequential, capsys)
        parent.send_signal(signal.SIGTERM)
        parent.wait(timeout=120)
        text = console.read_text()
        assert parent.returncode == 128 + signal.SIGTERM, text[-2000:]
        assert "SIGTERM: 1 training process(es) terminated; rerun the same command to resume" in text
        assert not _pid_alive(child)
        assert _lock_free(run_lock)
    finally:  # never leave our processes behind
        for pid in (parent.pid, child):
            if pid and _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.wait()


# --------------------------------------------------------------------------- signatures


def test_signature_records_the_dsb_root_used(tmp_path, monkeypatch, caplog):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")

    def signature(**kw):
        plan = ExperimentPlan(configs=["unet_tiny"], out_dir=str(tmp_path / "out"), data="dsb2018", budget_iters=2, **kw)
        return plan, run_signature(plan, Run("unet_tiny"))

    monkeypatch.setenv("MASKRCNNPP_DSB2018", str(tmp_path / "b"))
    assert signature(dsb_root=str(tmp_path / "a"))[1]["dsb_root"] == str((tmp_path / "a").resolve())
    assert signature(dsb_root=str(tmp_path / "link"))[1]["dsb_root"] == str((tmp_path / "a").resolve())
    assert signature(opts=["DATASETS.NUCLEI.DSB2018_ROOT", str(tmp_path / "a")])[1]["dsb_root"] == str((tmp_path / "a").resolve())
    assert signature()[1]["dsb_root"] == str((tmp_path / "b").resolve())  # the environment's
    assert "dsb_root" not in run_signature(ExperimentPlan(configs=["unet_tiny"], out_dir=str(tmp_path), budget_iters=2),
                                           Run("unet_tiny"))
    # a finished run made on another DSB folder is not reused
    plan_a, made_on_a = signature(dsb_root=str(tmp_path / "a"))
    result = tmp_path / "out" / "unet_tiny" / "result.json"
    result.parent.mkdir(parents=True)
    result.write_text(json.dumps({"budget": {"signature": made_on_a}}))
    plan_b, _ = signature(dsb_root=str(tmp_path / "b"))
    a, b = re.escape(str((tmp_path / "a").resolve())), re.escape(str((tmp_path / "b").resolve()))
    with pytest.raises(UserError, match=rf"result.json belongs to another experiment \(dsb_root '{a}' there, '{b}' now\)"):
        run_one(plan_b, Run("unet_tiny"))
    # a run recorded before the root was: not a mismatch, said in the log
    older = {"signature": {k: v for k, v in made_on_a.items() if k != "dsb_root"}}
    with caplog.at_level(logging.WARNING, logger="maskrcnnpp"):
        assert check_same_experiment("old/budget.json", older, run_signature(plan_b, Run("unet_tiny"))) == []
    assert "old/budget.json does not record dsb_root (made by an older version)" in caplog.text


def test_an_omitted_test_split_and_the_split_it_resolves_to_are_one_experiment(finished, tmp_path, caplog):
    tool, _, test_root, report = finished
    out = copy_out(finished, tmp_path)
    again = tool.main(args_for(out, test_root, "--test-split", "test"))
    assert again["rows"] == report["rows"]  # read back, not refused
    assert report["rows"][0]["budget"]["signature"]["test_split"] == "test"
    (test_root / "annotations" / "all.json").write_text((test_root / "annotations" / "test.json").read_text())
    with pytest.raises(UserError, match=r"belongs to another experiment \(test_split 'test' there, 'all' now\)"):
        run_one(ExperimentPlan(configs=["unet_tiny"], out_dir=str(out), data="synthetic", budget_iters=3, evals=1,
                               test_root=str(test_root), test_split="all", opts=list(FAST_OPTS) + ["SOLVER.IMS_PER_BATCH", "1"]),
                Run("unet_tiny"))
    (test_root / "annotations" / "all.json").unlink()
    # a run stored by a version that kept an omitted --test-split as None is still this experiment
    row = report["rows"][0]
    older = {"signature": {**row["budget"]["signature"], "test_split": None}}
    with caplog.at_level(logging.WARNING, logger="maskrcnnpp"):
        assert check_same_experiment("old.json", older, row["budget"]["signature"]) == []
    assert "old.json does not record test_split" in caplog.text


# --------------------------------------------------------------------------- latency and table


def test_a_sequential_rerun_fills_a_missing_latency(finished, tmp_path):
    tool, _, test_root, _ = finished
    out = copy_out(finished, tmp_path)
    result = out / "unet_tiny" / "result.json"
    row = json.loads(result.read_text())
    # as left by a --jobs N command that died between training and the latency measurements
    result.write_text(json.dumps({**row, "latency_ms_median": None, "latency_ms_p90": None}))
    stamp = (out / "unet_tiny" / "train" / "model_final.pth").stat().st_mtime_ns
    filled = tool.main(args_for(out, test_root, "--jobs", "1"))["rows"][0]
    assert filled["latency_ms_median"] > 0 and filled["latency_ms_p90"] >= filled["latency_ms_median"]
    assert json.loads(result.read_text())["latency_ms_median"] == filled["latency_ms_median"]
    assert (out / "unet_tiny" / "train" / "model_final.pth").stat().st_mtime_ns == stamp  # nothing retrained
    assert "| unet_tiny |" in (out / "experiment.md").read_text() and "n/a" not in (out / "experiment.md").read_text()


def test_failed_rows_have_every_cell_of_the_table():
    report = {"rows": [], "failed": {"broken": "failed: ValueError: a | b\nc (log: x/log.txt)"}, "paper_table_v": {}}
    lines = experiment_markdown(report).splitlines()
    header, rule, row = lines[0], lines[1], lines[2]
    assert row == r"| broken | failed: ValueError: a \| b c (log: x/log.txt) |  |  |  |  |  |  |  |  |"
    cells = [line.replace(r"\|", "").count("|") for line in (header, rule, row)]
    assert cells == [11, 11, 11]


def test_experiments_in_one_process_score_each_its_own_test_folder(finished, tmp_path):
    tool, _, _, report = finished
    assert report["rows"][0]["test_results"]["nuclei"]["num_images"] == 1
    other = tmp_path / "other"
    build_synthetic_dataset(other, num_images=2, size=64, seed=8, split="test")
    row = tool.main(args_for(tmp_path / "out", other))["rows"][0]
    assert row["test_root"] == str(other) and row["test_results"]["nuclei"]["num_images"] == 2
