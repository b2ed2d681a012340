"""tools/train_net.py --num-gpus 2 on the CPU: 2 processes joined by gloo (maskrcnnpp.engine.launch).

One run of 2 iterations on 4 synthetic training images, 1 image per process per step, probed in
each process (tests/helpers/ddp_probe.py); the first step is then made again in this process from
the same weights and the same two batches.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "tests" / "helpers" / "ddp_probe.py"
# Every anchor and every proposal is sampled (per-image quotas above their counts), so each
# process's loss is a function of its weights and its batch alone, with no random draw.
OPTS = ["DATASETS.NUCLEI.SYNTH_IMAGES", "[4, 2, 2]", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
        "SOLVER.CHECKPOINT_PERIOD", "1", "SOLVER.WARMUP_FACTOR", "1.0", "TEST.EVAL_PERIOD", "0", "DATASETS.VAL", "()",
        "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "100000", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "100000",
        "INPUT.RANDOM_FLIP", "none", "TEST.NUCLEI.COCO_AP", "False"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    probe, out = root / "probe", root / "out"
    probe.mkdir()
    env = dict(os.environ, MASKRCNNPP_CACHE=str(root / "cache"))
    res = subprocess.run([sys.executable, str(PROBE), str(probe), "--config", "maskrcnnpp_tiny", "--num-gpus", "2",
                          "--device", "cpu", "--dist-url", "auto", "OUTPUT_DIR", str(out), *OPTS],
                         capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert res.returncode == 0, res.stderr[-3000:]
    return probe, out, res


def test_two_processes_start_and_each_reads_its_own_images(run):
    probe, _, res = run
    assert "World size: 2" in res.stdout + res.stderr
    ranks = [json.loads((probe / f"rank{r}_batches.json").read_text()) for r in (0, 1)]
    # 2 steps x 1 image per process: the 4 training images, each read by one process exactly once
    assert [len(r) for r in ranks] == [2, 2] and all(len(batch) == 1 for r in ranks for batch in r)
    seen = [name for r in ranks for batch in r for name in batch]
    assert sorted(os.path.basename(n) for n in seen) == [f"synth_s0_{k:05d}.png" for k in range(4)], seen


def test_gradients_are_averaged_over_the_processes(run):
    from detectron2.utils.events import EventStorage

    from maskrcnnpp.config import setup_cfg
    from maskrcnnpp.engine import NucleiTrainer

    probe, _, _ = run
    before = [torch.load(probe / f"rank{r}_before.pt") for r in (0, 1)]
    after = [torch.load(probe / f"rank{r}_after.pt") for r in (0, 1)]
    batches = [torch.load(probe / f"rank{r}_batch0.pt", weights_only=False) for r in (0, 1)]
    assert all(torch.equal(before[0][k], before[1][k]) for k in before[0])  # rank 0's weights, broadcast
    assert all(torch.equal(after[0][k], after[1][k]) for k in after[0])  # the same step in both processes

    cfg = setup_cfg("maskrcnnpp_tiny", OPTS, device="cpu")

    def one_step(loss_of_batches):
        torch.manual_seed(0)
        model = NucleiTrainer.build_model(cfg)
        model.load_state_dict(before[0])
        model.train()
        optimizer = NucleiTrainer.build_optimizer(cfg, model)
        NucleiTrainer.build_lr_scheduler(cfg, optimizer)  # sets the learning rate of iteration 0
        with EventStorage(0):  # the losses log to it, as in training
            loss_of_batches(model).backward()
        optimizer.step()
        return model.state_dict()

    def loss(model, batch):
        return sum(model(batch).values())

    # one process, both batches: the mean of the two processes' losses (DDP averages their gradients)
    combined = one_step(lambda m: (loss(m, batches[0]) + loss(m, batches[1])) / 2)
    alone = one_step(lambda m: loss(m, batches[0]))  # what rank 0 would do without the other's gradients
    params = [k for k, v in before[0].items() if v.is_floating_point() and not torch.equal(after[0][k], v)]
    assert len(params) > 50
    step = max((after[0][k] - before[0][k]).abs().max().item() for k in params)
    off = max((after[0][k] - combined[k]).abs().max().item() for k in params)
    off_alone = max((after[0][k] - alone[k]).abs().max().item() for k in params)
    print(f"largest change {step:.3g}; off the averaged step by {off:.3g}, off rank 0's alone by {off_alone:.3g}")
    assert off < 1e-3 * step, (off, step)  # float summation order only
    # without the other process's gradients the step would differ far more than summation order does
    # (how much depends on the two batches: 4.7 % to 11 % of the step in runs here)
    assert off_alone > 1e-2 * step and off_alone > 100 * off, (off_alone, off, step)


def test_only_rank_0_writes_checkpoints_and_outputs(run):
    probe, out, _ = run
    written = [set(json.loads((probe / f"rank{r}_written.json").read_text())) for r in (0, 1)]
    assert written[1] <= {"log.txt.rank1"}, written[1]  # Detectron2's per-process log, nothing else
    assert {"model_0000000.pth", "model_0000001.pth", "model_final.pth", "last_checkpoint", "metrics.json",
            "config.yaml"} <= written[0]
    assert (out / "model_final.pth").is_file() and (out / "inference" / "nuclei_synth_test" / "summary.json").is_file()
