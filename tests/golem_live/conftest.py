"""Fixtures of the live Golem tests: one real yagna for the session, real yapapi, our runtime.

- ``yagna`` (session): a :class:`~yagna.YagnaNode` bootstrapped with a requestor and a provider
  identity (:class:`~yagna.Identities`), stopped by PID at the end. No yagna binary: a skip,
  or a failure under ``GOLEM_LIVE=require`` (what ``make test`` sets), so the suite never passes
  without having run;
- ``runtime_template`` (session): ``runtime --runner R offer-template`` of the real runtime
  process, per runner;
- ``provider``: a :class:`~market.ProviderAgent` (ya-provider's market side) on the provider key.

Every test in this folder carries the ``golem_live`` marker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from market import ProviderAgent, Rest
from yagna import YAGNA_BINARY, Identities, YagnaError, YagnaNode

from golem_graphene.runtime.offer import offer_template
from golem_graphene.runtime.settings import RuntimeSettings

HERE = Path(__file__).resolve().parent
RUNTIME_BINARY = Path(sys.executable).with_name("golem-graphene")
sys.path.insert(0, str(HERE.parent / "golem"))  # the supervisor simulator of tests/golem


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.golem_live)


@pytest.fixture(scope="session")
def yagna(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[YagnaNode, Identities]]:
    if not YAGNA_BINARY.exists():
        reason = f"no yagna at {YAGNA_BINARY}: pip install 'golem-graphene[golem-node]'"
        if os.environ.get("GOLEM_LIVE") == "require":
            pytest.fail(reason)
        pytest.skip(reason)
    node = YagnaNode(tmp_path_factory.mktemp("yagna"))
    try:
        identities = node.bootstrap()
    except YagnaError as exc:
        node.stop()
        pytest.fail(f"yagna did not start: {exc}", pytrace=False)
    try:
        yield node, identities
    finally:
        node.stop()


@pytest.fixture(scope="session")
def runtime_template(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """The real runtime's ``offer-template`` for a runner (one data folder per runner)."""
    cache: dict[str, dict[str, Any]] = {}

    def template(runner: str) -> dict[str, Any]:
        if runner not in cache:
            data = tmp_path_factory.mktemp(f"runtime-{runner}")
            flags = ["--runner", runner, "--data-dir", str(data)]
            out = subprocess.run(
                [str(RUNTIME_BINARY), "runtime", *flags, "offer-template"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if out.returncode == 0:
                cache[runner] = json.loads(out.stdout)
            else:
                # The runtime refuses to offer a runner this host cannot run (no SGX here): the
                # market tests take the template such a host would publish.
                assert "cannot run on this host" in out.stderr, out.stderr
                settings = RuntimeSettings(
                    runner=runner, data_dir=data, allow_insecure=("gramine-direct",)
                )
                cache[runner] = offer_template(settings, check_host=False)
        return cache[runner]

    return template


@pytest_asyncio.fixture
async def provider_rest(yagna: tuple[YagnaNode, Identities]) -> AsyncIterator[Rest]:
    node, ids = yagna
    async with aiohttp.ClientSession() as session:
        yield Rest(session, node.api_url, ids.provider_key)


@pytest_asyncio.fixture
async def provider(
    provider_rest: Rest, yagna: tuple[YagnaNode, Identities]
) -> AsyncIterator[ProviderAgent]:
    agent = ProviderAgent(provider_rest, yagna[1].provider_id)
    try:
        yield agent
    finally:
        await agent.close()
