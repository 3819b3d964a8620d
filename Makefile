# The two commands of the README: `make demo` and `make test`. Every target sets up what it
# needs (Debian packages, a virtual environment, the Python packages) and is safe to run twice.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# The native in-enclave agent (native/agent, see its README) is C11 + libsodium, built with
# Debian's gcc; its fuzz targets use clang's libFuzzer. It is built into AGENT_BUILD.
AGENT_PACKAGES := gcc make libsodium-dev
FUZZ_PACKAGES := clang libclang-rt-14-dev
# zsh: the completion tests run the zsh script the CLI generates.
DEBIAN_PACKAGES := bubblewrap age time zsh python3-venv umoci skopeo $(AGENT_PACKAGES) \
	$(FUZZ_PACKAGES)
AGENT_BUILD := $(CURDIR)/build/agent

.PHONY: all setup demo test lint typecheck unit golem-live readme-walk bench clean agent \
	agent-package agent-test-binaries agent-fuzzers fuzz-agent agent-toolchain fuzz-toolchain \
	task-images

all: test

$(STAMP): pyproject.toml
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench,golem,golem-node]'
	@touch $(STAMP)

setup: $(STAMP)
	@scripts/ensure-debian-packages $(DEBIAN_PACKAGES)

# The static, reproducible agent binary every image carries: $(AGENT_BUILD)/golem-graphene-agent.
# The package ships a copy (golem_graphene/host/agent/), so that requestors and providers of one
# version measure the same bytes; tests/native checks a fresh build equals it. After changing
# native/agent, `make agent-package` refreshes the shipped copy (commit it with the source).
agent: agent-toolchain
	@$(MAKE) -s -C native/agent BUILD=$(AGENT_BUILD) all

agent-package: agent
	cp $(AGENT_BUILD)/golem-graphene-agent golem_graphene/host/agent/golem-graphene-agent


# The test build (test-only entry points) and its AddressSanitizer + UBSan variant.
agent-test-binaries: agent-toolchain
	@$(MAKE) -s -C native/agent BUILD=$(AGENT_BUILD) test-binaries

# libFuzzer targets (clang): the age header, input manifest and control frame parsers.
agent-fuzzers: fuzz-toolchain
	@$(MAKE) -s -C native/agent BUILD=$(AGENT_BUILD) fuzzers

agent-toolchain:
	@scripts/ensure-debian-packages $(AGENT_PACKAGES)

fuzz-toolchain: agent-toolchain
	@scripts/ensure-debian-packages $(FUZZ_PACKAGES)

# Run each fuzz target longer than `make test` does: make fuzz-agent FUZZ_SECONDS=600
FUZZ_SECONDS ?= 60
fuzz-agent: agent-fuzzers
	scripts/fuzz-agent $(FUZZ_SECONDS)

# The task specs' container images (task_specs/NAME/image.tar), built byte for byte reproducibly
# from the Debian packages pinned in task_specs/images.lock (see task_specs/IMAGES.md).
# DEB_CACHE keeps the downloaded .debs (scripts/readme-walk points its copy at this checkout's).
DEB_CACHE ?= $(CURDIR)/build/debs
task-images: setup
	@$(BIN)/python scripts/task-images --cache $(DEB_CACHE)

# A local provider (sim runner) and requestor run the csv-stats task end to end.
demo: setup task-images
	$(BIN)/golem-graphene demo

lint: setup
	$(BIN)/ruff check golem_graphene tests bench scripts/readme-walk scripts/task-images
	$(BIN)/ruff format --check golem_graphene tests bench scripts/readme-walk scripts/task-images

typecheck: setup
	$(BIN)/mypy

unit: setup agent agent-test-binaries agent-fuzzers task-images
	# Five processes: unit and conformance tests; the real-sandbox and real-HTTP integration
	# tests with the installed CLI run as child processes (tests/cli); the hostile-client suite,
	# which starts and kills many providers and sandboxes; the native agent (built with make,
	# then driven as the host drives it, its sanitizer build and its fuzz targets for a few
	# seconds); the live Golem tests against a real yagna daemon. Each keeps its process-wide
	# state (event-loop policy, logging, caches, the yagna daemon) to itself.
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-unit tests/unit tests/conformance
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-integration tests/integration tests/golem tests/cli
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-hostile tests/hostile
	$(BIN)/python -m pytest -q --basetemp=$(CURDIR)/.pytest-tmp-native tests/native
	$(MAKE) --no-print-directory golem-live

# The live Golem tests: a real yagna (the golem-node extra) and the real yapapi. GOLEM_LIVE=require
# turns a missing yagna into a failure instead of a skip, so this target never passes vacuously.
golem-live: setup
	GOLEM_LIVE=require $(BIN)/python -m pytest -q -m golem_live \
		--basetemp=$(CURDIR)/.pytest-tmp-golem-live tests/golem_live

# The README's commands, in order, in a fresh copy of the checkout with a fresh HOME.
readme-walk: setup task-images
	DEB_CACHE=$(DEB_CACHE) $(BIN)/python scripts/readme-walk

test: lint typecheck unit readme-walk

bench: setup
	$(BIN)/python bench/verify.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis $(AGENT_BUILD)
