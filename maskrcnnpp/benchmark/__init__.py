"""Speed and size of every maskrcnnpp model (``tools/benchmark.py``): parameters, FLOPs, memory,
latency and throughput. Training models to compare their accuracy is not done here.

:mod:`.measure` holds the single measurements (parameters, latency, throughput, training step,
loader speed), :mod:`.flops` the fvcore FLOP count, :mod:`.memory` peak memory, :mod:`.timing`
timed calls, :mod:`.inputs` synthetic input batches, :mod:`.runner` the side-by-side benchmark and
:mod:`.report` its Markdown table.
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
