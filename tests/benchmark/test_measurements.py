"""Single measurements of maskrcnnpp.benchmark on hand-worked cases (no timing is asserted)."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from maskrcnnpp.benchmark import PeakMemory, add_ratios, count_flops, count_parameters, count_parameters_used
from maskrcnnpp.benchmark import measure as measure_module
from maskrcnnpp.benchmark.measure import measure_loader, measure_throughput
from maskrcnnpp.benchmark.timing import summarize_ms, time_calls


class ListInputConv(nn.Module):
    """A Detectron2-style model (list[dict] in) with two branches; only ``branch_a`` ever runs."""

    def __init__(self):
        super().__init__()
        self.branch_a = nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)  # 216 params
        self.branch_b = nn.Conv2d(3, 4, kernel_size=1)  # 16 params, never called

    def forward(self, batched_inputs):
        return [self.branch_a(x["image"][None].float()) for x in batched_inputs]


def test_summarize_ms_median_p90_mean():
    stats = summarize_ms([1.0, 2.0, 3.0, 4.0, 10.0])
    # p90 by linear interpolation: position 0.9 * 4 = 3.6 -> 4 + 0.6 * (10 - 4)
    assert (stats.median_ms, stats.p90_ms, stats.mean_ms, stats.n) == (3.0, pytest.approx(7.6), 4.0, 5)


def test_time_calls_runs_warmup_then_timed_iterations():
    calls = []
    stats = time_calls(lambda: calls.append(1), torch.device("cpu"), warmup=2, iters=3)
    assert len(calls) == 5 and stats.n == 3
    with pytest.raises(ValueError, match="iters"):
        time_calls(lambda: None, torch.device("cpu"), warmup=0, iters=0)


def test_peak_memory_sees_a_100_mib_tensor_on_cpu():
    with PeakMemory(torch.device("cpu")) as mem:
        block = torch.ones(100 * 1024 * 1024 // 4, dtype=torch.float32)  # 100 MiB, touched
        del block
    assert mem.method.startswith("rss_peak_increase")
    assert 95 <= mem.peak_mb <= 160


def test_flops_of_a_3x3_conv_are_its_multiply_adds():
    model = ListInputConv()
    inputs = [{"image": torch.zeros(3, 16, 16)}]
    report = count_flops(model, inputs)
    expected = 8 * 3 * 3 * 3 * 16 * 16 / 1e9  # out ch * in ch * k * k * H * W multiply-adds
    assert report.gflops == pytest.approx(expected)
    assert report.by_module == {"branch_a": pytest.approx(expected)}


def test_parameters_total_and_used():
    model = ListInputConv()
    assert count_parameters(model) == 216 + 16
    assert count_parameters_used(model, [{"image": torch.zeros(3, 8, 8)}]) == 216


def test_throughput_stops_at_out_of_memory_and_keeps_the_best_batch():
    model = ListInputConv()

    def make_inputs(n):
        if n > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [{"image": torch.zeros(3, 8, 8)}] * n

    result = measure_throughput(model, make_inputs, amp=False, max_batch=64, iters=1)
    assert [t["batch"] for t in result["tried"]] == [1, 2, 4]
    assert result["tried"][-1]["images_per_s"] is None
    assert result["batch"] in (1, 2) and result["images_per_s"] > 0


def test_throughput_other_errors_are_not_swallowed():
    def make_inputs(n):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        measure_throughput(ListInputConv(), make_inputs, amp=False, max_batch=4, iters=1)


def test_ratios_are_to_the_first_model_at_the_same_size():
    rows = [
        {"label": "a", "size": 256, "params": 10, "latency_median_ms": 4.0},
        {"label": "a", "size": 512, "params": 10, "latency_median_ms": 16.0},
        {"label": "b", "size": 256, "params": 15, "latency_median_ms": 5.0},
        {"label": "b", "size": 512, "params": 15, "latency_median_ms": 8.0},
    ]
    add_ratios(rows)
    assert rows[0]["ratios"]["params"] == 1.0
    assert rows[2]["ratios"]["params"] == 1.5 and rows[2]["ratios"]["latency_median_ms"] == 1.25
    assert rows[3]["ratios"]["latency_median_ms"] == 0.5
    assert rows[3]["ratios"]["gflops"] is None  # not measured -> no ratio, not a crash
    assert np.isclose(rows[1]["ratios"]["latency_median_ms"], 1.0)


def test_loader_rate_counts_only_the_batches_after_warm_up(monkeypatch):
    """A fake loader whose batches of 2 images take 0.5 s of a fake clock, except the first
    (workers starting, 3 s): 6 timed batches = 12 images in 3 s = 4 images/s."""
    clock = {"t": 0.0}
    monkeypatch.setattr(measure_module, "time", SimpleNamespace(perf_counter=lambda: clock["t"]))

    def loader():
        for i in range(100):
            clock["t"] += 3.0 if i == 0 else 0.5
            yield [{"image": None}, {"image": None}]

    result = measure_loader(loader(), batches=6, warmup=2)
    assert result == {"images_per_s": 4.0, "images": 12, "seconds": 3.0}
