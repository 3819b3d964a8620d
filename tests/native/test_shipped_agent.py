"""The agent the package ships is the one its sources build: requestors and providers of one
version measure the same bytes (the agent is part of every enclave's measurement)."""

from __future__ import annotations

from _native_agent import AgentBinaries

from golem_graphene.host.image import shipped_agent


def test_the_shipped_agent_is_a_fresh_build_of_native_agent(agent_bin: AgentBinaries) -> None:
    fresh = agent_bin.production.read_bytes()
    assert shipped_agent() == fresh, (
        "golem_graphene/host/agent/golem-graphene-agent is not what native/agent builds: run "
        "`make agent-package` and commit the result with the source change"
    )


def test_the_shipped_agent_is_small_and_static() -> None:
    agent = shipped_agent()
    assert agent[:4] == b"\x7fELF"
    assert len(agent) <= 2 << 20  # issue 12: the agent's image size <= 2 MiB
    assert b"/lib64/ld-linux" not in agent  # no program interpreter: statically linked
