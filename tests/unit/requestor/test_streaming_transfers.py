"""Inputs sealed and outputs opened while they move, against the in-memory provider.

The requestor seals an input on worker threads while the channel sends it, and, with a channel
that hands outputs over as they arrive (:class:`OutputStreams`, as the HTTP channel does),
checks and decrypts each output while it downloads. Here both are bent: the same refusals
(codes, nothing landing) as for a downloaded file, a channel failing half-way, and a sealing
thread failing half-way, without a thread left behind.
"""

from __future__ import annotations

import asyncio
import stat
import threading
from collections.abc import AsyncGenerator, AsyncIterable, Callable
from pathlib import Path
from typing import Any

import pytest
from _fake_provider import MRENCLAVE, FakeProvider
from _test_images import write_shell_spec

from golem_graphene._internal.staging import STAGING_PREFIX
from golem_graphene.errors import SealingError
from golem_graphene.host.sim.platform import SimPlatform
from golem_graphene.requestor import uploads as uploads_module
from golem_graphene.requestor.channel import ChannelError, OutputStreams, TaskRef
from golem_graphene.requestor.client import (
    AttestedTask,
    Requestor,
    RequestorPolicy,
    TaskStepError,
)
from golem_graphene.requestor.record import TaskRecord
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


class StreamingProvider(FakeProvider):
    """The fake provider, also handing outputs over in pieces (``piece`` bytes each)."""

    def __init__(self, platform: SimPlatform, piece: int = 7_000) -> None:
        super().__init__(platform)
        self.piece = piece
        self.streamed: list[str] = []
        self.break_after: int | None = None
        """When set, the stream fails with a ChannelError after this many bytes."""

    async def stream_output(
        self, task: TaskRef, name: str, limit: int
    ) -> AsyncGenerator[bytes, None]:
        t = self._task(task)
        data = t.files[name]
        if name in self.tamper:
            data = self.tamper[name](data)
        self.streamed.append(name)
        for start in range(0, len(data), self.piece):
            if self.break_after is not None and start >= self.break_after:
                raise ChannelError(f"downloading {name!r} failed: connection reset")
            yield data[start : start + self.piece]


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
def big_input(tmp_path: Path) -> Path:
    path = tmp_path / "a.bin"
    path.write_bytes(bytes(range(256)) * (12 * 4096 + 17))  # ~12 MiB: fills the upload pipe
    return path


def requestor(provider: FakeProvider) -> Requestor:
    policy = RequestorPolicy(
        trusted_simulation_roots=(provider.platform.root_fingerprint,),
        expected_mrenclave=(MRENCLAVE.hex(),),
    )
    return Requestor(provider, identity=X25519Identity.generate(), policy=policy)


def leftovers(out: Path) -> list[Path]:
    """Temporary files beside ``out``: the private staging folders (and any ``.out.*``)."""
    return sorted(out.parent.glob(f".{out.name}.*")) + sorted(out.parent.glob(f"{STAGING_PREFIX}*"))


def workers() -> list[str]:
    """Threads of ours still alive (the sealer's and the hashing ones)."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("age-write-behind", "ciphertext-hash"))
    ]


async def finished(r: Requestor, spec: Path, big_input: Path) -> AttestedTask:
    """A task that ran with ``big_input`` as ``a`` and is done, its outputs not fetched yet."""
    task = await r.attest(await r.create(spec))
    await r.send_inputs(task, {"a": big_input})
    await r.start(task)
    await r.wait(task)
    return task


def flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


def flip_first_payload_byte(data: bytes) -> bytes:
    start = data.index(b"\n---") + 100  # inside the first payload chunk
    return data[:start] + bytes([data[start] ^ 1]) + data[start + 1 :]


async def test_an_output_is_checked_and_opened_while_it_streams(
    platform: SimPlatform, spec: Path, big_input: Path, tmp_path: Path
) -> None:
    provider = StreamingProvider(platform)
    assert isinstance(provider, OutputStreams)
    out = tmp_path / "out"
    async with requestor(provider) as r:
        result = await r.run(spec, {"a": big_input}, out)
    # The receipt streams too (under the same minimum-rate guard), before any output.
    assert provider.streamed == ["receipt.json", "out.age", "stdout.age", "stderr.age"]
    assert result.outputs["out"].read_bytes() == big_input.read_bytes()
    assert result.receipt.outputs_checked and result.receipt.plaintexts_checked
    task = next(iter(provider.tasks.values()), None)
    assert task is None  # deleted after the run
    assert (out / ".sealed" / "out.age").stat().st_size == result.receipt.receipt.output(
        "out"
    ).ciphertext_size
    assert leftovers(out) == []
    assert workers() == []


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (flip_last, "receipt_output_sha256"),
        (flip_first_payload_byte, "receipt_output_sha256"),
        (lambda d: d[: len(d) // 2], "receipt_output_size"),
        (lambda d: d + b"\0", "receipt_output_size"),
        (lambda d: d + b"\0" * 5_000_000, "receipt_output_size"),
        (lambda d: b"", "receipt_output_size"),
    ],
    ids=["flip-last", "flip-first-chunk", "truncate", "append-one", "append-lots", "empty"],
)
async def test_a_tampered_stream_is_refused_and_nothing_lands(
    platform: SimPlatform,
    spec: Path,
    big_input: Path,
    tmp_path: Path,
    mutate: Callable[[bytes], bytes],
    code: str,
) -> None:
    provider = StreamingProvider(platform, piece=65_536)
    async with requestor(provider) as r:
        task = await finished(r, spec, big_input)
        provider.tamper["out.age"] = mutate
        out = tmp_path / "out"
        with pytest.raises(TaskStepError) as caught:
            await r.fetch(task, out)
        assert (caught.value.step, caught.value.code) == ("fetch", code)
        assert not out.exists()
        assert leftovers(out) == []
        assert workers() == []
        provider.tamper.clear()
        result = await r.fetch(task, out)
    assert result.outputs["out"].read_bytes() == big_input.read_bytes()


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("plaintext_sha256", bytes(32), "receipt_plaintext_sha256"),
        ("size", 3, "receipt_plaintext_size"),
    ],
)
async def test_a_misreported_plaintext_is_refused_after_streaming(
    platform: SimPlatform,
    spec: Path,
    big_input: Path,
    tmp_path: Path,
    field: str,
    value: object,
    code: str,
) -> None:
    provider = StreamingProvider(platform)
    provider.misreport["out"] = {field: value}
    out = tmp_path / "out"
    async with requestor(provider) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, {"a": big_input}, out)
    assert (caught.value.step, caught.value.code) == ("fetch", code)
    assert not out.exists()
    assert leftovers(out) == []


async def test_a_stream_breaking_half_way_fails_the_fetch_cleanly(
    platform: SimPlatform, spec: Path, big_input: Path, tmp_path: Path
) -> None:
    provider = StreamingProvider(platform, piece=65_536)
    async with requestor(provider) as r:
        task = await finished(r, spec, big_input)
        provider.break_after = 5 << 20
        out = tmp_path / "out"
        with pytest.raises(TaskStepError) as caught:
            await r.fetch(task, out)
        assert (caught.value.step, caught.value.code) == ("fetch", "channel")
        assert "connection reset" in str(caught.value)
        assert not out.exists()
        assert leftovers(out) == []
        assert workers() == []


class RefusingProvider(FakeProvider):
    """Takes ``accept`` pieces of an upload, then fails it (as a 413 or 507 would)."""

    def __init__(self, platform: SimPlatform, accept: int) -> None:
        super().__init__(platform)
        self.accept = accept
        self.received = 0

    async def put_input(self, task: TaskRef, name: str, body: AsyncIterable[bytes]) -> None:
        async for piece in body:
            self.received += len(piece)
            self.accept -= 1
            if self.accept < 0:
                raise ChannelError(
                    "provider answered 507: no disk space", code="insufficient_storage"
                )


async def test_an_upload_refused_half_way_stops_the_sealing_threads(
    platform: SimPlatform, spec: Path, big_input: Path
) -> None:
    provider = RefusingProvider(platform, accept=2)
    async with requestor(provider) as r:
        task = await r.attest(await r.create(spec))
        with pytest.raises(TaskStepError) as caught:
            await r.send_inputs(task, {"a": big_input})
    assert (caught.value.step, caught.value.code) == ("send_inputs", "insufficient_storage")
    assert provider.received < big_input.stat().st_size
    assert workers() == []


async def test_a_sealing_failure_half_way_is_the_error_raised(
    platform: SimPlatform, spec: Path, big_input: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input cannot be read any more after a few MiB: the upload stops with that error,
    not with the channel's consequent one."""
    real = uploads_module.encrypt_stream

    class FailingFile:
        def __init__(self, f: Any) -> None:
            self.f = f
            self.read = 0

        def readinto(self, view: memoryview) -> int:
            if self.read > 3 << 20:
                raise OSError(5, "Input/output error")
            n: int = self.f.readinto(view)
            self.read += n
            return n

    def failing(src: Any, dst: Any, recipients: Any) -> int:
        return real(FailingFile(src), dst, recipients)

    monkeypatch.setattr(uploads_module, "encrypt_stream", failing)
    provider = FakeProvider(platform)
    async with requestor(provider) as r:
        task = await r.attest(await r.create(spec))
        with pytest.raises(TaskStepError) as caught:
            await r.send_inputs(task, {"a": big_input})
    assert caught.value.step == "send_inputs"
    assert isinstance(caught.value.cause, SealingError)
    assert "Input/output error" in str(caught.value)
    assert workers() == []


class HastyProvider(FakeProvider):
    """Answers an upload after its first piece, as if it had it all."""

    async def put_input(self, task: TaskRef, name: str, body: AsyncIterable[bytes]) -> None:
        async for _ in body:
            return


async def test_an_upload_answered_too_early_fails_instead_of_hanging(
    platform: SimPlatform, spec: Path, big_input: Path
) -> None:
    async with requestor(HastyProvider(platform)) as r:
        task = await r.attest(await r.create(spec))
        with pytest.raises(TaskStepError) as caught:
            await asyncio.wait_for(r.send_inputs(task, {"a": big_input}), 30)
    assert (caught.value.step, caught.value.code) == ("send_inputs", "protocol")
    assert "before it had all of input 'a'" in str(caught.value)
    assert workers() == []


async def test_a_broken_download_keeps_the_task_and_resume_fetches_it(
    platform: SimPlatform, spec: Path, big_input: Path, tmp_path: Path
) -> None:
    """Issue 14, item 9: a download that breaks off leaves the task on the provider and its
    record; :meth:`Requestor.resume` fetches it later with every check, all or nothing."""
    provider = StreamingProvider(platform, piece=65_536)
    provider.break_after = 5 << 20
    records = tmp_path / "records"
    out = tmp_path / "out"
    identity = X25519Identity.generate()
    policy = RequestorPolicy(
        trusted_simulation_roots=(platform.root_fingerprint,),
        expected_mrenclave=(MRENCLAVE.hex(),),
    )
    async with Requestor(provider, identity=identity, policy=policy) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.run(spec, {"a": big_input}, out, records=records)
    assert (caught.value.step, caught.value.code) == ("fetch", "channel")
    assert not out.exists() and leftovers(out) == []
    assert not any(call == "cancel" for call, _ in provider.calls)
    [path] = records.iterdir()
    record = TaskRecord.load(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert record.input_manifest is not None and record.mrenclave == MRENCLAVE
    assert path.name == f"{record.task_id.hex()}.json"

    # Another identity, or a changed spec: refused before the provider is asked anything.
    async with Requestor(provider, identity=X25519Identity.generate(), policy=policy) as r:
        with pytest.raises(TaskStepError) as wrong:
            await r.resume(record, out)
    assert (wrong.value.step, wrong.value.code) == ("prepare", "usage")

    provider.break_after = None
    # No measurement in the policy: the one that attested when the task ran is pinned.
    unpinned = RequestorPolicy(trusted_simulation_roots=(platform.root_fingerprint,))
    async with Requestor(provider, identity=identity, policy=unpinned) as r:
        result = await r.resume(record, out)
    assert result.outputs["out"].read_bytes() == big_input.read_bytes()
    assert result.receipt.plaintexts_checked
    assert ("delete", record.task_id.hex()) in provider.calls
    assert leftovers(out) == []


async def test_resume_refuses_a_changed_spec(
    platform: SimPlatform, spec: Path, big_input: Path, tmp_path: Path
) -> None:
    provider = StreamingProvider(platform, piece=65_536)
    provider.break_after = 1 << 20
    records = tmp_path / "records"
    identity = X25519Identity.generate()
    async with Requestor(provider, identity=identity, policy=_policy(platform)) as r:
        with pytest.raises(TaskStepError):
            await r.run(spec, {"a": big_input}, tmp_path / "out", records=records)
    [path] = records.iterdir()
    (spec / "task.toml").write_text((spec / "task.toml").read_text() + "\n# edited\n")
    async with Requestor(provider, identity=identity, policy=_policy(platform)) as r:
        with pytest.raises(TaskStepError) as caught:
            await r.resume(TaskRecord.load(path), tmp_path / "out")
    assert (caught.value.step, caught.value.code) == ("prepare", "usage")
    assert "changed since the task was created" in str(caught.value)


def _policy(platform: SimPlatform) -> RequestorPolicy:
    return RequestorPolicy(
        trusted_simulation_roots=(platform.root_fingerprint,),
        expected_mrenclave=(MRENCLAVE.hex(),),
    )
