"""A provider that stalls, drips or never finishes: every wait of the requestor is bounded.

Issue 15, item 2: each step has a deadline, the whole task has one, and every upload and
download must keep a minimum rate over a window; the error names the step, the deadline and
what had arrived. Driven through the SDK against the in-memory provider, with short deadlines.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from _fake_provider import MRENCLAVE, FakeProvider
from _test_images import write_shell_spec

from golem_graphene._internal.staging import STAGING_PREFIX
from golem_graphene.errors import UsageError
from golem_graphene.host.sim.platform import SimPlatform
from golem_graphene.protocol.messages import TaskEvent
from golem_graphene.requestor.channel import TaskRef
from golem_graphene.requestor.client import Requestor, RequestorPolicy, TaskStepError
from golem_graphene.requestor.deadlines import (
    DeadlineError,
    Deadlines,
    TransferRateError,
    parse_rate,
)
from golem_graphene.sealing.keys import X25519Identity

SPEC = """\
name = "fake"

[enclave]
image = "{image}"

[[inputs]]
name = "a"
max_size = "64M"

[outputs]
files = ["out"]

[limits]
wall_seconds = 60
output_size = "64M"
"""

FAST = Deadlines(min_rate=256 * 1024, window=0.4)
"""Short enough for a test: at least 100 KiB every 0.4 s."""


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> SimPlatform:
    return SimPlatform.load_or_create(tmp_path_factory.mktemp("platform"))


@pytest.fixture
def spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The spec folder with its container image; the user's image store in the test's folder
    (the policy pins the measurement, so nothing should be measured there)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return write_shell_spec(tmp_path / "spec", SPEC)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    return path


def requestor(provider: FakeProvider, deadlines: Deadlines = FAST) -> Requestor:
    policy = RequestorPolicy(
        trusted_simulation_roots=(provider.platform.root_fingerprint,),
        expected_mrenclave=(MRENCLAVE.hex(),),
    )
    return Requestor(
        provider, identity=X25519Identity.generate(), policy=policy, deadlines=deadlines
    )


class DrippingProvider(FakeProvider):
    """Hands files over in pieces, waiting ``delay`` seconds before each piece of the files
    in ``drip`` (after ``fast`` bytes at full speed)."""

    def __init__(self, platform: SimPlatform, drip: set[str], delay: float, fast: int = 0):
        super().__init__(platform)
        self.drip, self.delay, self.fast = drip, delay, fast
        self.sent = 0

    async def stream_output(
        self, task: TaskRef, name: str, limit: int
    ) -> AsyncGenerator[bytes, None]:
        data = self._task(task).files[name]
        offset = 0
        while offset < len(data):
            if name not in self.drip:
                size = 65_536
            elif offset >= self.fast:
                await asyncio.sleep(self.delay)
                size = 1
            else:
                size = self.fast - offset
            chunk = data[offset : offset + size]
            offset += len(chunk)
            self.sent += len(chunk)
            yield chunk


def staging_left(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f"{STAGING_PREFIX}*"))


@pytest.mark.parametrize("name", ["out.age", "receipt.json"])
async def test_a_dripped_download_fails_at_the_minimum_rate(
    platform: SimPlatform, spec: Path, data: Path, tmp_path: Path, name: str
) -> None:
    """One byte every 0.1 s (10 B/s) keeps no connection idle: only the rate catches it."""
    provider = DrippingProvider(platform, {name}, delay=0.1, fast=200)
    out = tmp_path / "out"
    started = time.monotonic()
    async with requestor(provider) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, {"a": data}, out)
    elapsed = time.monotonic() - started
    err = caught.value
    assert (err.step, err.code) == ("fetch", "transfer_rate")
    assert isinstance(err.cause, TransferRateError)
    message = str(err)
    assert "fell below the minimum rate of 256 KiB/s" in message
    assert "fewer than 104858 bytes in 0.4 s" in message
    what = "output out" if name == "out.age" else "receipt.json"
    assert f"bytes of {what} had moved" in message
    assert elapsed < 10
    assert not out.exists()
    assert staging_left(out) == []


async def test_a_download_that_keeps_the_rate_is_not_cut(
    platform: SimPlatform, spec: Path, data: Path, tmp_path: Path
) -> None:
    """Slow but above the minimum rate, over more than one window: it completes."""
    provider = DrippingProvider(platform, set(), delay=0.0)
    slow = Deadlines(min_rate=64 * 1024, window=0.3)

    class Paced(DrippingProvider):
        async def stream_output(
            self, task: TaskRef, name: str, limit: int
        ) -> AsyncGenerator[bytes, None]:
            async for chunk in super().stream_output(task, name, limit):
                await asyncio.sleep(0.05)  # 64 KiB per 0.05 s: about 1.3 MiB/s
                yield chunk

    provider = Paced(platform, set(), delay=0.0)
    async with requestor(provider, slow) as r:
        result = await r.run(spec, {"a": data}, tmp_path / "out")
    assert result.outputs["out"].read_bytes() == data.read_bytes()


class SlowReader(FakeProvider):
    """Reads an upload one piece every ``delay`` seconds (a provider throttling the sender)."""

    def __init__(self, platform: SimPlatform, delay: float) -> None:
        super().__init__(platform)
        self.delay = delay

    async def put_input(self, task: TaskRef, name: str, body: AsyncIterable[bytes]) -> None:
        async for _ in body:
            await asyncio.sleep(self.delay)


async def test_a_throttled_upload_fails_at_the_minimum_rate(
    platform: SimPlatform, spec: Path, data: Path, tmp_path: Path
) -> None:
    provider = SlowReader(platform, delay=1.0)
    async with requestor(provider) as r:
        task = await r.attest(await r.create(spec))
        with pytest.raises(TaskStepError) as caught:
            await r.send_inputs(task, {"a": data})
    err = caught.value
    assert (err.step, err.code) == ("send_inputs", "transfer_rate")
    assert "input a fell below the minimum rate" in str(err)


class NeverDone(FakeProvider):
    """Says the task runs, then only keeps the stream open: it never finishes."""

    async def events(self, task: TaskRef) -> AsyncIterator[TaskEvent]:
        async for event in super().events(task):
            if event.state in ("done", "failed", "cancelled"):
                break
            yield event
        await asyncio.Event().wait()


async def test_the_wait_deadline_names_the_last_state(
    platform: SimPlatform, spec: Path, data: Path, tmp_path: Path
) -> None:
    provider = NeverDone(platform)
    out = tmp_path / "out"
    async with requestor(provider, FAST.with_steps(wait=0.3)) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, {"a": data}, out)
    err = caught.value
    assert (err.step, err.code) == ("wait", "deadline")
    assert isinstance(err.cause, DeadlineError)
    assert "the task did not finish within the wait deadline of 0.3 s" in str(err)
    assert "the provider's last state was" in str(err)
    assert not out.exists()
    # The stalled task is cancelled on the provider, not left running.
    assert ("cancel", next(iter(provider.tasks))) in provider.calls


async def test_the_whole_task_deadline_names_the_step_it_cut(
    platform: SimPlatform, spec: Path, data: Path, tmp_path: Path
) -> None:
    provider = NeverDone(platform)
    out = tmp_path / "out"
    async with requestor(provider, FAST.with_steps(total=0.5)) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, {"a": data}, out)
    err = caught.value
    assert (err.step, err.code) == ("wait", "deadline")
    assert "the task did not finish within the total deadline of 0.5 s" in str(err)
    assert staging_left(out) == []


class SilentCreate(FakeProvider):
    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_provider_that_never_answers_create(
    platform: SimPlatform, spec: Path, data: Path, tmp_path: Path
) -> None:
    async with requestor(SilentCreate(platform), FAST.with_steps(create=0.2)) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, {"a": data}, tmp_path / "out")
    assert (caught.value.step, caught.value.code) == ("create", "deadline")
    assert "within the create deadline of 0.2 s" in str(caught.value)


class HangingCleanup(NeverDone):
    async def cancel(self, task: TaskRef) -> None:
        self.calls.append(("cancel", task.task_id))
        await asyncio.Event().wait()


async def test_a_provider_that_never_answers_cancel_cannot_hold_the_requestor(
    platform: SimPlatform, spec: Path, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from golem_graphene.requestor import client

    monkeypatch.setattr(client, "CLEANUP_SECONDS", 0.2)
    started = time.monotonic()
    async with requestor(HangingCleanup(platform), FAST.with_steps(wait=0.2)) as r:
        with pytest.raises(TaskStepError):
            await r.run(spec, {"a": data}, tmp_path / "out")
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "values",
    [
        {"total": 0},
        {"attest": -1},
        {"wait": math.nan},
        {"upload": math.inf},
        {"fetch": 1e300},
        {"min_rate": 0},
        {"window": True},
    ],
)
def test_deadlines_must_be_positive_and_finite(values: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        Deadlines(**values)


def test_unknown_deadlines_are_named() -> None:
    with pytest.raises(UsageError) as caught:
        Deadlines().with_steps(sleep=1.0)
    assert "sleep" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "rate"),
    [("65536", 65536), ("64K", 65536), ("1M", 1 << 20), ("1.5MiB/s", 1.5 * (1 << 20))],
)
def test_rates(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["", "fast", "-1K", "0", "nan", "infK"])
def test_bad_rates(text: str) -> None:
    with pytest.raises(UsageError):
        parse_rate(text)


def test_defaults_follow_the_spec() -> None:
    deadlines = Deadlines()
    assert deadlines.wait_for(300) == 900
    assert deadlines.total_for(300) == 900 + 3600
    assert Deadlines(total=10).total_for(300) == 10
