"""FLOPs of a Detectron2 model on a ``list[dict]`` input, counted by fvcore.

fvcore counts one fused multiply-add as one flop, so the figures are GMACs in the usual sense.
Detectron2's own ``detectron2.utils.analysis.FlopCountAnalysis`` wraps the model in
``detectron2.export.TracingAdapter`` (which flattens ``Instances`` outputs for tracing); on
Detectron2 v0.6 without Caffe2 the ``detectron2.export`` package fails at import (its
``api.py`` imports ``caffe2``), so the adapter module is loaded on its own when that happens.
"""
from __future__ import annotations

import importlib
import os
import sys
import types
from dataclasses import dataclass, field
from typing import Dict, List

import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

_ADAPTER_PACKAGE = "_maskrcnnpp_detectron2_export"


def tracing_adapter_class():
    """Detectron2's ``TracingAdapter``: from ``detectron2.export``, else from its module file alone."""
    try:
        from detectron2.export import TracingAdapter

        return TracingAdapter
    except ModuleNotFoundError as e:
        if "caffe2" not in str(e):
            raise
    import detectron2

    if _ADAPTER_PACKAGE not in sys.modules:
        # A private parent package for export/flatten.py and its relative imports
        # (torchscript_patch), so detectron2.export itself is left untouched.
        pkg = types.ModuleType(_ADAPTER_PACKAGE)
        pkg.__path__ = [os.path.join(os.path.dirname(detectron2.__file__), "export")]
        sys.modules[_ADAPTER_PACKAGE] = pkg
    return importlib.import_module(f"{_ADAPTER_PACKAGE}.flatten").TracingAdapter


@dataclass
class FlopReport:
    """Total GFLOPs (fvcore convention: 1 multiply-add = 1 flop), per top-level child module and
    per second-level module (e.g. ``backbone.bottom_up``, the ResNet under a pyramid), and the
    operators fvcore met but does not count (element-wise ops, NMS, ROIAlign, ...)."""

    gflops: float
    by_module: Dict[str, float] = field(default_factory=dict)
    by_submodule: Dict[str, float] = field(default_factory=dict)
    uncounted_ops: List[str] = field(default_factory=list)


@torch.no_grad()
def count_flops(model: nn.Module, inputs: list) -> FlopReport:
    """Trace one inference of ``model(inputs)`` and count its FLOPs (model left in its mode)."""
    was_training = model.training
    model.eval()
    try:
        adapter = tracing_adapter_class()(model, inputs, allow_non_tensor=True)
        analysis = FlopCountAnalysis(adapter, adapter.flattened_inputs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        total = analysis.total() / 1e9
        per_module = analysis.by_module()
        children = {name: per_module.get(f"model.{name}", 0) / 1e9 for name, _ in model.named_children()}
        grandchildren = {
            f"{name}.{sub}": per_module.get(f"model.{name}.{sub}", 0) / 1e9
            for name, child in model.named_children() for sub, _ in child.named_children()
        }
        uncounted = sorted(analysis.unsupported_ops())
    finally:
        model.train(was_training)
    return FlopReport(
        gflops=total,
        by_module={k: v for k, v in children.items() if v > 0},
        by_submodule={k: v for k, v in grandchildren.items() if v > 0},
        uncounted_ops=uncounted,
    )
