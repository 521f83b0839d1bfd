# Everyday commands. `make demo` and `make test` set everything up from scratch.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint typecheck format bench server clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP) ## Create .venv with the app and the dev tools

demo: $(STAMP) ## Generate a 1M-event month and bill it (SQLite + local folder store)
	$(BIN)/tallyflow demo

test: $(STAMP) ## The whole suite, as CI runs it
	$(BIN)/python -m pytest

test-fast: $(STAMP) ## Everything but the end-to-end flow runs
	$(BIN)/python -m pytest -m "not e2e"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## Rating benchmark against DuckDB and a bare Parquet scan
	$(BIN)/python -m bench.rating

server: $(STAMP) ## Local Prefect server with its UI on http://127.0.0.1:4200
	$(BIN)/tallyflow server

clean:
	rm -rf .tallyflow bench/out .pytest_cache .mypy_cache .ruff_cache
