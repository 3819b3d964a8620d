"""Fixtures of the hostile-client tests (issue 7): real providers on loopback, two requestors.

- ``template`` (session): the ``shell`` spec's image and the sim platform, built once; each
  provider's temporary data directory starts as a copy.
- ``provider`` (module): a :class:`ProviderServer` on ``127.0.0.1:0`` in its own thread, token
  auth with two requestor tokens (``TOKEN_A``, ``TOKEN_B``), small upload idle timeout.
- ``start_module_provider`` (module): ``with start_module_provider({...limits}) as provider:``
  starts another such provider with the limits a module asks for.
- ``process_provider``: ``golem-graphene provider serve`` as a child process (RSS, SIGKILL).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from _hostile_support import (
    ProcessProvider,
    StartProvider,
    Template,
    ThreadProvider,
    bwrap_problem,
    provider_config,
    write_specs,
)

DEFAULT_LIMITS: dict[str, Any] = {"upload_idle_seconds": 1.0, "max_queued_tasks": 1000}


@pytest.fixture(scope="module", autouse=True)
def fresh_logging() -> Iterator[None]:
    """structlog's defaults while these providers run: an earlier test that ran the CLI may
    have configured it to print to a capture stream that is closed by now."""
    saved = structlog.get_config()
    structlog.reset_defaults()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    specs = write_specs(tmp_path_factory.mktemp("hostile-specs"))
    return Template.build(tmp_path_factory.mktemp("hostile-template") / "data", specs)


@pytest.fixture(scope="session")
def sandbox_ok() -> None:
    """Skip tests that launch enclaves where bubblewrap cannot sandbox."""
    problem = bwrap_problem()
    if problem is not None:
        pytest.skip(problem)


@pytest.fixture(scope="module")
def start_module_provider(
    tmp_path_factory: pytest.TempPathFactory, template: Template
) -> StartProvider:
    @contextlib.contextmanager
    def start(limits: dict[str, Any] | None = None) -> Iterator[ThreadProvider]:
        data = template.copy_to(tmp_path_factory.mktemp("hostile-provider") / "data")
        config = provider_config(data, template.specs_dir, {**DEFAULT_LIMITS, **(limits or {})})
        with ThreadProvider(config, template) as running:
            yield running

    return start


@pytest.fixture(scope="module")
def provider(start_module_provider: StartProvider) -> Iterator[ThreadProvider]:
    with start_module_provider() as running:
        yield running


@pytest.fixture
def process_provider(
    tmp_path: Path, template: Template
) -> Iterator[Callable[..., ProcessProvider]]:
    """``process_provider(limits)``: a provider child process (started); killed at the end."""
    started: list[ProcessProvider] = []

    def make(limits: dict[str, Any] | None = None) -> ProcessProvider:
        data = template.copy_to(tmp_path / f"data-{secrets.token_hex(6)}")
        running = ProcessProvider(
            template, data, tmp_path / f"work{len(started)}", {**DEFAULT_LIMITS, **(limits or {})}
        )
        started.append(running)
        running.start()
        return running

    yield make
    for running in started:  # an orderly stop also ends the enclaves of a failed test
        running.stop()
