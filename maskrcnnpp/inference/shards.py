"""Split a folder's prediction over N independent tasks (e.g. a SLURM array job) and merge the results.

Shard ``K`` of ``N`` (K from 1) predicts the images ``K-1, K-1+N, K-1+2N, ...`` of the sorted file
list, so the shards never overlap and together cover every image, whatever the order the tasks run
in. All shards write into the same output folder: the per-image files (label images, nucleus
tables, ROIs) have the image's own name; the all-images files get the shard's name
(``coco_results.shard-K-of-N.json``, ``kaggle_submission.shard-K-of-N.csv``), and a record of the
shard (:data:`~maskrcnnpp.inference.outputs.SHARD_RECORD` under its shard name) is written last, so a
shard that stopped half-way has none. :func:`merge_shards` checks that all N records are there and
disjoint, then writes ``coco_results.json`` / ``kaggle_submission.csv`` as one unsharded run would.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, TypeVar

from ..errors import UserError
from ..utils.files import atomic_path, read_json, write_json
from ..utils.kaggle_rle import KAGGLE_COLUMNS
from .outputs import COCO_FILE, IMAGE_SUMMARY_FILE, KAGGLE_FILE, SHARD_RECORD, shard_file, shard_file_pattern
from .writers import IMAGE_SUMMARY_COLUMNS

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1..count) of ``count``."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"K/N"`` with 1 <= K <= N; a UserError saying what is expected otherwise."""
        match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not match:
            raise UserError(f"shard {text!r} is not K/N (e.g. 3/8: the third of 8 shards, K from 1)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise UserError(f"shard {text!r}: K must be in 1..N and N at least 1")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[T]) -> List[T]:
        """This shard's share of ``items`` (every N-th, starting at K-1)."""
        return list(items[self.index - 1::self.count])

    def file(self, name: str) -> str:
        return shard_file(name, self.index, self.count)


def write_shard_record(folder: str, shard: Shard, stems: Sequence[str], formats: Sequence[str],
                       total_images: int, nuclei: int, model: str) -> str:
    """Write the record that marks ``shard`` complete in ``folder``; return its path."""
    path = os.path.join(folder, shard.file(SHARD_RECORD))
    write_json(path, {"shard": shard.index, "shards": shard.count, "images": list(stems),
                      "total_images": total_images, "formats": list(formats), "nuclei": nuclei, "model": model})
    return path


def _records(folder: str) -> List[Dict[str, Any]]:
    pattern = shard_file_pattern(SHARD_RECORD)
    records = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        match = re.fullmatch(pattern, os.path.basename(path))
        if match:
            record = read_json(path, "shard record", UserError)
            record["_path"] = path
            records.append(record)
    return records


def check_complete(folder: str) -> List[Dict[str, Any]]:
    """The shard records of ``folder``, sorted by shard, once every shard of one run is complete and
    no image is in two shards; a UserError naming what is missing or inconsistent otherwise."""
    records = _records(folder)
    if not records:
        raise UserError(f"{folder} holds no shard record ({shard_file(SHARD_RECORD, 1, 4)} and the like): "
                        "no sharded prediction finished there")
    counts = sorted({r.get("shards") for r in records}, key=str)
    if len(counts) > 1:
        raise UserError(f"{folder} holds shards of runs split {' and '.join(map(str, counts))} ways; "
                        "use one output folder per run")
    count = records[0]["shards"]
    by_index = {r["shard"]: r for r in records}
    missing = [k for k in range(1, count + 1) if k not in by_index]
    if missing:
        raise UserError(f"{folder}: {len(missing)} of {count} shards have not finished (no record for shard "
                        f"{', '.join(map(str, missing[:10]))}{', ...' if len(missing) > 10 else ''})")
    records = [by_index[k] for k in range(1, count + 1)]
    if len({tuple(r["formats"]) for r in records}) > 1:
        raise UserError(f"{folder}: the shards were written in different formats "
                        f"({'; '.join(','.join(r['formats']) for r in records)})")
    seen: Dict[str, int] = {}
    for r in records:
        for stem in r["images"]:
            if stem in seen:
                raise UserError(f"{folder}: image {stem} is in shard {seen[stem]} and shard {r['shard']}")
            seen[stem] = r["shard"]
    totals = {r["total_images"] for r in records}
    if len(totals) > 1 or len(seen) != totals.pop():
        raise UserError(f"{folder}: the shards cover {len(seen)} images, but their input folders held "
                        f"{', '.join(str(r['total_images']) for r in records)}; were they run on the same --input?")
    return records


def _concatenate_csv(folder: str, records: Sequence[Dict[str, Any]], count: int, fmt: str, name: str,
                     header: Sequence[str], what: str) -> None:
    """``name`` written from the shards' parts of it, one header, rows in shard order."""
    with atomic_path(os.path.join(folder, name)) as tmp, open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for r in records:
            part = os.path.join(folder, shard_file(name, r["shard"], count))
            if not os.path.isfile(part):
                raise UserError(f"shard file {part} is missing, but shard {r['shard']}'s record lists {fmt}")
            with open(part, newline="", encoding="utf-8") as f:
                rows = csv.reader(f)
                if tuple(next(rows, ())) != tuple(header):
                    raise UserError(f"{part}: not a {what} written by tools/predict.py (header is not "
                                    f"{','.join(header)})")
                writer.writerows(rows)


def merge_shards(folder: str) -> Dict[str, Any]:
    """Merge the all-images files of the complete shards in ``folder`` into ``coco_results.json``,
    ``kaggle_submission.csv`` and ``image_summary.csv`` (whichever the shards wrote); return what was merged."""
    records = check_complete(folder)
    count, formats = records[0]["shards"], records[0]["formats"]
    summary: Dict[str, Any] = {"shards": count, "images": sum(len(r["images"]) for r in records),
                               "nuclei": sum(r["nuclei"] for r in records), "written": []}
    if "coco" in formats:
        results: List[Dict[str, Any]] = []
        for r in records:
            results.extend(read_json(os.path.join(folder, shard_file(COCO_FILE, r["shard"], count)),
                                     "shard COCO results", UserError))
        with atomic_path(os.path.join(folder, COCO_FILE)) as tmp, open(tmp, "w", encoding="utf-8") as f:
            json.dump(results, f)
        summary["written"].append(COCO_FILE)
    for fmt, name, header, what in (("kaggle_csv", KAGGLE_FILE, KAGGLE_COLUMNS, "Kaggle CSV"),
                                    ("image_summary", IMAGE_SUMMARY_FILE, IMAGE_SUMMARY_COLUMNS, "image summary")):
        if fmt in formats:
            _concatenate_csv(folder, records, count, fmt, name, header, what)
            summary["written"].append(name)
    return summary
