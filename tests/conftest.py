"""Shared pytest set-up: maskrcnnpp is imported first so Detectron2's compat measures apply.

Each test process (and each subprocess a test starts) uses one intra-op thread: the suite runs
one pytest-xdist worker per core, and OpenMP spinning across oversubscribed cores makes CPU
convolutions several times slower.
"""
import os
import sys

os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import torch  # noqa: E402

import maskrcnnpp  # noqa: E402,F401

torch.set_num_threads(1)
# tests/helpers: modules shared by tests of several folders (dsb2018_data), importable by name
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "helpers"))
os.environ.setdefault("MASKRCNNPP_DSB2018_ZIP", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "dsb2018", "stage1_train.zip"))


import logging  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _root_log_handlers_of_one_test():
    """Remove the root log handlers a test added (the tools' ``logging.basicConfig`` in ``main``):
    they hold that test's captured stderr, which is closed once it ends, and a later test's
    warning would print a "--- Logging error ---" traceback into its own stderr."""
    before = list(logging.root.handlers)
    yield
    for handler in logging.root.handlers[:]:
        if handler not in before:
            logging.root.removeHandler(handler)


def pytest_addoption(parser):
    """The command-line options of napari's pytest plugin, which pyproject.toml disables suite-wide
    (``-p no:napari``); tests/napari/conftest.py uses its fixtures, which read these options."""
    try:
        from napari.utils._testsupport import pytest_addoption as napari_options
    except ImportError:  # the napari extra is not installed: tests/napari skips
        return
    napari_options(parser)
