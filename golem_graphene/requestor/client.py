"""The requestor SDK: run a confidential task on a provider you do not trust.

::

    async with Requestor("http://127.0.0.1:7465", identity=my_identity, token=TOKEN) as r:
        result = await r.run("task_specs/csv-stats", inputs={"data.csv": "data.csv"},
                             out_dir="results")

``run`` is the whole flow of DESIGN.md section 4; the steps are public for callers who need them:
:meth:`Requestor.create`, :meth:`~Requestor.attest`, :meth:`~Requestor.send_inputs`,
:meth:`~Requestor.start`, :meth:`~Requestor.wait`, :meth:`~Requestor.fetch`. Nothing is
encrypted to the enclave before its quote verified against the policy and bound this task's
nonce and keys; outputs land in ``out_dir`` all or nothing, after the receipt verified. Every
failure is a :class:`TaskStepError` naming the step and carrying the precise cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, cast

import structlog

from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import (
    QuoteVerifier,
    VerifiedQuote,
)
from golem_graphene.errors import Error, ProtocolError, UsageError
from golem_graphene.protocol.binding import Transcript, check_report_data, new_nonce, parse_task_id
from golem_graphene.protocol.messages import Evidence, TaskEvent
from golem_graphene.protocol.names import TaskState
from golem_graphene.protocol.spec import TaskSpec, spec_digest
from golem_graphene.requestor._pipe import Pipe, run_piped
from golem_graphene.requestor.channel import Channel, HttpChannel, OutputStreams, TaskRef
from golem_graphene.requestor.policy import RequestorPolicy
from golem_graphene.sealing.age import (
    encrypt_stream,
    plaintext_size,
    retarget_header,
)
from golem_graphene.sealing.digests import HashingSink, PulledCiphertext
from golem_graphene.sealing.input_manifest import (
    InputEntry,
    InputManifest,
    ciphertext_name,
    hash_file,
    seal_manifest,
)
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient
from golem_graphene.sealing.receipt import (
    OutputCheck,
    OutputEntry,
    ReceiptBundle,
    ReceiptOutputError,
    VerifiedReceipt,
    check_receipt,
)

__all__ = [
    "AttestedTask",
    "ProviderTaskError",
    "Requestor",
    "RequestorPolicy",
    "TaskResult",
    "TaskStepError",
]

log = structlog.get_logger(__name__)

EventCallback = Callable[[TaskEvent], None]
"""Called with each task event the provider reports, and with the requestor's own upload
progress (an ``attested`` event at the last sequence number seen, saying what was sent)."""

UPLOAD_PIPE_BYTES = 4 << 20  # sealed blocks queued for the event loop to send
DOWNLOAD_PIPE_BYTES = 8 << 20  # received pieces queued for the decrypting thread
DOWNLOAD_BATCH = 4 << 20  # taken (hashed, decrypted) a few MiB at a time: fewer thread hops


class ProviderTaskError(ProtocolError):
    """The task failed or was cancelled on the provider. ``code`` is the failure's own code
    from the provider's event (the agent's ``input_sha256``, ``output_symlink``, the provider's
    ``task_timeout``, ...), else ``task_failed`` or ``task_cancelled``."""

    code = "task_failed"

    @classmethod
    def from_event(cls, event: TaskEvent, where: str = "") -> ProviderTaskError:
        state = event.state.value
        message = (event.message or "").strip()
        what = " ".join(p for p in (f"the task {state}", where) if p)
        error = cls(f"{what}: {message}" if message else what)
        if event.code is not None:
            error.code = event.code
        elif state == "cancelled":
            error.code = "task_cancelled"
        return error


class TaskStepError(Error):
    """A step of the task flow failed; ``step`` names it and ``cause`` is the precise error."""

    def __init__(self, step: str, cause: Error) -> None:
        self.step = step
        self.cause = cause
        self.code = cause.code
        super().__init__(f"{step}: {cause.describe()}")
        if hasattr(cause, "established"):
            self.established = cause.established


@dataclass(frozen=True)
class AttestedTask:
    """A task whose enclave quote verified and bound this task's transcript."""

    ref: TaskRef
    spec: TaskSpec
    spec_dir: Path
    nonce: bytes
    transcript: Transcript
    evidence: Evidence
    verified: VerifiedQuote

    @property
    def enclave_recipient(self) -> X25519Recipient:
        return X25519Recipient.from_public_bytes(self.transcript.enclave_key)


@dataclass(frozen=True)
class TaskResult:
    """A finished, verified task: where its outputs and receipt are."""

    task_id: str
    out_dir: Path
    outputs: dict[str, Path]
    receipt_path: Path
    receipt: VerifiedReceipt
    exit_status: int
    verified: VerifiedQuote


@dataclass
class _Created:
    ref: TaskRef
    spec: TaskSpec
    spec_dir: Path
    nonce: bytes


class Requestor:
    """A requestor session with one provider; use ``async with``."""

    def __init__(
        self,
        provider: str | Channel,
        *,
        identity: X25519Identity,
        token: str | None = None,
        policy: RequestorPolicy | None = None,
    ) -> None:
        self.channel: Channel = (
            HttpChannel(provider, token=token) if isinstance(provider, str) else provider
        )
        self.identity = identity
        self.policy = policy or RequestorPolicy()
        anchor = self.policy.root or TrustAnchor.intel_sgx_root()
        self._verifiers: dict[str, QuoteVerifier] = {}
        self._seen: dict[str, int] = {}  # last event seq delivered per task
        self._default_anchor = anchor

    async def __aenter__(self) -> Requestor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.channel.close()

    # -- the whole flow ----------------------------------------------------------------------

    async def run(
        self,
        spec: str | Path,
        inputs: Mapping[str, str | Path],
        out_dir: str | Path,
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        prestaged: Mapping[str, str | Path] | None = None,
        on_event: EventCallback | None = None,
        keep_task: bool = False,
    ) -> TaskResult:
        """Create, attest, send inputs, run, wait, fetch and verify; returns the result.

        ``inputs`` maps declared input names to plaintext files; ``prestaged`` maps names to age
        files already encrypted to this requestor's identity (only their header is rewritten
        for the enclave). ``args``/``env`` override the spec's defaults for the workload.
        """
        created = await self.create(spec)
        try:
            attested = await self.attest(created)
            await self.send_inputs(
                attested, inputs, args=args, env=env, prestaged=prestaged, on_event=on_event
            )
            await self.start(attested)
            await self.wait(attested, on_event=on_event)
            result = await self.fetch(attested, out_dir)
        except BaseException:
            if not keep_task:
                await self._quietly(self.channel.cancel(created.ref))
            raise
        if not keep_task:
            await self._quietly(self.channel.delete(created.ref))
        return result

    @staticmethod
    async def _quietly(coro: Any) -> None:
        with contextlib.suppress(Error):
            await coro

    # -- step 1 -------------------------------------------------------------------------------

    async def create(self, spec: str | Path) -> _Created:
        """Step 1: ask the provider for a task running ``spec``."""
        try:
            spec_dir = Path(spec)
            spec_file = spec_dir / "task.toml" if spec_dir.is_dir() else spec_dir
            parsed = TaskSpec.from_path(spec_file)
            nonce = new_nonce()
            answer = await self.channel.create(
                {
                    "spec_name": parsed.name,
                    "spec_digest": spec_digest(spec_file),
                    "requestor_key": self.identity.recipient().to_string(),
                    "nonce": nonce.hex(),
                }
            )
            task_id, token = answer.get("task_id"), answer.get("capability_token")
            if not isinstance(task_id, str) or not isinstance(token, str):
                raise ProtocolError("the provider's create answer is malformed")
            parse_task_id(task_id)
        except Error as exc:
            raise TaskStepError("create", exc) from exc
        return _Created(TaskRef(task_id, token), parsed, spec_file.parent, nonce)

    # -- steps 2 and 3 ------------------------------------------------------------------------

    def _verifier(self, evidence: Evidence) -> QuoteVerifier:
        anchor = self._default_anchor
        if evidence.simulated and evidence.runner == "sim":
            anchor = self._simulation_anchor(evidence)
        key = anchor.fingerprint
        if key not in self._verifiers:
            self._verifiers[key] = QuoteVerifier(
                anchor=anchor,
                options=self.policy.verify_options(),
            )
        return self._verifiers[key]

    def _simulation_anchor(self, evidence: Evidence) -> TrustAnchor:
        """The root a simulated quote chains to, accepted only when trusted by fingerprint."""
        if evidence.quote is None:
            raise ProtocolError("the evidence has no quote")
        quote = Quote.from_bytes(evidence.quote)
        from cryptography import x509

        try:
            certs = x509.load_pem_x509_certificates(quote.pck_chain_pem())
        except ValueError as exc:
            raise ProtocolError("the simulated quote's certificate chain is unreadable") from exc
        anchor = TrustAnchor(certs[-1], "golem-graphene simulation root")
        if anchor.fingerprint not in self.policy.trusted_simulation_roots:
            raise TaskStepError(
                "attest",
                UsageError(
                    "the provider runs the sim runner (no SGX protection); trust its "
                    "simulation root "
                    f"by name to accept it: trusted_simulation_roots=({anchor.fingerprint!r},)"
                ),
            )
        return anchor

    async def attest(self, created: _Created, *, timeout: float = 300.0) -> AttestedTask:
        """Steps 2-3: wait for the evidence, verify the quote and the report-data binding."""
        try:
            await self._wait_for_state(created.ref, {"attested"}, timeout)
            evidence = Evidence.from_json(await self.channel.evidence(created.ref))
            if evidence.task_id != parse_task_id(created.ref.task_id):
                raise ProtocolError("the evidence is for another task")
            if evidence.quote is None or evidence.collateral is None:
                raise ProtocolError(
                    f"the {evidence.runner} runner published no quote or collateral; "
                    "an unattested run is never accepted"
                )
            policy = self.policy.attestation_policy(created.spec, evidence.runner)
            verifier = self._verifier(evidence)
            verified = await asyncio.to_thread(
                verifier.verify, evidence.quote, evidence.collateral, datetime.now(UTC)
            )
            policy.check(verified)
            transcript = Transcript(
                task_id=parse_task_id(created.ref.task_id),
                nonce=created.nonce,
                enclave_key=evidence.enclave_key,
                signing_key=evidence.signing_key,
                requestor_key=self.identity.recipient().public_bytes(),
            )
            check_report_data(verified.report_body, transcript)
        except TaskStepError:
            raise
        except Error as exc:
            raise TaskStepError("attest", exc) from exc
        log.info(
            "enclave attested",
            task_id=created.ref.task_id,
            status=verified.status.value,
            simulated=verified.simulated,
        )
        return AttestedTask(
            created.ref,
            created.spec,
            created.spec_dir,
            created.nonce,
            transcript,
            evidence,
            verified,
        )

    def _note_seq(self, ref: TaskRef, event: TaskEvent) -> bool:
        """Remember the event's sequence number; False for an event delivered before."""
        if event.seq <= self._seen.get(ref.task_id, -1):
            return False
        self._seen[ref.task_id] = event.seq
        return True

    async def _wait_for_state(self, ref: TaskRef, wanted: set[str], timeout: float) -> TaskEvent:
        async def watch() -> TaskEvent:
            async for event in self.channel.events(ref):
                self._note_seq(ref, event)
                state = event.state
                if state in wanted:
                    return event
                if state in ("failed", "cancelled"):
                    raise ProviderTaskError.from_event(event, "on the provider")
            raise ProtocolError("the provider's event stream ended early")

        try:
            return await asyncio.wait_for(watch(), timeout)
        except TimeoutError:
            raise ProtocolError(
                f"no {'/'.join(sorted(wanted))} state within {timeout:g} s"
            ) from None

    # -- step 4 -------------------------------------------------------------------------------

    async def send_inputs(
        self,
        task: AttestedTask,
        inputs: Mapping[str, str | Path],
        *,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        prestaged: Mapping[str, str | Path] | None = None,
        on_event: EventCallback | None = None,
    ) -> InputManifest:
        """Step 4: seal each input to the attested enclave, upload, then the sealed manifest."""
        try:
            names = set(inputs) | set(prestaged or {})
            for name in names:
                if task.spec.input(name) is None:
                    raise UsageError(f"the spec declares no input {name!r}")
            entries = []
            for name, path in sorted(inputs.items()):
                entries.append(await self._upload_plain(task, name, Path(path), on_event))
            for name, path in sorted((prestaged or {}).items()):
                entries.append(await self._upload_prestaged(task, name, Path(path)))
            manifest = InputManifest(
                task_id=task.transcript.task_id,
                args=tuple(args) if args is not None else (),
                env=dict(env or {}),
                inputs=tuple(entries),
            )
            sealed = seal_manifest(
                manifest, self.identity, task.transcript.enclave_key, task.transcript
            )
            await self.channel.put_manifest(task.ref, sealed)
        except Error as exc:
            raise TaskStepError("send_inputs", exc) from exc
        return manifest

    async def _upload_plain(
        self, task: AttestedTask, name: str, path: Path, on_event: EventCallback | None
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
            nonlocal sent_all
            while (block := await pipe.get()) is not None:
                yield block
            sent_all = True

        async def send() -> None:
            await self.channel.put_input(task.ref, name, body())
            if not sent_all:  # else the sealing thread would wait for it forever
                raise ProtocolError(f"the provider answered before it had all of input {name!r}")

        plain = await run_piped(pipe, seal, send)
        if on_event:
            on_event(
                TaskEvent(
                    task_id=bytes.fromhex(task.ref.task_id),
                    state=TaskState.ATTESTED,
                    seq=max(self._seen.get(task.ref.task_id, 0), 0),
                    message=f"input {name} sealed and uploaded",
                    bytes_done=plain,
                    bytes_total=plain,
                )
            )
        return InputEntry(
            name=name, size=plain, ciphertext_size=sink.size, ciphertext_sha256=sink.hash.digest()
        )

    async def _upload_prestaged(self, task: AttestedTask, name: str, path: Path) -> InputEntry:
        """Re-target a file sealed to our own key: only its header is rewritten for E."""
        tmp = Path(tempfile.mkstemp(prefix=".retarget-", dir=path.parent)[1])
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                await asyncio.to_thread(
                    retarget_header, src, dst, self.identity, [task.enclave_recipient]
                )
            digest = await asyncio.to_thread(hash_file, tmp, name)

            async def body() -> AsyncIterator[bytes]:
                with open(tmp, "rb") as f:
                    while chunk := f.read(256 * 1024):
                        yield chunk

            await self.channel.put_input(task.ref, name, body())
            plain = await asyncio.to_thread(plaintext_size, tmp)
        finally:
            tmp.unlink(missing_ok=True)
        return InputEntry(
            name=name, size=plain, ciphertext_size=digest.size, ciphertext_sha256=digest.sha256
        )

    # -- steps 5-7 ----------------------------------------------------------------------------

    async def start(self, task: AttestedTask) -> None:
        """Tell the provider the inputs are complete; the agent starts the workload."""
        try:
            await self.channel.start(task.ref)
        except Error as exc:
            raise TaskStepError("start", exc) from exc

    async def wait(
        self,
        task: AttestedTask,
        *,
        on_event: EventCallback | None = None,
        timeout: float | None = None,
    ) -> TaskEvent:
        """Follow the task's events until it is done; failed or cancelled tasks raise."""
        limit = timeout or task.spec.limits.wall_seconds + 600

        async def follow() -> TaskEvent:
            async for event in self.channel.events(task.ref):
                if on_event and self._note_seq(task.ref, event):
                    on_event(event)
                state = event.state
                if state == "done":
                    return event
                if state in ("failed", "cancelled"):
                    raise ProviderTaskError.from_event(event)
            raise ProtocolError("the provider's event stream ended before the task finished")

        try:
            return await asyncio.wait_for(follow(), limit)
        except TimeoutError:
            raise TaskStepError(
                "wait", ProtocolError(f"the task did not finish in {limit:g} s")
            ) from None
        except Error as exc:
            raise TaskStepError("wait", exc) from exc

    async def fetch(self, task: AttestedTask, out_dir: str | Path) -> TaskResult:
        """Steps 6-7: download, verify the receipt, decrypt, and move into place together."""
        out = Path(out_dir)
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            result = await self._fetch_into(task, staging, out)
        except Error as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise TaskStepError("fetch", exc) from exc
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return result

    async def _fetch_into(self, task: AttestedTask, staging: Path, out: Path) -> TaskResult:
        sealed = staging / "sealed"
        sealed.mkdir()
        limit = task.spec.limits.output_size * 2 + (64 << 20)
        await self.channel.download(task.ref, "receipt.json", staging / "receipt.json", 16 << 20)
        bundle = ReceiptBundle.from_json((staging / "receipt.json").read_bytes())
        names = [o.name for o in bundle.receipt.outputs]
        # Binding, signature and measurement before any output is downloaded; each output is
        # then checked against the receipt (ciphertext, then plaintext) as it is decrypted.
        receipt = await asyncio.to_thread(
            check_receipt,
            bundle,
            task.verified,
            identity=self.identity,
            expected_task_id=task.transcript.task_id,
            expected_nonce=task.nonce,
        )
        check = OutputCheck(receipt, [self.identity])
        plain = staging / "outputs"
        plain.mkdir()
        for entry in bundle.receipt.outputs:
            await self._fetch_output(task, check, entry, sealed, plain / entry.name, limit)
        receipt = check.finish()
        # All verified: move into place together (all or nothing for a fresh out_dir).
        if out.exists():
            if any(out.iterdir()):
                raise UsageError(f"the output folder {out} is not empty")
            out.rmdir()
        shutil.move(str(plain), str(out))
        receipt_path = out / "receipt.json"
        os.replace(staging / "receipt.json", receipt_path)
        os.replace(sealed, out / ".sealed")
        shutil.rmtree(staging, ignore_errors=True)
        return TaskResult(
            task_id=task.ref.task_id,
            out_dir=out,
            outputs={n: out / n for n in names},
            receipt_path=receipt_path,
            receipt=receipt,
            exit_status=bundle.receipt.exit_status,
            verified=task.verified,
        )

    async def _fetch_output(
        self,
        task: AttestedTask,
        check: OutputCheck,
        entry: OutputEntry,
        sealed: Path,
        dest: Path,
        limit: int,
    ) -> None:
        """Download one output into ``sealed``, decrypt it into ``dest`` and check both."""
        name = ciphertext_name(entry.name)
        copy = sealed / name
        channel = self.channel
        if not isinstance(channel, OutputStreams):
            await channel.download(task.ref, name, copy, limit)

            def open_copy() -> None:
                with open(dest, "xb") as plaintext:
                    check.check_file(entry, copy, plaintext)

            await asyncio.to_thread(open_copy)
            return
        # Checked and decrypted while it arrives: the ciphertext is read once, from the network.
        pipe = Pipe(DOWNLOAD_PIPE_BYTES)

        def open_output() -> None:
            fd = os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "wb", buffering=0) as f, open(dest, "xb") as plaintext:
                source = PulledCiphertext(lambda: pipe.take_sync(DOWNLOAD_BATCH), f.fileno())
                check.check(entry, source, plaintext)

        async def feed() -> None:
            received = 0
            async with contextlib.aclosing(channel.stream_output(task.ref, name, limit)) as data:
                async for piece in data:
                    received += len(piece)
                    if received > entry.ciphertext_size:
                        raise ReceiptOutputError(
                            "output_size",
                            f"{entry.name}: the file size differs ({name})",
                            output=entry.name,
                            expected=entry.ciphertext_size,
                            found=f"> {entry.ciphertext_size}",
                        )
                    await pipe.put(piece)
            pipe.close()

        await run_piped(pipe, open_output, feed)


class _PipeWriter:
    """The sealed input on its way to the event loop: queued. Written to by the sealer's
    threads, one call at a time."""

    def __init__(self, pipe: Pipe) -> None:
        self.pipe = pipe

    def write(self, data: memoryview) -> int:
        self.pipe.put_sync(bytes(data))  # the sealer reuses its buffer once this returns
        return data.nbytes
