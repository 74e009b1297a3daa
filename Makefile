# Thin wrappers. `make demo` and `make test` are the README's two commands: each creates the
# virtual environment on first use (torch pinned to the local CPU wheel FIRST, so pip never
# resolves a multi-GB CUDA build), then runs.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
TORCH_PIN ?= torch==2.13.0

.PHONY: install assets demo test test-slow test-all lint bench clean

# Install progress is visible: one line per step, and pip's own output (no -q) on the long ones.
$(STAMP): pyproject.toml
	@echo "==> [1/4] virtual environment in $(VENV)"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "==> [2/4] upgrading pip"
	$(BIN)/python -m pip install -q --upgrade pip
	@echo "==> [3/4] $(TORCH_PIN), CPU wheel first (a few hundred MB; the longest step)"
	$(BIN)/python -m pip install --progress-bar on $(TORCH_PIN)
	@echo "==> [4/4] zolab and its dependencies (editable, extras dev + ray)"
	$(BIN)/python -m pip install --progress-bar on -e '.[dev,ray]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)
	@echo "==> installed: $(BIN)/zolab"

install: $(STAMP)

demo: install
	$(BIN)/zolab demo

test: install
	$(BIN)/python -m pytest -q

assets: install
	$(BIN)/zolab assets fetch

test-slow: assets
	$(BIN)/python -m pytest -q -m "slow"

test-all: assets
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/ruff check zolab tests benchmarks

bench: install
	$(BIN)/python benchmarks/platform_bench.py

clean:
	rm -rf $(VENV) .pytest_cache zolab.db zolab.db-wal zolab.db-shm .zolab
