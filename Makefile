# The README's two commands are `make demo` and `make test`; both run `make setup` first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
VENV_FLAGS ?=
PY := $(VENV)/bin/python
# The stamp is written only after every step succeeded: a .venv without it is never trusted.
STAMP := $(VENV)/.maskrcnnpp-setup
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PYTEST_ARGS ?= -n 2 --dist loadfile
DEMO_ARGS ?=
WHEELHOUSE ?= wheelhouse
TARGET_PY ?= 3.12

.PHONY: setup test demo clean wheelhouse install-offline

setup: $(STAMP)

$(STAMP): setup.py tools/install_detectron2.py Makefile
	@rm -f $(STAMP)
	@step() { echo "[make setup] $$1"; }; fail() { echo "[make setup] FAILED at step: $$1" >&2; exit 1; }; \
	step "check Python"; \
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 9), sys.version' 2>/dev/null \
	  || fail "check Python: '$(PYTHON)' is missing or older than 3.9 (set PYTHON=...)"; \
	step "create $(VENV)"; \
	{ [ -x $(PY) ] || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV); } || fail "create $(VENV) with $(PYTHON) -m venv"; \
	step "install torch ($(TORCH_SPEC))"; \
	$(PY) -c 'import torch, torchvision' 2>/dev/null \
	  || $(PY) -m pip install -q $(TORCH_SPEC) || fail "install torch ($(TORCH_SPEC)); is the package index reachable?"; \
	step "install build tools (setuptools, wheel)"; \
	$(PY) -m pip install -q 'setuptools>=61' wheel || fail "install setuptools and wheel"; \
	step "install Detectron2"; \
	$(PY) tools/install_detectron2.py || fail "install Detectron2 (tools/install_detectron2.py)"; \
	step "install maskrcnnpp (editable), test tools and the napari plugin's extra"; \
	$(PY) -m pip install -q --no-build-isolation -e '.[test,napari]' || fail "pip install -e .[test,napari]"; \
	step "check imports"; \
	$(PY) -c 'import maskrcnnpp, detectron2; print("maskrcnnpp ready; detectron2", detectron2.__version__)' \
	  || fail "import maskrcnnpp"; \
	touch $(STAMP)

# pytest's exit code 5 (no test collected) is a failure: the suite did not run.
test: setup
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; exit 1; fi; exit $$rc

demo: setup
	$(PY) tools/demo.py $(DEMO_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info output

# Offline install for air-gapped nodes (e.g. a GPU node with a CUDA torch already installed):
# on a connected machine `make wheelhouse TARGET_PY=3.12`, copy the folder, then on the node
# `make install-offline WHEELHOUSE=path PYTHON=python3.12`.
wheelhouse: setup
	$(PY) tools/build_wheelhouse.py --out $(WHEELHOUSE) --python-version $(TARGET_PY)

install-offline:
	$(PYTHON) tools/build_wheelhouse.py --install --out $(WHEELHOUSE)
