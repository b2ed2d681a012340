"""tools/benchmark.py end to end on CPU with tiny configs (smoke run; no timing is asserted)."""
import json

import pytest
from detectron2.modeling import build_model

from maskrcnnpp.benchmark.runner import ROW_FIELDS
from maskrcnnpp.engine import setup_cfg

from benchmark_testutils import FAST_OPTS, load_tool

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
