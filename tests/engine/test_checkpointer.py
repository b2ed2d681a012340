"""maskrcnnpp.engine.checkpointer: complete checkpoint files only, and a resume past a damaged one."""
from __future__ import annotations

import errno
import logging
import os

import pytest
import torch

from maskrcnnpp.engine import UserError
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
        real_save(obj, f, *a, **k)  # the bytes go out, then the disk fills before the file is complete
        with open(f, "r+b") as out:
            out.truncate(10)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f)

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_at(ck, 19)
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
    from maskrcnnpp.engine import NucleiTrainer, setup_cfg

    cfg = setup_cfg("maskrcnn_tiny", ["OUTPUT_DIR", str(tmp_path), "DATALOADER.NUM_WORKERS", "0",
                                      "DATASETS.NUCLEI.SYNTH_IMAGES", "[4, 2, 2]"], device="cpu")
    trainer = NucleiTrainer(cfg)
    assert isinstance(trainer.checkpointer, NucleiCheckpointer)
    periodic = [h for h in trainer._hooks if type(h).__name__ == "PeriodicCheckpointer"]
    assert periodic and all(h.checkpointer is trainer.checkpointer for h in periodic)
