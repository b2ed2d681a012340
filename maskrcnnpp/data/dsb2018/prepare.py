"""``prepare_dsb2018``: check the inputs and any existing output, plan, convert, write, commit."""
from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

from ...utils.files import partial_dir, remove_stale_partials, sha256_of_file
from ...utils.kaggle_rle import KaggleCsvError, KaggleLabels, read_kaggle_csv
from .corrections import log_corrections
from .errors import DatasetError
from .convert import convert_image
from .pool import Converter, run_tasks
from .scan import Plan, scan
from .source import Source
from .split import DEFAULT_SPLIT, parse_split
from .write import (DSB2018_FLAVOUR, Flavour, commit, identity_of, read_manifest, verify_output, write_dataset,
                    write_manifest)

__all__ = ["PrepareResult", "check_existing", "prepare_dsb2018", "run_conversion"]

logger = logging.getLogger(__name__)


@dataclass
class PrepareResult:
    """Outcome of :func:`prepare_dsb2018`: where the dataset is, its manifest, and what was done."""

    root: Path
    manifest: dict
    status: str  # "created", "rebuilt" (an incomplete copy was replaced) or "unchanged"

    def summary(self) -> str:
        """One line: where, what was done, images/annotations per split, corrections, the manifest."""
        counts = self.manifest["counts"]
        parts = ", ".join(f"{name} {c['images']}/{c['annotations']}" for name, c in counts["splits"].items())
        corrections = ", ".join(f"{k} x{v}" for k, v in counts["corrections"].items()) or "none"
        verb = {"unchanged": "already prepared, nothing to do", "created": "written",
                "rebuilt": "rewritten (was incomplete)"}[self.status]
        return (f"{self.root}: {verb}. images/annotations: {parts}. corrections: {corrections}. "
                f"Manifest: {os.path.join(str(self.root), 'manifest.json')}")


def _read_labels(labels: Path) -> KaggleLabels:
    if not labels.is_file():
        raise DatasetError(f"{labels}: labels CSV not found")
    try:
        return read_kaggle_csv(labels)
    except KaggleCsvError as e:
        raise DatasetError(str(e)) from None


def _describe_difference(old: dict, new: dict) -> str:
    diffs = [f"{k}: {old.get(k)!r} there, {new[k]!r} now" for k in new if old.get(k) != new[k]]
    return "; ".join(diffs) or "unknown difference"


def check_existing(out: Path, identity: dict) -> Tuple[Optional[PrepareResult], bool]:
    """(the result when ``out`` already holds this dataset intact, whether to replace an incomplete copy)."""
    if not out.exists():
        return None, False
    if not out.is_dir():
        raise DatasetError(f"{out}: exists and is not a folder")
    existing = read_manifest(out)
    if existing is None:
        if any(out.iterdir()):
            raise DatasetError(f"{out}: folder is not empty and holds no manifest.json of a prepared dataset; refusing to write there")
        return None, False
    if existing.get("identity") != identity:
        raise DatasetError(
            f"{out}: already holds a different dataset ({_describe_difference(existing.get('identity') or {}, identity)}); "
            "choose another output folder or remove it", argument="out",
        )
    problem = verify_output(out, existing)
    if problem is None:
        logger.info("%s already holds this dataset (source sha256 %s): nothing to do", out, identity["source_sha256"][:12])
        return PrepareResult(out, existing, "unchanged"), False
    logger.warning("%s holds this dataset but %s: converting again", out, problem)
    return None, True


def prepare_dsb2018(
    src: Union[str, os.PathLike],
    out: Union[str, os.PathLike],
    *,
    labels: Optional[Union[str, os.PathLike]] = None,
    split: Union[str, Sequence[float], None] = DEFAULT_SPLIT,
    seed: int = 0,
    workers: Optional[int] = None,
    progress: bool = True,
    compress_level: int = 1,
) -> PrepareResult:
    """Convert DSB 2018 data at ``src`` (zip or folder; + ``labels`` CSV) to a COCO dataset at ``out``.

    ``split``: (train, val, test) fractions summing to 1 (default 0.5/0.2/0.3), ``"none"``/None
    for all.json only; images are assigned by a permutation seeded with ``seed``. ``workers``
    processes (default ``os.cpu_count()``) convert images in parallel. Idempotent: an ``out``
    holding this very dataset is left as is ("unchanged"); one holding another dataset is an error.
    """
    start = time.time()
    src, out = Path(src), Path(out)
    split = parse_split(split)
    with Source(src) as source:  # closes the zip also when scanning or converting fails
        labels = None if labels is None else Path(labels)
        kaggle = None if labels is None else _read_labels(labels)
        identity = identity_of(source.sha256(), sha256_of_file(labels) if labels else None, split, seed)
        done, replace = check_existing(out, identity)
        if done is not None:
            return done

        plan = scan(source, kaggle)
        return run_conversion(source, out, plan, identity, replace, labels=labels, split=split, seed=seed,
                              workers=workers, progress=progress, compress_level=compress_level, start=start)


def run_conversion(source: Source, out: Path, plan: Plan, identity: dict, replace: bool, *,
                   labels: Optional[Path], split: Optional[Sequence[float]], seed: int, workers: Optional[int],
                   progress: bool, compress_level: int, start: float, convert: Converter = convert_image,
                   flavour: Flavour = DSB2018_FLAVOUR) -> PrepareResult:
    """Convert ``plan``'s tasks with ``convert`` into a hidden sibling of ``out``, write the COCO jsons and
    the manifest there, and rename it into place; nothing is left behind on failure."""
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out)
    tmp = partial_dir(out)
    (tmp / "images").mkdir(parents=True)
    (tmp / "annotations").mkdir()
    try:
        results = run_tasks(source, plan.tasks, tmp / "images", workers, progress, compress_level, convert,
                            desc=flavour.format.rsplit("-", 1)[-1])
        manifest = write_dataset(tmp, results, plan, identity, source, labels, split, seed, flavour)
        manifest["seconds"] = round(time.time() - start, 2)
        write_manifest(tmp, manifest)
        log_corrections(manifest["corrections"])
        status = commit(tmp, out, identity, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        source.close()
    if status == "unchanged":
        manifest = read_manifest(out)
    logger.info("%s: %d images, %d annotations (%s) in %.1f s", out, manifest["counts"]["images"],
                manifest["counts"]["annotations"], status, time.time() - start)
    return PrepareResult(out, manifest, status)
