"""Crash consistency: SIGKILL the provider at random (seeded) points during batches of tasks.

Each round starts (or restarts) ``golem-graphene provider serve`` on the same data folder, sets a
batch of tasks going, and kills the provider with SIGKILL: at a random moment, the moment the
first task of the batch is done, and the instant a task is accepted. After each restart, every
process the crash left running is gone (the restarted provider reclaims sandboxes launched as it
died); after the last, every task the provider ever accepted (answered 201) must be done (with
outputs that verify), failed with the reason ``provider_restarted`` (its enclave had attested:
its keys died with it), or resumable: not attested when the provider died (``created`` or
``launching``: relaunched since), in which case it runs to completion now. At the end no
sandbox, partial upload, temporary state file or launch folder is left.

``HOSTILE_CRASH_SEED`` replays a given sequence of kill points and input sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _hostile_support import (
    TOKEN_A,
    ProcessProvider,
    auth,
    processes_marked,
    stray_files,
    wait_no_processes,
)

from golem_graphene.errors import Error
from golem_graphene.requestor.client import AttestedTask, Requestor
from golem_graphene.sealing.keys import X25519Identity

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("sandbox_ok")]

SEED = int(os.environ.get("HOSTILE_CRASH_SEED", "7"))
BATCH = 3


@dataclass
class Tracked:
    """A task as the requestor knows it."""

    created: Any
    data: Path
    attested: AttestedTask | None = None
    fetched: bool = False


def _requestor(provider: ProcessProvider, identity: X25519Identity) -> Requestor:
    # One identity for the whole test: a resumed task still seals its outputs to it.
    return Requestor(
        provider.url, identity=identity, token=TOKEN_A, policy=provider.template.policy()
    )


async def _flow(
    requestor: Requestor,
    spec: Path,
    data: Path,
    tracked: list[Tracked],
    out: Path,
    accepted: asyncio.Event,
    finished: asyncio.Event,
) -> None:
    created = await requestor.create(spec)
    task = Tracked(created, data)
    tracked.append(task)  # accepted: the provider answered 201
    accepted.set()
    task.attested = await requestor.attest(created)
    await requestor.send_inputs(task.attested, {"data.txt": data})
    await requestor.start(task.attested)
    await requestor.wait(task.attested)
    await requestor.fetch(task.attested, out)
    task.fetched = True
    finished.set()


def _first_sandbox(marker: str, timeout: float = 60.0) -> None:
    """Return as soon as a sandbox of this provider exists."""
    deadline = time.monotonic() + timeout
    while not processes_marked(marker) and time.monotonic() < deadline:
        time.sleep(0.005)


def _still_alive(processes: list[str], timeout: float = 10.0) -> list[str]:
    """Those of ``processes`` (``"pid: cmdline"`` lines) still running after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in processes if _alive(int(p.split(":")[0]))]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def _status(provider: ProcessProvider, task: Tracked) -> dict[str, Any]:
    ref = task.created.ref
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            f"{provider.url}/v1/tasks/{ref.task_id}", headers=auth(TOKEN_A, ref.token)
        ) as response,
    ):
        assert response.status == 200, await response.text()
        status: dict[str, Any] = await response.json()
        return status


async def test_sigkill_at_random_points_loses_no_accepted_task(
    process_provider: Callable[..., ProcessProvider], tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    where = f"(HOSTILE_CRASH_SEED={SEED})"
    provider = process_provider({"max_concurrent_tasks": 16})
    marker = provider.data_dir.name
    spec = provider.template.specs_dir / "shell"
    identity = X25519Identity.generate()
    tracked: list[Tracked] = []
    kills: list[float | str] = []
    survivors: list[str] = []
    # The moment the first sandbox appears (enclaves being launched as the provider dies); a
    # random moment; the moment the first task of a batch is done (the others in flight); the
    # instant a task is accepted: it is still "created" or "launching" on disk, the resumable
    # case (last, or the next round's kill would catch it relaunched).
    points: list[float | str] = ["on-launch", rng.uniform(0.2, 7.0), "on-done", "on-accept"]
    left_by_crash = []
    for round_number, point in enumerate(points):
        if round_number:
            provider.start()
            # Whatever the crash left running is reclaimed by the restarted provider.
            assert await asyncio.to_thread(_still_alive, survivors) == [], where
        async with _requestor(provider, identity) as requestor:
            flows = []
            accepted, finished = asyncio.Event(), asyncio.Event()
            for n in range(BATCH):
                data = tmp_path / f"in-{round_number}-{n}.bin"
                data.write_bytes(secrets.token_bytes(rng.choice([10, 50_000, 2 << 20])))
                out = tmp_path / f"out-{round_number}-{n}"
                flow = _flow(requestor, spec, data, tracked, out, accepted, finished)
                flows.append(asyncio.create_task(flow))
            if isinstance(point, float):
                kills.append(round(point, 2))
                await asyncio.sleep(point)
            elif point == "on-launch":
                kills.append(point)
                await asyncio.to_thread(_first_sandbox, marker)
            else:
                kills.append(point)
                await (accepted if point == "on-accept" else finished).wait()
            provider.kill()
            for flow in flows:
                flow.cancel()
            results = await asyncio.gather(*flows, return_exceptions=True)
            for result in results:
                # Cut off by the crash (or cancelled here), never failed otherwise.
                assert result is None or isinstance(result, Error | asyncio.CancelledError), (
                    f"{where}: {result!r}"
                )
        # Enclaves die with their provider, except one launched in the very moment of the
        # crash (before bwrap armed its parent-death signal): the restart must reclaim those.
        survivors = await asyncio.to_thread(wait_no_processes, marker, 3.0)
        left_by_crash.append(len(survivors))

    provider.start()
    assert await asyncio.to_thread(_still_alive, survivors) == [], where
    assert tracked, f"{where}: no task was accepted before the kills at {kills}"
    outcomes: dict[str, int] = {"done": 0, "failed": 0, "resumed": 0}
    async with _requestor(provider, identity) as requestor:
        for number, task in enumerate(tracked):
            status = await _status(provider, task)
            state = status["state"]
            what = f"{where} task {task.created.ref.task_id} after kills at {kills}: {status}"
            if state == "done":
                assert task.attested is not None, what
                if not task.fetched:
                    result = await requestor.fetch(task.attested, tmp_path / f"late-{number}")
                    assert result.outputs["out.txt"].read_bytes() == task.data.read_bytes()
                outcomes["done"] += 1
            elif state == "failed":
                assert status["failure"]["code"] == "provider_restarted", what
                assert "restarted" in status["failure"]["message"], what
                outcomes["failed"] += 1
            elif state in ("created", "launching", "attested"):
                # Resumable: the restarted provider relaunched it; it runs to the end now.
                attested = await requestor.attest(task.created)
                await requestor.send_inputs(attested, {"data.txt": task.data})
                await requestor.start(attested)
                await requestor.wait(attested)
                result = await requestor.fetch(attested, tmp_path / f"resumed-{number}")
                assert result.outputs["out.txt"].read_bytes() == task.data.read_bytes(), what
                outcomes["resumed"] += 1
            else:
                pytest.fail(f"a task left in state {state!r}: {what}")
    print(f"{where}: kills at {kills}, processes left by each crash {left_by_crash}, {outcomes}")
    assert sum(outcomes.values()) == len(tracked)
    assert outcomes["resumed"] >= 1, f"{where}: the on-accept kill left no resumable task"
    assert outcomes["done"] >= 1, f"{where}: the on-done kill left no done task"
    # Tasks whose 201 never reached us are accounted for too: terminal, or relaunched.
    for task_dir in (provider.data_dir / "tasks").iterdir():
        assert (task_dir / "state.json").is_file(), f"{where}: {task_dir.name} has no record"
    assert provider.stop() == 0, where
    assert await asyncio.to_thread(wait_no_processes, marker) == [], where
    assert stray_files(provider.data_dir) == [], f"{where} outcomes {outcomes}"
    with contextlib.suppress(FileNotFoundError):
        assert not any(p.name.endswith(".part") for p in provider.data_dir.rglob("*"))
