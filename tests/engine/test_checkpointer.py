"""maskrcnnpp.engine.checkpointer: complete checkpoint files only, and a resume past a damaged one."""
from __future__ import annotations

import errno
import logging
import os

import pytest
import torch
from detectron2.engine import HookBase

from maskrcnnpp.errors import UserError
from maskrcnnpp.engine.checkpointer import NucleiCheckpointer


class Counter:
    """A checkpointable whose state says which save it came from."""

    def __init__(self):
        self.iteration = -1

    def state_dict(self):
        return {"iteration": self.iteration}

    def load_state_dict(self, state):
        self.iteration = state["iteration"]


def checkpointer(folder) -> NucleiCheckpointer:
    return NucleiCheckpointer(torch.nn.Linear(3, 2), str(folder), counter=Counter())


def save_at(ck: NucleiCheckpointer, iteration: int) -> str:
    ck.checkpointables["counter"].iteration = iteration
    with torch.no_grad():
        ck.model.weight.fill_(float(iteration))
    ck.save(f"model_{iteration:07d}")
    return os.path.join(ck.save_dir, f"model_{iteration:07d}.pth")


def test_a_save_cut_by_a_full_disk_leaves_the_last_complete_checkpoint_tagged(tmp_path, monkeypatch):
    ck = checkpointer(tmp_path)
    save_at(ck, 9)
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        assert hasattr(f, "write"), "saved through a path: torch then reports ENOSPC as a RuntimeError, no errno"
        real_save(obj, f, *a, **k)  # the bytes go out, then the disk fills before the file is complete
        f.flush()
        f.truncate(10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as write() raises it: no file name

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left") as err:
        save_at(ck, 19)
    assert err.value.filename == str(tmp_path / "model_0000019.pth")  # named for the one error line
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]  # no partial file
    assert ck.get_checkpoint_file() == str(tmp_path / "model_0000009.pth")


def test_resume_falls_back_to_the_newest_checkpoint_that_reads(tmp_path, caplog):
    ck = checkpointer(tmp_path)
    for iteration in (9, 19, 29):
        save_at(ck, iteration)
    damaged = tmp_path / "model_0000029.pth"
    damaged.write_bytes(damaged.read_bytes()[: 200])  # truncated after it was written (another tool, a bad disk)
    (tmp_path / "model_0000019.pth").write_bytes(b"not a checkpoint")
    fresh = checkpointer(tmp_path)
    with caplog.at_level(logging.WARNING, logger="maskrcnnpp.engine.checkpointer"):
        fresh.resume_or_load("", resume=True)
    assert fresh.checkpointables["counter"].iteration == 9
    assert float(fresh.model.weight[0, 0].detach()) == 9.0
    assert f"Cannot read the last checkpoint {damaged}" in caplog.text and "model_0000009.pth instead" in caplog.text
    assert fresh.get_checkpoint_file() == str(tmp_path / "model_0000009.pth")  # the tag names what was resumed


def test_resume_with_no_readable_checkpoint_names_the_file(tmp_path):
    ck = checkpointer(tmp_path)
    path = save_at(ck, 9)
    with open(path, "r+b") as f:
        f.truncate(100)
    with pytest.raises(UserError, match=f"cannot resume from {path}: the checkpoint is damaged"):
        checkpointer(tmp_path).resume_or_load("", resume=True)


def test_without_resume_the_given_weights_load_and_the_tag_is_ignored(tmp_path):
    ck = checkpointer(tmp_path / "a")
    weights = save_at(ck, 5)
    other = checkpointer(tmp_path / "b")
    other.resume_or_load(weights, resume=False)
    assert float(other.model.weight[0, 0].detach()) == 5.0 and other.checkpointables["counter"].iteration == -1


def test_the_trainer_saves_through_it(tmp_path):
    from maskrcnnpp.engine import NucleiTrainer
    from maskrcnnpp.config import setup_cfg

    cfg = setup_cfg("maskrcnn_tiny", ["OUTPUT_DIR", str(tmp_path), "DATALOADER.NUM_WORKERS", "0",
                                      "DATASETS.NUCLEI.SYNTH_IMAGES", "[4, 2, 2]"], device="cpu")
    trainer = NucleiTrainer(cfg)
    assert isinstance(trainer.checkpointer, NucleiCheckpointer)
    periodic = [h for h in trainer._hooks if type(h).__name__ == "PeriodicCheckpointer"]
    assert periodic and all(h.checkpointer is trainer.checkpointer for h in periodic)


def test_a_stale_partial_checkpoint_is_removed_when_the_run_resumes(tmp_path):
    ck = checkpointer(tmp_path)
    save_at(ck, 9)
    (tmp_path / ".partial-abc.pth").write_bytes(b"cut by kill -9")
    checkpointer(tmp_path).resume_or_load("", resume=True)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000009.pth"]


class _SignalDuring(HookBase):
    """Sends this process ``signum`` in the given phase (after step 1, or in after_train like the final validation)."""

    def __init__(self, signum, phase):
        self.signum, self.phase = signum, phase

    def after_step(self):
        if self.phase == "step" and self.trainer.iter == 1:
            os.kill(os.getpid(), self.signum)

    def after_train(self):
        if self.phase == "final validation":
            os.kill(os.getpid(), self.signum)
            raise AssertionError("the final validation ran to its end after the signal")


@pytest.mark.parametrize("phase", ["step", "final validation"])
def test_a_stop_signal_saves_within_the_iterations_and_stops_at_once_after_them(tmp_path, phase):
    import signal

    from detectron2.engine import SimpleTrainer

    from maskrcnnpp.engine.checkpointer import SaveOnStopSignal

    model = torch.nn.Linear(2, 1)
    data = iter(lambda: torch.zeros(1, 2), None)
    trainer = SimpleTrainer(lambda_model(model), data, torch.optim.SGD(model.parameters(), lr=0.1))
    ck = NucleiCheckpointer(model, str(tmp_path), trainer=trainer)
    # the signal hook first: Detectron2's EvalHook (the final validation) comes before it in after_train
    trainer.register_hooks([_SignalDuring(signal.SIGTERM, phase), SaveOnStopSignal(ck)])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stop:
        trainer.train(0, 4)
    assert stop.value.code == 128 + signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    if phase == "step":
        assert ck.get_checkpoint_file() == str(tmp_path / "model_0000001.pth")  # the iteration in progress
    else:
        assert not ck.has_checkpoint()  # nothing was due: stopped at once


def lambda_model(model):
    class Loss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, batch):
            return {"loss": self.inner(batch).pow(2).sum()}

    return Loss()
