"""Fixtures of the native agent's tests: its binaries (built once per session), a simulated
platform with the sim runner's ``/dev/attestation``, and a factory of agent conversations."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _native_agent import (
    AgentBinaries,
    AgentProcess,
    Conversation,
    Requestor,
    SimAttestation,
    TaskDirs,
    Workload,
    build_agent,
)

from golem_graphene.host.sim.platform import SimPlatform


@pytest.fixture(scope="session")
def agent_bin() -> AgentBinaries:
    try:
        return build_agent()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def sim_platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return SimPlatform.load_or_create(tmp_path_factory.mktemp("sim-platform"))


@pytest.fixture
def attestation(tmp_path: Path, sim_platform: SimPlatform) -> Iterator[SimAttestation]:
    with SimAttestation(sim_platform, tmp_path / "dev-attestation") as device:
        yield device


StartAgent = Callable[..., Conversation]


@pytest.fixture
def start_agent(
    tmp_path: Path, agent_bin: AgentBinaries, attestation: SimAttestation
) -> Iterator[StartAgent]:
    """Start the test build of the agent on a workload; returns its conversation."""
    started: list[AgentProcess] = []

    def start(
        workload: Workload | dict[str, Any] | bytes,
        *,
        binary: Path | None = None,
        requestor: Requestor | None = None,
        name: str = "task",
        argv: list[str] | None = None,
        attestation_dir: Path | None = None,
        env_extra: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> Conversation:
        dirs = TaskDirs(tmp_path / name).create(workload)
        device = attestation_dir or attestation.directory
        env = {
            "PATH": "/usr/bin:/bin",
            "GG_AGENT_TEST_ATTESTATION_DIR": str(device),
            **(env_extra or {}),
        }
        command = dirs.argv() if argv is None else argv
        agent = AgentProcess(binary or agent_bin.test, command, env=env, prefix=prefix)
        started.append(agent)
        return Conversation(agent=agent, dirs=dirs, requestor=requestor or Requestor())

    yield start
    for agent in started:
        agent.close()
