"""Fetching a task's outputs (steps 6-7 of docs/design.md section 4): the receipt first, then
each output downloaded, checked and decrypted as it arrives; all of them move into place
together.

:class:`~golem_graphene.requestor.client.Requestor` fetches through a :class:`Downloader`. No
output is downloaded before the receipt verified (its binding, signature, input manifest and
measurement); ``out_dir`` receives the outputs all or nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Final

from golem_graphene._internal.staging import StagingArea
from golem_graphene.errors import Error
from golem_graphene.requestor._pipe import Pipe, run_piped
from golem_graphene.requestor._transfer import Transfers
from golem_graphene.requestor.channel import OutputStreams
from golem_graphene.requestor.deadlines import RateGuard, within
from golem_graphene.requestor.local_checks import check_out_dir as check_out_folder
from golem_graphene.requestor.local_checks import staging_beside
from golem_graphene.requestor.outcomes import (
    AttestedTask,
    LocalProgress,
    ProgressCallback,
    TaskResult,
    TaskStepError,
)
from golem_graphene.sealing.digests import PulledCiphertext
from golem_graphene.sealing.input_manifest import InputManifest, ciphertext_name
from golem_graphene.sealing.receipt import (
    OutputCheck,
    OutputEntry,
    ReceiptBundle,
    ReceiptOutputError,
    check_receipt,
)

__all__ = [
    "DOWNLOAD_BATCH",
    "DOWNLOAD_PIPE_BYTES",
    "INPUT_MANIFEST_FILE",
    "MAX_RECEIPT_BYTES",
    "Downloader",
]

DOWNLOAD_PIPE_BYTES = 8 << 20  # received pieces queued for the decrypting thread
DOWNLOAD_BATCH = 4 << 20  # taken (hashed, decrypted) a few MiB at a time: fewer thread hops
MAX_RECEIPT_BYTES = 16 << 20

INPUT_MANIFEST_FILE: Final = ".input-manifest.json"
"""Beside ``receipt.json`` in the output folder: the input manifest that was sealed to the
enclave (RFC 8785 JSON), whose SHA-256 the receipt carries; ``verify-receipt`` checks it."""


class Downloader(Transfers):
    """Fetches a task's outputs: the receipt first, checked, then each output."""

    async def fetch(
        self,
        task: AttestedTask,
        out_dir: str | Path,
        *,
        staging: StagingArea | None,
        on_progress: ProgressCallback | None,
        manifest: InputManifest | None,
    ) -> TaskResult:
        """Download, verify the receipt, decrypt, and move into place together; the receipt
        must carry the digest of ``manifest`` (if given).

        Outputs are decrypted into ``staging`` (or a private staging folder made here beside
        ``out_dir``, and removed after). Bounded by the ``fetch`` deadline (if set) and, per
        file, the minimum rate. Raises :class:`TaskStepError` with step ``fetch``.
        """
        out = Path(out_dir)
        own = staging is None
        try:
            if staging is None:
                check_out_folder(out)
                staging = staging_beside(out)
            work = Path(tempfile.mkdtemp(prefix="fetch-", dir=staging.path))
            return await within(
                "fetch",
                self.deadlines.fetch,
                "the outputs did not all arrive",
                self._fetch_into(task, work, out, manifest, on_progress),
                lambda: self.arrived(task.ref.task_id),
            )
        except Error as exc:
            raise TaskStepError("fetch", exc) from exc
        finally:
            self.moving.pop(task.ref.task_id, None)
            if own and staging is not None:
                staging.remove()

    async def _fetch_into(
        self,
        task: AttestedTask,
        work: Path,
        out: Path,
        manifest: InputManifest | None,
        on_progress: ProgressCallback | None,
    ) -> TaskResult:
        started = time.monotonic()
        sealed = work / "sealed"
        sealed.mkdir()
        limit = task.spec.limits.output_size * 2 + (64 << 20)
        receipt_file = work / "receipt.json"
        await self._download(task, "receipt.json", receipt_file, MAX_RECEIPT_BYTES, None)
        bundle = ReceiptBundle.from_json(receipt_file.read_bytes())
        names = [o.name for o in bundle.receipt.outputs]
        # Binding, signature, input manifest and measurement before any output is downloaded;
        # each output is then checked against the receipt (ciphertext, then plaintext) as it is
        # decrypted.
        receipt = await asyncio.to_thread(
            check_receipt,
            bundle,
            task.verified,
            identity=self.identity,
            expected_task_id=task.transcript.task_id,
            expected_nonce=task.nonce,
            expected_input_manifest=manifest.digest() if manifest is not None else None,
        )
        check = OutputCheck(receipt, [self.identity])
        plain = work / "outputs"
        plain.mkdir()
        for entry in bundle.receipt.outputs:
            await self._fetch_output(
                task, check, entry, sealed, plain / entry.name, limit, on_progress, started
            )
        receipt = check.finish()
        if manifest is not None:
            (plain / INPUT_MANIFEST_FILE).write_bytes(manifest.canonical_bytes())
        # All verified: move into place together (all or nothing for a fresh out_dir).
        os.replace(receipt_file, plain / "receipt.json")
        os.replace(sealed, plain / ".sealed")
        if out.exists():
            check_out_folder(out)
            out.rmdir()
        os.rename(plain, out)
        return TaskResult(
            task_id=task.ref.task_id,
            out_dir=out,
            outputs={n: out / n for n in names},
            receipt_path=out / "receipt.json",
            receipt=receipt,
            exit_status=bundle.receipt.exit_status,
            verified=task.verified,
        )

    async def _download(
        self, task: AttestedTask, name: str, dest: Path, limit: int, size: int | None
    ) -> None:
        """One file to ``dest`` (the receipt), at the minimum rate or better."""
        guard = RateGuard("fetch", name, self.deadlines, size)
        self.moving[task.ref.task_id] = guard
        channel = self.channel
        async with guard:
            if isinstance(channel, OutputStreams):
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                with open(fd, "wb") as f:
                    pieces = channel.stream_output(task.ref, name, limit)
                    async with contextlib.aclosing(pieces) as data:
                        async for piece in data:
                            guard.add(len(piece))
                            f.write(piece)
            else:
                guard.add(await channel.download(task.ref, name, dest, limit))

    async def _fetch_output(
        self,
        task: AttestedTask,
        check: OutputCheck,
        entry: OutputEntry,
        sealed: Path,
        dest: Path,
        limit: int,
        on_progress: ProgressCallback | None,
        started: float,
    ) -> None:
        """Download one output into ``sealed``, decrypt it into ``dest`` and check both."""
        name = ciphertext_name(entry.name)
        copy = sealed / name
        channel = self.channel
        guard = RateGuard("fetch", f"output {entry.name}", self.deadlines, entry.ciphertext_size)
        self.moving[task.ref.task_id] = guard

        def report(finished: bool = False) -> None:
            if on_progress:
                on_progress(
                    LocalProgress(
                        "download",
                        entry.name,
                        guard.done,
                        entry.ciphertext_size,
                        time.monotonic() - started,
                        finished=finished,
                    )
                )

        if not isinstance(channel, OutputStreams):
            async with guard:
                guard.add(await channel.download(task.ref, name, copy, limit))

            def open_copy() -> None:
                with open(dest, "xb") as plaintext:
                    check.check_file(entry, copy, plaintext)

            await asyncio.to_thread(open_copy)
            report(finished=True)
            return
        # Checked and decrypted while it arrives: the ciphertext is read once, from the network.
        pipe = Pipe(DOWNLOAD_PIPE_BYTES)

        def open_output() -> None:
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "wb", buffering=0) as f, open(dest, "xb") as plaintext:
                source = PulledCiphertext(lambda: pipe.take_sync(DOWNLOAD_BATCH), f.fileno())
                check.check(entry, source, plaintext)

        async def feed() -> None:
            async with contextlib.aclosing(channel.stream_output(task.ref, name, limit)) as data:
                async for piece in data:
                    guard.add(len(piece))
                    if guard.done > entry.ciphertext_size:
                        raise ReceiptOutputError(
                            "output_size",
                            f"{entry.name}: the file size differs ({name})",
                            output=entry.name,
                            expected=entry.ciphertext_size,
                            found=f"> {entry.ciphertext_size}",
                        )
                    await pipe.put(piece)
                    report()
            pipe.close()

        async with guard:
            await run_piped(pipe, open_output, feed)
        report(finished=True)
