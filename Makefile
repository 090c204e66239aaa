# Two commands on a fresh machine: `make demo` and `make test`.
# Both build .venv idempotently: torch first (the pinned CPU wheel), then the project.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.accord-installed

.PHONY: demo test test-all lint proto bench bench-peers clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install "torch==2.13.0"
	$(BIN)/python -m pip install -e ".[dev]"
	@touch $(STAMP)

# The default federation: mTLS from provisioned kits, profile ckks+masks.
demo: $(STAMP)
	$(BIN)/accord demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/typecheck.py

test: $(STAMP) lint
	$(BIN)/python -m pytest

test-all: $(STAMP) lint
	$(BIN)/python -m pytest -m "" 

proto: $(STAMP)
	$(BIN)/python scripts/gen_proto.py

# make bench NAME=speed ARGS="--write docs/benchmarks.md" (NAME: see bench/__main__.py)
bench: $(STAMP)
	$(BIN)/python -m bench $(or $(NAME),crypto) $(ARGS)

# Peers' packages live in their own venv, never in Accord's dependencies.
PEERS := bench/.venv-peers
bench-peers: $(STAMP)
	@test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install -q flwr==1.42.0 tenseal==0.3.18 numpy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
