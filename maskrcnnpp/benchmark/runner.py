"""Benchmark several configs side by side: one row per (config[, inference mode], image size).

Each row holds parameters, FLOPs, network and end-to-end inference latency, batched
throughput, training time per iteration, peak memory and data-loader speed, plus every
figure's ratio to the first config's row at the same size. :func:`run_benchmark` returns the
JSON-ready report; :func:`report_markdown` renders it as a table.
"""
from __future__ import annotations

import datetime
import logging
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from ..config import setup_cfg
from ..errors import UserError
from ..model_zoo import resolve_weights
from .flops import count_flops
from .inputs import SyntheticBatches, is_semantic
from .measure import (
    calibrate_batch_norm,
    count_detections,
    count_parameters,
    count_parameters_used,
    inference_call,
    measure_loader,
    measure_throughput,
    measure_train_step,
    network_call,
)
from .memory import PeakMemory, current_rss_mb, release_free_memory
from .timing import time_calls

logger = logging.getLogger(__name__)

MODE_KEY = "MODEL.SEMANTIC_UNET.INFERENCE_MODE"
# Figures compared to the first config's row at the same size ("x1.12" = 12% more).
RATIO_FIELDS = (
    "params", "params_used", "gflops", "network_ms", "latency_median_ms", "latency_p90_ms",
    "throughput_images_per_s", "infer_peak_mb", "train_iter_ms", "train_peak_mb",
)
ROW_FIELDS = (
    "label", "config", "mode", "size", "device", "amp", "channels_last",
    "weights", "params", "params_used", "gflops", "gflops_by_module", "gflops_by_submodule", "flops_uncounted_ops", "detections",
    "network_ms", "latency_median_ms", "latency_p90_ms", "latency_iters",
    "throughput_images_per_s", "throughput_batch", "throughput_tried", "infer_peak_mb", "memory_method",
    "train_iter_ms", "train_iter_p90_ms", "train_images_per_s", "train_batch", "train_peak_mb", "train_measured_on",
    "loader_images_per_s", "loader_dataset", "loader_workers", "loader_error", "loader_vs_train", "ratios",
)


@dataclass
class Target:
    """One model to measure: a config (name or path), extra overrides, an optional inference mode."""

    config: str
    opts: List[str] = field(default_factory=list)
    mode: Optional[str] = None

    @property
    def name(self) -> str:
        return os.path.splitext(os.path.basename(self.config))[0]

    @property
    def label(self) -> str:
        return f"{self.name}[{self.mode}]" if self.mode else self.name

    def all_opts(self) -> List[str]:
        return list(self.opts) + ([MODE_KEY, self.mode] if self.mode else [])


@dataclass
class Settings:
    """How to measure (see ``tools/benchmark.py --help`` for each)."""

    device: str = "cpu"
    sizes: Sequence[int] = (512,)
    amp: bool = False
    channels_last: bool = False
    iters: int = 5
    warmup: int = 2
    max_batch: Optional[int] = None  # None: 2 on CPU, 64 on CUDA
    train_batch: int = 2
    train_iters: Optional[int] = None  # None: same as iters
    loader_batches: int = 10
    loader_dataset: Optional[str] = None  # None: the config's DATASETS.TRAIN
    load_weights: bool = False  # load MODEL.WEIGHTS instead of random weights + BatchNorm calibration
    flops: bool = True
    throughput: bool = True
    train: bool = True
    loader: bool = True

    def resolved_max_batch(self) -> int:
        if self.max_batch is not None:
            return self.max_batch
        return 64 if self.device.startswith("cuda") else 2


def expand_targets(configs: Sequence[str], semantic_modes: Sequence[str], opts: Sequence[str]):
    """Targets for ``configs``; semantic configs get one target per requested inference mode.

    ``semantic_modes`` may hold "auto" (every mode the model offers: ensemble and L1..L4 for
    UNet++, "final" for U-Net). A requested mode that a config's decoder lacks is skipped and
    returned in the second list with the decoder's reason, never dropped silently.
    """
    from .pruning import available_modes

    names: Dict[str, str] = {}
    for config in configs:  # rows, ratios and plots name models by config file name: it must be unique
        name = Target(config).name
        if name in names:
            raise UserError(f"configs {names[name]} and {config} are both named {name!r}: rows would be "
                            "indistinguishable; give each config its own file name")
        names[name] = config
    targets: List[Target] = []
    skipped: List[Dict[str, str]] = []
    for config in configs:
        cfg = setup_cfg(config, list(opts), device="cpu")
        if not semantic_modes or not is_semantic(cfg):
            targets.append(Target(config, list(opts)))
            continue
        model = build_model(cfg)
        wanted = available_modes(model) if "auto" in semantic_modes else list(semantic_modes)
        for mode in wanted:
            try:
                model.decoder.heads_for_mode(mode)
            except ValueError as e:
                logger.warning("skipping inference mode %s of %s: %s", mode, config, e)
                skipped.append({"config": config, "mode": mode, "reason": str(e)})
                continue
            targets.append(Target(config, list(opts), mode))
        del model
    return targets, skipped


def _cfg_for(target: Target, settings: Settings) -> CfgNode:
    opts = target.all_opts()
    if settings.channels_last:
        probe = setup_cfg(target.config, opts, device="cpu")
        if "UNETPP_FPN" in probe.MODEL and probe.MODEL.META_ARCHITECTURE == "MaskRCNNPlusPlus":
            opts += ["MODEL.UNETPP_FPN.CHANNELS_LAST", "True"]
    return setup_cfg(target.config, opts, device=settings.device)


def _loader_figures(cfg: CfgNode, settings: Settings) -> Dict[str, object]:
    """Images/s of the trainer's own training loader for ``cfg`` (or ``settings.loader_dataset``)."""
    from .. import data as data_pkg
    from ..engine import NucleiTrainer

    cfg = cfg.clone()
    cfg.defrost()
    if settings.loader_dataset:
        cfg.DATASETS.TRAIN = (settings.loader_dataset,)
    cfg.freeze()
    out = {"loader_dataset": ",".join(cfg.DATASETS.TRAIN), "loader_workers": cfg.DATALOADER.NUM_WORKERS,
           "loader_images_per_s": None, "loader_error": None}
    try:
        if hasattr(data_pkg, "setup_datasets"):
            data_pkg.setup_datasets(cfg)
        loader = NucleiTrainer.build_train_loader(cfg)
        warmup = max(1, cfg.DATALOADER.NUM_WORKERS)  # one batch per worker, see measure_loader
        out["loader_images_per_s"] = measure_loader(loader, settings.loader_batches, warmup)["images_per_s"]
    except (FileNotFoundError, KeyError, ValueError) as e:  # dataset not prepared / not registered
        message = str(e).splitlines()[0] if str(e) else ""
        out["loader_error"] = f"{type(e).__name__}: {message[:300]}"
        logger.warning("data loader of %s not measured: %s", out["loader_dataset"], out["loader_error"])
    return out


def measure_target(target: Target, settings: Settings, shared_train: Optional[Dict[int, Dict]] = None) -> List[Dict]:
    """Rows (one per size) for one target. ``shared_train`` (size -> train figures) is reused
    instead of measuring training again, for inference modes of one already-trained config."""
    cfg = _cfg_for(target, settings)
    device = torch.device(cfg.MODEL.DEVICE)
    release_free_memory()
    baseline = current_rss_mb()
    model = build_model(cfg).eval()
    if settings.channels_last:
        model.to(memory_format=torch.channels_last)
    if settings.load_weights:
        DetectionCheckpointer(model).load(resolve_weights(cfg.MODEL.WEIGHTS))
        weights = cfg.MODEL.WEIGHTS
    else:
        weights = None  # set by the first size's row, once inputs exist
    params = count_parameters(model)
    params_used = None
    rows = []
    loader = _loader_figures(cfg, settings) if settings.loader and not shared_train else {}
    for size in settings.sizes:
        row: Dict[str, object] = {k: None for k in ROW_FIELDS}
        row.update(label=target.label, config=target.name, mode=target.mode, size=size, device=str(device),
                   amp=settings.amp, channels_last=settings.channels_last, params=params)
        _measure_size(row, model, cfg, target, settings, size, baseline, weights, params_used, shared_train)
        weights, params_used = row["weights"], row["params_used"]  # measured once, on the first size
        row.update(loader)
        if row["loader_images_per_s"] and row["train_images_per_s"]:
            row["loader_vs_train"] = row["loader_images_per_s"] / row["train_images_per_s"]
        logger.info("%s @%d: latency %.1f ms (p90 %.1f), network %.1f ms", target.label, size,
                    row["latency_median_ms"], row["latency_p90_ms"], row["network_ms"])
        rows.append(row)
    del model
    release_free_memory()
    return rows


def _measure_size(row: Dict[str, object], model: torch.nn.Module, cfg: CfgNode, target: Target, settings: Settings,
                  size: int, baseline: Optional[float], weights: Optional[str], params_used: Optional[int],
                  shared_train: Optional[Dict[int, Dict]]) -> None:
    """Fill ``row`` with ``model``'s figures on synthetic ``size``-pixel inputs: weights, parameters
    used, FLOPs, latency, memory, throughput and training (or ``shared_train``'s for this size).

    ``weights`` None (random weights) calibrates BatchNorm on this size's image and names that;
    ``params_used`` None counts them on this size's image."""
    device = torch.device(cfg.MODEL.DEVICE)
    with SyntheticBatches(cfg, size, pool=max(2, settings.train_batch)) as data:
        inputs = data.inference(1)
        if weights is None:
            weights = f"random, {calibrate_batch_norm(model, inputs)} BatchNorm layers calibrated on a {size}px image"
        row["weights"] = weights
        if params_used is None:
            params_used = count_parameters_used(model, inputs)
        row["params_used"] = params_used
        if settings.flops:
            report = count_flops(model, inputs)
            row.update(gflops=report.gflops, gflops_by_module=report.by_module,
                       gflops_by_submodule=report.by_submodule, flops_uncounted_ops=report.uncounted_ops)
        row["network_ms"] = time_calls(network_call(model, inputs, settings.amp), device, settings.warmup, settings.iters).median_ms
        run = inference_call(model, inputs, settings.amp)
        with PeakMemory(device, baseline) as mem:
            stats = time_calls(run, device, settings.warmup, settings.iters)
            row["detections"] = count_detections(run())
        row.update(latency_median_ms=stats.median_ms, latency_p90_ms=stats.p90_ms, latency_iters=stats.n,
                   infer_peak_mb=mem.peak_mb, memory_method=mem.method)
        if settings.throughput:
            thr = measure_throughput(model, data.inference, settings.amp, settings.resolved_max_batch(),
                                     iters=max(1, min(settings.iters, 3)))
            row.update(throughput_images_per_s=thr["images_per_s"], throughput_batch=thr["batch"],
                       throughput_tried=thr["tried"])
        if shared_train is not None and size in shared_train:
            row.update(shared_train[size])
        elif settings.train:
            batch = data.training(settings.train_batch)
            with PeakMemory(device, baseline) as mem:
                tstats = measure_train_step(model, batch, settings.amp, warmup=1, iters=settings.train_iters or settings.iters)
            row.update(train_iter_ms=tstats.median_ms, train_iter_p90_ms=tstats.p90_ms,
                       train_images_per_s=settings.train_batch / (tstats.median_ms / 1000.0),
                       train_batch=settings.train_batch, train_peak_mb=mem.peak_mb, train_measured_on=target.label)
            del batch

TRAIN_KEYS = ("train_iter_ms", "train_iter_p90_ms", "train_images_per_s", "train_batch", "train_peak_mb",
              "train_measured_on", "loader_images_per_s", "loader_dataset", "loader_workers", "loader_error")


def add_ratios(rows: List[Dict]) -> None:
    """Set each row's ``ratios``: every :data:`RATIO_FIELDS` figure over the first target's, same size."""
    first_label = rows[0]["label"] if rows else None
    reference: Dict[int, Dict] = {}
    for r in rows:
        if r["label"] == first_label:
            reference.setdefault(r["size"], r)
    for r in rows:
        ref = reference.get(r["size"])
        r["ratios"] = {
            k: (r[k] / ref[k] if ref is not None and r.get(k) is not None and ref.get(k) else None) for k in RATIO_FIELDS
        }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> Dict[str, object]:
    """Where the figures were taken: CPU model and cores, GPU, library versions, load average."""
    import detectron2

    env = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(), "cpu_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "detectron2": detectron2.__version__, "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None,
    }
    if hasattr(os, "getloadavg"):
        env["load_average_start"] = list(os.getloadavg())
    return env


def warm_up_process(target: Target, settings: Settings) -> None:
    """One untimed inference (and training step) of ``target`` at the smallest size, before any
    figure: the process's one-time costs (allocator arenas, oneDNN and autograd set-up) would
    otherwise be charged to the first config's CPU peak memory, biasing every ratio."""
    cfg = _cfg_for(target, settings)
    model = build_model(cfg).eval()
    with SyntheticBatches(cfg, min(settings.sizes), pool=max(2, settings.train_batch)) as data:
        inputs = data.inference(1)
        calibrate_batch_norm(model, inputs)
        inference_call(model, inputs, settings.amp)()
        if settings.train:
            measure_train_step(model, data.training(settings.train_batch), settings.amp, warmup=0, iters=1)
    del model
    release_free_memory()


def run_benchmark(targets: Sequence[Target], settings: Settings, skipped: Sequence[Dict] = (),
                  progress: Optional[Callable[[Dict], None]] = None) -> Dict:
    """Measure every target at every size; return ``{"environment", "settings", "rows", "skipped", "notes",
    "complete"}``. ``progress`` gets the report so far (``complete`` False) after each target, so
    a run stopped part-way (e.g. at a time limit) keeps what it measured."""
    if not targets:
        raise UserError("no configs to benchmark")
    env = environment(settings.device)
    if settings.device == "cpu":
        warm_up_process(targets[0], settings)
    rows: List[Dict] = []
    trained: Dict[str, Dict[int, Dict]] = {}
    for k, target in enumerate(targets):
        shared = trained.get(target.config) if target.mode else None
        target_rows = measure_target(target, settings, shared_train=shared)
        if target.mode and target.config not in trained:
            trained[target.config] = {r["size"]: {k: r[k] for k in TRAIN_KEYS} for r in target_rows}
        rows.extend(target_rows)
        add_ratios(rows)
        if progress is not None and k + 1 < len(targets):
            progress(_report(env, settings, rows, skipped, complete=False))
    if hasattr(os, "getloadavg"):
        env["load_average_end"] = list(os.getloadavg())
    return _report(env, settings, rows, skipped, complete=True)


def _report(env: Dict, settings: Settings, rows: List[Dict], skipped: Sequence[Dict], complete: bool) -> Dict:
    return {
        "environment": env,
        "settings": asdict(settings),
        "complete": complete,
        "rows": rows,
        "skipped": list(skipped),
        "notes": {
            "flops": "fvcore counts one multiply-add as one flop (so GFLOPs here are GMACs); element-wise "
                     "ops, NMS and ROIAlign are not counted (listed in flops_uncounted_ops)",
            "weights": "unless weights are loaded (load_weights), models have random weights (MODEL.WEIGHTS not loaded) and every "
                       "BatchNorm/FrozenBN layer gets its input's statistics from one forward pass, so activations stay "
                       "finite as with trained weights; the heads' cost depends on the number of detections "
                       "(column 'detections', capped by TEST.DETECTIONS_PER_IMAGE)",
            "memory": "CUDA: torch.cuda.max_memory_allocated; CPU: peak RSS increase over the RSS before the model "
                      "was built (weights included), after one untimed warm-up pass of the first config so the "
                      "process's one-time costs are charged to none (method per row: memory_method)",
            "network_ms": "dense network only: backbone + pyramid (Mask R-CNN family) or encoder + decoder heads of "
                          "the inference mode (U-Nets)",
            "train": "one SGD iteration (forward, losses, backward, step) on a fixed synthetic batch at the row's size",
        },
    }
