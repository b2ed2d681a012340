"""measure_pruned_levels: modes reported, parameters actually used, FLOPs ordering."""
from __future__ import annotations

import pytest
import torch

from detectron2.modeling import build_model

from maskrcnnpp.benchmark.pruning import measure_pruned_levels
from semantic_testutils import make_cfg


def _params(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.fixture(scope="module")
def unetpp_rows():
    torch.manual_seed(0)
    cfg = make_cfg("unetpp_tiny.yaml")
    model = build_model(cfg)
    return model, measure_pruned_levels(cfg, size=64, device="cpu", repeats=1, warmup=0, model=model)


def test_unetpp_reports_ensemble_and_pruned_levels(unetpp_rows):
    model, rows = unetpp_rows
    by_mode = {r["mode"]: r for r in rows}
    assert list(by_mode) == ["ensemble", "L1", "L2", "L3", "L4"]
    gmacs = [by_mode[m]["gmacs"] for m in ("L1", "L2", "L3", "L4", "ensemble")]
    assert gmacs == sorted(gmacs) and len(set(gmacs)) == 5
    assert all(r["latency_ms"] > 0 and r["params_total"] == _params(model) for r in rows)
    # Parameters used by L1: stem + res2 + X^{0,1} + its head, nothing deeper.
    backbone, decoder = model.backbone, model.decoder
    assert by_mode["L1"]["params_used"] == _params(backbone.stem, backbone.res2, decoder.x_0_1, decoder.heads["x_0_1"])
    # L4 uses everything except the three shallower heads; the ensemble uses every parameter.
    assert by_mode["L4"]["params_used"] == _params(model) - _params(*(decoder.heads[f"x_0_{d}"] for d in (1, 2, 3)))
    assert by_mode["ensemble"]["params_used"] == _params(model)
    assert by_mode["L1"]["convs_run"] == 8 and by_mode["ensemble"]["convs_run"] == by_mode["L4"]["convs_run"] + 3


@pytest.mark.parametrize("name,modes", [("unet_tiny.yaml", ["final"]), ("unet3p_tiny.yaml", ["ensemble", "final"])])
def test_other_decoders_report_their_modes(name, modes):
    rows = measure_pruned_levels(make_cfg(name), size=64, device="cpu", repeats=1, warmup=0)
    assert [r["mode"] for r in rows] == modes
    assert all(r["gmacs"] > 0 for r in rows)
