"""Loading a checkpoint into a model, and the lines that say which config and device run it.

:func:`load_weights` refuses weights that leave part of the model unloaded (fvcore only warns, and
the model would predict with random weights); :func:`describe_config` and :func:`describe_device`
are the words of its messages and of the tools' ``device:`` line.
"""
from __future__ import annotations

import logging
import os
from typing import Dict, List, Optional, Sequence

import torch

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.config import CfgNode

from ..errors import UserError
from ..model_zoo import resolve_weights

logger = logging.getLogger(__name__)


def describe_device(device: str) -> str:
    """One line saying which device runs the model, e.g. ``cuda:0 (NVIDIA H100, 79.2 GiB)``."""
    dev = torch.device(device)
    if dev.type == "cuda":
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return f"cuda:{index} ({props.name}, {props.total_memory / 2**30:.1f} GiB, torch {torch.__version__})"
    return f"{dev.type} ({torch.get_num_threads()} threads, torch {torch.__version__}; no GPU used)"


class _ReportingCheckpointer(DetectionCheckpointer):
    """A DetectionCheckpointer that keeps what ``_load_model`` found (missing, unexpected and
    mis-shaped keys) for :func:`load_weights` to judge, instead of logging fvcore's long key lists."""

    incompatible = None

    def _load_model(self, checkpoint):
        self.incompatible = super()._load_model(checkpoint)
        return self.incompatible

    def _log_incompatible_keys(self, incompatible) -> None:
        pass  # load_weights reports them in one line (an error or a warning)


def _examples(names: Sequence[str], count: int = 3) -> str:
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def describe_config(cfg: CfgNode, config_name: Optional[str] = None) -> str:
    """``config_name`` (when known) and the architecture it builds, e.g. ``config maskrcnn_tiny (NucleiRCNN,
    build_resnet_fpn_backbone)``, for messages about weights that do not fit it."""
    arch = f"{cfg.MODEL.META_ARCHITECTURE}, {cfg.MODEL.BACKBONE.NAME}"
    return f"config {config_name} ({arch})" if config_name else f"the config ({arch})"


def load_weights(model: torch.nn.Module, weights: str, config: str = "the config") -> None:
    """Load ``weights`` (a local checkpoint or a URL Detectron2 can fetch) into ``model``, built from
    ``config`` (its description in messages, e.g. from :func:`describe_config`).

    Raises :class:`UserError` when no weights are given, the file does not exist or cannot be read,
    or it leaves any of the model's weights (parameters and persistent buffers such as BatchNorm
    statistics) unloaded -- missing, or of another shape: fvcore only warns, and the model would
    predict with random weights. Checkpoint entries the model does not use (e.g. the deep-supervision
    heads of a training config) are only logged: the model itself is complete.
    """
    if not weights:
        raise UserError(
            "no model weights: set MODEL.WEIGHTS or give a weights file (e.g. OUTPUT_DIR/model_final.pth or "
            "model_best.pth, written by training)"
        )
    weights = resolve_weights(weights)
    if "://" not in weights and not os.path.isfile(weights):
        raise UserError(f"weights file {weights} does not exist")
    checkpointer = _ReportingCheckpointer(model)
    try:
        checkpointer.load(weights)
    except Exception as e:  # noqa: BLE001  (IO/pickle/download errors come in many types)
        raise UserError(f"cannot load weights {weights}: {type(e).__name__}: {e}") from None
    incompatible = checkpointer.incompatible
    if incompatible is None:
        return
    state = model.state_dict(keep_vars=True)
    # A tensor registered under two names is loaded when either name is in the checkpoint.
    aliases: Dict[int, List[str]] = {}
    for name, tensor in state.items():
        aliases.setdefault(id(tensor), []).append(name)
    # fvcore drops mis-shaped entries before loading, so they come back as missing too: count them once.
    mis_shaped = {k: f"{k} (checkpoint {list(ck)}, model {list(md)})" for k, ck, md in incompatible.incorrect_shapes}
    missing_set = set(incompatible.missing_keys)
    missing = [k for k in incompatible.missing_keys if k in state and k not in mis_shaped
               and all(a in missing_set for a in aliases[id(state[k])])]
    # BatchNorm's num_batches_tracked is never missing (torch fills it in when a checkpoint lacks it)
    # and is a step counter, not a weight: it is left out of the count.
    not_loaded = list(mis_shaped.values()) + missing
    if not_loaded:
        total = sum(1 for k in state if not k.endswith("num_batches_tracked"))
        saved_cfg = os.path.join(os.path.dirname(weights), "config.yaml") if "://" not in weights else ""
        hint = (f"; {saved_cfg} (saved by tools/train_net.py next to it) is the config it was trained with"
                if saved_cfg and os.path.isfile(saved_cfg) else "; pass the config the checkpoint was trained with")
        what = " or have another shape" if mis_shaped else ""
        raise UserError(
            f"weights {weights} do not fit {config}: {len(not_loaded)} of the model's {total} weights are "
            f"not in the checkpoint{what} (e.g. {_examples(not_loaded)}){hint}"
        )
    if incompatible.unexpected_keys:
        logger.warning("weights %s: %d checkpoint entries are not used by %s (e.g. %s); "
                       "the model's own weights are all loaded", weights, len(incompatible.unexpected_keys), config,
                       _examples(list(incompatible.unexpected_keys)))
