"""Synthetic microscopy nuclei with exact instance labels (the embedded stand-in for DSB 2018).

Each image is drawn from its seed alone:

* shapes: ellipses (random axes ratio and orientation) whose radius is perturbed by a few
  low-order Fourier terms, r(theta) = r_ellipse(theta) * (1 + sum_k a_k cos(k theta + phi_k)), k = 2..5;
* layout: a typical radius per image (8 to 30 px at 128 px, scaled with the image side) with
  per-nucleus spread, some nuclei scattered, others packed into clusters where they touch; a pixel
  claimed by two nuclei goes to the one whose boundary is relatively farther (smaller
  normalised radius), which yields the straight-ish shared walls of touching nuclei;
* "fluorescence": bright textured nuclei (chromatin texture, brighter core, dim and bright
  nuclei) on a dark background, grey or tinted;
* "brightfield": H&E-like, rendered by Beer-Lambert absorption of haematoxylin (dark purple
  nuclei) and eosin (pink, mottled background) with Ruifrok & Johnston's stain vectors;
* optics: uneven illumination (gradient + broad bump), Gaussian blur, Poisson shot noise and
  Gaussian read noise.

The label image is the ground truth the pixels are rendered from, so it is exact by construction.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image
from scipy import ndimage

from ..utils.files import commit_partial_dir, partial_dir, remove_stale_partials
from ..utils.kaggle_rle import coco_rle_from_crop

__all__ = ["STYLES", "generate_nuclei_image", "build_synthetic_dataset", "generator_digest", "labels_to_coco_annotations"]

STYLES = ("fluorescence", "brightfield")
# Ruifrok & Johnston (2001) optical-density vectors (R, G, B) of haematoxylin and eosin.
_HEMATOXYLIN = np.array([0.650, 0.704, 0.286])
_EOSIN = np.array([0.072, 0.990, 0.105])
_TINTS = np.array([[1.0, 1.0, 1.0], [0.55, 0.75, 1.0], [0.75, 0.55, 1.0], [0.5, 1.0, 0.6]])


@functools.lru_cache(maxsize=None)
def generator_digest() -> str:
    """sha256 of this module's source: a changed generator must not reuse cached images."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _shape_of(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    height, width = (int(v) for v in size)
    return height, width


def generate_nuclei_image(
    seed_or_rng: Union[int, Sequence[int], np.random.Generator],
    size: Union[int, Tuple[int, int]] = 128,
    style: str = "fluorescence",
    *,
    radius_range: Optional[Tuple[float, float]] = None,
    coverage: Optional[float] = None,
    max_nuclei: int = 400,
) -> Tuple[np.ndarray, np.ndarray]:
    """One synthetic microscopy image and its instance labels.

    Args:
        seed_or_rng: seed (int or sequence, e.g. ``[dataset_seed, index]``) or a NumPy Generator.
        size: side in pixels, or (height, width).
        style: "fluorescence" (bright nuclei, dark background) or "brightfield" (H&E-like).
        radius_range: (min, max) nucleus radius in px; default (8, 30) scaled by side/128.
        coverage: target fraction of the image covered by nuclei; default random in [0.12, 0.4].
        max_nuclei: upper bound on the number of nuclei.

    Returns:
        image ``uint8 [H, W, 3]`` and labels ``int32 [H, W]`` (0 background, 1..N nuclei, each a
        single connected region).
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    rng = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
    height, width = _shape_of(size)
    scale = min(height, width) / 128.0
    r_lo, r_hi = radius_range if radius_range is not None else (8.0 * scale, 30.0 * scale)
    if coverage is None:
        coverage = rng.uniform(0.12, 0.4)
    labels, ndist = _place_nuclei(rng, height, width, float(r_lo), float(r_hi), float(coverage), max_nuclei)
    render = _render_fluorescence if style == "fluorescence" else _render_brightfield
    image = render(rng, labels, ndist, scale)
    return image, labels


# ----------------------------------------------------------------------------- layout


def _place_nuclei(rng: np.random.Generator, height: int, width: int, r_lo: float, r_hi: float,
                  coverage: float, max_nuclei: int) -> Tuple[np.ndarray, np.ndarray]:
    """Label image and each pixel's normalised radius (0 at a nucleus centre, 1 on its boundary)."""
    labels = np.zeros((height, width), dtype=np.int32)
    ndist = np.full((height, width), np.inf, dtype=np.float32)
    # Typical radius of this image (log-uniform over the lower part of the range, as in DSB
    # images where one magnification dominates), then a log-normal spread per nucleus.
    typical = float(np.exp(rng.uniform(np.log(r_lo), np.log(max(r_lo, 0.6 * r_hi)))))
    target = coverage * height * width
    n_clusters = int(rng.integers(0, 4))
    centres = rng.uniform([0, 0], [height, width], size=(n_clusters, 2))
    p_cluster = rng.uniform(0.4, 0.85) if n_clusters else 0.0
    covered, next_id, failures = 0, 1, 0
    while covered < target and next_id <= max_nuclei and failures < 60:
        radius = float(np.clip(typical * np.exp(rng.normal(0.0, 0.25)), r_lo, r_hi))
        in_cluster = rng.random() < p_cluster
        if in_cluster:
            c = centres[rng.integers(n_clusters)]
            centre = c + rng.normal(0.0, 1.6 * typical, size=2)
            max_overlap = 0.2  # touching, slightly squeezed neighbours
        else:
            centre = rng.uniform([0, 0], [height, width])
            max_overlap = 0.03
        added = _add_nucleus(rng, labels, ndist, centre, radius, next_id, max_overlap)
        if added:
            covered += added
            next_id += 1
            failures = 0
        else:
            failures += 1
    return _clean_labels(labels, ndist, min_area=max(6, int(0.15 * np.pi * r_lo**2)))


def _add_nucleus(rng: np.random.Generator, labels: np.ndarray, ndist: np.ndarray, centre: np.ndarray,
                 radius: float, label: int, max_overlap: float) -> int:
    """Draw one star-shaped nucleus if it overlaps others by at most ``max_overlap``; return its area."""
    height, width = labels.shape
    ratio = rng.uniform(0.55, 1.0)  # minor / major axis
    a, b = radius / np.sqrt(ratio), radius * np.sqrt(ratio)  # same area as the circle of `radius`
    angle = rng.uniform(0.0, np.pi)
    k = np.arange(2, 6)
    irregularity = rng.uniform(0.02, 0.1)
    amplitudes = rng.normal(0.0, irregularity, size=k.size) / np.sqrt(k - 1)
    phases = rng.uniform(0.0, 2 * np.pi, size=k.size)
    reach = a * (1.0 + np.abs(amplitudes).sum()) + 1.0
    y0, y1 = max(0, int(centre[0] - reach)), min(height, int(centre[0] + reach) + 2)
    x0, x1 = max(0, int(centre[1] - reach)), min(width, int(centre[1] + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return 0
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - centre[0]
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - centre[1]
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    theta = np.arctan2(v, u)
    r_ellipse = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    wobble = 1.0 + (amplitudes[:, None, None] * np.cos(k[:, None, None] * theta + phases[:, None, None])).sum(0)
    nd = (np.sqrt(u * u + v * v) / (r_ellipse * wobble)).astype(np.float32)
    inside = nd <= 1.0
    area = int(inside.sum())
    if area == 0:
        return 0
    box_labels, box_nd = labels[y0:y1, x0:x1], ndist[y0:y1, x0:x1]
    if np.count_nonzero(inside & (box_labels > 0)) > max_overlap * area:
        return 0
    claim = inside & (nd < box_nd)
    box_labels[claim] = label
    box_nd[claim] = nd[claim]
    return int(claim.sum())


def _clean_labels(labels: np.ndarray, ndist: np.ndarray, min_area: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keep each nucleus's largest connected part, drop tiny ones, renumber 1..N in drawing order."""
    out = np.zeros_like(labels)
    next_id = 1
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        region = labels[box] == label
        parts, n = ndimage.label(region)
        if n > 1:
            sizes = np.bincount(parts.ravel())[1:]
            region = parts == (1 + int(np.argmax(sizes)))
        if region.sum() < min_area:
            continue
        out[box][region] = next_id
        next_id += 1
    ndist = np.where(out > 0, ndist, np.inf).astype(np.float32)
    return out, ndist


# ----------------------------------------------------------------------------- rendering


def _smooth_noise(rng: np.random.Generator, shape: Tuple[int, int], sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return field / (field.std() + 1e-6)


def _illumination(rng: np.random.Generator, shape: Tuple[int, int], strength: float) -> np.ndarray:
    """Smooth multiplicative field: a linear gradient plus a broad bright spot, mean about 1."""
    height, width = shape
    y = (np.arange(height, dtype=np.float32)[:, None] + 0.5) / height - 0.5
    x = (np.arange(width, dtype=np.float32)[None, :] + 0.5) / width - 0.5
    gy, gx = rng.normal(0.0, strength, size=2)
    cy, cx = rng.uniform(-0.5, 0.5, size=2)
    spread = rng.uniform(0.3, 0.8)
    bump = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * spread**2))
    field = 1.0 + gy * y + gx * x + strength * (bump - bump.mean())
    return np.clip(field, 0.4, 1.6).astype(np.float32)


def _nucleus_values(rng: np.random.Generator, labels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Per-pixel value of a per-nucleus random level (0 on the background)."""
    levels = np.zeros(int(labels.max()) + 1, dtype=np.float32)
    levels[1:] = rng.uniform(low, high, size=levels.size - 1)
    return levels[labels]


def _render_fluorescence(rng: np.random.Generator, labels: np.ndarray, ndist: np.ndarray, scale: float) -> np.ndarray:
    shape = labels.shape
    inside = labels > 0
    nd = np.where(inside, ndist, 1.0)
    chromatin = 1.0 + rng.uniform(0.1, 0.25) * _smooth_noise(rng, shape, 0.8 * scale) \
        + rng.uniform(0.05, 0.15) * _smooth_noise(rng, shape, 2.0 * scale)
    brightness = _nucleus_values(rng, labels, 0.35, 1.0) * (1.0 - rng.uniform(0.15, 0.4) * nd**2)
    background = rng.uniform(0.01, 0.08) * (1.0 + 0.3 * _smooth_noise(rng, shape, 6.0 * scale))
    signal = np.where(inside, brightness * np.clip(chromatin, 0.3, None), 0.0) + background
    signal = ndimage.gaussian_filter(signal.astype(np.float32), rng.uniform(0.5, 1.3) * scale)
    signal *= _illumination(rng, shape, rng.uniform(0.1, 0.35))
    photons = rng.uniform(40.0, 400.0)  # photons at full scale: sets the shot noise
    signal = rng.poisson(np.clip(signal, 0, None) * photons) / photons
    signal = signal + rng.normal(0.0, rng.uniform(0.003, 0.02), size=shape)
    tint = _TINTS[0] if rng.random() < 0.7 else _TINTS[rng.integers(1, len(_TINTS))]
    image = np.clip(signal[..., None] * tint * rng.uniform(0.8, 1.0) * 255.0, 0, 255)
    return np.round(image).astype(np.uint8)


def _render_brightfield(rng: np.random.Generator, labels: np.ndarray, ndist: np.ndarray, scale: float) -> np.ndarray:
    shape = labels.shape
    inside = labels > 0
    nd = np.where(inside, ndist, 0.0)
    chromatin = 1.0 + rng.uniform(0.15, 0.3) * _smooth_noise(rng, shape, 0.9 * scale)
    # Haematoxylin: dense in nuclei, a little darker at the membrane; eosin: mottled cytoplasm.
    hema = _nucleus_values(rng, labels, 0.55, 1.1) * (0.85 + 0.2 * nd**2) * np.clip(chromatin, 0.4, None)
    hema = np.where(inside, hema, 0.03) + 0.02 * _smooth_noise(rng, shape, 3.0 * scale)
    eosin = rng.uniform(0.08, 0.3) * (1.0 + 0.35 * _smooth_noise(rng, shape, 4.0 * scale))
    eosin = np.where(inside, eosin * 0.6, eosin)
    sigma = rng.uniform(0.5, 1.2) * scale
    hema = ndimage.gaussian_filter(np.clip(hema, 0, None).astype(np.float32), sigma)
    eosin = ndimage.gaussian_filter(np.clip(eosin, 0, None).astype(np.float32), sigma)
    density = hema[..., None] * _HEMATOXYLIN + eosin[..., None] * _EOSIN
    lamp = rng.uniform(0.88, 1.0) * _illumination(rng, shape, rng.uniform(0.05, 0.2))
    light = lamp[..., None] * np.power(10.0, -density)
    photons = rng.uniform(150.0, 800.0)
    light = rng.poisson(np.clip(light, 0, None) * photons) / photons
    light = light + rng.normal(0.0, rng.uniform(0.003, 0.012), size=light.shape)
    return np.round(np.clip(light * 255.0, 0, 255)).astype(np.uint8)


# ----------------------------------------------------------------------------- COCO dataset


def labels_to_coco_annotations(labels: np.ndarray) -> list:
    """COCO annotation bodies (segmentation as compressed RLE, area, bbox) of a label image, by label."""
    from pycocotools import mask as mask_util

    height, width = labels.shape
    out = []
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        crop = labels[box] == label
        rle = coco_rle_from_crop(crop, box[0].start, box[1].start, height, width)
        out.append({
            "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
            "area": int(mask_util.area(rle)),
            "bbox": [float(v) for v in mask_util.toBbox(rle)],
        })
    return out


def build_synthetic_dataset(
    out_dir: Union[str, os.PathLike],
    num_images: int,
    size: int = 128,
    seed: int = 0,
    *,
    split: str = "all",
    brightfield_fraction: float = 0.35,
) -> Path:
    """Write a synthetic nuclei set (``images/<id>.png`` + ``annotations/<split>.json``); return the json path.

    Image ``i`` is generated from the seed ``[seed, i]`` (style brightfield with probability
    ``brightfield_fraction``), so a set is reproducible and its first images do not depend on
    ``num_images``. Built in a temporary sibling folder and renamed into place: concurrent
    processes never see a partial set, and an existing identical set is reused.
    """
    out_dir = Path(out_dir)
    params = {"generator": generator_digest(), "num_images": int(num_images), "size": int(size),
              "seed": int(seed), "split": split, "brightfield_fraction": float(brightfield_fraction)}
    json_path = out_dir / "annotations" / f"{split}.json"
    existing = _read_params(out_dir)
    if existing is not None:
        if existing != params:
            raise FileExistsError(f"{out_dir}: holds a different synthetic set ({existing}); remove it or choose another folder")
        return json_path
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir}: exists and is not a synthetic nuclei set; refusing to write there")

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out_dir)
    tmp = partial_dir(out_dir)
    try:
        (tmp / "images").mkdir(parents=True)
        (tmp / "annotations").mkdir()
        images, annotations = [], []
        for i in range(int(num_images)):
            rng = np.random.default_rng([int(seed), i])
            style = "brightfield" if rng.random() < brightfield_fraction else "fluorescence"
            image, labels = generate_nuclei_image(rng, size, style)
            file_name = f"synth_s{seed}_{i:05d}.png"
            Image.fromarray(image).save(tmp / "images" / file_name, compress_level=1)
            images.append({"id": i + 1, "file_name": file_name, "height": image.shape[0],
                           "width": image.shape[1], "style": style})
            for body in labels_to_coco_annotations(labels):
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0, **body})
        coco = {
            "info": {"description": "maskrcnnpp synthetic nuclei", "version": params["generator"][:10]},
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "nucleus", "supercategory": "nucleus"}],
        }
        with open(tmp / "annotations" / f"{split}.json", "w", encoding="utf-8") as f:
            json.dump(coco, f, separators=(",", ":"))
        with open(tmp / "synthetic.json", "w", encoding="utf-8") as f:
            json.dump(params, f, indent=1)
        # someone else may win the race with the same set: fine
        commit_partial_dir(tmp, out_dir, lambda folder: _read_params(folder) == params)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return json_path


def _read_params(out_dir: Path) -> Optional[dict]:
    path = out_dir / "synthetic.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as e:
        raise FileExistsError(f"{path}: unreadable ({e}); remove {out_dir}") from None
