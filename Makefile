# The two commands of the README: `make demo` and `make test`. Every target sets up what it
# needs (Debian packages, a virtual environment, the Python packages) and is safe to run twice.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# zsh: the completion tests run the zsh script the CLI generates.
DEBIAN_PACKAGES := bubblewrap age python3-venv zsh

.PHONY: all setup demo test lint typecheck unit golem-live readme-walk bench clean

all: test

$(STAMP): pyproject.toml
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench,golem,golem-node]'
	@touch $(STAMP)

setup: $(STAMP)
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)

# A local provider (sim runner) and requestor run the csv-stats task end to end.
demo: setup
	$(BIN)/golem-graphene demo

lint: setup
	$(BIN)/ruff check golem_graphene tests bench scripts/readme-walk
	$(BIN)/ruff format --check golem_graphene tests bench scripts/readme-walk

typecheck: setup
	$(BIN)/mypy

unit: setup
	# Four processes: unit and conformance tests; the real-sandbox and real-HTTP integration
	# tests with the installed CLI run as child processes (tests/cli); the hostile-client suite,
	# which starts and kills many providers and sandboxes; the live Golem tests against a real
	# yagna daemon. Each keeps its process-wide state (event-loop policy, logging, caches, the
	# yagna daemon) to itself.
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-unit tests/unit tests/conformance
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-integration tests/integration tests/golem tests/cli
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-hostile tests/hostile
	$(MAKE) --no-print-directory golem-live

# The live Golem tests: a real yagna (the golem-node extra) and the real yapapi. GOLEM_LIVE=require
# turns a missing yagna into a failure instead of a skip, so this target never passes vacuously.
golem-live: setup
	GOLEM_LIVE=require $(BIN)/python -m pytest -q -m golem_live \
		--basetemp=$(CURDIR)/.pytest-tmp-golem-live tests/golem_live

# The README's commands, in order, in a fresh copy of the checkout with a fresh HOME.
readme-walk: setup
	$(BIN)/python scripts/readme-walk

test: lint typecheck unit readme-walk

bench: setup
	$(BIN)/python bench/verify.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
