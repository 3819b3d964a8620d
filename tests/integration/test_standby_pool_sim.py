"""Standby enclaves (``warm_enclaves``): started ahead of their tasks, one task each, reclaimed.

A task takes a started enclave of its image when the pool has one, and the flow and its checks
are the same as for an enclave launched on demand; a standby enclave that died is never used;
closing or restarting the provider leaves no standby process or folder behind.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from _e2e_support import SHELL, Identity, Provider, StartProvider, wait_until

from golem_graphene.host.sandbox import kill_session
from golem_graphene.host.standby_pool import StandbyPool
from golem_graphene.protocol.spec import spec_digest
from golem_graphene.provider.engine import image_key

pytestmark = pytest.mark.sandbox


def shell_key(provider: Provider) -> str:
    return image_key(SHELL, spec_digest(provider.spec(SHELL)))


async def run_shell(provider: Provider, identity: Identity, out: Path, script: str) -> bytes:
    spec_dir = provider.spec(SHELL)
    async with provider.requestor(identity, spec_dir) as requestor:
        result = await requestor.run(spec_dir, {}, out, args=["-c", script])
    assert result.exit_status == 0
    return result.outputs["o"].read_bytes()


async def primed(provider: Provider, identity: Identity, out: Path) -> tuple[StandbyPool, str]:
    """Run one task (an image's first task launches on demand and starts its pool), then wait
    until the pool of the shell image is full; returns the pool and the image's key."""
    pool = provider.server.engine.pool
    key = shell_key(provider)
    assert await run_shell(provider, identity, out, "echo one > outputs/o") == b"one\n"
    assert await pool.wait_ready(key, 60)
    return pool, key


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


async def test_a_task_runs_in_a_standby_enclave_and_the_pool_refills(
    start_provider: StartProvider, identity: Identity, tmp_path: Path
) -> None:
    async with start_provider(warm_enclaves=1) as provider:
        pool, key = await primed(provider, identity, tmp_path / "a")
        (standby_pid,) = pool.ready_pids(key)

        spec_dir = provider.spec(SHELL)
        async with provider.requestor(identity, spec_dir) as requestor:
            task = await requestor.attest(await requestor.create(spec_dir))
            record = provider.server.engine.store.get(task.ref.task_id)
            assert record is not None and record.pid == standby_pid
            # Its launch folder moved into the task's folder, its log too.
            assert (provider.task_dir(task.ref.task_id) / "launch" / "io").is_dir()
            assert (provider.task_dir(task.ref.task_id) / "enclave.log").is_file()
            await requestor.send_inputs(task, {}, args=["-c", "echo two > outputs/o"])
            await requestor.start(task)
            await requestor.wait(task, timeout=60)
            result = await requestor.fetch(task, tmp_path / "b")
        assert result.outputs["o"].read_bytes() == b"two\n"
        assert await provider.settled_leftovers() == []
        # One task per enclave: it is gone, and a new one stands by.
        assert await wait_until(lambda: not alive(standby_pid))
        assert await pool.wait_ready(key, 60)
        assert pool.ready_pids(key) != [standby_pid]
        assert len(list(pool.root.iterdir())) == 1


async def test_a_standby_enclave_that_died_is_not_used(
    start_provider: StartProvider, identity: Identity, tmp_path: Path
) -> None:
    async with start_provider(warm_enclaves=1) as provider:
        pool, key = await primed(provider, identity, tmp_path / "a")
        (dead,) = pool.ready_pids(key)
        kill_session(dead)
        assert await wait_until(lambda: not alive(dead))
        await asyncio.sleep(0.1)  # the event loop reaps the child
        assert await run_shell(provider, identity, tmp_path / "b", "echo two > outputs/o") == (
            b"two\n"
        )
        assert await pool.wait_ready(key, 60)
        assert dead not in pool.ready_pids(key)


async def test_closing_the_provider_kills_standby_enclaves(
    start_provider: StartProvider, identity: Identity, tmp_path: Path
) -> None:
    async with start_provider(warm_enclaves=2) as provider:
        pool, key = await primed(provider, identity, tmp_path / "a")
        pids = pool.ready_pids(key)
        assert len(pids) == 2
        root = pool.root
    assert await wait_until(lambda: not any(alive(pid) for pid in pids))
    assert not root.exists()


async def test_no_standby_enclaves_when_disabled(
    start_provider: StartProvider, identity: Identity, tmp_path: Path
) -> None:
    async with start_provider(warm_enclaves=0) as provider:
        await run_shell(provider, identity, tmp_path / "a", "echo one > outputs/o")
        await asyncio.sleep(0.5)
        assert provider.server.engine.pool.ready_pids(shell_key(provider)) == []
        assert not provider.server.engine.pool.root.exists()


async def test_restart_reclaims_standby_enclaves_a_crash_left(
    start_provider: StartProvider, tmp_path: Path
) -> None:
    # What a killed provider leaves: a standby folder and the enclave process started in it.
    data_dir = tmp_path / "provider"
    launch = data_dir / "standby" / ("ab" * 8) / "launch"
    launch.mkdir(parents=True)
    # Named like the sandbox, working in the launch folder, as a standby sim enclave is.
    leftover = await asyncio.create_subprocess_exec(
        "bash", "-c", "exec -a bwrap sleep 300", cwd=launch, start_new_session=True
    )
    cmdline = Path(f"/proc/{leftover.pid}/cmdline")
    assert await wait_until(lambda: cmdline.read_bytes().startswith(b"bwrap"))
    try:
        async with start_provider(data_dir=data_dir):
            assert await asyncio.wait_for(leftover.wait(), 15) == -9
            assert not launch.exists()
    finally:
        if leftover.returncode is None:
            os.killpg(leftover.pid, 9)
            await leftover.wait()
