"""The package's layers import only downward: import-linter's contract in pyproject.toml holds.

A second, inverted contract must break, so the check is seen to read the real imports.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(config: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is missing: `pip install -e .[test]` installs import-linter")
    return subprocess.run([exe, "--no-cache", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_layers_import_only_downward():
    result = lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    # data imports utils and config: with utils placed above data, the contract must break.
    text = (ROOT / "pyproject.toml").read_text()
    inverted = re.sub(r'"maskrcnnpp\.utils",\n', "", text)
    inverted = inverted.replace('"maskrcnnpp.cli",\n', '"maskrcnnpp.cli",\n    "maskrcnnpp.utils",\n')
    assert inverted != text
    config = tmp_path / "pyproject.toml"
    config.write_text(inverted)
    result = lint_imports(config)
    assert result.returncode == 1, result.stdout + result.stderr
    assert re.search(r"maskrcnnpp\.data(\.\w+)* is not allowed to import maskrcnnpp\.utils", result.stdout), result.stdout
