# The two commands of the README: `make demo` and `make test`. Every target sets up what it
# needs (Debian packages, a virtual environment, the Python packages) and is safe to run twice.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEBIAN_PACKAGES := bubblewrap age python3-venv

.PHONY: all setup demo test lint typecheck unit bench clean

all: test

$(STAMP): pyproject.toml
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	@touch $(STAMP)

setup: $(STAMP)

# A local provider (sim runner) and requestor run the csv-stats task end to end.
demo: setup
	$(BIN)/golem-graphene demo

lint: setup
	$(BIN)/ruff check golem_graphene tests bench
	$(BIN)/ruff format --check golem_graphene tests bench

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp --ignore=tests/hostile
	# The hostile-client suite runs in its own process: it starts and kills many providers and
	# sandboxes, and must not share process-wide state (logging, event-loop policy) with the rest.
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-hostile tests/hostile

test: lint typecheck unit

bench: setup
	$(BIN)/python bench/verify.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
