# Everything a fresh machine needs, from Python 3.11+ and pip alone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/p2pchan demo

test: $(STAMP) lint typecheck
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check p2pchan cli tests benchmarks
	$(BIN)/ruff format --check p2pchan cli tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit tests/property

bench: $(STAMP)
	$(BIN)/p2pchan bench l1 --json
	$(BIN)/p2pchan bench transport --json
	$(BIN)/p2pchan bench channel --payments 20000 --concurrency 100 --json
	$(BIN)/p2pchan bench channel --payments 40000 --concurrency 966 --json
	$(BIN)/p2pchan bench channel --payments 2000 --concurrency 1 --json
	$(BIN)/p2pchan bench pathfind --json
	$(BIN)/p2pchan bench plasma --json
	$(BIN)/p2pchan bench multihop --hops 2 --payments 20000 --concurrency 100 --json
	$(BIN)/p2pchan bench gossip --nodes 50 --json

clean:
	rm -rf $(VENV) p2pchan.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
