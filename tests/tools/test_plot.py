"""maskrcnnpp.vis.plots and tools/plot.py: training curves, speed vs accuracy (Fig. 5), size buckets (Fig. 7)."""
from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pycocotools.mask as mask_util
import pytest
from PIL import Image

from maskrcnnpp.evaluation.size_buckets import SizeBucketCounts, size_bucket_scores
from maskrcnnpp.vis.plot_inputs import PlotInputError, read_speed_rows
from maskrcnnpp.vis.plots import plot_speed_accuracy, plot_training_curves

from tool_helpers import disk_labels

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))
import plot  # noqa: E402


def is_png(path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 200 and im.size[1] > 200


def write_metrics(path, iters=40, val_every=10):
    lines = []
    for it in range(iters):
        lines.append({"iteration": it, "total_loss": 3.0 / (1 + it), "loss_mask": 0.7 / (1 + it), "lr": 0.02})
        if (it + 1) % val_every == 0:
            lines.append({"iteration": it, "nuclei/score": 0.1 + it / 100, "nuclei/iou": 0.5 + it / 200})
    path.write_text("\n".join(json.dumps(l) for l in lines) + "\n")
    return str(path)


def test_training_curves_draw_losses_and_validation(tmp_path):
    a = write_metrics(tmp_path / "a.json")
    b = write_metrics(tmp_path / "b.json", iters=20)
    drawn = plot_training_curves({"pp": a, "rcnn": b}, str(tmp_path / "curves.png"))
    assert drawn["pp"] == {"loss_mask": 40, "total_loss": 40, "nuclei/score": 4, "nuclei/iou": 4}
    assert drawn["rcnn"]["total_loss"] == 20 and drawn["rcnn"]["nuclei/score"] == 2
    assert is_png(tmp_path / "curves.png")
    only = plot_training_curves({"pp": a}, str(tmp_path / "c2.png"), keys=["total_loss", "nuclei/score"])
    assert only == {"pp": {"total_loss": 40, "nuclei/score": 4}}
    with pytest.raises(PlotInputError, match="nuclei/aji"):
        plot_training_curves({"pp": a}, str(tmp_path / "c3.png"), keys=["nuclei/aji"])
    (tmp_path / "bad.json").write_text('{"iteration": 1}\nnot json\n')
    with pytest.raises(PlotInputError, match=r"bad.json:2"):
        plot_training_curves({"x": str(tmp_path / "bad.json")}, str(tmp_path / "c4.png"))


def test_speed_accuracy_rows_and_summary_join(tmp_path):
    bench = {"rows": [
        {"config": "unetpp_tiny", "mode": "L1", "latency_median_ms": 3.0, "size": 128},
        {"config": "unetpp_tiny", "mode": "L2", "latency_median_ms": 5.0, "size": 128},
        {"config": "unetpp_tiny", "mode": "L4", "latency_median_ms": 9.0, "size": 128, "iou": 0.8, "score": 0.5},
    ]}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    (tmp_path / "l1.json").write_text(json.dumps({"iou": 0.6, "score": 0.3}))
    (tmp_path / "l2.json").write_text(json.dumps({"iou": 0.7, "score": 0.4}))
    summaries = {"L1": str(tmp_path / "l1.json"), "L2": str(tmp_path / "l2.json")}
    rows = read_speed_rows(str(tmp_path / "bench.json"), summaries)
    assert [(r["mode"], r["time_ms"], r["iou"], r["score"]) for r in rows] == [
        ("L1", 3.0, 0.6, 0.3), ("L2", 5.0, 0.7, 0.4), ("L4", 9.0, 0.8, 0.5)]
    assert plot_speed_accuracy(rows, str(tmp_path / "fig5.png")) == {"iou": 3, "score": 3}
    assert is_png(tmp_path / "fig5.png")
    with pytest.raises(PlotInputError, match=r"row 0 \(unetpp_tiny\[L1\]\) has no 'iou'/'score'.*--summary 'unetpp_tiny\[L1\]=PATH'"):
        read_speed_rows(str(tmp_path / "bench.json"))


def benchmark_rows(configs, modes, sizes):
    """Rows as tools/benchmark.py writes them (per config and mode, every size); latency = 10 * mode level + size / 32."""
    rows = []
    for config in configs:
        for mode in modes:
            for size in sizes:
                level = int(mode[1:]) if mode else 0
                rows.append({"label": f"{config}[{mode}]" if mode else config, "config": config, "mode": mode,
                             "size": size, "latency_median_ms": 10.0 * level + size / 32, "network_ms": 1.0})
    return {"rows": rows}


def drawn_lines(monkeypatch):
    """Capture (label, x, y) of each line of the IoU panel at save time."""
    import maskrcnnpp.vis.plots as plots

    lines = []

    def save(fig, path):
        lines.extend((l.get_label(), l.get_xdata().tolist(), l.get_ydata().tolist()) for l in fig.axes[0].get_lines())
        plots._matplotlib().close(fig)

    monkeypatch.setattr(plots, "_save", save)
    return lines


def test_speed_one_line_per_model_and_size(tmp_path, monkeypatch, capsys):
    # benchmark order: L1@96, L1@128, L2@96, L2@128; sorted by time alone that zig-zagged through both sizes
    (tmp_path / "bench.json").write_text(json.dumps(benchmark_rows(["unetpp_tiny"], ["L1", "L2"], [96, 128])))
    (tmp_path / "l1.json").write_text(json.dumps({"iou": 0.6, "score": 0.3}))
    (tmp_path / "l2.json").write_text(json.dumps({"iou": 0.7, "score": 0.4}))
    lines = drawn_lines(monkeypatch)
    plot.main(["speed", "--benchmark", str(tmp_path / "bench.json"), "--summary", f"L1={tmp_path}/l1.json",
               f"L2={tmp_path}/l2.json", "--output", str(tmp_path / "fig5.png")])
    assert sorted(lines) == [("unetpp_tiny @ 128px", [14.0, 24.0], [0.6, 0.7]),
                             ("unetpp_tiny @ 96px", [13.0, 23.0], [0.6, 0.7])]
    out = capsys.readouterr().out
    assert "unetpp_tiny @ 96px: L1 13.0 ms, L2 23.0 ms" in out and "(4 IoU points, 4 score points)" in out


def test_speed_summary_keyed_by_row_name(tmp_path, monkeypatch, capsys):
    bench = benchmark_rows(["unetpp_tiny", "unetpp_r101"], ["L1", "L2"], [96])
    bench["rows"] += benchmark_rows(["maskrcnn_r101"], [None], [96])["rows"]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    for k, name in enumerate(["t1", "t2", "r1", "r2", "m"]):
        (tmp_path / f"{name}.json").write_text(json.dumps({"iou": 0.5 + k / 10, "score": 0.1 * (k + 1)}))
    keyed = [f"unetpp_tiny[L1]={tmp_path}/t1.json", f"unetpp_tiny[L2]={tmp_path}/t2.json",
             f"unetpp_r101[L1]={tmp_path}/r1.json", f"unetpp_r101[L2]={tmp_path}/r2.json"]
    base = ["speed", "--benchmark", str(tmp_path / "bench.json"), "--output", str(tmp_path / "fig5.png"), "--summary"]
    lines = drawn_lines(monkeypatch)
    # a repeated --summary adds to the earlier ones
    plot.main(base + keyed + ["--summary", f"maskrcnn_r101={tmp_path}/m.json"])
    assert sorted(lines) == [("maskrcnn_r101 @ 96px", [3.0], [0.9]),
                             ("unetpp_r101 @ 96px", [13.0, 23.0], [0.7, 0.8]),
                             ("unetpp_tiny @ 96px", [13.0, 23.0], [0.5, 0.6])]
    capsys.readouterr()
    for argv, message in [
        # a bare mode that two models have would give both the same IoU/score
        (base + [f"L1={tmp_path}/t1.json"] + keyed[1:],
         "mode L1 is in several rows (unetpp_tiny[L1], unetpp_r101[L1]); key it by the row name"),
        (base + [f"unetpp_tiny[L3]={tmp_path}/t1.json"],
         "no benchmark row is named unetpp_tiny[L3]; row names: unetpp_tiny[L1], unetpp_tiny[L2], unetpp_r101[L1], "
         "unetpp_r101[L2], maskrcnn_r101"),
        # Mask R-CNN rows have no mode: the hint names the row, not "None"
        (base + keyed, "row 4 (maskrcnn_r101) has no 'iou'/'score'; add them to the row or pass its evaluator "
                       "summary.json (--summary 'maskrcnn_r101=PATH')"),
        (base + keyed + [f"unetpp_tiny[L1]={tmp_path}/m.json"], "--summary unetpp_tiny[L1] is given twice"),
    ]:
        with pytest.raises(SystemExit) as exc:
            plot.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err, err


def test_size_bucket_score_hand_worked():
    # two small nuclei (area 49 each, 7x7 squares) and one large (20x20 = 400)
    gt = np.zeros((60, 60), np.int32)
    gt[2:9, 2:9] = 1
    gt[2:9, 20:27] = 2
    gt[30:50, 30:50] = 3
    pred = np.zeros_like(gt)
    pred[2:9, 2:9] = 1  # small nucleus 1 exact
    pred[30:50, 30:50] = 2  # large exact
    pred[15:20, 50:55] = 3  # a small false positive (25 px)
    out = size_bucket_scores([(gt, pred)], edges=[0, 100, np.inf])
    # small bucket: TP 1, FN 1 (nucleus 2), FP 1 -> precision 1/3 at every threshold; large: 1
    assert out["score"] == pytest.approx([1 / 3, 1.0])
    assert out["recall@0.5"] == pytest.approx([0.5, 1.0])
    assert out["num_gt"].tolist() == [2, 1]


def test_size_bucket_threshold_dependence_and_pooling():
    gt = np.zeros((20, 40), np.int32)
    gt[0:10, 0:10] = 1
    pred = np.zeros_like(gt)
    pred[0:10, 0:8] = 1  # IoU 0.8: matched at t = 0.50..0.75 (6 thresholds), not at 0.80..0.95
    counts = SizeBucketCounts([0, 1000])
    counts.add(gt, pred)
    counts.add(gt, pred)  # pooled over two identical images
    assert counts.tp[0].tolist() == [2] * 6 + [0] * 4
    assert counts.fp[0].tolist() == [0] * 6 + [2] * 4 and counts.fn[0].tolist() == [0] * 6 + [2] * 4
    assert counts.scores()[0] == pytest.approx((6 * 1 + 4 * 0) / 10)


def coco_file(path, images, entries, results=False):
    if results:
        path.write_text(json.dumps(entries))
        return str(path)
    path.write_text(json.dumps({"images": images, "annotations": entries, "categories": [{"id": 1, "name": "nucleus"}]}))
    return str(path)


def rle(mask):
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode("ascii")
    return r


def test_sizes_cli_writes_plot_and_table(tmp_path, capsys):
    gt = disk_labels((64, 64), [(10, 10, 3), (10, 40, 3), (40, 30, 12)])  # areas 29, 29, 441
    images = [{"id": 7, "file_name": "a.png", "height": 64, "width": 64}]
    anns = [{"id": k, "image_id": 7, "category_id": 1, "segmentation": rle(gt == k), "iscrowd": 0,
             "area": int((gt == k).sum()), "bbox": [0, 0, 1, 1]} for k in (1, 2, 3)]
    gt_file = coco_file(tmp_path / "gt.json", images, anns)
    good = [{"image_id": 7, "category_id": 1, "score": 0.9, "segmentation": rle(gt == k)} for k in (1, 2, 3)]
    # the second model misses the small nuclei; its low-scoring extra entry is below --score-thresh
    weak = [{"image_id": 7, "category_id": 1, "score": 0.9, "segmentation": rle(gt == 3)},
            {"image_id": 7, "category_id": 1, "score": 0.1, "segmentation": rle(gt == 1)}]
    a = coco_file(tmp_path / "a.json", None, good, results=True)
    b = coco_file(tmp_path / "b.json", None, weak, results=True)
    plot.main(["sizes", "--gt", gt_file, "--pred", f"Mask RCNN++={a}", "--pred", f"Mask R-CNN={b}",
               "--edges", "0,100,inf", "--output", str(tmp_path / "fig7.png")])
    assert is_png(tmp_path / "fig7.png")
    with open(tmp_path / "fig7.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got = {(r["model"], r["bucket"]): (int(r["num_gt"]), float(r["score"])) for r in rows}
    assert got == {("Mask RCNN++", "0-100"): (2, 1.0), ("Mask RCNN++", ">= 100"): (1, 1.0),
                   ("Mask R-CNN", "0-100"): (2, 0.0), ("Mask R-CNN", ">= 100"): (1, 1.0)}
    assert "wrote" in capsys.readouterr().out


def test_plot_cli_errors_exit_2(tmp_path, capsys):
    for argv, message in [
        (["curves", "--metrics", str(tmp_path / "none.json"), "--output", str(tmp_path / "c.png")], "does not exist"),
        (["sizes", "--gt", str(tmp_path / "gt.json"), "--pred", f"x={tmp_path}/r.json", "--edges", "5,1",
          "--output", str(tmp_path / "s.png")], "need at least two increasing values"),
        (["sizes", "--gt", str(tmp_path / "gt.json"), "--pred", f"x={tmp_path}/r.json", "--output", str(tmp_path / "s.png")],
         "ground-truth file"),
        (["sizes", "--gt", str(tmp_path / "gt.json"), "--pred", f"x={tmp_path}/r.json", "--score-thresh", "50",
          "--output", str(tmp_path / "s.png")], "--score-thresh must be in [0, 1] (a score/probability), got 50"),
    ]:
        with pytest.raises(SystemExit) as exc:
            plot.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and "Traceback" not in err


def test_plot_cli_unwritable_output_exit_2(tmp_path, capsys):
    metrics = write_metrics(tmp_path / "metrics.json")
    (tmp_path / "afile").write_text("")
    for output, message in [
        (tmp_path / "afile" / "c.png", f"--output {tmp_path}/afile/c.png: its folder {tmp_path}/afile: exists and is not a folder"),
        (tmp_path, f"--output {tmp_path}: is a folder; give a file name"),
        (tmp_path / "c.pngx", f"--output {tmp_path}/c.pngx: cannot write .pngx images; use one of "),
    ]:
        with pytest.raises(SystemExit) as exc:
            plot.main(["curves", "--metrics", metrics, "--output", str(output)])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and "Traceback" not in err
    # a missing folder is created
    plot.main(["curves", "--metrics", metrics, "--output", str(tmp_path / "new" / "sub" / "c.png")])
    assert is_png(tmp_path / "new" / "sub" / "c.png")
    # checked before the inputs are read (these inputs are not of the right kind)
    in_file = str(tmp_path / "afile" / "s.png")
    for argv, message in [
        (["speed", "--benchmark", metrics, "--output", in_file], f"--output {in_file}: its folder"),
        (["sizes", "--gt", metrics, "--pred", f"x={metrics}", "--output", in_file], f"--output {in_file}: its folder"),
        (["sizes", "--gt", metrics, "--pred", f"x={metrics}", "--output", str(tmp_path / "s.png"),
          "--csv", f"{tmp_path}/afile/s.csv"], f"--csv {tmp_path}/afile/s.csv: its folder"),
    ]:
        with pytest.raises(SystemExit) as exc:
            plot.main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and message in err and "Traceback" not in err


def exact_error(argv, capsys) -> str:
    """stderr of a refused plot.main(argv), which must exit with status 2."""
    with pytest.raises(SystemExit) as exc:
        plot.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_input_errors_are_one_exact_line(tmp_path, capsys):
    """The line a user sees for each kind of bad input file of curves, speed and sizes."""
    missing = tmp_path / "none.json"
    assert exact_error(["curves", "--metrics", str(missing), "--output", str(tmp_path / "c.png")], capsys) == (
        f"error: metrics file {missing} does not exist\n")
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"rows": [{"config": "unetpp_tiny", "mode": "L1", "latency_median_ms": 3.0, "size": 128}]}))
    assert exact_error(["speed", "--benchmark", str(bench), "--output", str(tmp_path / "s.png")], capsys) == (
        f"error: {bench}: row 0 (unetpp_tiny[L1]) has no 'iou'/'score'; add them to the row or pass its evaluator "
        "summary.json (--summary 'unetpp_tiny[L1]=PATH')\n")
    # sizes: a prediction made for a 32 x 32 image, scored against the 64 x 64 image 7 of the ground truth
    gt_file = coco_file(tmp_path / "gt.json", [{"id": 7, "file_name": "a.png", "height": 64, "width": 64}], [])
    small = [{"image_id": 7, "category_id": 1, "score": 0.9, "segmentation": rle(np.ones((32, 32), bool))}]
    pred = coco_file(tmp_path / "small.json", None, small, results=True)
    assert exact_error(["sizes", "--gt", gt_file, "--pred", f"m={pred}", "--output", str(tmp_path / "z.png")], capsys) == (
        f"error: {pred}: entry 0 (image id 7): RLE size [32, 32] (height, width) does not match the image size [64, 64]\n")
