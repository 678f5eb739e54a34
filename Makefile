# make demo | make test | make bench — each sets up .venv (CPU torch) and builds the extension first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch 2.13.0 is the CPU build lying on this machine's disk; a bare `torch` would pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test bench setup

$(VENV)/.deps:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "$(TORCH_SPEC)" ninja
	touch $@

# The package's own dependencies and extras come from pyproject.toml; laspy is the light half of [io]
# (open3d, the other half, is large: its tests skip without it).
$(VENV)/.built: $(VENV)/.deps setup.py pyproject.toml $(shell find csrc -type f)
	$(PY) -m pip install -q --no-build-isolation -e ".[dev,viz]" "laspy[lazrs]"
	touch $@

setup: $(VENV)/.built

demo: setup
	$(VENV)/bin/pointengine demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_conv.py
	$(PY) benchmarks/bench_minkunet.py
	$(PY) benchmarks/bench_spvcnn.py
