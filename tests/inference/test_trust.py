"""When not to trust a prediction (maskrcnnpp.inference.trust): hand-made images and predictions."""
from __future__ import annotations

import numpy as np
import pytest

from maskrcnnpp.config import get_maskrcnnpp_cfg
from maskrcnnpp.errors import UserError
from maskrcnnpp.inference.instances import NucleiPrediction
from maskrcnnpp.inference.trust import TrustSettings, assess_image, describe_flags

from tool_helpers import disk_labels

# The shipped model's range (its card) and the weak kinds a DSB model has.
SETTINGS = TrustSettings(weak_kinds=("stained tissue", "bright-field"), diameter_range=(12.57, 40.53), min_mean_score=0.8)
LABELS = disk_labels((96, 96), [(20, 20, 9), (20, 60, 9), (60, 30, 9), (70, 70, 9)])  # 4 disks, ~18 px across


def fluorescence_like() -> np.ndarray:
    grey = np.where(LABELS > 0, 180, 15).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def he_like() -> np.ndarray:
    """Purple nuclei on pink tissue on a white background (RGB), the DSB / TCGA H&E look."""
    rgb = np.empty((96, 96, 3), np.uint8)
    rgb[:] = (240, 235, 240)
    rgb[10:90, 5:90] = (230, 150, 200)
    rgb[LABELS > 0] = (90, 60, 150)
    return rgb


def prediction(labels: np.ndarray, scores, scale: float = 1.0) -> NucleiPrediction:
    return NucleiPrediction(labels.astype(np.int32), np.asarray(scores, np.float32), {"scale": scale})


def test_a_dsb_like_fluorescence_image_is_not_flagged():
    trust = assess_image(fluorescence_like(), prediction(LABELS, [0.97, 0.95, 0.93, 0.96]), SETTINGS)
    assert trust["image_kind"] == "fluorescence" and trust["flags"] == []
    area = float(np.mean(np.bincount(LABELS.ravel())[1:]))
    assert trust["diameter_px"] == pytest.approx(2 * np.sqrt(area / np.pi), abs=5e-4)  # rounded to 3 decimals
    assert trust["mean_score"] == pytest.approx(0.9525)
    assert describe_flags(trust) == ""


def test_an_he_like_colour_image_is_flagged_for_its_kind():
    trust = assess_image(he_like(), prediction(LABELS, [0.97, 0.95, 0.93, 0.96]), SETTINGS)
    assert trust["image_kind"] == "stained tissue"
    assert trust["flags"] == ["stained tissue is a weak image kind of this model"]


def test_small_nuclei_low_scores_and_empty_results_are_flagged():
    edge = assess_image(fluorescence_like(), prediction(LABELS, [0.9] * 4, scale=0.66), SETTINGS)
    assert 0.75 * 12.57 < edge["diameter_px"] < 12.57 and edge["flags"] == []  # within the 25 % margin
    tiny = assess_image(fluorescence_like(), prediction(LABELS, [0.9] * 4, scale=0.5), SETTINGS)
    assert tiny["diameter_px"] == pytest.approx(0.5 * assess_image(fluorescence_like(), prediction(LABELS, [0.9] * 4),
                                                                  SETTINGS)["diameter_px"], abs=1e-3)
    assert tiny["flags"] == [f"nuclei {tiny['diameter_px']:.1f} px as the model saw them, outside its training range "
                             "12.6-40.5 px by more than 25 %"]
    doubtful = assess_image(fluorescence_like(), prediction(LABELS, [0.7, 0.75, 0.8, 0.7]), SETTINGS)
    assert doubtful["flags"] == ["mean detection score 0.74 below 0.80"]
    empty = assess_image(fluorescence_like(), prediction(np.zeros_like(LABELS), []), SETTINGS)
    assert empty["flags"] == ["no nucleus found"] and empty["diameter_px"] is None and empty["mean_score"] is None


def test_settings_from_config_name_bad_keys():
    cfg = get_maskrcnnpp_cfg()
    assert TrustSettings.from_config(cfg) == TrustSettings()
    cfg.TEST.NUCLEI.TRUST.WEAK_KINDS = ["H&E"]
    with pytest.raises(UserError, match=r"TEST\.NUCLEI\.TRUST\.WEAK_KINDS: unknown image kind\(s\) 'H&E'"):
        TrustSettings.from_config(cfg)
    cfg.TEST.NUCLEI.TRUST.WEAK_KINDS = ["bright-field"]
    cfg.TEST.NUCLEI.TRUST.MIN_MEAN_SCORE = 1.5
    with pytest.raises(UserError, match=r"TEST\.NUCLEI\.TRUST\.MIN_MEAN_SCORE must be in \[0, 1\]"):
        TrustSettings.from_config(cfg)
    cfg.TEST.NUCLEI.TRUST.MIN_MEAN_SCORE = 0.5
    cfg.TEST.NUCLEI.TRUST.DIAMETER_MARGIN = 1.0
    with pytest.raises(UserError, match=r"TEST\.NUCLEI\.TRUST\.DIAMETER_MARGIN must be in \[0, 1\)"):
        TrustSettings.from_config(cfg)
