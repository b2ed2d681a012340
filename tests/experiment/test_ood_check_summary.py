"""The out-of-distribution check's summaries on hand-made rows: means per set, kind and group, the
trust flags against failures, and paired per-image differences with their standard error."""
from __future__ import annotations

import math

import pytest

from maskrcnnpp.errors import UserError
from maskrcnnpp.experiment.ood_check import check_markdown, compare_rows, parse_check_set, summarize_check


def row(set_name, image_id, kind, score, flags=(), group="g", nuclei=3, gt=4):
    return {"set": set_name, "image_id": image_id, "image_kind": kind, "group": group, "score": score, "iou": score,
            "dice": score, "aji": score, "pq": score, "sq": score, "dq": score, "nuclei": nuclei, "gt_nuclei": gt,
            "flags": list(flags)}


ROWS = [row("dsb", 1, "fluorescence", 0.8), row("dsb", 2, "stained tissue", 0.2, ["weak kind"]),
        row("ext", 1, "stained tissue", 0.1), row("ext", 2, "fluorescence", 0.5, ["low score"], group="h")]


def test_means_per_set_kind_and_group():
    s = summarize_check(ROWS)
    assert s["overall"]["images"] == 4 and s["overall"]["score"] == pytest.approx(0.4)
    assert s["external"]["images"] == 2 and s["external"]["score"] == pytest.approx(0.3)  # the set not named dsb...
    assert "| external sets | 2 | 0.300 |" in check_markdown(s)
    assert s["by_set"]["dsb"]["score"] == pytest.approx(0.5) and s["by_set"]["ext"]["score"] == pytest.approx(0.3)
    assert s["by_kind"]["stained tissue"]["score"] == pytest.approx(0.15)
    assert s["by_set_kind"]["ext / fluorescence"]["images"] == 1
    assert s["by_group"]["ext / h"]["score"] == pytest.approx(0.5)
    assert s["overall"]["nuclei"] == 12 and s["overall"]["gt_nuclei"] == 16


def test_flags_against_failures():
    f = summarize_check(ROWS)["flags"]
    # failures (< 0.3): dsb 2 and ext 1; flagged: dsb 2 and ext 2
    assert (f["flagged"], f["failed"], f["flagged_failed"]) == (2, 2, 1)
    assert f["precision"] == 0.5 and f["recall"] == 0.5
    assert "2 image(s) flagged, 2 scored below 0.3; 1 both (precision 0.50, recall 0.50)" in check_markdown(
        summarize_check(ROWS))
    none_flagged = summarize_check([row("a", 1, "fluorescence", 0.9)])["flags"]
    assert none_flagged["precision"] is None and none_flagged["recall"] is None
    with pytest.raises(UserError, match="scored no image"):
        summarize_check([])


def test_paired_differences_and_standard_error():
    better = [dict(r, score=r["score"] + d) for r, d in zip(ROWS, (0.1, 0.3, -0.1, 0.1))]
    c = compare_rows(ROWS, better)
    diffs = [0.1, 0.3, -0.1, 0.1]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / 3)
    assert c["all images"]["mean_diff"] == pytest.approx(mean)
    assert c["all images"]["se"] == pytest.approx(sd / 2)
    assert (c["all images"]["better"], c["all images"]["worse"]) == (3, 1)
    assert c["external sets"] == c["ext"]  # the one set not named dsb...
    assert c["ext"]["mean_diff"] == pytest.approx(0.0) and c["dsb / stained tissue"]["mean_diff"] == pytest.approx(0.3)
    assert c["dsb / stained tissue"]["se"] is None  # one image: no standard error
    with pytest.raises(UserError, match="different images"):
        compare_rows(ROWS, better[:3])


def test_set_text(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "val.json").write_text("{}")
    s = parse_check_set(f"v={tmp_path}:val")
    assert (s.name, s.split, s.json_file) == ("v", "val", str(tmp_path / "annotations" / "val.json"))
    with pytest.raises(UserError, match="check set t: .*test.json"):
        parse_check_set(f"t={tmp_path}")
