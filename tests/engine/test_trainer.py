"""NucleiTrainer: a fresh run in an OUTPUT_DIR that holds an earlier run's files uses only its own.

Two tiny Mask R-CNN runs on synthetic nuclei share one OUTPUT_DIR: the first validates and keeps
``model_best.pth``; the second starts afresh (no resume) without validation. Its final test must
score its own final weights, and a resume after it stopped before its first checkpoint must not
continue the first run.
"""
from __future__ import annotations

import json

import pytest
import torch
from detectron2.engine import HookBase

from maskrcnnpp.data.datasets import register_synthetic, setup_datasets
from maskrcnnpp.config import setup_cfg
from maskrcnnpp.engine.trainer import NucleiTrainer

COMMON = ["DATASETS.NUCLEI.SYNTH_IMAGES", "[2, 1, 1]", "DATASETS.NUCLEI.SYNTH_SIZE", "96", "SOLVER.IMS_PER_BATCH", "1",
          "DATALOADER.NUM_WORKERS", "0", "SOLVER.CHECKPOINT_PERIOD", "1000", "TEST.NUCLEI.COCO_AP", "False",
          "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", "96"]


@pytest.fixture
def out_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKRCNNPP_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "run"
    register_synthetic()  # the default sizes again, for the tests that follow in this process


def trainer_for(out_dir, opts, resume=False) -> NucleiTrainer:
    cfg = setup_cfg("maskrcnn_tiny", [*COMMON, "OUTPUT_DIR", str(out_dir), *opts], device="cpu")
    setup_datasets(cfg)
    trainer = NucleiTrainer(cfg)
    trainer.resume_or_load(resume=resume)
    return trainer


class Stopped(RuntimeError):
    pass


class StopAfterFirstStep(HookBase):
    def after_step(self):
        raise Stopped("stopped before the first checkpoint")


def test_fresh_run_sets_aside_an_earlier_runs_best_and_last_checkpoint(out_dir):
    first = trainer_for(out_dir, ["SOLVER.MAX_ITER", "3", "DATASETS.VAL", "('nuclei_synth_val',)", "TEST.EVAL_PERIOD", "3"])
    first.train()
    best_of_first = json.loads((out_dir / "model_best.json").read_text())
    assert best_of_first["iteration"] == 3 and (out_dir / "model_best.pth").is_file()
    assert (out_dir / "last_checkpoint").read_text().strip() == "model_final.pth"

    # Second run, fresh, no validation: its final test scores the weights it trained.
    second_opts = ["SOLVER.MAX_ITER", "2", "DATASETS.VAL", "()", "TEST.EVAL_PERIOD", "0", "SOLVER.BASE_LR", "0.05"]
    second = trainer_for(out_dir, second_opts)
    second.train()
    # the time spent validating inside train() is kept apart (tools/demo.py reports training alone)
    assert first.validation_seconds > 0 and second.validation_seconds == 0
    trained = {k: v.clone() for k, v in second.model.state_dict().items()}
    second.final_test()
    assert all(torch.equal(trained[k], v) for k, v in second.model.state_dict().items())
    assert not (out_dir / "model_best.pth").exists()
    assert json.loads((out_dir / "model_best.previous.json").read_text()) == best_of_first
    assert (out_dir / "model_best.previous.pth").is_file()

    # Third run, fresh, stopped after one step (before any checkpoint of its own): a resume must
    # start afresh, not from the second run's model_final.pth (iteration 1, so start_iter 2).
    third = trainer_for(out_dir, second_opts)
    third.register_hooks([StopAfterFirstStep()])
    with pytest.raises(Stopped):
        third.train()
    assert trainer_for(out_dir, second_opts, resume=True).start_iter == 0


def test_resumed_run_keeps_its_best_checkpoint(out_dir):
    opts = ["DATASETS.VAL", "('nuclei_synth_val',)", "TEST.EVAL_PERIOD", "2", "SOLVER.CHECKPOINT_PERIOD", "2"]
    trainer_for(out_dir, [*opts, "SOLVER.MAX_ITER", "2"]).train()
    best = json.loads((out_dir / "model_best.json").read_text())
    resumed = trainer_for(out_dir, [*opts, "SOLVER.MAX_ITER", "3"], resume=True)
    assert resumed.start_iter == 2
    resumed.train()
    assert not (out_dir / "model_best.previous.pth").exists()  # its own best is not set aside
    after = json.loads((out_dir / "model_best.json").read_text())
    assert after == best or (after["iteration"] == 3 and after["value"] > best["value"])


def keep_best_for(save_dir, start_iter: int):
    from types import SimpleNamespace

    from maskrcnnpp.engine.trainer import KeepBestCheckpointer

    hook = KeepBestCheckpointer(2, SimpleNamespace(save_dir=str(save_dir)), "nuclei/score")
    hook.trainer = SimpleNamespace(start_iter=start_iter)
    return hook


def test_a_resume_reads_the_best_value_back_and_names_a_truncated_record(tmp_path):
    from maskrcnnpp.errors import UserError

    record = tmp_path / "model_best.json"
    record.write_text('{"metric": "nuclei/score", "value": 0.25, "iteration": 4}')
    hook = keep_best_for(tmp_path, start_iter=6)
    hook.before_train()
    assert (hook.best_metric, hook.best_iter) == (0.25, 4)

    record.write_text('{"metric": "nuclei/score", "val')  # cut short by a killed process or a full disk
    with pytest.raises(UserError, match=rf"^best-checkpoint record {record} is not valid JSON: "):
        keep_best_for(tmp_path, start_iter=6).before_train()
    record.write_text('{"metric": "nuclei/score"}')
    with pytest.raises(UserError, match=rf"^best-checkpoint record {record} has no \"value\" and \"iteration\""):
        keep_best_for(tmp_path, start_iter=6).before_train()
    fresh = keep_best_for(tmp_path, start_iter=0)  # a fresh run does not read it
    fresh.before_train()
    assert fresh.best_metric is None
