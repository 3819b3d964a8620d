"""Faults end in a defined state with resources reclaimed (DESIGN.md section 6).

A requestor that disconnects mid-upload, a provider killed while a task runs and restarted, a
workload that crashes, times out or exceeds its output limit, and a full disk: each leaves the
task finished, failed with a reason, or still usable, and leaves no process, launch folder or
partial file behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from _e2e_support import (
    REQUESTOR_TOKEN,
    SHELL,
    Identity,
    ImageCache,
    Provider,
    StartProvider,
    processes_mentioning,
    staging_leftovers,
    wait_until,
)

from golem_graphene.requestor.channel import HttpChannel
from golem_graphene.requestor.client import AttestedTask, Requestor, RequestorPolicy, TaskStepError

pytestmark = pytest.mark.sandbox


async def attested(requestor: Requestor, spec_dir: Path) -> AttestedTask:
    return await requestor.attest(await requestor.create(spec_dir))


def headers(task: AttestedTask) -> dict[str, str]:
    return {"Authorization": f"Bearer {REQUESTOR_TOKEN}", "X-Task-Token": task.ref.token}


async def task_record(url: str, task: AttestedTask) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v1/tasks/{task.ref.task_id}", headers=headers(task)) as response,
    ):
        assert response.status == 200
        record: dict[str, Any] = await response.json()
        return record


# --- the requestor goes away mid-upload ---------------------------------------------------------


async def test_disconnect_mid_upload_leaves_no_partial_input(
    provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    spec_dir = provider.spec(SHELL)
    payload = tmp_path / "x"
    payload.write_bytes(os.urandom(48 * 1024))
    async with provider.requestor(identity, spec_dir) as requestor:
        task = await attested(requestor, spec_dir)
        inputs = provider.task_dir(task.ref.task_id) / "launch" / "io" / "inputs"
        sent = asyncio.Event()

        async def body() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"\0" * (16 * 1024)
            sent.set()
            # Let the provider write what it got (so a partial file exists), then vanish.
            await wait_until(lambda: any(inputs.glob("*.part")), timeout=5)
            raise ConnectionResetError("the requestor went away")

        url = f"{provider.url}/v1/tasks/{task.ref.task_id}/inputs/x"
        async with aiohttp.ClientSession() as http:
            with pytest.raises((aiohttp.ClientError, ConnectionResetError)):
                async with http.put(url, data=body(), headers=headers(task)) as response:
                    await response.read()
        assert sent.is_set()
        assert await wait_until(lambda: not any(inputs.iterdir())), list(inputs.iterdir())
        assert (await task_record(provider.url, task))["state"] == "attested"

        # The task is still whole: the requestor uploads again and it runs to the end.
        await requestor.send_inputs(task, {"x": payload}, args=["-c", "cp inputs/x outputs/x"])
        await requestor.start(task)
        await requestor.wait(task)
        result = await requestor.fetch(task, tmp_path / "out")
    assert result.outputs["x"].read_bytes() == payload.read_bytes()
    assert await provider.settled_leftovers() == []


async def test_stalled_upload_is_cut_off(
    start_provider: StartProvider, identity: Identity, tmp_path: Path
) -> None:
    async with start_provider(limits={"upload_idle_seconds": 0.5}) as provider:
        spec_dir = provider.spec(SHELL)
        async with provider.requestor(identity, spec_dir) as requestor:
            task = await attested(requestor, spec_dir)

            async def body() -> AsyncIterator[bytes]:
                yield b"\0" * 1024
                await asyncio.sleep(3)
                yield b"\0" * 1024

            url = f"{provider.url}/v1/tasks/{task.ref.task_id}/inputs/x"
            async with (
                aiohttp.ClientSession() as http,
                http.put(url, data=body(), headers=headers(task)) as response,
            ):
                assert response.status == 408
                assert (await response.json())["code"] == "upload_stalled"
            inputs = provider.task_dir(task.ref.task_id) / "launch" / "io" / "inputs"
            assert list(inputs.iterdir()) == []
            assert (await task_record(provider.url, task))["state"] == "attested"
            await requestor.channel.delete(task.ref)
        assert not provider.task_dir(task.ref.task_id).exists()


# --- the workload misbehaves --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "exit_status", "termination"),
    [
        ("echo partial > outputs/o; echo oops >&2; exit 3", 3, "exited"),
        ("echo partial > outputs/o; kill -SEGV $$", -11, "signaled"),
    ],
    ids=["exit-3", "sigsegv"],
)
async def test_crashing_workload_is_reported_in_the_receipt(
    provider: Provider,
    identity: Identity,
    tmp_path: Path,
    script: str,
    exit_status: int,
    termination: str,
) -> None:
    spec_dir = provider.spec(SHELL)
    async with provider.requestor(identity, spec_dir) as requestor:
        result = await requestor.run(spec_dir, {}, tmp_path / "out", args=["-c", script])
    assert result.exit_status == exit_status
    assert result.receipt.receipt.termination == termination
    assert result.outputs["o"].read_bytes() == b"partial\n"
    if exit_status == 3:
        assert result.outputs["stderr"].read_bytes() == b"oops\n"
    assert await provider.settled_leftovers() == []


async def test_workload_timeout_is_reported_and_its_processes_die(
    provider: Provider, identity: Identity, tmp_path: Path
) -> None:
    spec_dir = provider.spec(SHELL)  # wall_seconds = 3
    marker = "27.1828"
    async with provider.requestor(identity, spec_dir) as requestor:
        result = await requestor.run(
            spec_dir, {}, tmp_path / "out", args=["-c", f"echo started; sleep {marker}"]
        )
    assert result.receipt.receipt.termination == "timeout"
    assert result.exit_status < 0
    assert result.outputs["stdout"].read_bytes() == b"started\n"
    duration = result.receipt.receipt.timings.duration_ms
    assert 2900 <= duration < 20_000
    assert processes_mentioning(marker) == []
    assert await provider.settled_leftovers() == []


@pytest.mark.parametrize(
    "script",
    [
        "head -c 100000 /dev/zero > outputs/big",
        "head -c 40000 /dev/zero > outputs/a; head -c 40000 /dev/zero > outputs/b",
    ],
    ids=["one-file", "in-total"],
)
async def test_outputs_over_the_limit_are_refused(
    provider: Provider, identity: Identity, tmp_path: Path, script: str
) -> None:
    spec_dir = provider.spec(SHELL)  # output_size = 64 KiB
    out = tmp_path / "out"
    async with provider.requestor(identity, spec_dir) as requestor:
        with pytest.raises(TaskStepError) as caught:
            await requestor.run(spec_dir, {}, out, args=["-c", script])
    assert caught.value.step == "wait"
    assert "output_too_large" in str(caught.value)
    assert not out.exists()
    assert staging_leftovers(out) == []
    assert await provider.settled_leftovers() == []


# --- the disk fills up --------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs root and mount rights; skipped otherwise)."""
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


async def test_full_disk_refuses_the_upload_cleanly(
    start_provider: StartProvider, identity: Identity, tmp_path: Path, small_disk: Path
) -> None:
    big = tmp_path / "x"
    big.write_bytes(os.urandom(4 << 20))
    out = tmp_path / "out"
    async with start_provider(data_dir=small_disk / "provider") as provider:
        spec_dir = provider.spec(SHELL)
        async with provider.requestor(identity, spec_dir) as requestor:
            task = await attested(requestor, spec_dir)
            with pytest.raises(TaskStepError) as caught:
                await requestor.send_inputs(task, {"x": big}, args=["-c", "true"])
            assert caught.value.step == "send_inputs"
            assert caught.value.code == "insufficient_storage"
            assert "507" in str(caught.value)
            inputs = provider.task_dir(task.ref.task_id) / "launch" / "io" / "inputs"
            assert list(inputs.iterdir()) == []
            assert (await task_record(provider.url, task))["state"] == "attested"
            await requestor.channel.cancel(task.ref)
            assert (await task_record(provider.url, task))["state"] == "cancelled"
        assert await provider.settled_leftovers() == []
        assert not out.exists()
    usage = shutil.disk_usage(small_disk)
    assert usage.used < 512 * 1024


# --- the provider is killed and restarted -------------------------------------------------------


class ProviderProcess:
    """``golem-graphene provider serve --config FILE`` in a child process."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self, timeout: float = 60.0) -> str:
        """Start it; returns its URL once it listens."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with open(self.log, "ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *(sys.executable, "-m", "golem_graphene", "provider", "serve"),
                *("--config", str(self.config)),
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        pattern = re.compile(rb"provider listening on (http://127\.0\.0\.1:\d+)")
        proc = self.proc

        def up() -> bool:
            return (
                bool(pattern.search(self.log.read_bytes()[offset:])) or proc.returncode is not None
            )

        assert await wait_until(up, timeout), "the provider did not start"
        match = pattern.search(self.log.read_bytes()[offset:])
        assert match, f"the provider exited: {self.log.read_text()[-2000:]}"
        return match.group(1).decode()

    async def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, as when the host loses the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def health(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/v1/health") as response:
        data: dict[str, Any] = await response.json()
        return data


async def test_provider_killed_while_a_task_runs_then_restarted(
    identity: Identity, tmp_path: Path, image_cache: ImageCache, test_specs: Path
) -> None:
    data_dir = tmp_path / "provider"
    spec_dir = test_specs / SHELL
    image_cache.install(data_dir, spec_dir)
    config = tmp_path / "provider.toml"
    config.write_text(
        f'bind = "127.0.0.1"\nport = 0\ndata_dir = "{data_dir}"\nspecs_dir = "{test_specs}"\n'
        f'\n[auth]\ntokens = ["{REQUESTOR_TOKEN}"]\n'
    )
    server = ProviderProcess(config, tmp_path / "provider.log")
    marker = "31.4159"
    try:
        url = await server.start()
        policy = RequestorPolicy(
            trusted_simulation_roots=((await health(url))["sim_root_fingerprint"],),
            expected_mrenclave=(image_cache.measurement(spec_dir),),
        )
        async with Requestor(
            url, identity=identity.key, token=REQUESTOR_TOKEN, policy=policy
        ) as requestor:
            task = await attested(requestor, spec_dir)
            await requestor.send_inputs(task, {}, args=["-c", f"sleep {marker}"])
            await requestor.start(task)
            async for event in requestor.channel.events(task.ref):
                if event.state == "running":
                    break
        launch = data_dir / "tasks" / task.ref.task_id / "launch"
        assert await wait_until(lambda: processes_mentioning(marker) != [])
        sandbox = processes_mentioning(str(launch))
        assert sandbox, "the enclave's sandbox is not running"

        await server.kill()
        # bwrap dies with its parent, and the sandbox's pid namespace with it.
        assert await wait_until(lambda: processes_mentioning(str(launch)) == [], timeout=10)
        assert await wait_until(lambda: processes_mentioning(marker) == [], timeout=10)

        url = await server.start()
        record = await task_record(url, task)
        assert record["state"] == "failed"
        assert record["failure"]["code"] == "provider_restarted"
        assert "running" in record["failure"]["message"]
        assert not launch.exists()
        assert list((data_dir / "tasks").rglob("*.part")) == []
        async with Requestor(
            HttpChannel(url, token=REQUESTOR_TOKEN), identity=identity.key, policy=policy
        ) as requestor:
            with pytest.raises(TaskStepError) as caught:
                await requestor.wait(task)
            assert caught.value.step == "wait"
            assert "restarted" in str(caught.value)
            await requestor.channel.delete(task.ref)
        assert not (data_dir / "tasks" / task.ref.task_id).exists()
    finally:
        await server.stop()
        for pid in processes_mentioning(str(data_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
