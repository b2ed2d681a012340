#!/usr/bin/env python
"""Install Detectron2's pure-Python package from the package index's ``pb1-detectron2`` sdist.

``pb1-detectron2==0.6`` carries upstream Detectron2 v0.6's Python files but not the C++/CUDA
sources of ``detectron2._C``, so ``pip install pb1-detectron2`` fails while compiling it. This
script downloads the sdist (checked against a pinned SHA-256), builds a wheel of the same
files with the extension left out (the sdist's files are not edited), and installs it with
its dependencies. ``maskrcnnpp.compat`` then covers the missing ``_C`` at import time.

Does nothing when a Detectron2 that has its compiled ``_C`` is already importable (upstream
built from source, e.g. on a CUDA cluster node).

Usage:
    python tools/install_detectron2.py                  # download + build + install
    python tools/install_detectron2.py --wheel-dir DIR  # only build the wheel into DIR
    python tools/install_detectron2.py --sdist FILE     # use an sdist already on disk
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
# The sdist's setup.py imports torch and declares a direct-URL extra that pip >= 25 refuses
# to even download; pip < 25 with --no-build-isolation fetches it fine.
PIP_FOR_DOWNLOAD = "pip>=23,<25"

# Run in the unpacked sdist: its own setup.py, with ext_modules emptied so nothing compiles.
_BUILD_PURE_WHEEL = r"""
import sys, setuptools
_setup = setuptools.setup
def _pure_setup(**kw):
    kw["ext_modules"] = []
    kw.pop("cmdclass", None)
    # setup.py globs the model-zoo configs from a top-level configs/ that the sdist lacks;
    # they ship inside detectron2/model_zoo/configs, so package them from there.
    kw["package_data"] = {"detectron2.model_zoo": ["configs/**/*.yaml", "configs/**/*.py"]}
    return _setup(**kw)
setuptools.setup = _pure_setup
sys.argv = ["setup.py", "-q", "bdist_wheel", "--dist-dir", sys.argv[1]]
import os
exec(compile(open("setup.py").read(), os.path.abspath("setup.py"), "exec"), {"__name__": "__main__", "__file__": os.path.abspath("setup.py")})
"""


def has_compiled_detectron2() -> bool:
    """True when an importable Detectron2 ships its compiled ``detectron2._C`` extension."""
    try:
        return importlib.util.find_spec("detectron2._C") is not None
    except ModuleNotFoundError:
        return False


def has_pure_detectron2() -> bool:
    """True when this script's pure-Python build of pb1-detectron2 is already installed."""
    from importlib import metadata

    try:
        return metadata.version(SDIST_NAME) == SDIST_VERSION and importlib.util.find_spec("detectron2") is not None
    except metadata.PackageNotFoundError:
        return False


def _run(step: str, cmd: list[str], cwd: Path | None = None) -> None:
    print(f"[install_detectron2] {step}: {' '.join(cmd)}", flush=True)
    if subprocess.call(cmd, cwd=cwd) != 0:
        sys.exit(f"[install_detectron2] FAILED at step '{step}' (command above).")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(dest: Path) -> Path:
    """Download the pinned sdist with pip (index from the user's pip configuration)."""
    _run("pin pip for the download", [sys.executable, "-m", "pip", "install", "-q", PIP_FOR_DOWNLOAD])
    _run(
        f"download {SDIST_NAME}=={SDIST_VERSION}",
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-build-isolation",
         "--no-binary", ":all:", f"{SDIST_NAME}=={SDIST_VERSION}", "-d", str(dest)],
    )
    found = sorted(dest.glob(f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"))
    if not found:
        sys.exit(f"[install_detectron2] FAILED: pip saved no {SDIST_NAME}-{SDIST_VERSION}.tar.gz in {dest}")
    return found[0]


def build_wheel(sdist: Path, wheel_dir: Path) -> Path:
    """Build a pure-Python wheel of the sdist's files into ``wheel_dir``; return its path."""
    digest = sha256(sdist)
    if digest != SDIST_SHA256:
        sys.exit(f"[install_detectron2] FAILED: {sdist} has sha256 {digest}, expected {SDIST_SHA256}")
    wheel_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(sdist) as tar:
            tar.extractall(tmp, filter="data")
        src = Path(tmp) / f"{SDIST_NAME}-{SDIST_VERSION}"
        _run("build pure-Python wheel", [sys.executable, "-c", _BUILD_PURE_WHEEL, str(wheel_dir.resolve())], cwd=src)
    wheels = sorted(wheel_dir.glob("pb1_detectron2-*.whl"))
    if not wheels:
        sys.exit(f"[install_detectron2] FAILED: no wheel was written to {wheel_dir}")
    return wheels[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdist", type=Path, help="use this pb1-detectron2 sdist instead of downloading it")
    ap.add_argument("--wheel-dir", type=Path, help="only build the wheel into this folder; install nothing")
    args = ap.parse_args()

    if args.wheel_dir is None and has_compiled_detectron2():
        print("[install_detectron2] a compiled Detectron2 is already importable: nothing to do.")
        return
    if args.wheel_dir is None and args.sdist is None and has_pure_detectron2():
        print(f"[install_detectron2] {SDIST_NAME}=={SDIST_VERSION} is already installed: nothing to do.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(Path(tmp))
        wheel = build_wheel(sdist, args.wheel_dir or Path(tmp) / "wheels")
        if args.wheel_dir is not None:
            print(f"[install_detectron2] wrote {wheel}")
            return
        _run("install Detectron2 wheel", [sys.executable, "-m", "pip", "install", "-q", str(wheel)])
    print("[install_detectron2] done.")


if __name__ == "__main__":
    main()
