"""The prepared folder: COCO JSON files, the manifest, verification of an existing output, the final rename."""
from __future__ import annotations

import os
import shutil
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ...utils.files import commit_partial_dir, read_json, sha256_of_file, write_json
from .corrections import CORRECTION_KINDS
from .errors import DatasetError
from .scan import Plan
from .source import Source
from .split import split_image_ids

__all__ = ["CATEGORY", "DSB2018_FLAVOUR", "FORMAT", "FORMAT_VERSION", "Flavour", "commit", "identity_of", "read_manifest", "verify_output",
           "write_dataset", "write_manifest"]

FORMAT = "maskrcnnpp-dsb2018"
FORMAT_VERSION = 1
CATEGORY = {"id": 1, "name": "nucleus", "supercategory": "nucleus"}


@dataclass(frozen=True)
class Flavour:
    """What tells the prepared folders of one converter apart: format name, COCO info and licences,
    the image entries' key holding the source's image id, the manifest's converter line."""

    format: str
    info: dict
    licenses: Tuple[dict, ...]
    id_key: str
    converter: str


DSB2018_FLAVOUR = Flavour(
    format=FORMAT,
    info={"description": "Data Science Bowl 2018 nuclei (BBBC038), converted by maskrcnnpp",
          "url": "https://bbbc.broadinstitute.org/BBBC038", "version": str(FORMAT_VERSION)},
    licenses=({"id": 1, "name": "CC0 1.0", "url": "https://creativecommons.org/publicdomain/zero/1.0/"},),
    id_key="dsb_id",
    converter=f"maskrcnnpp.data.dsb2018 format {FORMAT_VERSION}",
)


def _write_json(path: Path, obj: dict) -> None:
    # Compact, without a trailing newline: the bytes of every dataset prepared so far.
    write_json(str(path), obj, indent=None, separators=(",", ":"), newline=False)


def identity_of(source_sha: str, labels_sha: Optional[str], split: Optional[Sequence[float]], seed: int,
                flavour: Flavour = DSB2018_FLAVOUR, **extra) -> dict:
    """What makes two prepared datasets the same: format, source and labels checksums, split (and ``extra``)."""
    return {
        "format": flavour.format,
        "format_version": FORMAT_VERSION,
        "source_sha256": source_sha,
        "labels_sha256": labels_sha,
        "split": None if split is None else {"fractions": list(split), "seed": int(seed)},
        **extra,
    }


def _file_record(path: Path) -> dict:
    return {"sha256": sha256_of_file(path), "bytes": path.stat().st_size}


def verify_output(root: Path, manifest: dict) -> Optional[str]:
    """None when every file the manifest lists is present and unchanged, else what is wrong."""
    for rel, record in manifest.get("files", {}).items():
        path = root / rel
        if not path.is_file() or path.stat().st_size != record["bytes"] or sha256_of_file(path) != record["sha256"]:
            return f"{path} missing or changed"
    for name, size in manifest.get("images", {}).items():
        path = root / "images" / name
        try:
            if path.stat().st_size != size:
                return f"{path} changed"
        except FileNotFoundError:
            return f"{path} missing"
    return None


def read_manifest(out: Path) -> Optional[dict]:
    """The manifest of a prepared folder ``out``, or None when it has none."""
    path = out / "manifest.json"
    if not path.is_file():
        return None
    try:
        return read_json(str(path), "manifest")
    except (OSError, ValueError) as e:
        raise DatasetError(f"{path}: unreadable manifest ({e}); remove {out} or choose another output folder",
                           argument="out") from None


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write ``folder/manifest.json``."""
    _write_json(folder / "manifest.json", manifest)


def _coco(images: List[dict], annotations: List[dict], flavour: Flavour) -> dict:
    return {
        "info": dict(flavour.info),
        "licenses": [dict(lic) for lic in flavour.licenses],
        "images": images,
        "annotations": annotations,
        "categories": [dict(CATEGORY)],
    }


def _number(by_id: Dict[str, dict], flavour: Flavour) -> Tuple[Dict[str, dict], Dict[str, List[dict]]]:
    """COCO image entries and annotations by image id, numbered in image id order."""
    entries, per_image, next_ann = {}, {}, 1
    for number, image_id in enumerate(sorted(by_id), start=1):
        r = by_id[image_id]
        entries[image_id] = {"id": number, "file_name": f"{image_id}.png", "height": r["height"],
                             "width": r["width"], flavour.id_key: image_id}
        if flavour.licenses:
            entries[image_id]["license"] = flavour.licenses[0]["id"]
        anns = []
        for a in r["annotations"]:
            anns.append({"id": next_ann, "image_id": number, "category_id": CATEGORY["id"], "iscrowd": 0, **a})
            next_ann += 1
        per_image[image_id] = anns
    return entries, per_image


def _write_splits(tmp: Path, entries: Dict[str, dict], per_image: Dict[str, List[dict]],
                  split: Optional[Sequence[float]], seed: int, flavour: Flavour) -> Tuple[dict, dict]:
    """Write annotations/<split>.json for "all" and each split; their file records and counts."""
    ids = sorted(entries)
    splits = {"all": ids}
    if split is not None:
        splits.update(split_image_ids(ids, split, seed))
    files, counts = {}, {}
    for name, members in splits.items():
        anns = [a for i in members for a in per_image[i]]
        path = tmp / "annotations" / f"{name}.json"
        _write_json(path, _coco([entries[i] for i in members], anns, flavour))
        files[f"annotations/{name}.json"] = _file_record(path)
        counts[name] = {"images": len(members), "annotations": len(anns)}
    return files, counts


def write_dataset(tmp: Path, results: List[dict], plan: Plan, identity: dict, source: Source,
                  labels: Optional[Path], split: Optional[Sequence[float]], seed: int,
                  flavour: Flavour = DSB2018_FLAVOUR) -> dict:
    """Write the COCO jsons into ``tmp`` and return the manifest (without writing it)."""
    by_id = {r["image_id"]: r for r in results}
    entries, per_image = _number(by_id, flavour)
    corrections = list(plan.corrections) + [c for i in sorted(by_id) for c in by_id[i]["corrections"]]
    files, split_counts = _write_splits(tmp, entries, per_image, split, seed, flavour)
    counts = {"images": len(entries), "annotations": sum(len(a) for a in per_image.values()), "splits": split_counts}
    counts["corrections"] = dict(sorted(Counter(c["kind"] for c in corrections).items()))
    counts["images_without_annotations"] = sum(1 for i in per_image if not per_image[i])
    counts["ignored_files"] = len(plan.ignored_files)
    return {
        "identity": identity,
        "source": {
            "path": str(source.path.resolve()),
            "kind": source.kind,
            "sha256": identity["source_sha256"],
            "labels": None if labels is None else {"path": str(Path(labels).resolve()), "sha256": identity["labels_sha256"]},
        },
        "split": identity["split"],
        "counts": counts,
        "source_formats": dict(Counter(r["format"] for r in results)),
        "corrections": corrections,
        "correction_kinds": {k: CORRECTION_KINDS[k] for k in counts["corrections"] if k in CORRECTION_KINDS},
        "ignored_files": plan.ignored_files,
        "notes": plan.notes,
        "files": files,
        "images": {f"{i}.png": (tmp / "images" / f"{i}.png").stat().st_size for i in sorted(by_id)},
        "converter": flavour.converter,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def commit(tmp: Path, out: Path, identity: dict, replace: bool) -> str:
    """Move the finished ``tmp`` folder to ``out``; return the resulting status."""
    if replace and out.exists():
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
        return "rebuilt"

    def holds_same(folder: Path) -> bool:  # another process may have finished the same conversion first
        other = read_manifest(folder) if folder.is_dir() else None
        return other is not None and other.get("identity") == identity and verify_output(folder, other) is None

    def conflict() -> DatasetError:
        return DatasetError(f"{out}: appeared while converting and holds something else")

    return "created" if commit_partial_dir(tmp, out, holds_same, conflict) else "unchanged"
