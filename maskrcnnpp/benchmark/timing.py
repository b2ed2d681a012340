"""Wall-clock timing of a callable: median and 90th percentile after warm-up, CUDA-synchronised."""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Hashable, List

import numpy as np
import torch


@dataclass(frozen=True)
class TimingStats:
    """Summary of ``n`` timed calls in milliseconds (p90: linear-interpolated 90th percentile)."""

    median_ms: float
    p90_ms: float
    mean_ms: float
    n: int

    def as_dict(self) -> Dict[str, float]:
        return asdict(self)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work so a timer brackets the computation, not its launch."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize_ms(times_ms: List[float]) -> TimingStats:
    """Median / p90 / mean of per-call times in milliseconds."""
    if not times_ms:
        raise ValueError("no timed calls to summarize (iters must be >= 1)")
    return TimingStats(
        median_ms=float(statistics.median(times_ms)),
        p90_ms=float(np.percentile(times_ms, 90)),
        mean_ms=float(statistics.fmean(times_ms)),
        n=len(times_ms),
    )


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, iters: int) -> TimingStats:
    """Call ``fn`` ``warmup`` times untimed, then ``iters`` times, each bracketed by synchronisation."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    for _ in range(max(0, warmup)):
        fn()
    times = []
    for _ in range(iters):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - t0) * 1000.0)
    return summarize_ms(times)


def time_calls_interleaved(fns: Dict[Hashable, Callable[[], object]], device: torch.device, warmup: int,
                           iters: int) -> Dict[Hashable, TimingStats]:
    """:func:`time_calls` of several callables taking turns, so drifting machine load (shared CPUs)
    biases none of them."""
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    times: Dict[Hashable, List[float]] = {k: [] for k in fns}
    for it in range(warmup + iters):
        for key, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            if it >= warmup:
                times[key].append((time.perf_counter() - t0) * 1000.0)
    return {k: summarize_ms(v) for k, v in times.items()}
