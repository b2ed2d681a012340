"""Pictures of nuclei instance masks: coloured overlays, contours, error maps, PNG grids.

* :func:`draw_instances` -- every nucleus of a label image drawn with Detectron2's ``Visualizer``
  in its own colour (:func:`distinct_colors`), filled (``mode="overlay"``) or as outlines only
  (``mode="contour"``, readable when nuclei are crowded).
* :func:`error_map` -- the paper's Fig. 4 colouring of a prediction against the ground truth, by
  area: true positive (nucleus in both), false negative (ground-truth nucleus missed) and false
  positive (predicted where there is none) pixels, in ``ERROR_COLORS`` (Okabe-Ito colour-blind
  safe colours), background black, with a legend strip (:func:`error_legend`).
* :func:`compose_grid` / :func:`save_png` -- panels with titles laid out in a grid, saved as PNG.
"""
from __future__ import annotations

import colorsys
import os
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from detectron2.utils.visualizer import Visualizer

MODES = ("overlay", "contour", "errors")
# TP / FN / FP area colours of the error map (RGB, Okabe-Ito palette: yellow, blue, vermillion).
ERROR_COLORS: Dict[str, Tuple[int, int, int]] = {
    "TP": (240, 228, 66),
    "FN": (0, 114, 178),
    "FP": (213, 94, 0),
}
TITLE_HEIGHT = 18
PANEL_GAP = 4


def distinct_colors(n: int) -> np.ndarray:
    """``n`` RGB colours in [0, 1] whose hues follow the golden-ratio sequence (neighbours differ
    by ~137 degrees) with alternating lightness, so consecutive labels never look alike."""
    colors = np.zeros((n, 3), dtype=np.float64)
    for k in range(n):
        hue = (k * 0.618033988749895) % 1.0
        value = (1.0, 0.8)[k % 2]
        saturation = (0.85, 0.65, 1.0)[k % 3]
        colors[k] = colorsys.hsv_to_rgb(hue, saturation, value)
    return colors


def draw_instances(
    image: np.ndarray,
    labels: np.ndarray,
    mode: str = "overlay",
    scale: float = 1.0,
    alpha: float = 0.5,
) -> np.ndarray:
    """``uint8 [H*scale, W*scale, 3]`` picture of ``image`` (uint8 RGB) with each label's nucleus drawn.

    ``mode="overlay"`` fills each nucleus with its colour at ``alpha``; ``"contour"`` draws only
    its outline. Labels are ``1..K`` (any positive values; drawn in increasing order).
    """
    if mode not in ("overlay", "contour"):
        raise ValueError(f"mode must be 'overlay' or 'contour', got {mode!r}")
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and label image {labels.shape} differ in size")
    visualizer = Visualizer(image, scale=scale)
    ids = np.unique(labels)
    ids = ids[ids != 0]
    colors = distinct_colors(len(ids))
    if mode == "overlay":
        masks = [(labels == i).astype(np.uint8) for i in ids]
        out = visualizer.overlay_instances(masks=masks, assigned_colors=[tuple(c) for c in colors], alpha=alpha)
    else:
        out = visualizer.output
        for i, color in zip(ids, colors):
            out = visualizer.draw_binary_mask((labels == i).astype(np.uint8), color=tuple(color), edge_color=tuple(color), alpha=0.0)
    return out.get_image()


def error_areas(gt_labels: np.ndarray, pred_labels: np.ndarray) -> Dict[str, np.ndarray]:
    """Boolean maps of the true positive, false negative and false positive areas."""
    if gt_labels.shape != pred_labels.shape:
        raise ValueError(f"ground truth {gt_labels.shape} and prediction {pred_labels.shape} differ in size")
    gt, pred = gt_labels > 0, pred_labels > 0
    return {"TP": gt & pred, "FN": gt & ~pred, "FP": ~gt & pred}


def error_map(gt_labels: np.ndarray, pred_labels: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """``uint8 [H, W, 3]`` error map (Fig. 4): TP/FN/FP areas in ``ERROR_COLORS`` on black, with
    ground-truth and predicted nucleus borders kept visible (white lines between touching nuclei)."""
    from skimage.segmentation import find_boundaries

    areas = error_areas(gt_labels, pred_labels)
    out = np.zeros(gt_labels.shape + (3,), dtype=np.uint8)
    for name, area in areas.items():
        out[area] = ERROR_COLORS[name]
    # Without borders, touching nuclei merge into one blob; inner borders separate them.
    borders = find_boundaries(gt_labels, mode="inner") & (gt_labels > 0)
    out[borders] = (out[borders] * 0.5).astype(np.uint8)
    if scale != 1.0:
        out = _resize_nearest(out, scale)
    return out


def error_legend(width: int, counts: Optional[Dict[str, int]] = None) -> np.ndarray:
    """A white strip ``width`` pixels wide with the TP/FN/FP colour swatches (and pixel counts),
    one line of ``TITLE_HEIGHT`` pixels, or one line per entry when they do not fit side by side."""
    import cv2

    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.35
    entries = [(name if counts is None else f"{name} {counts[name]}", color) for name, color in ERROR_COLORS.items()]
    widths = [16 + cv2.getTextSize(text, font, font_scale, 1)[0][0] + 8 for text, _ in entries]
    one_line = sum(widths) <= width
    strip = np.full((TITLE_HEIGHT * (1 if one_line else len(entries)), width, 3), 255, dtype=np.uint8)
    x, y = 2, 0
    for (text, color), w in zip(entries, widths):
        cv2.rectangle(strip, (x, y + 4), (x + 10, y + 14), color, thickness=-1)
        cv2.putText(strip, text, (x + 13, y + 13), font, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
        if one_line:
            x += w
        else:
            y += TITLE_HEIGHT
    return strip


def _resize_nearest(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    rows = np.minimum((np.arange(int(round(h * scale))) / scale).astype(int), h - 1)
    cols = np.minimum((np.arange(int(round(w * scale))) / scale).astype(int), w - 1)
    return image[rows][:, cols]


def compose_grid(
    panels: Sequence[Tuple[str, np.ndarray]],
    ncols: Optional[int] = None,
    background: int = 255,
) -> np.ndarray:
    """Lay out ``(title, uint8 RGB)`` panels in a grid (row-major, ``ncols`` default = all in one row).

    Each cell is as large as the largest panel plus a ``TITLE_HEIGHT`` title bar; cells are
    separated by ``PANEL_GAP`` pixels. Panels are placed top-left in their cell, unscaled.
    """
    import cv2

    if not panels:
        raise ValueError("no panels to lay out")
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    cell_h = max(p.shape[0] for _, p in panels) + TITLE_HEIGHT
    cell_w = max(p.shape[1] for _, p in panels)
    grid = np.full(
        (nrows * cell_h + (nrows - 1) * PANEL_GAP, ncols * cell_w + (ncols - 1) * PANEL_GAP, 3), background, dtype=np.uint8
    )
    for k, (title, panel) in enumerate(panels):
        r, c = divmod(k, ncols)
        y, x = r * (cell_h + PANEL_GAP), c * (cell_w + PANEL_GAP)
        cv2.putText(grid, title, (x + 2, y + TITLE_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        grid[y + TITLE_HEIGHT : y + TITLE_HEIGHT + panel.shape[0], x : x + panel.shape[1]] = panel
    return grid


def save_png(path: str, image: np.ndarray) -> None:
    """Write ``uint8 RGB`` ``image`` as PNG, atomically (a temporary file renamed into place)."""
    from PIL import Image

    from ..utils.files import atomic_path

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp, format="PNG")


def comparison_panels(
    image: np.ndarray,
    mode: str,
    gt_labels: Optional[np.ndarray] = None,
    pred_labels: Optional[np.ndarray] = None,
    scale: float = 1.0,
) -> list:
    """The panels of one image for ``mode``: the image, then ground truth and prediction drawn as
    overlays or contours; ``mode="errors"`` draws both as contours and adds the error map with its legend."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    draw_mode = "contour" if mode in ("contour", "errors") else "overlay"
    shown = _resize_nearest(image, scale) if scale != 1.0 else image
    panels = [("image", shown)]
    if gt_labels is not None:
        panels.append((f"ground truth ({_count(gt_labels)})", draw_instances(image, gt_labels, draw_mode, scale)))
    if pred_labels is not None:
        panels.append((f"prediction ({_count(pred_labels)})", draw_instances(image, pred_labels, draw_mode, scale)))
    if mode == "errors":
        if gt_labels is None or pred_labels is None:
            raise ValueError("the error map needs both ground truth and a prediction")
        errors = error_map(gt_labels, pred_labels, scale)
        counts = {k: int(v.sum()) for k, v in error_areas(gt_labels, pred_labels).items()}
        panels.append(("errors (px)", np.concatenate([errors, error_legend(errors.shape[1], counts)], axis=0)))
    return panels


def _count(labels: np.ndarray) -> int:
    ids = np.unique(labels)
    return int((ids != 0).sum())
