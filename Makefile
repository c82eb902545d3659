# The whole workflow. `make demo` and `make test` each set everything up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned first so that the declared range (torch>=2.6) is already satisfied and pip never
# pulls a multi-GB CUDA build; on our machines 2.13.0 is a local CPU wheel.
TORCH := torch==2.13.0

.PHONY: setup demo test test-fast lint format bench bench-load bench-device toy clean lab notebooks

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/interp run experiments/ioi.toml --model toy --out runs/demo --force

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check interp tests benchmarks
	$(BIN)/ruff format --check interp tests benchmarks

format: $(STAMP)
	$(BIN)/ruff check --fix interp tests benchmarks
	$(BIN)/ruff format interp tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/patching.py --sweeps head_out_by_pos resid_pre head_out
	$(BIN)/python benchmarks/cache_stream.py
	$(BIN)/python benchmarks/circuits.py

bench-load: $(STAMP)
	$(BIN)/python benchmarks/load_memory.py

# JupyterLab from the project's venv, on this machine only; double-click a notebook to open it
lab: $(STAMP)
	$(BIN)/jupyter lab --ip 127.0.0.1 --notebook-dir notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

# after editing a notebook's .py (or its .ipynb outside JupyterLab): bring its twin up to date
notebooks: $(STAMP)
	$(BIN)/jupytext --sync notebooks/[0-9]*.py

toy: $(STAMP)
	$(BIN)/python -m interp.toy.train
	$(BIN)/python -m interp.toy.behaviour

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
