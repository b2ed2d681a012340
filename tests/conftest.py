"""Shared pytest set-up: maskrcnnpp is imported first so Detectron2's compat measures apply."""
import os

import maskrcnnpp  # noqa: F401

os.environ.setdefault("MASKRCNNPP_DSB2018_ZIP", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "dsb2018", "stage1_train.zip"))
