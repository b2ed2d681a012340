"""tools/experiment.py end to end on CPU: tiny models, synthetic data, an external test folder,
synthetic pretraining, resuming (smoke run; no accuracy or timing is asserted)."""
import json
import os
import re
import shutil

import pytest
import torch

from maskrcnnpp.experiment import TABLE_FIELDS, check_same_experiment
from maskrcnnpp.errors import UserError

from experiment_testutils import FAST_OPTS, REPO, finished_experiment, load_tool

RUNS = ["unetpp_tiny", "maskrcnnpp_tiny", "unetpp_tiny+synthpre1", "maskrcnnpp_tiny+synthpre1"]


def experiment_args(out, test_root):
    return [
        "--data", "synthetic", "--configs", "unetpp_tiny", "maskrcnnpp_tiny", "--budget-iters", "2", "--evals", "1",
        "--pretrain-synthetic", "1", "--test-root", str(test_root), "--latency-size", "64", "--latency-iters", "1",
        "--out", str(out), *FAST_OPTS, "SOLVER.IMS_PER_BATCH", "1",
    ]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return finished_experiment(tmp_path_factory, "experiment", experiment_args)


def test_every_field_for_every_model(experiment):
    _, base, _, report = experiment
    stored = json.loads((base / "out" / "experiment.json").read_text())
    assert [r["model"] for r in stored["rows"]] == RUNS
    for row in stored["rows"]:
        missing = [k for k in TABLE_FIELDS if row.get(k) is None]
        assert not missing, f"{row['model']}: {missing}"
        # scored on the external folder, with the checkpoint selected on the synthetic val split
        assert row["test_dataset"] == "experiment_external_test"
        assert row["test_results"]["nuclei"]["score"] == row["score"]
        assert row["iou"] == pytest.approx(100 * row["test_results"]["nuclei"]["iou"])
        assert row["selected_checkpoint"] == "model_best.pth"
        assert row["budget"]["total_iters"] == 2
    markdown = (base / "out" / "experiment.md").read_text()
    for name in RUNS:
        assert f"| {name} |" in markdown
    assert "| Mask RCNN++ R-101 | 95.10 | 91.36 | 0.414 |" in markdown


def test_pretraining_shares_the_budget_and_transfers_only_the_backbone(experiment):
    _, base, _, report = experiment
    rows = {r["model"]: r for r in report["rows"]}
    scratch, pre = rows["maskrcnnpp_tiny"], rows["maskrcnnpp_tiny+synthpre1"]
    assert (scratch["train_iters"], scratch["pretrain_synthetic_iters"]) == (2, 0)
    assert (pre["train_iters"], pre["pretrain_synthetic_iters"]) == (1, 1)
    assert pre["initial_weights"].endswith(os.path.join("pretrain", "backbone.pth"))
    state = torch.load(pre["initial_weights"], map_location="cpu", weights_only=False)["model"]
    assert state and all(k.startswith("backbone.") for k in state)
    assert any(".bottom_up." in k for k in state)


def test_rerun_skips_finished_models_and_resumes_an_interrupted_one(experiment):
    tool, base, test_root, report = experiment
    out = base / "out"
    final = out / "unetpp_tiny" / "train" / "model_final.pth"
    stamp = final.stat().st_mtime_ns
    (out / "unetpp_tiny" / "result.json").unlink()  # as if stopped after training, before the test
    again = tool.main(experiment_args(out, test_root))
    rows = {r["model"]: r for r in again["rows"]}
    # resumed from the last checkpoint, which is past the budget: nothing is trained again
    assert rows["unetpp_tiny"]["start_iter"] >= rows["unetpp_tiny"]["train_iters"] == 2
    assert final.stat().st_mtime_ns == stamp
    for name in RUNS[1:]:
        assert rows[name] == {r["model"]: r for r in report["rows"]}[name]  # read back, not redone


def test_bad_budget_and_test_root_are_user_errors(tmp_path):
    from maskrcnnpp.experiment import ExperimentPlan, external_test_json

    with pytest.raises(UserError, match="exactly one budget"):
        ExperimentPlan(configs=["unet_tiny"], out_dir=str(tmp_path))
    with pytest.raises(UserError, match="prepare_dsb2018"):
        external_test_json(str(tmp_path), None)
    # an override placed before --out lands in --configs: caught before anything runs
    with pytest.raises(UserError, match=r"configs entry SEED: config 'SEED' is neither.*looks like a config override KEY VALUE"):
        ExperimentPlan(configs=["unet_tiny", "SEED", "0"], out_dir=str(tmp_path), budget_iters=1)


def test_concurrent_runs_fill_every_field_and_report_a_failed_run(tmp_path, capsys):
    """--jobs 2: runs train in separate processes; latency is measured afterwards; only the
    configs named by --pretrain-configs get a pretrained run; a run that fails is reported (and
    the exit status says so) while the others' rows are kept."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(f'_BASE_: "{REPO / "configs" / "maskrcnnpp_tiny.yaml"}"\n'
                      "MODEL:\n  UNETPP_FPN:\n    WIDTHS: [8, 8]\n")
    out = tmp_path / "out"
    args = ["--data", "synthetic", "--configs", "unet_tiny", "maskrcnn_tiny", str(broken), "--budget-iters", "2",
            "--evals", "1", "--pretrain-synthetic", "1", "--pretrain-configs", "maskrcnn_tiny", "--jobs", "2",
            "--latency-size", "64", "--latency-iters", "1", "--out", str(out), *FAST_OPTS, "SOLVER.IMS_PER_BATCH", "1"]
    with pytest.raises(SystemExit, match=r"1 run\(s\) failed .*broken: failed: ValueError: MODEL.UNETPP_FPN.WIDTHS=\[8, 8\]"):
        load_tool("experiment").main(args)
    stored = json.loads((out / "experiment.json").read_text())
    assert [r["model"] for r in stored["rows"]] == ["unet_tiny", "maskrcnn_tiny", "maskrcnn_tiny+synthpre1"]
    assert list(stored["failed"]) == ["broken"]
    for row in stored["rows"]:
        missing = [k for k in TABLE_FIELDS if row.get(k) is None]
        assert not missing, f"{row['model']}: {missing}"
        assert json.loads((out / row["model"] / "result.json").read_text())["latency_ms_median"] == row["latency_ms_median"]
        assert "Starting training" in (out / row["model"] / "log.txt").read_text()  # each run logs to its own file
    assert "| broken | failed: ValueError" in (out / "experiment.md").read_text()
    # --report-only: the table of what finished, nothing trained, the unfinished run named
    stamp = (out / "maskrcnn_tiny" / "train" / "model_final.pth").stat().st_mtime_ns
    report = load_tool("experiment").main(["--report-only", *args])
    assert [r["model"] for r in report["rows"]] == ["unet_tiny", "maskrcnn_tiny", "maskrcnn_tiny+synthpre1"]
    assert report["rows"] == stored["rows"]
    assert "| broken | not finished (no result.json) |" in (out / "experiment.md").read_text()
    assert (out / "maskrcnn_tiny" / "train" / "model_final.pth").stat().st_mtime_ns == stamp


def test_a_run_folder_of_another_experiment_is_an_error_not_a_mixed_table(experiment, tmp_path, capsys):
    """Rerunning into the same --out with another budget or other overrides must not report (or
    resume) the runs made with the first command's options."""
    tool, base, test_root, _ = experiment
    out = base / "out"
    args = experiment_args(out, test_root)
    longer = list(args)
    longer[longer.index("--budget-iters") + 1] = "3"

    def refused(argv, message):
        with pytest.raises(SystemExit, match="2"):
            tool.main(argv)
        assert re.search(message, capsys.readouterr().err)

    refused(longer, r"unetpp_tiny/result.json belongs to another experiment \(budget_iters 2 there, 3 now\)")
    refused(["--jobs", "2", *args, "SEED", "5"],
            r"result.json belongs to another experiment \(opts .* there, \[.*'SEED', '5'\] now\)")
    # --report-only tables what exists (e.g. one budget per model family), each row with its own budget,
    # and says which rows were made with other options than the report's command
    report = tool.main(["--report-only", *longer])
    assert {r["budget"]["total_iters"] for r in report["rows"]} == {2}
    assert report["options_differ"] and all(d == ["budget_iters 2 there, 3 now"] for d in report["options_differ"].values())
    markdown = (out / "experiment.md").read_text()
    assert markdown.startswith("Report of the finished runs (nothing trained): `")
    assert f"- {report['rows'][0]['model']}: budget_iters 2 there, 3 now" in markdown
    row = json.loads((out / "unetpp_tiny" / "result.json").read_text())
    assert check_same_experiment("r.json", row["budget"], {**row["budget"]["signature"], "budget_iters": 3},
                                 strict=False) == ["budget_iters 2 there, 3 now"]
    # an interrupted run (budget.json and checkpoints, no result.json) is not resumed under other options
    shutil.copytree(out / "maskrcnnpp_tiny", tmp_path / "maskrcnnpp_tiny")
    (tmp_path / "maskrcnnpp_tiny" / "result.json").unlink()
    stamp = (tmp_path / "maskrcnnpp_tiny" / "train" / "model_final.pth").stat().st_mtime_ns
    other = [a if a != str(out) else str(tmp_path) for a in args]
    other[other.index("--evals") + 1] = "2"
    refused(["--data", "synthetic", "--configs", "maskrcnnpp_tiny", *other[other.index("--budget-iters"):]],
            r"maskrcnnpp_tiny/budget.json belongs to another experiment \(evals 1 there, 2 now\)")
    assert (tmp_path / "maskrcnnpp_tiny" / "train" / "model_final.pth").stat().st_mtime_ns == stamp
    rows = tool.main(args)["rows"]  # the first command's options: its runs are read back
    assert [r["model"] for r in rows] == RUNS and {r["budget"]["total_iters"] for r in rows} == {2}


def test_model_card_of_a_finished_run(experiment):
    from maskrcnnpp.evaluation.image_types import IMAGE_TYPES
    from maskrcnnpp.experiment.model_card import card_from_run, subset_records

    _, base, test_root, _ = experiment
    stored = {r["model"]: r for r in json.loads((base / "out" / "experiment.json").read_text())["rows"]}
    card = card_from_run(str(base / "out" / "maskrcnnpp_tiny"), hardware="test machine")
    row = stored["maskrcnnpp_tiny"]
    assert card["test"]["score"] == row["score"] and card["test"]["mask_ap"] == row["ap"]
    assert card["test"]["images"] == 1 and card["test"]["dataset"] == "experiment_external_test"
    assert card["iterations"] == row["train_iters"] == 2 and card["hardware"] == "test machine"
    assert card["overrides"] == row["budget"]["signature"]["opts"]
    (kind, figures), = card["test_by_image_type"].items()  # the one synthetic test image
    assert kind in IMAGE_TYPES and figures["images"] == 1 and figures["score"] == pytest.approx(row["score"])
    records = [{"image_id": i, "file_name": str(p)} for i, p in enumerate(sorted((test_root / "images").iterdir()))]
    assert subset_records(records, {kind: 5}) == records and subset_records(records, {kind: 0}) == []


def test_a_synthetic_run_is_not_exported_to_the_zoo_and_nothing_is_written(experiment, tmp_path, monkeypatch, capsys):
    from maskrcnnpp import model_zoo
    from maskrcnnpp.experiment.model_card import card_from_run

    _, base, _, _ = experiment
    run_dir = base / "out" / "maskrcnnpp_tiny"
    assert card_from_run(str(run_dir))["data"].startswith("synthetic nuclei")
    monkeypatch.setattr(model_zoo, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(model_zoo, "ZOO_FILE", tmp_path / "zoo.json")
    tool = load_tool("model_zoo")
    with pytest.raises(SystemExit) as exc:
        tool.main(["export", "--run", str(run_dir), "--name", "x", "--config", "maskrcnnpp_tiny", "--summary", "s"])
    assert exc.value.code == 2
    assert "a shipped model is a DSB 2018 run scored on its test split" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
