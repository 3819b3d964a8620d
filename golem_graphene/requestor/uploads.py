"""Sending a task's inputs (step 4 of docs/design.md section 4): each sealed to the attested
enclave while it is read, then the sealed input manifest.

:class:`~golem_graphene.requestor.client.Requestor` sends through an :class:`Uploader`. A
plaintext input is read and sealed on worker threads, and the sealed blocks reach the event
loop through a bounded pipe.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from golem_graphene.errors import Error, ProtocolError, UsageError
from golem_graphene.requestor._pipe import Pipe, run_piped
from golem_graphene.requestor._transfer import Transfers
from golem_graphene.requestor.deadlines import RateGuard, within
from golem_graphene.requestor.outcomes import (
    AttestedTask,
    LocalProgress,
    ProgressCallback,
    TaskStepError,
)
from golem_graphene.sealing.age import encrypt_stream, plaintext_size, retarget_header
from golem_graphene.sealing.digests import HashingSink
from golem_graphene.sealing.input_manifest import (
    InputEntry,
    InputManifest,
    hash_file,
    seal_manifest,
)

__all__ = ["UPLOAD_PIPE_BYTES", "Uploader", "Work"]

UPLOAD_PIPE_BYTES = 4 << 20  # sealed blocks queued for the event loop to send


@dataclass(frozen=True)
class Work:
    """What the enclave is to run on: the inputs, the workload's arguments and environment."""

    inputs: Mapping[str, str | Path]
    args: Sequence[str] | None
    env: Mapping[str, str] | None
    prestaged: Mapping[str, str | Path] | None


class Uploader(Transfers):
    """Sends a task's inputs, each sealed to its attested enclave, then the sealed manifest."""

    async def send_inputs(
        self, task: AttestedTask, work: Work, on_progress: ProgressCallback | None
    ) -> InputManifest:
        """Seal and upload the inputs, then the sealed manifest; returns the manifest.

        Bounded by the ``upload`` deadline (if set) and, per input, the minimum rate. Raises
        :class:`TaskStepError` with step ``send_inputs``.
        """
        try:
            return await within(
                "upload",
                self.deadlines.upload,
                "the inputs were not all sent",
                self._send_inputs(task, work, on_progress),
                lambda: self.arrived(task.ref.task_id),
            )
        except Error as exc:
            raise TaskStepError("send_inputs", exc) from exc
        finally:
            self.moving.pop(task.ref.task_id, None)

    async def _send_inputs(
        self, task: AttestedTask, work: Work, on_progress: ProgressCallback | None
    ) -> InputManifest:
        names = set(work.inputs) | set(work.prestaged or {})
        for name in names:
            if task.spec.input(name) is None:
                raise UsageError(f"the spec declares no input {name!r}")
        started = time.monotonic()
        entries = []
        for name, path in sorted(work.inputs.items()):
            entries.append(await self._upload_plain(task, name, Path(path), on_progress, started))
        for name, path in sorted((work.prestaged or {}).items()):
            entries.append(await self._upload_prestaged(task, name, Path(path)))
        manifest = InputManifest(
            task_id=task.transcript.task_id,
            args=tuple(work.args) if work.args is not None else (),
            env=dict(work.env or {}),
            inputs=tuple(entries),
        )
        sealed = seal_manifest(
            manifest, self.identity, task.transcript.enclave_key, task.transcript
        )
        await within(
            "request",
            self.deadlines.request,
            "the provider did not take the input manifest",
            self.channel.put_manifest(task.ref, sealed),
        )
        return manifest

    async def _upload_plain(
        self,
        task: AttestedTask,
        name: str,
        path: Path,
        on_progress: ProgressCallback | None,
        started: float,
    ) -> InputEntry:
        spec_input = task.spec.input(name)
        assert spec_input is not None
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise UsageError(f"cannot read input {name!r} at {path}: {exc.strerror}") from exc
        if size > spec_input.max_size:
            raise UsageError(
                f"input {name!r} is larger than the spec allows",
                expected=f"<= {spec_input.max_size} bytes",
                found=size,
            )
        recipient = task.enclave_recipient
        pipe = Pipe(UPLOAD_PIPE_BYTES)
        sink = HashingSink(_PipeWriter(pipe))
        guard = RateGuard("upload", f"input {name}", self.deadlines)
        self.moving[task.ref.task_id] = guard
        sealed_so_far = 0

        def seal() -> int:
            # The whole file on worker threads: read and seal here, hash and hand the sealed
            # blocks to the event loop on the sealer's write-behind thread.
            try:
                with open(path, "rb", buffering=0) as f:
                    plain = encrypt_stream(f, cast(BinaryIO, sink), [recipient])
            except OSError as exc:
                raise UsageError(f"cannot read input {name!r} at {path}: {exc.strerror}") from exc
            pipe.close()
            return plain

        sent_all = False

        async def body() -> AsyncIterator[bytes]:
            nonlocal sent_all, sealed_so_far
            while (block := await pipe.get()) is not None:
                guard.add(len(block))
                if on_progress:
                    sealed_so_far += len(block)
                    on_progress(
                        LocalProgress(
                            "upload",
                            name,
                            min(sealed_so_far, size),
                            size,
                            time.monotonic() - started,
                        )
                    )
                yield block
            sent_all = True

        async def send() -> None:
            await self.channel.put_input(task.ref, name, body())
            if not sent_all:  # else the sealing thread would wait for it forever
                raise ProtocolError(f"the provider answered before it had all of input {name!r}")

        async with guard:
            plain = await run_piped(pipe, seal, send)
        if on_progress:
            on_progress(
                LocalProgress(
                    "upload", name, plain, plain, time.monotonic() - started, finished=True
                )
            )
        return InputEntry(
            name=name, size=plain, ciphertext_size=sink.size, ciphertext_sha256=sink.hash.digest()
        )

    async def _upload_prestaged(self, task: AttestedTask, name: str, path: Path) -> InputEntry:
        """Re-target a file sealed to our own key: only its header is rewritten for E."""
        tmp = Path(tempfile.mkstemp(prefix=".retarget-", dir=path.parent)[1])
        guard = RateGuard("upload", f"input {name}", self.deadlines)
        self.moving[task.ref.task_id] = guard
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                await asyncio.to_thread(
                    retarget_header, src, dst, self.identity, [task.enclave_recipient]
                )
            digest = await asyncio.to_thread(hash_file, tmp, name)
            guard.total = digest.size

            async def body() -> AsyncIterator[bytes]:
                with open(tmp, "rb") as f:
                    while chunk := f.read(256 * 1024):
                        guard.add(len(chunk))
                        yield chunk

            async with guard:
                await self.channel.put_input(task.ref, name, body())
            plain = await asyncio.to_thread(plaintext_size, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        return InputEntry(
            name=name, size=plain, ciphertext_size=digest.size, ciphertext_sha256=digest.sha256
        )


class _PipeWriter:
    """The sealed input on its way to the event loop: queued. Written to by the sealer's
    threads, one call at a time."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe

    def write(self, data: memoryview) -> int:
        self.pipe.put_sync(bytes(data))  # the sealer reuses its buffer once this returns
        return data.nbytes
