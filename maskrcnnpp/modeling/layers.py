"""Pieces both pyramids/decoders use: config checks that name the key, the upsampling modes, the
conv + norm + ReLU unit of every node H(.)."""
from __future__ import annotations

from typing import Mapping, Sequence

import fvcore.nn.weight_init as weight_init
import torch.nn.functional as F
from detectron2.layers import Conv2d, get_norm

# U(.) of Eq. 1: how a coarser map is brought up to a node's size.
UPSAMPLE_MODES = ("nearest", "bilinear")

# Detectron2's get_norm names that need no extra argument; "GN" is GroupNorm with 32 groups.
NORMS = ("", "BN", "SyncBN", "GN", "FrozenBN", "nnSyncBN", "naiveSyncBN", "naiveSyncBN_N")


def check_norm(prefix: str, norm: str, channels: Mapping[str, Sequence[int]]) -> None:
    """Raise a ValueError naming ``prefix.NORM`` (or the channel keys) when ``norm`` cannot build.

    ``channels`` maps each config key (under ``prefix``) to the channel counts normed with it:
    GroupNorm's 32 groups need multiples of 32.
    """
    if norm not in NORMS:
        raise ValueError(f"{prefix}.NORM={norm!r} is not allowed; choose one of {list(NORMS)}")
    if norm == "GN":
        odd = {k: list(v) for k, v in channels.items() if any(c % 32 for c in v)}
        if odd:
            raise ValueError(f"{prefix}.NORM='GN' uses 32 groups: {', '.join(f'{prefix}.{k}={v}' for k, v in odd.items())} "
                             "must be multiples of 32")


def check_choice(prefix: str, key: str, value, allowed: Sequence) -> None:
    """Raise a ValueError naming ``prefix.key`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{prefix}.{key}={value!r} is not allowed; choose one of {list(allowed)}")


def conv_norm_relu(in_channels: int, out_channels: int, norm: str, kernel_size: int = 3) -> Conv2d:
    """kxk conv (bias only without norm) + norm + ReLU, MSRA-initialised."""
    conv = Conv2d(
        in_channels,
        out_channels,
        kernel_size,
        padding=kernel_size // 2,
        bias=not norm,
        norm=get_norm(norm, out_channels),
        activation=F.relu,
    )
    weight_init.c2_msra_fill(conv)
    return conv
