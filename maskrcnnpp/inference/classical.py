"""The classical baseline a model must beat: Otsu's threshold and a distance-transform watershed.

What an image analyst tries first (CellProfiler's and Fiji's default nucleus segmentation): the
image made grey with bright nuclei (:class:`~maskrcnnpp.modeling.canonical_input.CanonicalInput`:
channel mean, a bright background inverted, 1-99.8 percentiles stretched), smoothed by a Gaussian
of ``sigma`` pixels, thresholded at Otsu's value, and split into nuclei by the watershed of
:func:`maskrcnnpp.utils.postprocess.probability_to_instances` (components under ``min_size`` pixels
dropped, h-maxima seeds). :class:`OtsuWatershed` has the predictor's ``predict``, so the
out-of-distribution check scores it in the same table as the models.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage as ndi

from ..modeling.canonical_input import CanonicalInput
from ..utils.postprocess import probability_to_instances
from .image_io import to_uint8_rgb
from .instances import NucleiPrediction
from .trust import TrustSettings, assess_image

__all__ = ["OtsuWatershed"]


class OtsuWatershed:
    """Otsu + watershed nuclei of any image (module doc); every nucleus gets score 1."""

    device = "cpu"

    def __init__(self, sigma: float = 1.0, min_size: int = 10, watershed_h: float = 2.0):
        self.sigma, self.min_size, self.watershed_h = sigma, min_size, watershed_h
        self._canonical = CanonicalInput(grey=True, invert_bright=True, percentiles=(1.0, 99.8))

    def grey(self, rgb: np.ndarray) -> np.ndarray:
        """The smoothed canonical grey image (H x W float32, bright nuclei) of an 8-bit RGB image."""
        grey = self._canonical(torch.from_numpy(rgb).permute(2, 0, 1))[0].numpy()
        return ndi.gaussian_filter(grey, self.sigma) if self.sigma > 0 else grey

    def predict(self, image: np.ndarray) -> NucleiPrediction:
        """The label image of ``image`` (0 = background) with the trust report of its kind."""
        from skimage.filters import threshold_otsu

        rgb = to_uint8_rgb(image)
        grey = self.grey(rgb)
        foreground = grey > threshold_otsu(grey) if grey.max() > grey.min() else np.zeros(grey.shape, bool)
        labels = probability_to_instances(foreground.astype(np.float32), threshold=0.5, min_size=self.min_size,
                                          watershed=True, watershed_h=self.watershed_h)
        prediction = NucleiPrediction(labels, np.ones(int(labels.max()), np.float32), {"scale": 1.0})
        prediction.info["trust"] = assess_image(rgb, prediction, TrustSettings())
        return prediction
