"""Compatibility measures that let Detectron2 v0.6's pure-Python package run on today's stack.

The package index's ``pb1-detectron2==0.6`` is upstream Detectron2 v0.6 without the compiled
``detectron2._C``. Each measure below covers one named gap, is applied only when that gap is
actually present, and is tested in ``tests/test_compat.py`` by showing what breaks without it.
Nothing else in Detectron2 is edited or patched. When upstream Detectron2 built from source (with
``_C``) is importable, :func:`apply` does nothing for ``_C``; the other measures are then also
no-ops unless the installed Pillow/NumPy/setuptools really lack the old names, or the installed
torch really warns about ``torch.jit.script`` when fvcore and Detectron2 call it at import.

Must run before the first ``import detectron2...``; ``import maskrcnnpp`` does it.
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import random
import re
import sys
import types
import warnings
from typing import List

APPLIED: List[str] = []  # names of the measures applied in this process, for diagnostics


class CompiledOpsUnavailable(RuntimeError):
    """Raised when code asks for an op of Detectron2's compiled extension, which is absent."""


def has_compiled_ops() -> bool:
    """True when Detectron2's compiled extension ``detectron2._C`` can be imported for real."""
    mod = sys.modules.get("detectron2._C")
    if mod is not None:
        return not getattr(mod, "IS_STANDIN", False)
    try:
        return importlib.util.find_spec("detectron2._C") is not None
    except ModuleNotFoundError:  # detectron2 itself missing
        return False


def _standin_compiled_module() -> types.ModuleType:
    """A module for ``detectron2._C`` whose every op raises a clear error when called.

    v0.6 imports ``_C`` at module level in ``layers/deform_conv.py`` (imported by
    ``detectron2.layers``), ``layers/rotated_boxes.py`` and ``evaluation/fast_eval_api.py``, so
    without a module there nothing imports. Mask R-CNN itself needs none of these ops:
    torchvision provides ROIAlign and NMS.
    """
    mod = types.ModuleType("detectron2._C")
    mod.IS_STANDIN = True
    # Build-info queries (utils/collect_env.py, printed by every trainer's default_setup) answer
    # truthfully instead of raising: there is no compiled extension.
    mod.get_compiler_version = lambda: "none (pure-Python Detectron2, detectron2._C not built)"
    mod.get_cuda_version = lambda: "none (detectron2._C not built)"
    mod.has_cuda = lambda: False

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise CompiledOpsUnavailable(
                f"detectron2._C.{name} is not available: this Detectron2 was installed without its "
                "compiled extension (deformable conv, rotated boxes and the fast COCO evaluator need "
                "upstream Detectron2 built from source). Use COCOEvaluator(..., use_fast_impl=False)."
            )

        return unavailable

    mod.__getattr__ = __getattr__  # type: ignore[attr-defined]
    return mod


def _patch_compiled_ops() -> bool:
    if has_compiled_ops():
        return False
    sys.modules["detectron2._C"] = _standin_compiled_module()
    return True


def _patch_pil_linear() -> bool:
    # detectron2/data/transforms/transform.py reads Image.LINEAR as a default argument at import.
    from PIL import Image

    if hasattr(Image, "LINEAR"):
        return False
    Image.LINEAR = Image.BILINEAR  # the same filter under its pre-Pillow-10 name
    return True


def _patch_numpy_aliases() -> bool:
    # np.int / np.float / np.bool were removed in NumPy 1.24; v0.6 uses them in
    # structures/masks.py (polygon masks), evaluation/sem_seg_evaluation.py and data/build.py.
    import numpy as np

    patched = False
    for name, value in (("int", int), ("float", float), ("bool", bool)):
        if name not in np.__dict__:
            setattr(np, name, value)
            patched = True
    return patched


_PKG_RESOURCES_DEPRECATED = r"pkg_resources is deprecated as an API"


def _patch_pkg_resources() -> bool:
    # detectron2/model_zoo/model_zoo.py imports pkg_resources (gone from setuptools >= 81) and
    # uses only resource_filename(). setuptools 80 still has it but warns once, at its first
    # import, that the API is deprecated: that import is this probe's (and Detectron2's then
    # finds it loaded), so every command on such a machine printed the warning about a use that
    # is Detectron2's, not the user's.
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_PKG_RESOURCES_DEPRECATED, category=UserWarning)
            import pkg_resources  # noqa: F401

        return False
    except ImportError:
        pass
    mod = types.ModuleType("pkg_resources")

    def resource_filename(package: str, resource: str) -> str:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"package {package!r} not found")
        return os.path.join(list(spec.submodule_search_locations)[0], resource)

    mod.resource_filename = resource_filename  # type: ignore[attr-defined]
    mod.IS_STANDIN = True  # type: ignore[attr-defined]
    sys.modules["pkg_resources"] = mod
    return True


_JIT_SCRIPT_DEPRECATED = r"`torch\.jit\.script` is deprecated"
# Modules that call torch.jit.script when imported: fvcore's focal loss (via detectron2.layers)
# and Detectron2's box-regression helper.
_SCRIPTING_AT_IMPORT = ("fvcore.nn", "detectron2.modeling.box_regression")


def _import_scripting_modules_quietly() -> bool:
    # torch >= 2.10 warns that torch.jit.script is deprecated: two FutureWarnings on every
    # command, about lines in installed packages nobody here can change. Only that warning, only
    # during those imports, is silenced; the scripted functions work as before.
    pending = [m for m in _SCRIPTING_AT_IMPORT if m not in sys.modules]
    if not pending or importlib.util.find_spec("detectron2") is None:
        return False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in pending:
            importlib.import_module(name)
    silenced = False
    for w in caught:
        if w.category is FutureWarning and re.search(_JIT_SCRIPT_DEPRECATED, str(w.message)):
            silenced = True
        else:  # every other warning of those imports still reaches the user
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return silenced


_MESHGRID_INDEXING = r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing argument"


def _quiet_meshgrid_indexing_warning() -> bool:
    # Detectron2's anchor generator calls torch.meshgrid(shifts_y, shifts_x) without `indexing`,
    # relying on the default "ij" (what the warning says will stay available as indexing="ij"):
    # every train, predict and visualize run printed the UserWarning about that line. Only
    # this warning is filtered, and only when the installed torch emits it.
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.meshgrid(torch.zeros(1), torch.zeros(1))
    if not any(re.search(_MESHGRID_INDEXING, str(w.message)) for w in caught):
        return False
    warnings.filterwarnings("ignore", message=_MESHGRID_INDEXING, category=UserWarning)
    return True


def _patch_map_dataset_fallback() -> bool:
    # detectron2.data.common.MapDataset, when a mapper returns None (skips an image), picks another
    # index with random.sample(<set>): a TypeError since Python 3.11, so any mapper that skips an
    # image crashed training (upstream's own test_map_style). The set is sorted for the draw, as
    # Detectron2 did later; same seeded generator, so the choice stays deterministic.
    if importlib.util.find_spec("detectron2") is None:
        return False
    from detectron2.data.common import MapDataset

    try:
        MapDataset([0, 1], lambda x: None if x == 0 else x)[0]
        return False
    except TypeError:
        pass
    original_init = MapDataset.__init__

    def __init__(self, dataset, map_func):
        original_init(self, dataset, map_func)
        rng = _SetSamplingRandom()
        rng.setstate(self._rng.getstate())  # the same seeded draws as upstream's generator
        self._rng = rng

    MapDataset.__init__ = __init__
    return True


class _SetSamplingRandom(random.Random):
    """random.Random whose ``sample`` also takes a set (sorted first), as it did before Python 3.11."""

    def sample(self, population, k, **kwargs):
        if isinstance(population, (set, frozenset)):
            population = sorted(population)
        return super().sample(population, k, **kwargs)


def _patch_lr_scheduler_hook_state() -> bool:
    # detectron2.engine.hooks.LRScheduler saves and restores the scheduler's state only for
    # torch.optim.lr_scheduler._LRScheduler subclasses; torch's own schedulers derive from
    # LRScheduler since torch 2.0, so --resume restarted their schedule at 0 without a word
    # (upstream's test_checkpoint_resume: 0 != 12). The check is widened to LRScheduler.
    if importlib.util.find_spec("detectron2") is None:
        return False
    import torch
    from detectron2.engine import hooks

    base = getattr(torch.optim.lr_scheduler, "LRScheduler", None)
    probe = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(probe, step_size=1)
    if base is None or hooks.LRScheduler(probe, scheduler).state_dict():
        return False

    def state_dict(self):
        return self.scheduler.state_dict() if isinstance(self.scheduler, base) else {}

    def load_state_dict(self, state_dict):
        if isinstance(self.scheduler, base):
            logging.getLogger("detectron2.engine.hooks").info("Loading scheduler from state_dict ...")
            self.scheduler.load_state_dict(state_dict)

    hooks.LRScheduler.state_dict = state_dict
    hooks.LRScheduler.load_state_dict = load_state_dict
    return True


MEASURES = {
    "detectron2._C": _patch_compiled_ops,
    "PIL.Image.LINEAR": _patch_pil_linear,
    "numpy.int/float/bool": _patch_numpy_aliases,
    "pkg_resources": _patch_pkg_resources,
    "torch.jit.script deprecation warnings": _import_scripting_modules_quietly,
    "torch.meshgrid indexing warning": _quiet_meshgrid_indexing_warning,
    "MapDataset fallback on Python >= 3.11": _patch_map_dataset_fallback,
    "LRScheduler hook state of torch schedulers": _patch_lr_scheduler_hook_state,
}


def apply() -> List[str]:
    """Apply every measure whose gap is present; return the names of those applied now."""
    done = []
    for name, measure in MEASURES.items():
        if name not in APPLIED and measure():
            APPLIED.append(name)
            done.append(name)
    return done
