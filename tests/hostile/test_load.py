"""The provider under load (the short version; ``bench/load.py`` runs 32 tasks and reports).

One provider process (sim runner), ``limits.max_concurrent_tasks = 8``: eight tasks of mixed
sizes from two requestors run at once and all complete with correct outputs; a second wave
meanwhile is refused with 429 naming the limit, and goes through once capacity is free; memory
stays bounded while a large input streams through; every task's processes, files and
descriptors are reclaimed.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from _hostile_support import (
    TOKEN_A,
    TOKEN_B,
    ProcessProvider,
    auth,
    create_body,
    processes_marked,
    stray_files,
    wait_no_processes,
)

from golem_graphene.requestor.client import Requestor

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("sandbox_ok")]

CONCURRENT = 8
SIZES = [0, 1, 4096, 65_536, 300_000, 1 << 20, 2 << 20, 3 << 20]


def _provider_fds(provider: ProcessProvider) -> int:
    return len(os.listdir(f"/proc/{provider.pid}/fd"))


async def _run(requestor: Requestor, provider: ProcessProvider, data: Path, out: Path) -> bytes:
    """The whole flow; returns the output (the workload copies its input)."""
    result = await requestor.run(provider.template.specs_dir / "shell", {"data.txt": data}, out)
    return result.outputs["out.txt"].read_bytes()


async def test_concurrent_tasks_limits_and_reclaim(
    process_provider: Callable[..., ProcessProvider], tmp_path: Path
) -> None:
    provider = process_provider({"max_concurrent_tasks": CONCURRENT})
    marker = provider.data_dir.name
    inputs = []
    for number, size in enumerate(SIZES):
        path = tmp_path / f"in{number}.bin"
        path.write_bytes(secrets.token_bytes(size))
        inputs.append(path)
    baseline_fds = _provider_fds(provider)
    async with (
        provider.requestor(TOKEN_A) as req_a,
        provider.requestor(TOKEN_B) as req_b,
        aiohttp.ClientSession() as http,
    ):
        requestors = [req_a, req_b]
        spec = provider.template.specs_dir / "shell"
        # First wave: every slot taken.
        created = await asyncio.gather(*(requestors[n % 2].create(spec) for n in range(CONCURRENT)))
        # Second wave, while the first is active: refused by the configured limit.
        for token in (TOKEN_A, TOKEN_B):
            async with http.post(
                f"{provider.url}/v1/tasks",
                json=create_body(provider.template.specs_dir),
                headers=auth(token),
            ) as response:
                assert response.status == 429
                error = await response.json()
                assert error["code"] == "too_many_tasks"
                assert "limits.max_concurrent_tasks" in error["message"]
        assert len(list((provider.data_dir / "tasks").iterdir())) == CONCURRENT
        # Each accepted task has its sandbox running (which also shows the scan below works).
        for _ in range(300):
            if len(processes_marked(marker)) >= CONCURRENT:
                break
            await asyncio.sleep(0.2)
        assert len(processes_marked(marker)) >= CONCURRENT

        async def finish(number: int) -> bytes:
            requestor = requestors[number % 2]
            attested = await requestor.attest(created[number])
            await requestor.send_inputs(attested, {"data.txt": inputs[number]})
            await requestor.start(attested)
            await requestor.wait(attested)
            result = await requestor.fetch(attested, tmp_path / f"out{number}")
            await requestor.channel.delete(attested.ref)
            return result.outputs["out.txt"].read_bytes()

        outputs = await asyncio.gather(*(finish(n) for n in range(CONCURRENT)))
        for number, output in enumerate(outputs):
            assert output == inputs[number].read_bytes(), f"task {number} output differs"

        # Capacity is free again: the second wave goes through.
        again = await asyncio.gather(
            _run(req_a, provider, inputs[4], tmp_path / "again-a"),
            _run(req_b, provider, inputs[5], tmp_path / "again-b"),
        )
        assert again == [inputs[4].read_bytes(), inputs[5].read_bytes()]

        # A large input streams through: the provider's peak memory barely moves.
        big = tmp_path / "big.bin"
        with open(big, "wb") as f:
            for _ in range(48):
                f.write(secrets.token_bytes(1 << 20))
        peak_before = provider.peak_rss()
        created_big = await req_a.create(spec)
        attested = await req_a.attest(created_big)
        await req_a.send_inputs(
            attested, {"data.txt": big}, args=["-c", "head -c 1000 inputs/data.txt > outputs/o"]
        )
        await req_a.start(attested)
        await req_a.wait(attested)
        await req_a.channel.delete(attested.ref)
        growth = provider.peak_rss() - peak_before
        assert growth < 24 << 20, f"peak RSS grew by {growth >> 20} MiB for a 48 MiB input"

    # Everything reclaimed: no task folder, no sandbox, no stray file, no leaked descriptor.
    assert list((provider.data_dir / "tasks").iterdir()) == []
    # The only sandboxes left while the provider runs are its standby enclaves, one per image.
    standby = str(provider.data_dir / "standby")
    assert await _settled(lambda: set(processes_marked(marker)) <= set(processes_marked(standby)))
    assert len(list((provider.data_dir / "standby").iterdir())) == 1
    assert stray_files(provider.data_dir) == []
    # The standby enclave holds its control pipe (2), and its attestation device a stop pipe
    # (2), its folder (1) and both ends of the report-data FIFO (2): 7, plus one of slack.
    assert _provider_fds(provider) <= baseline_fds + 3 + 8
    assert provider.stop() == 0
    assert wait_no_processes(marker) == []  # standby enclaves die with the provider


async def _settled(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` (the kernel reaps pid namespaces asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True
