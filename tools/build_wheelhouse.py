#!/usr/bin/env python
"""Offline install for air-gapped nodes: build a wheelhouse here, install from it there.

On a connected machine (after ``make setup``):
    python tools/build_wheelhouse.py --out wheelhouse --python-version 3.12
copies into ``wheelhouse/``: the pure-Python Detectron2 wheel (tools/install_detectron2.py) and a wheel of every other package this project's environment uses, pinned to
the versions in .venv and fetched for the target Python (x86-64 manylinux), except torch,
torchvision and their CUDA/runtime dependencies, which the node is expected to have.

On the node (a Python with a CUDA torch already installed, no index access), in the checkout:
    python tools/build_wheelhouse.py --install --out wheelhouse
installs the wheels, then this checkout in editable mode (so configs/ and tools/ stay beside it).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Provided by the node's own torch install (or not needed there).
SKIP = {"torch", "torchvision", "triton", "pip", "maskrcnnpp", "pb1-detectron2",
        "sympy", "mpmath", "networkx", "jinja2", "markupsafe", "filelock", "fsspec", "typing-extensions"}
SKIP_PREFIXES = ("nvidia-", "cuda-")
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "any"]


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def pinned_requirements() -> list[str]:
    """``name==version`` of every distribution installed beside maskrcnnpp, minus the torch stack."""
    pins = set()
    for dist in metadata.distributions():
        name = _norm(dist.metadata["Name"])
        if name in SKIP or name.startswith(SKIP_PREFIXES):
            continue
        pins.add(f"{name}=={dist.version}")
    return sorted(pins)


def run(cmd: list[str]) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


def build(out: Path, python_version: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    if run([sys.executable, str(REPO / "tools" / "install_detectron2.py"), "--wheel-dir", str(out)]) != 0:
        sys.exit("FAILED: building the Detectron2 wheel")
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    failed = []
    for pin in pinned_requirements():
        binary = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version",
                  python_version, "--implementation", "cp", *platform_args, "-d", str(out), pin]
        # sdist-only packages (fvcore, antlr4 runtime, ...) are pure Python: build a wheel here.
        if run(binary) != 0 and run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), pin]) != 0:
            failed.append(pin)
    if failed:
        sys.exit(f"FAILED: no wheel for {failed} (Python {python_version})")
    print(f"wheelhouse ready: {out} ({len(list(out.glob('*.whl')))} wheels)")


def install(out: Path) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit("FAILED: install torch/torchvision for this node first (the wheelhouse leaves them out)")
    if not out.is_dir():
        sys.exit(f"FAILED: wheelhouse folder {out} does not exist")
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--find-links", str(out)]
    # The editable install below builds with this environment's setuptools (Python >= 3.12 venvs have none).
    if run(pip + ["setuptools", "wheel"]) != 0:
        sys.exit("FAILED: offline install of setuptools/wheel (missing from the wheelhouse: rebuild it)")
    if run(pip + ["pb1-detectron2"]) != 0:
        sys.exit("FAILED: offline install of Detectron2 (a wheel is missing: rebuild the wheelhouse for this Python)")
    if run(pip + ["--no-build-isolation", "-e", f"{REPO}[test]"]) != 0:
        sys.exit("FAILED: offline editable install of maskrcnnpp (a wheel is missing: rebuild the wheelhouse)")
    print("installed; check with: python -m pytest tests -k 'unetpp_fpn or compat'")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "wheelhouse", help="wheelhouse folder")
    ap.add_argument("--python-version", default=f"{sys.version_info.major}.{sys.version_info.minor}",
                    help="target Python of the node, e.g. 3.12 (build mode)")
    ap.add_argument("--install", action="store_true", help="install from --out with no network")
    args = ap.parse_args()
    install(args.out) if args.install else build(args.out, args.python_version)


if __name__ == "__main__":
    main()
