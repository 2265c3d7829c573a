# Two commands: `make demo` and `make test`. Both set themselves up from nothing.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test test-fast install lint clean bench fuzz

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip's mirror notices ("Location ... is ignored") are noise; real errors still fail.
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(BIN)/python -c "import aftersale, prefect, sqlalchemy, fastapi"
	touch $(STAMP)

install: $(STAMP)

# Page tests drive Debian's chromium headless; install it when missing (needs root, as on CI).
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else echo "chromium is missing: sudo apt-get install -y chromium" >&2; exit 1; fi

demo: $(STAMP)
	$(BIN)/aftersale demo

test: $(STAMP) $(CHROMIUM)
	$(BIN)/ruff check aftersale flows tests
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/python -m pytest

# The tier to run while working: unit and in-process integration tests on SQLite; what it
# leaves out is chosen in tests/conftest.py (pytest_collection_modifyitems).
test-fast: $(STAMP)
	AFTERSALE_TEST_FAST=1 $(BIN)/python -m pytest -p no:cacheprovider -n auto

# DESIGN.md section 6: all metrics over 1,000,000 orders / 250,000 customers, on SQLite and
# PostgreSQL (skipped when it does not answer); the worlds are cached in bench/.data and the
# "bench" schema. Prints one table and writes bench/results.md.
bench: $(STAMP)
	$(BIN)/python -m bench.run --database both

# Issue 7: the hostile-input property tests and the HTTP fuzzer with many more examples than
# `make test` runs (random, not derandomized), on SQLite and PostgreSQL when it answers.
FUZZ_EXAMPLES ?= 2000
fuzz: $(STAMP)
	AFTERSALE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -p no:cacheprovider \
		tests/unit/test_hostile_parsers.py tests/integration/test_fuzz_api.py

lint: $(STAMP)
	$(BIN)/ruff check aftersale flows tests
	$(BIN)/lint-imports
	$(BIN)/mypy

clean:
	rm -rf $(VENV) aftersale.db aftersale.db-wal aftersale.db-shm
