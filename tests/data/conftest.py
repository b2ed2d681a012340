"""Fixtures of the data tests: the real DSB 2018 zip converted once, tiny Kaggle-layout sources."""
from __future__ import annotations

from pathlib import Path

import pytest

import maskrcnnpp  # noqa: F401  (compat measures before detectron2)
from dsb2018_data import dsb2018_zip_path, prepared_dsb2018



@pytest.fixture(scope="session")
def dsb2018_zip() -> Path:
    """Path of the real stage1_train.zip; skips when it is not available."""
    path = dsb2018_zip_path()
    if path is None:
        pytest.skip("real DSB 2018 zip not found (set MASKRCNNPP_DSB2018_ZIP)")
    return path


@pytest.fixture(scope="session")
def dsb2018_prepared(dsb2018_zip) -> Path:
    """The real zip converted with the default split, once per session (cached in $MASKRCNNPP_CACHE)."""
    return prepared_dsb2018(zip_path=dsb2018_zip)


@pytest.fixture
def synth_cache(tmp_path, monkeypatch) -> Path:
    """A private $MASKRCNNPP_CACHE, and the default dataset registrations restored afterwards."""
    from maskrcnnpp.data import register_dsb2018, register_synthetic

    cache = tmp_path / "cache"
    monkeypatch.setenv("MASKRCNNPP_CACHE", str(cache))
    yield cache
    register_dsb2018()
    register_synthetic()
