"""Builders of small Kaggle-layout sources for the data tests."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image


def png_bytes(image) -> bytes:
    """PNG file bytes of an array or a PIL image."""
    buf = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buf, format="PNG")
    return buf.getvalue()


Sample = Tuple[np.ndarray, Sequence[np.ndarray]]


def rgba(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(height, width, 4), dtype=np.uint8)
    image[..., 3] = 255
    return image


def box_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int, value: int = 255) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = value
    return mask


def write_kaggle_source(root: Path, samples: Dict[str, Sample], as_zip: bool = False,
                        raw: Dict[str, bytes] = None) -> Path:
    """Write ``{image_id: (image, [mask, ...])}`` in the Kaggle layout (folder or zip); return its path.

    Arrays are PNG-encoded; ``raw`` adds files by relative name with the given bytes.
    """
    files: Dict[str, bytes] = {}
    for image_id, (image, masks) in samples.items():
        files[f"{image_id}/images/{image_id}.png"] = image if isinstance(image, bytes) else png_bytes(image)
        for k, mask in enumerate(masks):
            files[f"{image_id}/masks/m{k:03d}.png"] = mask if isinstance(mask, bytes) else png_bytes(mask)
    files.update(raw or {})
    if as_zip:
        path = root.with_suffix(".zip")
        with zipfile.ZipFile(path, "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
        return path
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def standard_samples(n: int = 4, height: int = 24, width: int = 32) -> Dict[str, Sample]:
    """``n`` small RGBA images with two or three disjoint rectangular nuclei each."""
    samples = {}
    for i in range(n):
        masks: List[np.ndarray] = [box_mask(height, width, 2, 8, 3 + i, 9 + i), box_mask(height, width, 12, 20, 20, 27)]
        if i % 2:
            masks.append(box_mask(height, width, 15, 22, 2, 6))
        samples[f"img{i:02d}"] = (rgba(height, width, i), masks)
    return samples
