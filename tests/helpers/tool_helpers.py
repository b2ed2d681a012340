"""Shared by the tests of tools/predict.py, tools/visualize.py and maskrcnnpp.inference."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
from dsb2018_data import disk_labels  # noqa: F401  (re-exported for the tests)

REPO = Path(__file__).resolve().parents[2]
# Few proposals/detections keep a randomly initialised tiny model fast on CPU.
FAST_OPTS = ["MODEL.RPN.POST_NMS_TOPK_TEST", "100", "TEST.DETECTIONS_PER_IMAGE", "30"]




def nuclei_image(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """uint8 grey fluorescence-like image of a label image: bright nuclei with noise on dark ground."""
    rng = np.random.default_rng(seed)
    image = np.where(labels > 0, 170 + 10 * (labels % 5), 20).astype(np.float64)
    image += rng.normal(0, 6, labels.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def save_tiny_weights(path: Path, config: str = "maskrcnnpp_tiny") -> str:
    """Build ``config`` with random init (seed 0) on CPU and save its weights with DetectionCheckpointer."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.modeling import build_model

    from maskrcnnpp.config import setup_cfg

    path.mkdir(parents=True, exist_ok=True)
    cfg = setup_cfg(config, [], device="cpu")
    torch.manual_seed(0)
    model = build_model(cfg)
    DetectionCheckpointer(model, save_dir=str(path)).save("random_init")
    return str(path / "random_init.pth")


def run_tool(tool: str, args: Sequence[str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``tools/<tool>`` in a fresh interpreter; returns the completed process (text output)."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, str(REPO / "tools" / tool), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)


def partition(labels: np.ndarray) -> set:
    """The set of objects of a label image, each as a frozenset of flat pixel indices (ids ignored)."""
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    ids, starts = np.unique(flat[order], return_index=True)
    groups = np.split(order, starts[1:])
    return {frozenset(g.tolist()) for i, g in zip(ids, groups) if i != 0}
