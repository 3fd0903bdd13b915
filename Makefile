# Set-up and everyday commands. `make demo` and `make test` work on a fresh clone.
# The dev extra brings sentence-transformers for the encode tests (not the 90 MB model of the
# encode extra); torch stays pinned below, so nothing pulls another build.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WHEELS ?= ../shared/wheels
# The torch_scatter / torch_sparse wheels are prebuilt next to the repository when available;
# without them the `sparse` extra is skipped (it builds from source for ~40 minutes).
comma := ,
EXTRAS := $(if $(wildcard $(WHEELS)/*.whl),dev$(comma)sparse,dev)
FIND_LINKS := $(if $(wildcard $(WHEELS)/*.whl),--find-links $(abspath $(WHEELS)),)

.PHONY: install demo test lint clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pin torch first so that no requirement pulls a newer (multi-GB CUDA) build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q $(FIND_LINKS) -e ".[$(EXTRAS)]" torch==2.13.0
	touch $@

install: $(VENV)/.installed

# LightGCN and MMSSL on the embedded *synthetic* dataset, then a comparison.
DEMO_ARGS := --dataset synthetic --quiet
demo: install
	rm -rf runs/demo
	$(VENV)/bin/pyg-mmssl train --model lightgcn --epochs 40 --patience 10 $(DEMO_ARGS) --out runs/demo/lightgcn
	$(VENV)/bin/pyg-mmssl train --model mmssl --critic lowrank --epochs 12 --lr 2e-3 $(DEMO_ARGS) --out runs/demo/mmssl
	$(VENV)/bin/pyg-mmssl compare runs/demo/lightgcn runs/demo/mmssl

test: install
	$(PY) -m pytest -q

lint: install
	$(PY) -m pyflakes src tests examples benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info runs
