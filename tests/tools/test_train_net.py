"""tools/train_net.py end to end on the tiny Mask RCNN++ config and synthetic nuclei, and its errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
TRAIN_NET = str(REPO / "tools" / "train_net.py")
SMALL = ["DATASETS.NUCLEI.SYNTH_IMAGES", "[8, 4, 4]", "SOLVER.IMS_PER_BATCH", "2", "TEST.NUCLEI.COCO_AP", "True"]


def run(args, env_extra=None, timeout=900) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, TRAIN_NET, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)


def read_metrics(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """20 iterations with validation + checkpoints every 10, then the final test."""
    out = tmp_path_factory.mktemp("train")
    env = {"MASKRCNNPP_CACHE": str(tmp_path_factory.mktemp("cache"))}
    opts = ["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "20", "SOLVER.CHECKPOINT_PERIOD", "10", "TEST.EVAL_PERIOD", "10", *SMALL]
    res = run(["--config", "maskrcnnpp_tiny", "--num-gpus", "1", "--device", "cpu", *opts], env)
    assert res.returncode == 0, res.stderr[-3000:]
    return out, env, opts, res


def test_train_checkpoints_validates_and_tests(trained):
    out, _, _, res = trained
    assert (out / "model_0000009.pth").is_file() and (out / "model_final.pth").is_file()
    assert (out / "model_best.pth").is_file()  # validation ran and kept the best
    # Saving model_best must not make it the checkpoint that --resume continues from.
    assert (out / "last_checkpoint").read_text().strip() == "model_final.pth"
    metrics = read_metrics(out / "metrics.json")
    iters = [m["iteration"] for m in metrics if "total_loss" in m]
    assert iters and max(iters) == 19
    # Validation after 10 steps (Detectron2 logs it at storage iteration 9) and after training
    # (logged at 20, the trainer's iteration once the loop has ended); the best of the two is kept.
    validated = {m["iteration"]: m["nuclei/score"] for m in metrics if "nuclei/score" in m}
    assert sorted(validated) == [9, 20]
    best = json.loads((out / "model_best.json").read_text())
    best_iter = max(validated, key=lambda it: (validated[it], -it))  # a tie keeps the earlier one
    assert best == {"metric": "nuclei/score", "value": pytest.approx(validated[best_iter]), "iteration": best_iter}
    assert list(out.glob("events.out.tfevents.*")), "TensorBoard events written"
    summary = json.loads((out / "inference" / "nuclei_synth_test" / "summary.json").read_text())
    for key in ("score", "iou", "dice", "aji", "pq"):
        assert 0.0 <= summary[key] <= 1.0


def test_console_is_short_and_the_log_file_keeps_everything(trained):
    out, _, _, res = trained
    log = (out / "log.txt").read_text()
    for opening in ("Environment info:", "Contents of args.config_file=", "Running with full config:", "Model:"):
        assert opening not in res.stdout, opening
        assert opening in log, opening
    assert f"maskrcnnpp_tiny (MaskRCNNPlusPlus) on cpu, output in {out}; environment, config file, full config and " \
           f"model: {out / 'log.txt'}" in res.stdout
    # progress from the first iterations on, then every 20; metrics.json keeps Detectron2's period
    printed = [int(m) for m in re.findall(r" iter: (\d+) ", res.stdout)]
    assert printed[:5] == [0, 1, 4, 9, 19], printed
    assert [m["iteration"] for m in read_metrics(out / "metrics.json") if "total_loss" in m] == [19]
    assert "torch.meshgrid" not in res.stderr


def test_eval_only_reproduces_final_test_metrics(trained):
    out, env, opts, _ = trained
    first = json.loads((out / "inference" / "nuclei_synth_test" / "summary.json").read_text())
    best = out / "model_best.pth"
    res = run(["--config", "maskrcnnpp_tiny", "--eval-only", "--device", "cpu", *opts, "MODEL.WEIGHTS", str(best),
               "OUTPUT_DIR", str(out / "eval_only")], env)
    assert res.returncode == 0, res.stderr[-3000:]
    again = json.loads((out / "eval_only" / "inference" / "nuclei_synth_test" / "summary.json").read_text())
    for key in ("score", "iou", "dice", "aji", "pq"):
        assert again[key] == pytest.approx(first[key], abs=1e-9), key


def test_eval_only_refuses_weights_of_another_architecture(trained, tmp_path):
    out, env, opts, _ = trained
    best = out / "model_best.pth"  # Mask RCNN++: scored by plain Mask R-CNN it would be random, a silent 0
    res = run(["--config", "maskrcnn_tiny", "--eval-only", "--device", "cpu", *opts, "MODEL.WEIGHTS", str(best),
               "OUTPUT_DIR", str(tmp_path / "eval")], env)
    _assert_clean_error(res, f"weights {best} do not fit config maskrcnn_tiny", str(out / "config.yaml"))
    assert res.stderr.count("error:") == 1
    assert not (tmp_path / "eval").exists()  # nothing scored, nothing written


def test_eval_only_without_weights_is_an_error(tmp_path):
    res = run(["--config", "maskrcnnpp_tiny", "--eval-only", "--device", "cpu", "OUTPUT_DIR", str(tmp_path / "e"), *SMALL],
              {"MASKRCNNPP_CACHE": str(tmp_path / "cache")})
    _assert_clean_error(res, "--eval-only scores trained weights: give MODEL.WEIGHTS")
    assert not (tmp_path / "e").exists()


def test_a_failing_command_leaves_the_run_in_its_output_dir_untouched(trained, tmp_path):
    out, env, opts, _ = trained
    before = {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in ("config.yaml", "log.txt")}
    for extra in (["DATASETS.TRAIN", "('dsb2018_train',)", "DATASETS.NUCLEI.DSB2018_ROOT", str(tmp_path / "empty")],
                  ["MODEL.WEIGHTS", str(tmp_path / "no_such.pth")],
                  ["MODEL.UNETPP_FPN.WIDTHS", "[16, 32, 64, 64]"],  # refused when the model is built
                  ["INPUT.NUCLEI_AUG.INVERT_PROB", "2.0"]):  # refused before the data loader is built
        res = run(["--config", "maskrcnnpp_tiny", "--device", "cpu", *opts, *extra, "OUTPUT_DIR", str(out)], env)
        assert res.returncode == 2, res.stderr[-2000:]
        assert {name: ((out / name).read_bytes(), (out / name).stat().st_mtime_ns) for name in before} == before


def test_resume_continues_from_the_last_checkpoint(trained):
    out, env, opts, _ = trained
    res = run(["--config", "maskrcnnpp_tiny", "--resume", "--device", "cpu", *opts, "SOLVER.MAX_ITER", "25",
               "TEST.EVAL_PERIOD", "0"], env)
    assert res.returncode == 0, res.stderr[-3000:]
    iters = [m["iteration"] for m in read_metrics(out / "metrics.json") if "total_loss" in m]
    assert max(iters) == 24
    log = res.stderr + res.stdout
    assert "[Checkpointer] Loading from" in log and "model_final.pth" in log and "Starting training from iteration 20" in log


def _assert_clean_error(res: subprocess.CompletedProcess, *fragments: str) -> None:
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr
    for fragment in fragments:
        assert fragment in res.stderr, (fragment, res.stderr[-2000:])


def test_unknown_config_key_is_a_clear_error():
    _assert_clean_error(run(["--config", "maskrcnnpp_tiny", "MODEL.UNETPP_FPN.WIDHTS", "[8]"]),
                        "Non-existent key: MODEL.UNETPP_FPN.WIDHTS")


def test_unknown_config_name_lists_the_available_ones():
    _assert_clean_error(run(["--config", "maskrcnnp_r101"]), "maskrcnnp_r101", "maskrcnnpp_r101.yaml")


def test_unregistered_dataset_is_a_clear_error():
    _assert_clean_error(run(["--config", "maskrcnnpp_tiny", "DATASETS.TRAIN", "('nuclei_typo',)"]),
                        "dataset 'nuclei_typo' is not registered", "nuclei_synth_train")


def test_unprepared_dsb2018_says_how_to_prepare_it(tmp_path):
    dsb = tmp_path / "dsb"
    res = run(["--config", "maskrcnnpp_tiny", "DATASETS.TRAIN", "('dsb2018_train',)", "DATASETS.NUCLEI.DSB2018_ROOT",
               str(dsb)], {"MASKRCNNPP_DSB2018_ZIP": "/data/stage1_train.zip"})
    _assert_clean_error(res, "python datasets/prepare_dsb2018.py --src", str(dsb))
    assert res.stderr.splitlines()[-1] == (
        f"error: dsb2018_train: no prepared DSB 2018 data at {dsb} (missing {dsb / 'annotations' / 'train.json'}). "
        f"Prepare it with: python datasets/prepare_dsb2018.py --src /data/stage1_train.zip --out {dsb} , or set "
        "DATASETS.NUCLEI.DSB2018_ROOT / MASKRCNNPP_DSB2018 to a prepared folder")


def test_weights_that_cannot_be_downloaded_name_the_offline_config(tmp_path):
    res = run(["--config", "maskrcnnpp_r101", "--eval-only", "--device", "cpu", "MODEL.WEIGHTS",
               "https://127.0.0.1:9/R-101.pkl", "DATASETS.TEST", "('nuclei_synth_test',)", "DATASETS.TRAIN",
               "('nuclei_synth_train',)", "DATASETS.VAL", "()", "OUTPUT_DIR", str(tmp_path)],
              {"MASKRCNNPP_CACHE": str(tmp_path / "cache")})
    _assert_clean_error(res, "cannot download MODEL.WEIGHTS=https://127.0.0.1:9/R-101.pkl", "maskrcnnpp_r101_scratch.yaml")


def test_a_machine_rank_outside_the_machines_is_a_clear_error():
    # (several CPU processes are supported: tests/tools/test_train_net_multiprocess.py)
    _assert_clean_error(run(["--config", "maskrcnnpp_tiny", "--device", "cpu", "--num-gpus", "2", "--num-machines", "2",
                             "--machine-rank", "2"]),
                        "error: --num-gpus 2, --num-machines 2, --machine-rank 2: need --num-gpus >= 0, "
                        "--num-machines >= 1 and 0 <= --machine-rank < --num-machines")


def test_eval_only_without_config_or_weights_scores_the_default_shipped_model_on_the_cpu(tmp_path):
    from maskrcnnpp import model_zoo

    res = run(["--eval-only", "OUTPUT_DIR", str(tmp_path / "e"), "DATASETS.TEST", "('nuclei_synth_test',)",
               "DATASETS.NUCLEI.SYNTH_IMAGES", "[2, 2, 2]", "TEST.NUCLEI.COCO_AP", "False"],
              {"MASKRCNNPP_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-3000:]
    name = model_zoo.default_model()
    assert f"--eval-only without MODEL.WEIGHTS: scoring the shipped model {name}" in res.stdout
    saved = (tmp_path / "e" / "config.yaml").read_text()
    assert "WEIGHTS: " + model_zoo.weights_path(model_zoo.get(name)) in saved
    assert json.loads((tmp_path / "e" / "inference" / "nuclei_synth_test" / "summary.json").read_text())["num_images"] == 2
    if not torch.cuda.is_available():  # MODEL.DEVICE auto: the CPU, without a warning
        assert "DEVICE: cpu" in saved and "no GPU is available" not in res.stderr + res.stdout


def test_invalid_model_option_is_reported_with_its_key(tmp_path):
    res = run(["--config", "maskrcnnpp_tiny", "--device", "cpu", "OUTPUT_DIR", str(tmp_path),
               "MODEL.UNETPP_FPN.WIDTHS", "[16, 32, 64, 64]", *SMALL], {"MASKRCNNPP_CACHE": str(tmp_path / "cache")})
    _assert_clean_error(res, "MODEL.UNETPP_FPN.WIDTHS=[16, 32, 64, 64] must be multiples of 32")


def test_sigterm_saves_a_checkpoint_and_resume_continues_after_it(tmp_path):
    import signal
    import time

    env = dict(os.environ, MASKRCNNPP_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "run"
    opts = ["OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", "100000", "SOLVER.CHECKPOINT_PERIOD", "100000",
            "TEST.EVAL_PERIOD", "0", *SMALL]
    proc = subprocess.Popen([sys.executable, TRAIN_NET, "--config", "maskrcnnpp_tiny", "--device", "cpu", *opts],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    deadline = time.time() + 600
    metrics = out / "metrics.json"
    while time.time() < deadline and not (metrics.is_file() and metrics.stat().st_size):  # first line: iteration 19
        time.sleep(0.5)
    assert metrics.stat().st_size
    proc.send_signal(signal.SIGTERM)
    log, _ = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, log[-3000:]
    assert "Traceback" not in log
    saved = (out / "last_checkpoint").read_text().strip()
    stopped_at = int(saved[len("model_"):-len(".pth")])
    assert stopped_at >= 19 and (out / saved).is_file()  # no periodic checkpoint was due: only this one
    assert f"Stopped by SIGTERM after iteration {stopped_at}; saved {out / saved}" in log
    res = run(["--config", "maskrcnnpp_tiny", "--device", "cpu", "--resume", *opts, "SOLVER.MAX_ITER", str(stopped_at + 3)],
              {"MASKRCNNPP_CACHE": str(tmp_path / "cache")})
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"Starting training from iteration {stopped_at + 1}" in res.stderr + res.stdout
