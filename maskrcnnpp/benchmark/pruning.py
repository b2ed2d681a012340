"""Cost of each inference mode of a SemanticUNet: parameters used, FLOPs, latency.

``tools/benchmark_pruning.py`` prints :func:`compare_pruned_levels` of several configs (U-Net vs
UNet++: ensemble and pruned L1..L4); :func:`measure_pruned_levels` is its one-config form.
``tools/benchmark.py`` counts the parameters used per mode with the same
:func:`count_parameters_run` (through ``measure.count_parameters_used``).
Only the network is measured (normalised input -> probabilities), not post-processing.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from detectron2.modeling import build_model

from ..modeling.semantic.decoders import INFERENCE_MODES, node_name
from .timing import time_calls_interleaved


@contextmanager
def record_executed_modules(model: nn.Module) -> Iterator[List[nn.Module]]:
    """Collect, in call order, every module that owns parameters and runs inside the block."""
    executed: List[nn.Module] = []
    handles = [
        m.register_forward_hook(lambda mod, inp, out: executed.append(mod))
        for m in model.modules()
        if any(True for _ in m.parameters(recurse=False))
    ]
    try:
        yield executed
    finally:
        for h in handles:
            h.remove()


def count_parameters_run(executed: Iterable[nn.Module]) -> int:
    """Parameters owned by the modules in ``executed`` (:func:`record_executed_modules`), each module once."""
    used = {id(m): m for m in executed}.values()
    return sum(p.numel() for m in used for p in m.parameters(recurse=False))


def available_modes(model) -> List[str]:
    """Inference modes worth reporting: "ensemble" when there are several heads, then L1..L4 when
    the decoder can be pruned, else "final" (the single deepest head)."""
    decoder = model.decoder
    modes = ["ensemble"] if len(decoder.head_names) > 1 else []
    pruned = [m for m in INFERENCE_MODES if m.startswith("L") and node_name(0, int(m[1:])) in decoder.heads]
    return modes + (pruned if len(pruned) > 1 else ["final"])


class _NetworkInMode(nn.Module):
    def __init__(self, model: nn.Module, mode: str):
        super().__init__()
        self.model, self.mode = model, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.predict_probabilities(x, self.mode)


@torch.no_grad()
def measure_pruned_levels(
    cfg,
    size: int = 256,
    device: Optional[str] = None,
    modes: Optional[Sequence[str]] = None,
    warmup: int = 1,
    repeats: int = 5,
    model: Optional[nn.Module] = None,
) -> List[Dict[str, object]]:
    """Per inference mode: parameters (total and used), GMACs, conv layers run, median latency (ms).

    Builds the model from ``cfg`` with random weights (``MODEL.WEIGHTS`` is not loaded; weights
    do not change cost) unless ``model`` is given, and runs one ``size`` x ``size`` image.
    ``gmacs`` is fvcore's count, which counts one multiply-add as one flop.
    """
    models = None if model is None else {"": model}
    return compare_pruned_levels({"": cfg}, size, device or cfg.MODEL.DEVICE, repeats, warmup=warmup, modes=modes,
                                 models=models)[""]


def _eval_model(cfg, device: torch.device, model: Optional[nn.Module] = None) -> nn.Module:
    if model is None:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE = str(device)
        model = build_model(cfg)
    return model.to(device).eval()


@torch.no_grad()
def static_costs(model: nn.Module, x: torch.Tensor, modes: Optional[Sequence[str]] = None) -> List[Dict[str, object]]:
    """Per mode: total and used parameters, fvcore GMACs and conv layers run on input ``x``."""
    total = sum(p.numel() for p in model.parameters())
    rows = []
    for mode in modes or available_modes(model):
        with record_executed_modules(model) as executed:
            model.predict_probabilities(x, mode)
        flops = FlopCountAnalysis(_NetworkInMode(model, mode), (x,))
        flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        rows.append(
            {
                "mode": mode,
                "params_total": total,
                "params_used": count_parameters_run(executed),
                "gmacs": flops.total() / 1e9,
                "convs_run": sum(isinstance(m, nn.Conv2d) for m in executed),
            }
        )
    return rows


def format_rows(name: str, rows: List[Dict[str, object]]) -> str:
    """A plain-text table of :func:`measure_pruned_levels` rows."""
    lines = [f"{'model':<22}{'mode':<10}{'params used (M)':>16}{'GMACs':>9}{'convs':>7}{'latency ms':>12}"]
    for r in rows:
        lines.append(
            f"{name:<22}{r['mode']:<10}{r['params_used'] / 1e6:>16.2f}{r['gmacs']:>9.2f}"
            f"{r['convs_run']:>7}{r['latency_ms']:>12.1f}"
        )
    return "\n".join(lines)


@torch.no_grad()
def compare_pruned_levels(cfgs: Dict[str, object], size: int, device: str, repeats: int = 5, *, warmup: int = 1,
                          modes: Optional[Sequence[str]] = None,
                          models: Optional[Dict[str, nn.Module]] = None) -> Dict[str, List[Dict[str, object]]]:
    """:func:`measure_pruned_levels` rows of several configs (by name), every (model, mode) timed in
    turn so load drift on a shared machine favours none.

    ``modes``: the inference modes of every config (default: :func:`available_modes`); ``models``:
    already-built models by config name (the others are built with random weights).
    """
    dev = torch.device(device)
    tables, runs = {}, {}
    for name, cfg in cfgs.items():
        model = _eval_model(cfg, dev, (models or {}).get(name))
        x = torch.randn(1, len(cfg.MODEL.PIXEL_MEAN), size, size, device=dev)
        tables[name] = static_costs(model, x, modes)
        for r in tables[name]:
            runs[(name, r["mode"])] = lambda model=model, x=x, m=r["mode"]: model.predict_probabilities(x, m)
    latency = time_calls_interleaved(runs, dev, warmup=warmup, iters=repeats)
    for name, rows in tables.items():
        for r in rows:
            r["latency_ms"] = latency[(name, r["mode"])].median_ms
    return tables
