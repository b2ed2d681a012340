"""Experiment tests use a private synthetic-data cache."""
import pytest


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MASKRCNNPP_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
