"""Build a frozen config from a config name/path and command-line overrides, with clear errors."""
from __future__ import annotations

import os
from typing import Sequence

from detectron2.config import CfgNode

from ..config import get_maskrcnnpp_cfg, resolve_config_path
from .cli import UserError


def setup_cfg(config: str, opts: Sequence[str] = (), device: str | None = None) -> CfgNode:
    """Load ``config`` (a path or a bare name in ``configs/``), apply ``opts``; pick the device.

    ``device=None`` keeps MODEL.DEVICE unless it asks for CUDA on a machine without it, in which
    case it falls back to CPU (and says so in the log).
    """
    import torch

    try:
        path = resolve_config_path(config)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    if len(opts) % 2:
        raise UserError(f"config overrides come as KEY VALUE pairs; got {len(opts)} items: {list(opts)}")
    cfg = get_maskrcnnpp_cfg()
    try:
        cfg.merge_from_file(path)
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError) as e:  # yacs: KeyError from files, AssertionError from overrides
        raise UserError(f"{e.args[0] if e.args else e} (in {path} or the command-line overrides); "
                        "see maskrcnnpp/config.py and Detectron2's defaults for the valid keys") from None
    except ValueError as e:
        raise UserError(f"bad override in {list(opts)}: {e}") from None
    if device is not None:
        cfg.MODEL.DEVICE = device
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        if device is not None:
            raise UserError(f"--device {device} was asked for but torch.cuda.is_available() is False on this machine")
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def offline_variant(config: str) -> str:
    """The from-scratch config to suggest when ``config``'s ImageNet weights cannot be downloaded."""
    try:
        path = resolve_config_path(config)
    except FileNotFoundError:
        path = config
    stem = os.path.splitext(os.path.basename(path))[0]
    candidate = os.path.join(os.path.dirname(path), f"{stem}_scratch.yaml")
    if os.path.isfile(candidate):
        return os.path.basename(candidate)
    return "a *_scratch.yaml config (GroupNorm, from scratch)"
