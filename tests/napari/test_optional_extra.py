"""napari and Qt stay optional: importing maskrcnnpp (and its inference layer) loads neither.

Meaningful where the napari extra is installed (as ``make test`` does): there a stray import of the
plugin would load them.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUI_PACKAGES = ("napari", "npe2", "magicgui", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy")


def test_importing_maskrcnnpp_loads_no_napari_or_qt():
    code = ("import sys, maskrcnnpp, maskrcnnpp.inference, maskrcnnpp.model_zoo; "
            "from maskrcnnpp import NucleiPredictor; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({GUI_PACKAGES!r})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
