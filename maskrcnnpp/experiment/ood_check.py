"""The out-of-distribution check: a model scored as a user would run it, on sets unlike its training.

Each check set is a folder prepared by ``datasets/prepare_dsb2018.py`` or ``datasets/prepare_folder.py``
(one split of it): the DSB 2018 internal test split, a leave-group-out test split, or an external
annotated set that is never trained on (``docs/DATA.md``). Every image goes through one
:class:`~maskrcnnpp.inference.NucleiPredictor` with the model's own defaults (as ``tools/predict.py``
with no options: its test resize, ``--diameter`` default, thresholds) and is scored against its
ground truth with :func:`maskrcnnpp.evaluation.score_image`. The rows carry the set, the image's
acquisition group (:mod:`maskrcnnpp.data.groups`, computed over the set's whole folder), its kind
and the predictor's trust report (:mod:`maskrcnnpp.inference.trust`).

:func:`summarize_check` averages the rows per image overall (every image counts once), per set,
per kind and per set and group; it also measures the trust flags against failure (score below
:data:`FAIL_SCORE`): how many flagged images failed (precision) and how many failed images were
flagged (recall).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from ..data.groups import acquisition_groups, image_stats
from ..errors import UserError
from ..evaluation import gt_label_image, score_image
from ..evaluation.coco_results import coco_records
from ..inference import NucleiPredictor, read_image
from ..utils.files import read_json

__all__ = ["DEFAULT_SETS", "FAIL_SCORE", "METRICS", "CheckSet", "check_markdown", "compare_markdown", "compare_rows",
           "parse_check_set", "run_check", "summarize_check"]

METRICS = ("score", "iou", "dice", "aji", "pq")
FAIL_SCORE = 0.3  # an image scoring below this is a failure the trust flags should have named
INTERNAL_PREFIX = "dsb"  # sets named so are DSB 2018 splits; the others are external (docs/DATA.md)
# The check sets of docs/DATA.md, where its commands prepare them: the DSB 2018 internal test split
# and the external test sets (never trained on).
DEFAULT_SETS = ("dsb2018=datasets/dsb2018:test", "monuseg=datasets/ext_monuseg_test:test",
                "aitslab=datasets/ext_aitslab_bioimaging1:test")


@dataclass(frozen=True)
class CheckSet:
    """One split of a prepared folder, under a name for the table."""

    name: str
    root: str
    split: str = "test"

    @property
    def json_file(self) -> str:
        return os.path.join(self.root, "annotations", f"{self.split}.json")

    @property
    def image_dir(self) -> str:
        return os.path.join(self.root, "images")


def parse_check_set(text: str) -> CheckSet:
    """``NAME=FOLDER[:SPLIT]`` (split ``test`` by default) as a :class:`CheckSet`; UserError when the
    folder is not a prepared one or has no such split."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise UserError(f"check set {text!r}: expected NAME=FOLDER[:SPLIT], e.g. monuseg=datasets/ext_monuseg_test:test")
    root, _, split = rest.partition(":")
    check = CheckSet(name, root, split or "test")
    if not os.path.isfile(check.json_file) or not os.path.isdir(check.image_dir):
        raise UserError(f"check set {name}: {check.json_file} or {check.image_dir} is missing (prepare the folder with "
                        "datasets/prepare_dsb2018.py or datasets/prepare_folder.py)")
    return check


def _groups(check: CheckSet) -> Dict[int, str]:
    """Acquisition groups of the check set's images, over the whole prepared folder (all.json)."""
    all_json = os.path.join(check.root, "annotations", "all.json")
    coco = read_json(all_json if os.path.isfile(all_json) else check.json_file, "COCO annotations", UserError)
    return acquisition_groups(image_stats(coco, check.image_dir))


def run_check(predictor: NucleiPredictor, sets: Sequence[CheckSet], limit: Optional[int] = None,
              progress: bool = True, rows_path: Optional[str] = None) -> List[Dict[str, Any]]:
    """One row per image of every set: the metrics of ``score_image``, ``set``, ``group``, ``image_kind``,
    ``nuclei`` (found), ``gt_nuclei`` and the trust report's ``diameter_px``, ``mean_score`` and ``flags``.
    ``limit`` takes the first images of each set; with ``rows_path`` each row is appended there as a
    JSON line as soon as its image is done."""
    rows: List[Dict[str, Any]] = []
    for check in sets:
        gt = read_json(check.json_file, "COCO annotations", UserError)
        groups = _groups(check)
        records = coco_records(gt)[:limit] if limit else coco_records(gt)
        iterator = records
        if progress:
            from tqdm import tqdm

            iterator = tqdm(records, desc=check.name, unit="img")
        for record in iterator:
            image = read_image(os.path.join(check.image_dir, record["file_name"]), log=False)
            gt_labels = gt_label_image(record)[0]
            prediction = predictor.predict(image)
            trust = prediction.info.get("trust", {})
            row: Dict[str, Any] = {k: float(v) for k, v in score_image(gt_labels, prediction.labels).items()}
            row.update(set=check.name, image_id=record["image_id"], file_name=record["file_name"],
                       group=groups.get(int(record["image_id"]), "unknown"), image_kind=trust.get("image_kind"),
                       nuclei=prediction.num_instances, gt_nuclei=int(len(np.unique(gt_labels)) - 1),
                       diameter_px=trust.get("diameter_px"), mean_score=trust.get("mean_score"),
                       flags=list(trust.get("flags", ())))
            rows.append(row)
            if rows_path:
                with open(rows_path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    return rows


def _mean(rows: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    return {"images": len(rows), **{m: float(np.mean([float(r[m]) for r in rows])) for m in METRICS},
            "nuclei": int(sum(r["nuclei"] for r in rows)), "gt_nuclei": int(sum(r["gt_nuclei"] for r in rows))}


def _by(rows: Sequence[Mapping[str, Any]], key) -> Dict[str, Dict[str, Any]]:
    grouped: Dict[str, List[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(key(row), []).append(row)
    return {name: _mean(group) for name, group in grouped.items()}


def summarize_check(rows: Sequence[Mapping[str, Any]], fail_score: float = FAIL_SCORE) -> Dict[str, Any]:
    """``{"overall", "external", "by_set", "by_kind", "by_set_kind", "by_group", "flags"}`` of
    :func:`run_check`'s rows; ``external``: the images of every set not named ``dsb...`` (None without).

    Each entry holds ``images``, the mean of each of :data:`METRICS` over its images, and the nuclei
    found and true. ``flags``: ``flagged``, ``failed`` (score < ``fail_score``), ``flagged_failed``,
    and ``precision`` / ``recall`` of the flags for failure (None where undefined)."""
    if not rows:
        raise UserError("the check scored no image")
    flagged = [bool(r["flags"]) for r in rows]
    failed = [r["score"] < fail_score for r in rows]
    both = sum(f and x for f, x in zip(flagged, failed))
    external = [r for r in rows if not str(r["set"]).startswith(INTERNAL_PREFIX)]
    return {
        "overall": _mean(rows),
        "external": _mean(external) if external else None,
        "by_set": _by(rows, lambda r: r["set"]),
        "by_kind": _by(rows, lambda r: r["image_kind"]),
        "by_set_kind": _by(rows, lambda r: f"{r['set']} / {r['image_kind']}"),
        "by_group": _by(rows, lambda r: f"{r['set']} / {r['group']}"),
        "flags": {"fail_score": fail_score, "flagged": sum(flagged), "failed": sum(failed), "flagged_failed": both,
                  "precision": both / sum(flagged) if any(flagged) else None,
                  "recall": both / sum(failed) if any(failed) else None},
    }


def _table(title: str, entries: Mapping[str, Mapping[str, Any]]) -> List[str]:
    lines = [f"| {title} | images | score | IoU | Dice | AJI | PQ | nuclei found / true |", "|---|---|---|---|---|---|---|---|"]
    for name, e in entries.items():
        lines.append(f"| {name} | {e['images']} | {e['score']:.3f} | {e['iou']:.3f} | {e['dice']:.3f} | {e['aji']:.3f} | "
                     f"{e['pq']:.3f} | {e['nuclei']:,} / {e['gt_nuclei']:,} |")
    return lines


def check_markdown(summary: Mapping[str, Any]) -> str:
    """The check as Markdown: overall, per set, per set and kind, per kind, per set and group, then the flags."""
    top = {"all images": summary["overall"]}
    if summary.get("external"):
        top["external sets"] = summary["external"]
    lines = _table("set", {**top, **summary["by_set"]})
    lines += [""] + _table("set / image kind", summary["by_set_kind"])
    lines += [""] + _table("image kind (all sets)", summary["by_kind"])
    lines += [""] + _table("set / acquisition group", summary["by_group"])
    f = summary["flags"]

    def share(value: Optional[float]) -> str:
        return "-" if value is None else f"{value:.2f}"

    lines += ["", f"Trust flags: {f['flagged']} image(s) flagged, {f['failed']} scored below {f['fail_score']:g}; "
                  f"{f['flagged_failed']} both (precision {share(f['precision'])}, recall {share(f['recall'])})."]
    return "\n".join(lines)


def _paired(diffs: Sequence[float]) -> Dict[str, Any]:
    d = np.asarray(diffs, dtype=np.float64)
    se = float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else None
    return {"images": int(d.size), "mean_diff": float(d.mean()), "se": se,
            "better": int((d > 0).sum()), "worse": int((d < 0).sum())}


def compare_rows(rows_a: Sequence[Mapping[str, Any]], rows_b: Sequence[Mapping[str, Any]],
                 metric: str = "score") -> Dict[str, Dict[str, Any]]:
    """Paired per-image differences ``b - a`` of ``metric`` between two checks of the same images:
    ``{"all images" | "external sets" | set | "set / kind": {"images", "mean_diff", "se" (standard error of the mean
    difference), "better", "worse"}}``. Images are matched by (set, image_id); UserError when the two
    checks did not score the same images."""
    a = {(r["set"], r["image_id"]): r for r in rows_a}
    b = {(r["set"], r["image_id"]): r for r in rows_b}
    if set(a) != set(b):
        raise UserError(f"the two checks scored different images ({len(set(a) ^ set(b))} not in both): compare "
                        "checks of the same sets")
    keys = sorted(a, key=lambda k: (str(k[0]), str(k[1])))
    groups: Dict[str, List[float]] = {"all images": []}
    for key in keys:
        diff = float(b[key][metric]) - float(a[key][metric])
        groups["all images"].append(diff)
        if not str(key[0]).startswith(INTERNAL_PREFIX):
            groups.setdefault("external sets", []).append(diff)
        groups.setdefault(str(key[0]), []).append(diff)
        groups.setdefault(f"{key[0]} / {a[key]['image_kind']}", []).append(diff)
    return {name: _paired(diffs) for name, diffs in groups.items()}


def compare_markdown(comparison: Mapping[str, Mapping[str, Any]], metric: str = "score") -> str:
    """:func:`compare_rows` as a Markdown table."""
    lines = [f"| images compared | n | mean {metric} difference (second - first) | standard error | better / worse |",
             "|---|---|---|---|---|"]
    for name, c in comparison.items():
        se = "-" if c["se"] is None else f"{c['se']:.3f}"
        lines.append(f"| {name} | {c['images']} | {c['mean_diff']:+.3f} | {se} | {c['better']} / {c['worse']} |")
    return "\n".join(lines)
