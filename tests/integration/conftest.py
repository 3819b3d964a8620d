"""Fixtures of the end-to-end tests: a real provider on loopback with the real sim runner.

- ``image_cache`` (session): each spec's enclave image is built once per session and linked into
  every provider's data directory, where the provider finds it built.
- ``sim_runner`` (session): the real ``sim`` runner (bubblewrap sandbox, simulated quotes),
  shared so that its trusted-file hash cache stays warm; skips when bwrap cannot sandbox here.
- ``test_specs`` (session): a specs folder offering the repository's ``task_specs/*`` and the
  shell specs of ``_e2e_support``.
- ``start_provider`` / ``provider``: a :class:`ProviderServer` on ``127.0.0.1`` port 0 with a
  temporary data directory and requestor tokens (``images={...}``: the ``[images]`` settings).
- ``identity``: a fresh requestor identity and its ``identity.txt`` (for ``age -d -i``).

Helpers live in ``_e2e_support.py``, which the tests import.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _e2e_support import (
    OTHER_TOKEN,
    REQUESTOR_TOKEN,
    Identity,
    ImageCache,
    Provider,
    StartProvider,
    bwrap_problem,
    write_identity,
    write_test_specs,
)

from golem_graphene.host.runners import SimRunner
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.server import ProviderServer


@pytest.fixture(scope="session")
def image_cache(tmp_path_factory: pytest.TempPathFactory) -> ImageCache:
    return ImageCache(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="session")
def sim_runner(tmp_path_factory: pytest.TempPathFactory) -> SimRunner:
    """The real sim runner, shared by every in-process provider of the session."""
    problem = bwrap_problem()
    if problem is not None:
        pytest.skip(problem)
    return SimRunner(tmp_path_factory.mktemp("sim-runner"))


@pytest.fixture(scope="session")
def test_specs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("specs")
    write_test_specs(root)
    return root


@pytest.fixture
def identity(tmp_path: Path) -> Identity:
    return write_identity(tmp_path / "identity.txt")


@pytest.fixture
def start_provider(
    tmp_path: Path, sim_runner: SimRunner, image_cache: ImageCache, test_specs: Path
) -> StartProvider:
    """``async with start_provider(data_dir=..., limits={...}) as provider:``."""

    @contextlib.asynccontextmanager
    async def start(
        *,
        data_dir: Path | None = None,
        limits: dict[str, Any] | None = None,
        tokens: tuple[str, ...] = (REQUESTOR_TOKEN, OTHER_TOKEN),
        warm_enclaves: int | None = None,
        images: dict[str, Any] | None = None,
    ) -> AsyncIterator[Provider]:
        options: dict[str, Any] = {
            "bind": "127.0.0.1",
            "port": 0,
            "data_dir": str(data_dir or tmp_path / "provider"),
            "specs_dir": str(test_specs),
            "auth": {"tokens": list(tokens)},
            "limits": limits or {},
        }
        if warm_enclaves is not None:
            options["warm_enclaves"] = warm_enclaves
        if images is not None:
            options["images"] = images
        config = ProviderConfig.model_validate(options)
        async with ProviderServer(config, sim_runner) as server:
            yield Provider(server, sim_runner, image_cache, test_specs, REQUESTOR_TOKEN)

    return start


@pytest.fixture
async def provider(start_provider: StartProvider) -> AsyncIterator[Provider]:
    async with start_provider() as running:
        yield running
