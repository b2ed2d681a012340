"""The norm names our decoders accept (Detectron2's ``get_norm``), checked against the config."""
from __future__ import annotations

from typing import Mapping, Sequence

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
