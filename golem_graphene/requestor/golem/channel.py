"""The Golem channel: the task protocol over ExeScript commands and file transfers.

:class:`GolemChannel` implements :class:`~golem_graphene.requestor.channel.Channel`, so the one
protocol implementation (:class:`~golem_graphene.requestor.client.Requestor`) runs unchanged
over the Golem network. Each channel operation becomes an ExeScript batch on the activity (the
``gramine-sgx`` runtime's entry points and the ``/golem/io`` volume, see
:mod:`golem_graphene.runtime.session`); four batches make a task:

1. ``create``: ``run attest TASK_ID SPEC_SHA256 NONCE R`` and download ``evidence.json``;
2. ``start``: upload ``inputs/<name>.age`` and ``manifest.sealed``, ``run receive-inputs``,
   ``run execute`` (``put_input``/``put_manifest`` only stage the files locally);
3. ``events`` (while waiting): ``run collect-outputs`` and download ``receipt.json``;
4. the first output ``download``: every output the receipt lists, in one batch.

Like every channel it only moves bytes: the evidence, the receipt and the outputs it returns
are verified by the protocol code. The task id is chosen here (16 random bytes) and sent to the
runtime, so evidence naming another task is refused as such. Golem's file transfers have no
byte limit, so ``download``'s limit is checked once a file has arrived (before it is used).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from golem_graphene.canonical_json import parse_json
from golem_graphene.errors import Error
from golem_graphene.limits import MAX_EVENT_MESSAGE_CHARS
from golem_graphene.protocol.binding import format_task_id, new_task_id
from golem_graphene.protocol.golem import VOLUME_PATH
from golem_graphene.protocol.messages import TaskEvent
from golem_graphene.protocol.names import TaskState, validate_file_name
from golem_graphene.requestor.channel import ChannelError, TaskRef
from golem_graphene.requestor.golem.executor import (
    Command,
    CommandResult,
    DownloadFile,
    ExeScriptExecutor,
    Run,
    SendFile,
)
from golem_graphene.sealing.input_manifest import ciphertext_name
from golem_graphene.sealing.receipt import ReceiptBundle

__all__ = ["MAX_EVIDENCE_BYTES", "GolemChannel"]

MAX_EVIDENCE_BYTES = 4 << 20
MAX_RECEIPT_BYTES = 16 << 20
_STEP_MESSAGE_CHARS = 2000


def _step_failure(result: CommandResult) -> str:
    """The runtime's reason for a failed command (the provider's words: shown escaped and
    marked by :class:`ChannelError`): its JSON answer, else stderr, else the message."""
    for line in reversed(result.stdout.strip().splitlines()):
        with contextlib.suppress(Error, AttributeError):
            answer = parse_json(line)
            if isinstance(answer, dict) and answer.get("ok") is False:
                return f"{answer.get('code')}: {answer.get('message')}"[:_STEP_MESSAGE_CHARS]
    text = result.stderr.strip() or result.message.strip() or "no reason given"
    return text[-_STEP_MESSAGE_CHARS:]


class GolemChannel:
    """A task on one Golem activity running the ``gramine-sgx`` runtime."""

    def __init__(
        self, executor: ExeScriptExecutor, *, staging_dir: Path | None = None, volume: str = ""
    ) -> None:
        self.executor = executor
        self.volume = volume or VOLUME_PATH
        self._parent = staging_dir
        self._staging: Path | None = None
        self._state = "new"
        self._task: TaskRef | None = None
        self._evidence: bytes | None = None
        self._uploads: list[SendFile] = []
        self._failure: str | None = None
        self._seq = -1  # the last event's sequence number
        self._receipt: Path | None = None
        self._receipt_served = False
        self._fetched: dict[str, Path] = {}

    # -- helpers ----------------------------------------------------------------------------------

    def _dir(self) -> Path:
        if self._staging is None:
            if self._parent is not None:
                self._parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix="golem-channel-", dir=self._parent))
        return self._staging

    def _fresh(self, name: str) -> Path:
        path = self._dir() / name
        if path.exists():
            path.unlink()
        return path

    async def _execute(self, what: str, commands: Sequence[Command]) -> list[CommandResult]:
        results = await self.executor.execute(commands)
        for result in results:
            if not result.ok:
                raise ChannelError(
                    f"{what}: {_describe(result.command)} failed on the provider",
                    code="exescript",
                    provider_text=_step_failure(result),
                )
        if len(results) != len(commands):
            raise ChannelError(f"{what}: the activity ran only part of the batch")
        return results

    def _check(self, task: TaskRef) -> None:
        if self._task is None or task.task_id != self._task.task_id:
            raise ChannelError("this Golem channel carries another task", code="not_found")

    # -- the Channel protocol ---------------------------------------------------------------------

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        """Launch and attest the enclave for a new task; the evidence comes back with it.

        An activity runs one task at a time: a task still in progress here is replaced (the
        runtime kills its enclave).
        """
        task_id = format_task_id(new_task_id())
        try:
            args = (
                task_id,
                str(request["spec_digest"]),
                str(request["nonce"]),
                str(request["requestor_key"]),
            )
        except KeyError as exc:
            raise ChannelError(f"the create request lacks {exc}") from exc
        self._reset()
        evidence = self._fresh("evidence.json")
        await self._execute(
            "create",
            [Run("attest", args), DownloadFile(f"{self.volume}/evidence.json", evidence)],
        )
        self._evidence = _read_bounded(evidence, MAX_EVIDENCE_BYTES, "the evidence")
        self._task = TaskRef(task_id, "")
        self._state = "attested"
        return {"task_id": task_id, "capability_token": ""}

    async def evidence(self, task: TaskRef) -> bytes:
        self._check(task)
        if self._evidence is None:
            raise ChannelError("the enclave has not attested yet")
        return self._evidence

    async def put_input(self, task: TaskRef, name: str, body: AsyncIterable[bytes]) -> None:
        """Stage one sealed input; it is uploaded with the manifest in ``start``'s batch."""
        self._check(task)
        try:
            validate_file_name(name, "input name")
        except ValueError as exc:
            raise ChannelError(str(exc)) from None
        path = self._fresh(f"input-{name}")
        with open(path, "xb") as f:
            async for chunk in body:
                await asyncio.to_thread(f.write, chunk)
        self._uploads.append(SendFile(path, f"{self.volume}/inputs/{ciphertext_name(name)}"))

    async def put_manifest(self, task: TaskRef, sealed: bytes) -> None:
        self._check(task)
        path = self._fresh("manifest.sealed")
        path.write_bytes(sealed)
        self._uploads.append(SendFile(path, f"{self.volume}/manifest.sealed"))

    async def start(self, task: TaskRef) -> None:
        """Upload the staged inputs and manifest, hand them to the enclave and let it run."""
        self._check(task)
        if self._state != "attested":
            raise ChannelError("start needs an attested task", code="invalid_state")
        uploads, self._uploads = self._uploads, []
        try:
            await self._execute("start", [*uploads, Run("receive-inputs"), Run("execute")])
        except ChannelError:
            self._state = "failed"
            raise
        finally:
            for upload in uploads:
                upload.src.unlink(missing_ok=True)
        self._state = "running"

    async def events(self, task: TaskRef) -> AsyncIterator[TaskEvent]:
        """The task's state; while it runs, this waits for it (``collect-outputs``)."""
        self._check(task)
        if self._state == "running":
            await self._collect()
        self._seq += 1
        yield TaskEvent(
            task_id=bytes.fromhex(task.task_id),
            state=TaskState.CREATED if self._state == "new" else TaskState(self._state),
            seq=self._seq,
            message=self._failure[:MAX_EVENT_MESSAGE_CHARS] if self._failure else None,
        )

    async def _collect(self) -> None:
        receipt = self._fresh("receipt.json")
        try:
            await self._execute(
                "wait",
                [
                    Run("collect-outputs"),
                    DownloadFile(f"{self.volume}/outputs/receipt.json", receipt),
                ],
            )
        except ChannelError as exc:
            # The failed event's message is the provider's words: ours plus what it said.
            self._state, self._failure = "failed", exc.describe_own()
            if exc.provider_text:
                self._failure += f": {exc.provider_text}"
            return
        self._receipt = receipt
        self._state = "done"

    async def outputs(self, task: TaskRef) -> list[dict[str, Any]]:
        """The output files the receipt lists (unverified: the receipt check comes later)."""
        self._check(task)
        return [{"name": ciphertext_name(name)} for name in self._listed_outputs()]

    def _listed_outputs(self) -> list[str]:
        if self._receipt is None:
            raise ChannelError("the task has no outputs yet", code="invalid_state")
        try:
            bundle = ReceiptBundle.from_json(
                _read_bounded(self._receipt, MAX_RECEIPT_BYTES, "the receipt")
            )
        except Error:
            return []  # fetched files are checked against the receipt, which will refuse it
        return [o.name for o in bundle.receipt.outputs]

    async def download(self, task: TaskRef, name: str, dest: Path, limit: int) -> int:
        """Copy one output (or ``receipt.json``) to ``dest``, refusing more than ``limit`` bytes."""
        self._check(task)
        if name == "receipt.json":
            if self._receipt is None:
                raise ChannelError("the task has no receipt yet", code="invalid_state")
            if self._receipt_served:
                # Fetched again: take everything afresh from the provider.
                receipt = self._fresh("receipt.json")
                remote = f"{self.volume}/outputs/receipt.json"
                await self._execute("fetch", [DownloadFile(remote, receipt)])
                self._fetched = {}
            self._receipt_served = True
            source = self._receipt
        else:
            if name not in self._fetched:
                await self._fetch_outputs(name)
            source = self._fetched[name]
        size = source.stat().st_size
        if size > limit:
            raise ChannelError(f"output {name!r} is larger than the task allows")
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            await asyncio.to_thread(shutil.copyfileobj, src, out, 1 << 20)
        return size

    async def _fetch_outputs(self, wanted: str) -> None:
        names = {ciphertext_name(n) for n in self._listed_outputs()} - set(self._fetched)
        names.add(wanted)
        commands: list[Command] = []
        targets: dict[str, Path] = {}
        for file_name in sorted(names):
            try:
                validate_file_name(file_name, "output file name")
            except ValueError as exc:
                raise ChannelError(str(exc)) from None
            targets[file_name] = self._fresh(f"output-{file_name}")
            commands.append(DownloadFile(f"{self.volume}/outputs/{file_name}", targets[file_name]))
        await self._execute("fetch", commands)
        self._fetched.update(targets)

    async def cancel(self, task: TaskRef) -> None:
        """Abort the task on the provider (kills the enclave)."""
        self._check(task)
        self._state = "cancelled"
        await self._execute("cancel", [Run("abort")])

    async def delete(self, task: TaskRef) -> None:
        """Forget the task here; the provider reclaims it with the activity (or the next task)."""
        self._check(task)
        self._reset()

    async def close(self) -> None:
        self._reset()
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def _reset(self) -> None:
        if self._staging is not None:
            for child in self._staging.iterdir():
                child.unlink(missing_ok=True)
        self._task = None
        self._evidence = self._receipt = self._failure = None
        self._receipt_served = False
        self._uploads = []
        self._fetched = {}
        self._state = "new"


def _describe(command: Command) -> str:
    if isinstance(command, Run):
        return f"run {command.entrypoint}"
    if isinstance(command, SendFile):
        return f"upload to {command.dst}"
    return f"download of {command.src}"


def _read_bounded(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise ChannelError(f"{what} did not arrive: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise ChannelError(f"{what} is too large", code="limit")
    return data
