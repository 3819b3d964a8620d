"""The standby pool's bookkeeping with a fake runner: fill, take, dead enclaves, eviction, close."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path
from typing import Any, cast

import pytest

from golem_graphene.errors import RunnerError
from golem_graphene.host.image import EnclaveImage
from golem_graphene.host.runners import EnclaveRunner
from golem_graphene.host.standby_pool import StandbyPool
from golem_graphene.protocol.agent import Failed, Ready, encode

_pids = itertools.count(1000)
IMAGE = cast(EnclaveImage, object())


class FakeProcess:
    """A started enclave that ``behaves``: ``ready`` (reports it, then waits), ``failed``
    (reports a failure), ``exits`` (ends its control pipe at once) or ``hangs`` (says nothing)."""

    def __init__(self, behaves: str) -> None:
        self.pid = next(_pids)
        self.behaves = behaves
        self.killed = False
        self.timed_out = False
        self.standby: bool | None = None
        self._exited = asyncio.Event()
        self._reported = False
        if behaves == "exits":
            self._exited.set()

    @property
    def running(self) -> bool:
        return not (self.killed or self._exited.is_set())

    async def read_frame(self) -> bytes | None:
        if self.behaves == "ready" and not self._reported:
            self._reported = True
            return encode(Ready(agent="fake/1"))
        if self.behaves == "failed" and not self._reported:
            self._reported = True
            return encode(Failed(code="workload_format", message="bad image"))
        await self._exited.wait()
        return None

    def kill(self) -> None:
        self.killed = True
        self._exited.set()

    def failure_reason(self) -> str | None:
        return None

    async def wait(self) -> int:
        await self._exited.wait()
        return -9


class FakeRunner:
    name = "sim"
    simulated = True

    def __init__(self) -> None:
        self.behaves = "ready"
        self.fail = False
        self.launched: list[FakeProcess] = []

    async def launch(
        self, image: Any, launch_dir: Path, *, stderr_path: Path, standby: bool = False
    ) -> FakeProcess:
        if self.fail:
            raise RunnerError("cannot start")
        (launch_dir / "io" / "inputs").mkdir(parents=True, exist_ok=True)
        process = FakeProcess(self.behaves)
        process.standby = standby
        self.launched.append(process)
        return process

    async def collateral_for(self, quote: bytes, at: Any) -> None:
        return None


def pool_of(tmp_path: Path, per_image: int = 1, **kw: Any) -> tuple[StandbyPool, FakeRunner]:
    runner = FakeRunner()
    return StandbyPool(cast(EnclaveRunner, runner), tmp_path / "standby", per_image, **kw), runner


async def test_take_fills_the_pool_and_hands_out_ready_enclaves(tmp_path: Path) -> None:
    pool, runner = pool_of(tmp_path, per_image=2)
    assert await pool.take("a", IMAGE) is None  # empty at first: the caller launches its own
    assert await pool.wait_ready("a", 5)
    assert all(p.standby for p in runner.launched)  # their clocks wait for a task
    first = runner.launched[0]
    taken = await pool.take("a", IMAGE)
    assert taken is not None and taken.process is cast(Any, first)
    assert taken.launch_dir.is_dir() and (taken.launch_dir / "io" / "inputs").is_dir()
    assert await pool.wait_ready("a", 5)  # refilled
    assert len(runner.launched) == 3
    await pool.close()


async def test_a_dead_standby_enclave_is_discarded_not_handed_out(tmp_path: Path) -> None:
    pool, runner = pool_of(tmp_path)
    await pool.take("a", IMAGE)
    assert await pool.wait_ready("a", 5)
    (dead,) = runner.launched
    dead.kill()
    assert await pool.take("a", IMAGE) is None
    assert await pool.wait_ready("a", 5)
    assert pool.ready_pids("a") == [runner.launched[-1].pid] != [dead.pid]
    assert len(list(pool.root.iterdir())) == 1  # the dead one's folder is gone
    await pool.close()


@pytest.mark.parametrize("failure", ["launch", "failed", "exits"])
async def test_an_enclave_that_does_not_become_ready_is_dropped(
    tmp_path: Path, failure: str
) -> None:
    pool, runner = pool_of(tmp_path)
    runner.fail = failure == "launch"
    runner.behaves = failure
    await pool.take("a", IMAGE)
    for _ in range(50):
        await asyncio.sleep(0.01)
    assert pool.ready_count("a") == 0
    assert len(runner.launched) == (0 if failure == "launch" else 1)
    assert all(p.killed for p in runner.launched)
    assert not pool.root.exists() or list(pool.root.iterdir()) == []
    await pool.close()


async def test_only_the_most_recently_used_images_keep_standby_enclaves(tmp_path: Path) -> None:
    pool, runner = pool_of(tmp_path, max_images=2)
    for key in ("a", "b"):
        await pool.take(key, IMAGE)
        assert await pool.wait_ready(key, 5)
    (b_pid,) = pool.ready_pids("b")
    taken = await pool.take("a", IMAGE)  # a is now the most recent; b the least
    assert taken is not None
    await taken.close()  # (a task would have moved its folder away)
    shutil.rmtree(taken.launch_dir.parent)
    assert await pool.wait_ready("a", 5)
    await pool.take("c", IMAGE)
    assert await pool.wait_ready("c", 5)
    assert pool.ready_pids("b") == []
    assert next(p for p in runner.launched if p.pid == b_pid).killed
    assert pool.ready_count("a") == 1 and pool.ready_count("c") == 1
    assert len(list(pool.root.iterdir())) == 2
    await pool.close()


async def test_close_kills_ready_and_starting_enclaves(tmp_path: Path) -> None:
    pool, runner = pool_of(tmp_path, per_image=2)
    await pool.take("a", IMAGE)
    assert await pool.wait_ready("a", 5)
    runner.behaves = "hangs"  # the replacement never becomes ready: still starting at close
    taken = await pool.take("a", IMAGE)
    await asyncio.sleep(0.05)
    assert len(runner.launched) == 3
    await pool.close()
    assert taken is not None and not cast(FakeProcess, taken.process).killed  # the caller's
    assert [p.killed for p in runner.launched] == [False, True, True]
    assert not pool.root.exists()
    assert await pool.take("a", IMAGE) is None  # a closed pool starts nothing
    assert len(runner.launched) == 3


async def test_no_pool_when_disabled(tmp_path: Path) -> None:
    pool, runner = pool_of(tmp_path, per_image=0)
    assert await pool.take("a", IMAGE) is None
    await asyncio.sleep(0.05)
    assert runner.launched == []
    await pool.close()
