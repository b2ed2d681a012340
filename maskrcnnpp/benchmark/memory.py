"""Peak memory of a block of work: CUDA allocator peak on GPU, peak resident set size on CPU.

On CPU the kernel's high-water mark (``VmHWM``) is reset by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0), so each block gets its own peak. Where that is not
possible the process-lifetime peak (``getrusage``) is used and :attr:`PeakMemory.method` says so.
"""
from __future__ import annotations

import ctypes
import gc
import resource
import sys
from typing import Optional

import torch

MB = 1024.0 * 1024.0


def _read_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS reflects live data."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def current_rss_mb() -> Optional[float]:
    """Resident set size of this process now, in MiB (None where /proc is absent)."""
    kb = _read_status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def _lifetime_peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak / 1024.0  # bytes on macOS, KiB on Linux


class PeakMemory:
    """Context manager measuring the peak memory used inside the block, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated`` since the block began (tensors alive before it,
    e.g. the weights, are included as they occupy the device). CPU: peak RSS inside the block
    minus ``baseline_rss_mb`` (give the RSS taken before the model was built, so weights count as
    on CUDA) or, if not given, minus the RSS when the block began.
    """

    def __init__(self, device: torch.device, baseline_rss_mb: Optional[float] = None):
        self.device = torch.device(device)
        self.baseline_rss_mb = baseline_rss_mb
        self.peak_mb: Optional[float] = None
        self.method = ""

    def __enter__(self) -> "PeakMemory":
        release_free_memory()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.method = "cuda_max_memory_allocated"
        else:
            now = current_rss_mb() or 0.0
            self._start_rss = now if self.baseline_rss_mb is None else self.baseline_rss_mb
            if _reset_rss_peak() and _read_status_kb("VmHWM") is not None:
                self.method = "rss_peak_increase(VmHWM)"
            else:
                self.method = "rss_peak_increase(process_lifetime_ru_maxrss)"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / MB
        else:
            hwm = _read_status_kb("VmHWM") if "VmHWM" in self.method else None
            peak = hwm / 1024.0 if hwm is not None else _lifetime_peak_rss_mb()
            self.peak_mb = max(0.0, peak - self._start_rss)
