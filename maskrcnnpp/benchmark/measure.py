"""The individual measurements: parameters, latency, throughput, training step, data loader speed.

Every function takes an already-built Detectron2 model (Mask R-CNN family or ``SemanticUNet``)
and mapped inputs; timings are wall-clock, CUDA-synchronised, taken after warm-up.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import time
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from detectron2.layers import FrozenBatchNorm2d
from detectron2.structures import ImageList
from detectron2.utils.events import EventStorage

from .timing import TimingStats, time_calls

logger = logging.getLogger(__name__)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (trainable or not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_parameters_used(model: nn.Module, inputs: List[Dict]) -> int:
    """Parameters of the modules that actually run in one inference (pruned UNet++ runs fewer)."""
    from .pruning import count_parameters_run, record_executed_modules

    was_training = model.training
    model.eval()
    try:
        with record_executed_modules(model) as executed:
            model(inputs)
    finally:
        model.train(was_training)
    return count_parameters_run(executed)


def batch_norm_layers(model: nn.Module) -> List[nn.Module]:
    """BatchNorm layers that normalise with stored statistics at inference (frozen or BN)."""
    return [m for m in model.modules() if isinstance(m, (FrozenBatchNorm2d, nn.modules.batchnorm._BatchNorm))]


@torch.no_grad()
def calibrate_batch_norm(model: nn.Module, inputs: List[Dict]) -> int:
    """Give every BatchNorm layer the mean/variance of its input on ``inputs``; return how many.

    Randomly initialised deep ResNets with stored statistics of 0/1 (FrozenBN of the
    ImageNet-pretrained configs, BN in eval mode) are not normalised at all: activations grow
    through R-101's 33 blocks until boxes and scores are Inf/NaN, and an untrained Mask R-CNN
    then keeps no detections. Setting the statistics layer by layer in one forward pass (each
    layer sees its already-normalised predecessors) keeps activations at unit scale, as trained
    weights would; the arithmetic, and so the cost, is unchanged.
    """
    layers = batch_norm_layers(model)

    def set_statistics(module, args):
        x = args[0].float()
        dims = [0] + list(range(2, x.dim()))
        module.running_mean.copy_(x.mean(dims))
        module.running_var.copy_(x.var(dims, unbiased=False))

    was_training = model.training
    model.eval()
    handles = [m.register_forward_pre_hook(set_statistics) for m in layers]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return len(layers)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision context: float16 on CUDA, bfloat16 on CPU; a no-op when not ``enabled``."""
    if not enabled:
        return contextlib.nullcontext()
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def inference_call(model: nn.Module, inputs: List[Dict], amp: bool) -> Callable[[], object]:
    """Zero-argument callable running one end-to-end inference (pre/post-processing included)."""
    device = model_device(model)

    @torch.no_grad()
    def run():
        with autocast(device, amp):
            return model(inputs)

    return run


def network_call(model: nn.Module, inputs: List[Dict], amp: bool) -> Callable[[], object]:
    """Zero-argument callable running only the dense network on an already-normalised batch.

    Mask R-CNN family: ``backbone`` (ResNet + FPN or UNet++ pyramid). ``SemanticUNet``: encoder +
    decoder heads of its inference mode (``predict_probabilities``). This is the part in which
    the compared models differ; the heads, NMS and mask pasting (Mask R-CNN) or the watershed
    (U-Nets) are excluded.
    """
    device = model_device(model)
    if hasattr(model, "predict_probabilities"):
        images = [(x["image"].to(device).float() - model.pixel_mean) / model.pixel_std for x in inputs]
        batch = ImageList.from_tensors(images, model.size_divisibility).tensor

        def forward():
            return model.predict_probabilities(batch, model.inference_mode)
    else:
        with torch.no_grad():
            batch = model.preprocess_image(inputs).tensor

        def forward():
            return model.backbone(batch)

    @torch.no_grad()
    def run():
        with autocast(device, amp):
            return forward()

    return run


def count_detections(outputs: List[Dict]) -> int:
    """Instances returned for a batch (the ROI heads' cost grows with it)."""
    return sum(len(o["instances"]) for o in outputs if "instances" in o)


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def measure_throughput(
    model: nn.Module,
    make_inputs: Callable[[int], List[Dict]],
    amp: bool,
    max_batch: int,
    iters: int,
) -> Dict[str, object]:
    """Images/s of batched inference, doubling the batch from 1 until ``max_batch`` or out of memory.

    Returns the best images/s, the batch size that gave it, and every batch size tried with
    its images/s (a batch that ran out of memory is listed with ``None``).
    """
    device = model_device(model)
    tried: List[Dict[str, Optional[float]]] = []
    batch = 1
    while batch <= max_batch:
        try:
            stats = time_calls(inference_call(model, make_inputs(batch), amp), device, warmup=1, iters=iters)
        except RuntimeError as e:
            if not is_out_of_memory(e):
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            tried.append({"batch": batch, "images_per_s": None})
            break
        tried.append({"batch": batch, "images_per_s": batch / (stats.median_ms / 1000.0)})
        batch *= 2
    done = [t for t in tried if t["images_per_s"] is not None]
    if not done:
        raise RuntimeError(f"inference of one image ran out of memory on {device}")
    best = max(done, key=lambda t: t["images_per_s"])
    return {"images_per_s": best["images_per_s"], "batch": best["batch"], "tried": tried}


def train_step_call(model: nn.Module, batch: List[Dict], amp: bool) -> Callable[[], None]:
    """Zero-argument callable doing one SGD iteration (forward, losses, backward, step) on ``batch``.

    The learning rate is tiny so repeated steps on one batch stay finite; the cost is that of a
    real iteration. With ``amp`` on CUDA a GradScaler is used, as in Detectron2's AMPTrainer.
    """
    device = model_device(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-6, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda") if amp and device.type == "cuda" else None

    def step():
        with autocast(device, amp):
            losses = model(batch)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

    return step


def measure_train_step(model: nn.Module, batch: List[Dict], amp: bool, warmup: int, iters: int) -> TimingStats:
    """Time per training iteration on ``batch`` (model left in eval mode, gradients freed afterwards)."""
    model.train()
    try:
        with EventStorage(0):  # Detectron2's losses log to the current storage
            return time_calls(train_step_call(model, batch, amp), model_device(model), warmup=warmup, iters=iters)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def measure_loader(loader, batches: int, warmup: int = 1) -> Dict[str, float]:
    """Images/s delivered by a training data loader alone, over ``batches`` batches after ``warmup``.

    With N workers, give ``warmup >= N``: the workers start together, so when the first batch
    arrives the other N-1 are nearly done, and timing from there would count them almost free.
    """
    it = iter(loader)
    for _ in range(warmup):
        next(it)
    t0 = time.perf_counter()
    images = sum(len(b) for b in itertools.islice(it, batches))
    elapsed = time.perf_counter() - t0
    return {"images_per_s": images / elapsed, "images": images, "seconds": elapsed}
