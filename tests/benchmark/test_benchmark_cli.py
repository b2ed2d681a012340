"""tools/benchmark.py end to end on CPU with tiny configs (smoke run; no timing is asserted)."""
import json

import pytest
from detectron2.modeling import build_model

from maskrcnnpp import resolve_config_path
from maskrcnnpp.benchmark.runner import ROW_FIELDS
from maskrcnnpp.config import setup_cfg

from tiny_tool_helpers import FAST_OPTS, load_tool

# Fields legitimately null: mode for Mask R-CNN rows, loader_error when the loader ran.
NULLABLE = {"mode", "loader_error"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    benchmark = load_tool("benchmark")
    benchmark.main([
        "--configs", "maskrcnn_tiny", "maskrcnnpp_tiny", "unet_tiny", "unetpp_tiny",
        "--semantic-modes", "ensemble", "L1", "--sizes", "64", "--iters", "1", "--warmup", "0",
        "--max-batch", "2", "--train-batch", "1", "--loader-batches", "1", "--out", str(out), *FAST_OPTS,
    ])
    return json.loads(out.read_text()), out.with_suffix(".md").read_text()


def test_every_field_for_every_config(report):
    data, _ = report
    labels = [r["label"] for r in data["rows"]]
    # U-Net has no head on X^{0,1}, so no L1: it is listed in "skipped", not dropped silently
    assert labels == ["maskrcnn_tiny", "maskrcnnpp_tiny", "unet_tiny[ensemble]", "unetpp_tiny[ensemble]", "unetpp_tiny[L1]"]
    assert [(s["config"], s["mode"]) for s in data["skipped"]] == [("unet_tiny", "L1")]
    assert "x_0_1" in data["skipped"][0]["reason"]
    for row in data["rows"]:
        assert set(ROW_FIELDS) <= set(row)
        missing = [k for k in ROW_FIELDS if row[k] is None and k not in NULLABLE]
        assert not missing, f"{row['label']}: {missing}"
        assert row["size"] == 64 and row["device"] == "cpu"
        assert row["latency_p90_ms"] >= row["latency_median_ms"] > 0
        assert [t["batch"] for t in row["throughput_tried"]] == [1, 2]
        assert row["loader_dataset"] == "nuclei_synth_train" and row["loader_error"] is None
        assert row["detections"] <= 10 or row["mode"]  # capped by TEST.DETECTIONS_PER_IMAGE for Mask R-CNN


def test_params_and_ratios(report):
    data, _ = report
    rows = {r["label"]: r for r in data["rows"]}
    for label, config in (("maskrcnn_tiny", "maskrcnn_tiny"), ("unetpp_tiny[L1]", "unetpp_tiny")):
        model = build_model(setup_cfg(config, FAST_OPTS, device="cpu"))
        assert rows[label]["params"] == sum(p.numel() for p in model.parameters())
    assert all(v == 1.0 for v in rows["maskrcnn_tiny"]["ratios"].values())
    pp = rows["maskrcnnpp_tiny"]
    assert pp["ratios"]["params"] == pytest.approx(pp["params"] / rows["maskrcnn_tiny"]["params"])
    # the nested pyramid has more weights than FPN and runs all of them
    assert pp["params"] > rows["maskrcnn_tiny"]["params"] and pp["params_used"] == pp["params"]
    # pruned UNet++ L1 runs a strict subset of the network, with fewer FLOPs than the ensemble
    l1, ens = rows["unetpp_tiny[L1]"], rows["unetpp_tiny[ensemble]"]
    assert l1["params_used"] < ens["params_used"] <= ens["params"]
    assert l1["gflops"] < ens["gflops"]
    # training is mode-independent: measured once, shared by the other mode's row
    assert l1["train_measured_on"] == "unetpp_tiny[ensemble]" and l1["train_iter_ms"] == ens["train_iter_ms"]


def test_markdown_table_has_a_row_per_config(report):
    data, markdown = report
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(data["rows"])
    for row in data["rows"]:
        assert any(line.startswith(f"| {row['label']} | 64 |") for line in table)
    assert "skipped unet_tiny mode L1" in markdown


SMALL_RUN = ["--sizes", "64", "--iters", "1", "--warmup", "0", "--no-throughput", "--no-loader", "--no-flops",
             "--train-batch", "1"]


def test_a_run_stopped_part_way_keeps_the_rows_it_measured(tmp_path, monkeypatch):
    from maskrcnnpp.benchmark import runner

    real, calls = runner.measure_target, []

    def stopped_at_the_second(target, settings, shared_train=None):
        calls.append(target.label)
        if len(calls) == 2:
            raise TimeoutError("time limit")  # as a device command killed at its limit
        return real(target, settings, shared_train=shared_train)

    monkeypatch.setattr(runner, "measure_target", stopped_at_the_second)
    out = tmp_path / "b.json"
    with pytest.raises(TimeoutError):
        load_tool("benchmark").main(["--configs", "unet_tiny", "unetpp_tiny", *SMALL_RUN, "--out", str(out), *FAST_OPTS])
    data = json.loads(out.read_text())
    assert data["complete"] is False and [r["label"] for r in data["rows"]] == ["unet_tiny"]
    assert "**Partial" in out.with_suffix(".md").read_text()


def test_same_config_twice_gets_the_same_cpu_inference_memory(tmp_path):
    # The first config measured used to carry the process's one-time costs (75 vs 51 MB for one
    # config measured twice); a warm-up pass before any figure charges them to none.
    copy = tmp_path / "unet_copy.yaml"
    copy.write_text(f'_BASE_: "{resolve_config_path("unet_tiny")}"\n')
    out = tmp_path / "m.json"
    load_tool("benchmark").main(["--configs", "unet_tiny", str(copy), *SMALL_RUN, "--out", str(out), *FAST_OPTS])
    first, second = json.loads(out.read_text())["rows"]
    assert first["memory_method"] == second["memory_method"] == "rss_peak_increase(VmHWM)"
    assert 0.8 < second["infer_peak_mb"] / first["infer_peak_mb"] < 1.25


@pytest.mark.parametrize("argv, message", [
    (["--configs", "maskrcnn_tiny", "elsewhere/maskrcnn_tiny.yaml"], "are both named 'maskrcnn_tiny'"),
    (["--configs", "unet_tiny", "--max-batch", "0"], "--max-batch must be >= 1, got 0"),
    (["--configs", "unet_tiny", "--train-batch", "0"], "--train-batch must be >= 1, got 0"),
    (["--configs", "unet_tiny", "--train-iters", "0"], "--train-iters must be >= 1, got 0"),
    (["--configs", "unet_tiny", "--out", "table.md"], "give the JSON file name"),
])
def test_option_mistakes_are_one_line_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_tool("benchmark").main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_ratios_are_to_the_first_row_of_the_first_model():
    from maskrcnnpp.benchmark.runner import RATIO_FIELDS, add_ratios

    rows = [{"label": "a", "size": 64, **{k: 2.0 for k in RATIO_FIELDS}},
            {"label": "a", "size": 64, **{k: 4.0 for k in RATIO_FIELDS}},
            {"label": "b", "size": 64, **{k: 1.0 for k in RATIO_FIELDS}}]
    add_ratios(rows)
    assert [r["ratios"]["params"] for r in rows] == [1.0, 2.0, 0.5]
