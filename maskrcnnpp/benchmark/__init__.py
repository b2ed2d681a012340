"""Speed/size measurement of every maskrcnnpp model (``tools/benchmark.py``) and the Table V
experiment runner (``tools/experiment.py``).

:mod:`.measure` holds the single measurements (parameters, latency, throughput, training step,
loader speed), :mod:`.flops` the fvcore FLOP count, :mod:`.memory` peak memory, :mod:`.runner`
the side-by-side benchmark and its Markdown table, :mod:`.experiment` train/select/test runs.
"""
from .flops import FlopReport, count_flops
from .measure import count_parameters, count_parameters_used, measure_throughput, measure_train_step
from .memory import PeakMemory
from .runner import Settings, Target, add_ratios, expand_targets, run_benchmark
from .timing import TimingStats, time_calls

__all__ = [
    "FlopReport", "PeakMemory", "Settings", "Target", "TimingStats", "add_ratios", "count_flops",
    "count_parameters", "count_parameters_used", "expand_targets", "measure_throughput", "measure_train_step",
    "run_benchmark", "time_calls",
]
