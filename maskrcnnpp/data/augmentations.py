"""Training augmentations for nuclei images, chosen by the ``INPUT.NUCLEI_AUG`` config keys.

Nuclei have no preferred orientation and come from many microscopes, so besides Detectron2's
resize and horizontal flip the training mappers can draw:

* geometric: a vertical flip and a rotation by a multiple of 90 degrees. The rotation is built
  from a :class:`TransposeTransform` and flips (``np.rot90`` is a transpose followed by a flip),
  so masks, boxes and the fast instance mapper's index maps follow it exactly;
* photometric (the image only): brightness, contrast and gamma jitter, colour inversion (a
  fluorescence image then looks like a bright-field one and back), grey conversion (so the
  model does not learn stain colours) and detail loss (the image shrunk and enlarged back, as an
  image taken at a lower resolution looks once the test resize has enlarged it);
* stain jitter of coloured images in the haematoxylin-eosin-DAB space (Tellez et al. 2018: each
  stain's optical density scaled and shifted), then Gaussian blur and Gaussian noise, as other
  stains, focus and cameras give.

:func:`build_nuclei_augmentations` returns the list a mapper appends after its resize and flip.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
from detectron2.config import CfgNode
from detectron2.data import transforms as T

from ..utils.image_kind import is_coloured

__all__ = [
    "BlurTransform",
    "DetailLossTransform",
    "GreyTransform",
    "HedJitterTransform",
    "IntensityTransform",
    "InvertTransform",
    "NoiseTransform",
    "PhotometricTransform",
    "RandomBlur",
    "RandomDetailLoss",
    "RandomHedJitter",
    "RandomIntensity",
    "RandomNoise",
    "RandomRotation90",
    "TransposeTransform",
    "build_nuclei_augmentations",
    "rotation90_transforms",
]


class TransposeTransform(T.Transform):
    """Swap the image's rows and columns (pixel ``(y, x)`` moves to ``(x, y)``); its own inverse."""

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.swapaxes(img, 0, 1))

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(coords[:, ::-1])

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return self.apply_image(segmentation)

    def inverse(self) -> T.Transform:
        return self


def rotation90_transforms(k: int, height: int, width: int) -> T.TransformList:
    """Transforms equal to ``np.rot90(image, k)`` (counter-clockwise) of a ``height`` x ``width`` image."""
    k %= 4
    if k == 0:
        return T.TransformList([T.NoOpTransform()])
    if k == 2:
        return T.TransformList([T.HFlipTransform(width), T.VFlipTransform(height)])
    # After the transpose the image is width x height: rot90 by 1 reverses its rows, by 3 its columns.
    flip = T.VFlipTransform(width) if k == 1 else T.HFlipTransform(height)
    return T.TransformList([TransposeTransform(), flip])


class RandomRotation90(T.Augmentation):
    """Rotate by 0, 90, 180 or 270 degrees, each with probability 1/4."""

    def get_transform(self, image: np.ndarray) -> T.Transform:
        k = int(np.random.randint(4))
        return rotation90_transforms(k, image.shape[0], image.shape[1])


class PhotometricTransform(T.Transform):
    """A transform of pixel values only: coordinates and segmentations pass unchanged."""

    def apply_coords(self, coords: np.ndarray) -> np.ndarray:
        return coords

    def apply_segmentation(self, segmentation: np.ndarray) -> np.ndarray:
        return segmentation

    def inverse(self) -> T.Transform:
        return T.NoOpTransform()  # as Detectron2's photometric transforms: geometry needs no undoing

    def apply_values(self, values: np.ndarray) -> np.ndarray:  # pragma: no cover - subclasses
        raise NotImplementedError

    def apply_image(self, img: np.ndarray) -> np.ndarray:
        """``apply_values`` on [0, 255] floats; uint8 images are rounded and clipped back to uint8."""
        out = self.apply_values(img.astype(np.float32))
        if img.dtype == np.uint8:
            return np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return out.astype(img.dtype, copy=False)


class IntensityTransform(PhotometricTransform):
    """``v -> brightness * (mean + contrast * (g(v) - mean))``, ``g(v) = 255 (v / 255) ** gamma``.

    ``mean`` is the mean of ``g(v)`` over the image (all channels), so contrast keeps it.
    """

    def __init__(self, brightness: float, contrast: float, gamma: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        if self.gamma != 1.0:
            values = 255.0 * np.power(np.clip(values, 0, 255) / 255.0, self.gamma, dtype=np.float32)
        if self.contrast != 1.0:
            mean = float(values.mean())
            values = mean + self.contrast * (values - mean)
        return values * self.brightness if self.brightness != 1.0 else values


class InvertTransform(PhotometricTransform):
    """``v -> 255 - v``: dark nuclei on a bright background and the reverse."""

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        return 255.0 - values


class GreyTransform(PhotometricTransform):
    """Every channel replaced by the mean of the channels."""

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        if values.ndim < 3:
            return values
        return np.broadcast_to(values.mean(axis=2, keepdims=True), values.shape).copy()


class DetailLossTransform(PhotometricTransform):
    """The image shrunk by ``factor`` (area averaging) and enlarged back to its size (bilinear): the
    same geometry with the detail of an image taken at ``factor`` times the resolution."""

    def __init__(self, factor: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        import cv2

        height, width = values.shape[:2]
        small = (max(1, int(round(width * self.factor))), max(1, int(round(height * self.factor))))
        if small == (width, height):
            return values
        shrunk = cv2.resize(values, small, interpolation=cv2.INTER_AREA)
        return cv2.resize(shrunk, (width, height), interpolation=cv2.INTER_LINEAR).reshape(values.shape)


class RandomDetailLoss(T.Augmentation):
    """:class:`DetailLossTransform` with a factor drawn uniformly from ``(low, high)``."""

    def __init__(self, factors: Sequence[float]):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        return DetailLossTransform(float(np.random.uniform(*self.factors)))


class RandomIntensity(T.Augmentation):
    """Brightness, contrast and gamma, each drawn uniformly from its ``(low, high)`` range."""

    def __init__(self, brightness: Sequence[float], contrast: Sequence[float], gamma: Sequence[float]):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        b, c, g = (float(np.random.uniform(lo, hi)) for lo, hi in (self.brightness, self.contrast, self.gamma))
        return IntensityTransform(b, c, g)


class HedJitterTransform(PhotometricTransform):
    """Each stain's optical density ``s`` in the HED space becomes ``alpha_s * s + beta_s``
    (:func:`skimage.color.rgb2hed` and back); ``bgr``: the image's channels are in BGR order."""

    def __init__(self, alpha: Sequence[float], beta: Sequence[float], bgr: bool):
        super().__init__()
        self._set_attributes(locals())

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        from skimage.color import hed2rgb, rgb2hed

        if values.ndim < 3 or values.shape[2] < 3:
            return values
        rgb = values[..., :3][..., ::-1] if self.bgr else values[..., :3]
        hed = rgb2hed(np.clip(rgb, 0, 255) / 255.0)
        hed = hed * np.asarray(self.alpha, np.float32) + np.asarray(self.beta, np.float32)
        out = (hed2rgb(hed) * 255.0).astype(np.float32)
        values = values.copy()
        values[..., :3] = out[..., ::-1] if self.bgr else out
        return values


class RandomHedJitter(T.Augmentation):
    """:class:`HedJitterTransform` of coloured images (:func:`is_coloured`) with ``alpha`` drawn from
    ``[1 - sigma, 1 + sigma]`` and ``beta`` from ``[-sigma, sigma]`` / 10 per stain; grey ones are left."""

    def __init__(self, sigma: float, bgr: bool):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        if not is_coloured(image):
            return T.NoOpTransform()
        alpha = np.random.uniform(1 - self.sigma, 1 + self.sigma, 3).tolist()
        # optical densities of stained pixels are about 0.05-0.3: shifts a tenth of sigma keep them plausible
        beta = np.random.uniform(-self.sigma / 10, self.sigma / 10, 3).tolist()
        return HedJitterTransform(alpha, beta, self.bgr)


class BlurTransform(PhotometricTransform):
    """A Gaussian blur of standard deviation ``sigma`` pixels, over rows and columns only."""

    def __init__(self, sigma: float):
        super().__init__()
        self._set_attributes(locals())

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        if self.sigma <= 0:
            return values
        sigma = (self.sigma, self.sigma) + (0,) * (values.ndim - 2)
        return gaussian_filter(values, sigma=sigma, mode="reflect")


class RandomBlur(T.Augmentation):
    """:class:`BlurTransform` with ``sigma`` drawn uniformly from ``(low, high)``."""

    def __init__(self, sigmas: Sequence[float]):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        return BlurTransform(float(np.random.uniform(*self.sigmas)))


class NoiseTransform(PhotometricTransform):
    """Additive Gaussian noise of standard deviation ``std`` (pixel values 0..255), drawn from ``seed``."""

    def __init__(self, std: float, seed: int):
        super().__init__()
        self._set_attributes(locals())

    def apply_values(self, values: np.ndarray) -> np.ndarray:
        noise = np.random.default_rng(self.seed).normal(0.0, self.std, values.shape[:2]).astype(np.float32)
        return values + (noise[..., None] if values.ndim == 3 else noise)  # the same noise in each channel


class RandomNoise(T.Augmentation):
    """:class:`NoiseTransform` with ``std`` drawn uniformly from ``(low, high)``."""

    def __init__(self, stds: Sequence[float]):
        super().__init__()
        self._init(locals())

    def get_transform(self, image: np.ndarray) -> T.Transform:
        return NoiseTransform(float(np.random.uniform(*self.stds)), int(np.random.randint(2**31)))


_FROM_ZERO = ("BLUR_SIGMA", "NOISE_STD")  # ranges that may start at 0 (no blur, no noise)


def _range(cfg: CfgNode, key: str) -> List[float]:
    raw = getattr(cfg.INPUT.NUCLEI_AUG, key)
    try:
        value = [float(v) for v in raw]
    except (TypeError, ValueError):
        value = None
    if value is None or len(value) != 2 or not 0 < value[0] <= value[1]:
        if not (key in _FROM_ZERO and value is not None and len(value) == 2 and 0 <= value[0] <= value[1]):
            raise ValueError(f"INPUT.NUCLEI_AUG.{key} must be [low, high] with {'0 <=' if key in _FROM_ZERO else '0 <'} "
                             f"low <= high, got {raw!r}")
    return value


def _probability(cfg: CfgNode, key: str) -> float:
    raw = getattr(cfg.INPUT.NUCLEI_AUG, key)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"INPUT.NUCLEI_AUG.{key} must be a probability in [0, 1], got {raw!r}")
    return value


def build_nuclei_augmentations(cfg: CfgNode, is_train: bool) -> List[T.Augmentation]:
    """The ``INPUT.NUCLEI_AUG`` augmentations that are switched on (none at test time).

    Raises ValueError naming the key for a range or probability out of bounds.
    """
    ranges = {key: _range(cfg, key) for key in ("BRIGHTNESS", "CONTRAST", "GAMMA", "DETAIL_LOSS", "BLUR_SIGMA",
                                                "NOISE_STD")}
    if ranges["DETAIL_LOSS"][1] > 1.0:
        raise ValueError(f"INPUT.NUCLEI_AUG.DETAIL_LOSS must be [low, high] with 0 < low <= high <= 1, got "
                         f"{cfg.INPUT.NUCLEI_AUG.DETAIL_LOSS!r}")
    invert, grey = _probability(cfg, "INVERT_PROB"), _probability(cfg, "GREY_PROB")
    detail_loss = _probability(cfg, "DETAIL_LOSS_PROB")
    hed, blur, noise = (_probability(cfg, key) for key in ("HED_PROB", "BLUR_PROB", "NOISE_PROB"))
    hed_sigma = float(cfg.INPUT.NUCLEI_AUG.HED_SIGMA)
    if not 0.0 <= hed_sigma < 1.0:
        raise ValueError(f"INPUT.NUCLEI_AUG.HED_SIGMA must be in [0, 1), got {cfg.INPUT.NUCLEI_AUG.HED_SIGMA!r}")
    if not is_train:
        return []
    augs: List[T.Augmentation] = []
    if cfg.INPUT.NUCLEI_AUG.VERTICAL_FLIP:
        augs.append(T.RandomFlip(horizontal=False, vertical=True))
    if cfg.INPUT.NUCLEI_AUG.ROTATE_90:
        augs.append(RandomRotation90())
    if hed > 0 and hed_sigma > 0:
        augs.append(T.RandomApply(RandomHedJitter(hed_sigma, bgr=cfg.INPUT.FORMAT == "BGR"), hed))
    if any(ranges[key] != [1.0, 1.0] for key in ("BRIGHTNESS", "CONTRAST", "GAMMA")):
        augs.append(RandomIntensity(ranges["BRIGHTNESS"], ranges["CONTRAST"], ranges["GAMMA"]))
    if invert > 0:
        augs.append(T.RandomApply(InvertTransform(), invert))
    if grey > 0:
        augs.append(T.RandomApply(GreyTransform(), grey))
    if detail_loss > 0:
        augs.append(T.RandomApply(RandomDetailLoss(ranges["DETAIL_LOSS"]), detail_loss))
    if blur > 0:
        augs.append(T.RandomApply(RandomBlur(ranges["BLUR_SIGMA"]), blur))
    if noise > 0:
        augs.append(T.RandomApply(RandomNoise(ranges["NOISE_STD"]), noise))
    return augs
