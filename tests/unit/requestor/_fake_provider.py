"""An in-memory provider for the requestor's unit tests: the :class:`Channel` fake.

:class:`FakeProvider` plays the provider *and* an honest enclave in process: on ``create`` it
makes the enclave keys ``E`` and ``S`` and a real simulated DCAP quote (a
:class:`~golem_graphene.host.sim.platform.SimPlatform`) over the protocol's report data;
on ``start`` it opens the sealed manifest, checks and decrypts the inputs, runs a Python
``workload`` on them, seals the outputs to ``R`` and signs the receipt, as the agent does.
Tests then bend one thing at a time (``tamper``) to see the requestor refuse it.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from golem_graphene.host.sim.platform import EnclaveIdentity, SimPlatform
from golem_graphene.protocol.binding import Transcript, format_task_id, new_task_id, parse_task_id
from golem_graphene.protocol.messages import Evidence, TaskEvent
from golem_graphene.requestor.channel import ChannelError, TaskRef
from golem_graphene.sealing.age import decrypt_stream, encrypt_stream
from golem_graphene.sealing.input_manifest import ciphertext_name, open_manifest
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient
from golem_graphene.sealing.receipt import (
    Measurement,
    OutputEntry,
    Receipt,
    ReceiptBundle,
    Timings,
    sign_receipt,
)

MRENCLAVE = hashlib.sha256(b"fake enclave").digest()
MRSIGNER = hashlib.sha256(b"fake signer").digest()

Workload = Callable[[dict[str, bytes], tuple[str, ...]], tuple[int, dict[str, bytes]]]
"""inputs and args -> (exit status, outputs by name); ``stdout``/``stderr`` optional."""


def concat(inputs: dict[str, bytes], args: tuple[str, ...]) -> tuple[int, dict[str, bytes]]:
    """The default workload: ``out`` is every input in name order, ``stdout`` the args."""
    joined = b"".join(inputs[name] for name in sorted(inputs))
    return 0, {"out": joined, "stdout": " ".join(args).encode()}


@dataclass
class _Task:
    ref: TaskRef
    transcript: Transcript
    enclave: X25519Identity
    signer: Ed25519PrivateKey
    recipient: X25519Recipient
    evidence: Evidence
    events: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, bytes] = field(default_factory=dict)
    manifest: bytes | None = None
    files: dict[str, bytes] = field(default_factory=dict)


class FakeProvider:
    """A :class:`~golem_graphene.requestor.channel.Channel` with an honest in-process enclave."""

    def __init__(
        self,
        platform: SimPlatform,
        *,
        workload: Workload = concat,
        debug: bool = False,
        mrenclave: bytes = MRENCLAVE,
    ) -> None:
        self.platform = platform
        self.workload = workload
        self.identity = EnclaveIdentity(mrenclave=mrenclave, mrsigner=MRSIGNER, debug=debug)
        self.tasks: dict[str, _Task] = {}
        self.calls: list[tuple[str, str]] = []
        self.fail_with: str | None = None
        """When set, ``start`` ends the task ``failed`` with this message instead of running."""
        self.fail_code: str | None = None
        """The failure code the ``failed`` event carries (the provider sends its own)."""
        self.tamper: dict[str, Callable[[bytes], bytes]] = {}
        """Per file name (``receipt.json``, ``<output>.age``): rewrite it on download."""
        self.misreport: dict[str, dict[str, Any]] = {}
        """Per output name: fields the enclave itself gets wrong in the receipt it signs."""
        self.signed_manifest: bytes | None = None
        """When set, the input manifest digest the enclave signs instead of the manifest's."""

    def _task(self, ref: TaskRef) -> _Task:
        task = self.tasks.get(ref.task_id)
        if task is None or not secrets.compare_digest(task.ref.token, ref.token):
            raise ChannelError("provider answered 404: no such task", code="not_found", status=404)
        return task

    def _emit(
        self, task: _Task, state: str, message: str | None = None, code: str | None = None
    ) -> None:
        event: dict[str, Any] = {
            "task_id": task.ref.task_id,
            "state": state,
            "seq": len(task.events),
        }
        if message is not None:
            event["message"] = message
        if code is not None:
            event["code"] = code
        task.events.append(event)

    # -- the Channel protocol ------------------------------------------------------------------

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        task_id = new_task_id()
        enclave = X25519Identity.generate()
        signer = Ed25519PrivateKey.generate()
        recipient = X25519Recipient.from_string(request["requestor_key"])
        transcript = Transcript(
            task_id=task_id,
            nonce=bytes.fromhex(request["nonce"]),
            enclave_key=enclave.recipient().public_bytes(),
            signing_key=signer.public_key().public_bytes_raw(),
            requestor_key=recipient.public_bytes(),
        )
        evidence = Evidence(
            task_id=task_id,
            quote=self.platform.quote(self.identity, transcript.report_data()),
            enclave_key=transcript.enclave_key,
            signing_key=transcript.signing_key,
            collateral=self.platform.collateral(datetime.now(UTC)),
            runner="sim",
            simulated=True,
        )
        ref = TaskRef(format_task_id(task_id), secrets.token_urlsafe(32))
        task = _Task(ref, transcript, enclave, signer, recipient, evidence)
        self.tasks[ref.task_id] = task
        for state in ("created", "launching", "attested"):
            self._emit(task, state)
        self.calls.append(("create", ref.task_id))
        return {"task_id": ref.task_id, "capability_token": ref.token}

    async def evidence(self, task: TaskRef) -> bytes:
        return self._task(task).evidence.to_json()

    async def put_input(self, task: TaskRef, name: str, body: AsyncIterable[bytes]) -> None:
        data = b"".join([chunk async for chunk in body])
        self._task(task).inputs[name] = data

    async def put_manifest(self, task: TaskRef, sealed: bytes) -> None:
        self._task(task).manifest = sealed

    async def start(self, task: TaskRef) -> None:
        t = self._task(task)
        self.calls.append(("start", task.task_id))
        self._emit(t, "inputs_received")
        if self.fail_with is not None:
            self._emit(t, "failed", self.fail_with, self.fail_code)
            return
        assert t.manifest is not None
        manifest = open_manifest(t.manifest, t.enclave, t.recipient.public_bytes(), t.transcript)
        plain: dict[str, bytes] = {}
        for entry in manifest.inputs:
            sealed = t.inputs[entry.name]
            assert hashlib.sha256(sealed).digest() == entry.ciphertext_sha256
            sink = io.BytesIO()
            decrypt_stream(io.BytesIO(sealed), sink, [t.enclave])
            plain[entry.name] = sink.getvalue()
        self._emit(t, "running")
        started = datetime.now(UTC)
        code, outputs = self.workload(plain, manifest.args)
        outputs = {"stdout": b"", "stderr": b"", **outputs}
        self._emit(t, "sealing")
        entries = []
        for name in [n for n in outputs if n not in ("stdout", "stderr")] + ["stdout", "stderr"]:
            sink = io.BytesIO()
            encrypt_stream(io.BytesIO(outputs[name]), sink, [t.recipient])
            t.files[ciphertext_name(name)] = sink.getvalue()
            entry = OutputEntry(
                name=name,
                size=len(outputs[name]),
                plaintext_sha256=hashlib.sha256(outputs[name]).digest(),
                ciphertext_size=len(sink.getvalue()),
                ciphertext_sha256=hashlib.sha256(sink.getvalue()).digest(),
            )
            entries.append(entry.model_copy(update=self.misreport.get(name, {})))
        receipt = Receipt(
            task_id=t.transcript.task_id,
            nonce=t.transcript.nonce,
            measurement=Measurement(
                mrenclave=self.identity.mrenclave, runner="sim", simulated=True
            ),
            input_manifest_sha256=self.signed_manifest or manifest.digest(),
            exit_status=code,
            termination="exited",
            outputs=tuple(entries),
            timings=Timings(started_at=started, finished_at=datetime.now(UTC), duration_ms=1),
            requestor_key=t.recipient.to_string(),
            enclave_key=t.transcript.enclave_key,
            signing_key=t.transcript.signing_key,
        )
        bundle = ReceiptBundle.from_signed(sign_receipt(receipt, t.signer), t.evidence)
        t.files["receipt.json"] = bundle.to_json()
        self._emit(t, "done", "outputs sealed")

    async def events(self, task: TaskRef) -> AsyncIterator[TaskEvent]:
        t = self._task(task)
        for event in list(t.events):
            yield TaskEvent.from_obj(event)
            if event["state"] in ("done", "failed", "cancelled"):
                return

    async def outputs(self, task: TaskRef) -> list[dict[str, Any]]:
        return [{"name": n, "size": len(d)} for n, d in self._task(task).files.items()]

    async def download(self, task: TaskRef, name: str, dest: Path, limit: int) -> int:
        t = self._task(task)
        if name not in t.files:
            raise ChannelError("provider answered 404: no such output", code="not_found")
        data = t.files[name]
        if name in self.tamper:
            data = self.tamper[name](data)
        if len(data) > limit:
            raise ChannelError(f"output {name!r} is larger than the task allows")
        with open(dest, "xb") as f:
            f.write(data)
        return len(data)

    async def cancel(self, task: TaskRef) -> None:
        self.calls.append(("cancel", task.task_id))
        t = self._task(task)
        if t.events[-1]["state"] not in ("done", "failed", "cancelled"):
            self._emit(t, "cancelled")

    async def delete(self, task: TaskRef) -> None:
        self.calls.append(("delete", task.task_id))
        self.tasks.pop(task.task_id, None)

    async def close(self) -> None:
        self.calls.append(("close", ""))


def task_id_bytes(ref: TaskRef) -> bytes:
    return parse_task_id(ref.task_id)
