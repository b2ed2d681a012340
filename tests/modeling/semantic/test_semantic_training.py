"""A few training steps of every tiny semantic config on synthetic nuclei lower the loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from detectron2.modeling import build_model
from detectron2.solver import build_optimizer
from detectron2.utils.events import EventStorage

from maskrcnnpp.data.semantic import SemanticNucleiMapper
from semantic_testutils import TINY_CONFIGS, make_cfg, write_dataset

STEPS = 10


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("semantic_nuclei"), num_images=2, size=96, seed=3)


@pytest.mark.parametrize("name", TINY_CONFIGS)
def test_few_steps_lower_the_loss(name, dataset):
    torch.manual_seed(0)
    np.random.seed(0)
    cfg = make_cfg(name)
    model = build_model(cfg).train()
    mapper = SemanticNucleiMapper(cfg, is_train=True)
    batch = [mapper(d) for d in dataset]  # one fixed batch of 64 px crops
    assert all(x["image"].shape[-2:] == (64, 64) for x in batch)
    optimizer = build_optimizer(cfg, model)
    history = []
    with EventStorage() as storage:
        for step in range(STEPS):
            storage.iter = step
            losses = model(batch)
            total = sum(losses.values())
            assert torch.isfinite(total)
            optimizer.zero_grad()
            total.backward()
            optimizer.step()
            history.append(total.item())
    # Deterministic (fixed batch, GroupNorm, no dropout): the loss must fall steadily, not just wobble.
    assert history[-1] < 0.96 * history[0], f"{name}: loss {history}"
    assert int((np.diff(history) < 0).sum()) >= STEPS - 2, f"{name}: loss {history}"
    # The trained model predicts through the whole inference path.
    model.eval()
    (out,) = model([{"image": batch[0]["image"], "height": 64, "width": 64}])
    assert out["sem_seg"].shape == (1, 64, 64) and len(out["instances"]) >= 0
