# `make check` and `make test` are the whole set-up on a fresh machine: they create .venv if needed,
# install tbkit with its pinned dependencies, then run the main job or the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TB_CLI_TELEMETRY_OPTOUT := 1

.PHONY: check test lint fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

check: $(STAMP)
	$(BIN)/tbkit check

test: $(STAMP)
	$(BIN)/ruff check tools tests fixtures/generate.py
	$(BIN)/ruff format --check tools tests fixtures/generate.py
	$(BIN)/pytest -n auto

lint: $(STAMP)
	$(BIN)/tbkit lint

fmt: $(STAMP)
	$(BIN)/ruff format tools tests fixtures/generate.py
	$(BIN)/ruff check --fix tools tests fixtures/generate.py

clean:
	rm -rf $(VENV) .tbkit .pytest_cache .ruff_cache
