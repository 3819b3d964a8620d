"""A scripted in-enclave agent for unit tests of the host side (no sandbox, no image build).

:class:`ScriptedRunner` launches :class:`ScriptedEnclave` objects that speak the agent protocol
(``docs/agent-protocol.md``) on a fake control channel: ``ready``; ``evidence`` with real keys
and a placeholder quote when told ``attest``; on ``run``, real sealed outputs and a receipt
signed with its ``S`` written into the launch folder's ``io/outputs``, then the events of a run.
A test changes what the agent does through :attr:`ScriptedEnclave.script` hooks or by pushing
frames itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from golem_graphene.errors import RunnerError
from golem_graphene.protocol.agent import (
    EvidenceReady,
    InputsOpened,
    OutputsSealed,
    Ready,
    Running,
    Sealing,
    decode_frame,
    encode,
)
from golem_graphene.sealing.age import encrypt_stream
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient
from golem_graphene.sealing.receipt import (
    Measurement,
    OutputEntry,
    Receipt,
    Timings,
    sign_receipt,
)

SIM_QUOTE = b"\x03\x00" + bytes(1200)  # the session never parses it; sim evidence needs one


@dataclass
class Script:
    """What the agent does; each hook may be replaced by a test."""

    ready: bool = True
    answer_attest: bool = True
    outputs: dict[str, bytes] = field(default_factory=lambda: {"out": b"result"})
    # Called after the outputs and the receipt are written, before ``outputs_sealed``.
    after_sealing: Callable[[Path], None] | None = None
    # Replaces the events sent after ``run`` (default: the protocol's order).
    run_events: list[bytes] | None = None


class ScriptedEnclave:
    """The :class:`~golem_graphene.host.runners.EnclaveProcess` interface, scripted."""

    def __init__(self, launch_dir: Path, script: Script) -> None:
        self.launch_dir = launch_dir
        self.script = script
        self.pid = 0
        self.sent: list[dict[str, Any]] = []
        self.killed = False
        self.timed_out = False
        self.armed = False
        self._frames: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._exited = asyncio.Event()
        self.signing_key = Ed25519PrivateKey.generate()
        self.enclave = X25519Identity.generate()
        self.attest: dict[str, Any] | None = None
        if script.ready:
            self.push(encode(Ready(agent="scripted/1")))

    def push(self, frame: bytes | None) -> None:
        """Make the agent write ``frame`` (None: it closes its output and exits)."""
        self._frames.put_nowait(frame)

    async def read_frame(self) -> bytes | None:
        frame = await self._frames.get()
        if frame is None:
            self._exited.set()
        return frame

    async def write_frame(self, frame: bytes) -> None:
        if self._exited.is_set():
            raise RunnerError("the enclave is gone (control channel closed)")
        command = decode_frame(frame)
        self.sent.append(command)
        if command["cmd"] == "attest" and self.script.answer_attest:
            self.attest = command
            self.push(
                encode(
                    EvidenceReady(
                        runner="sim",
                        simulated=True,
                        quote=SIM_QUOTE,
                        enclave_key=self.enclave.recipient().public_bytes(),
                        signing_key=self.signing_key.public_key().public_bytes_raw(),
                    )
                )
            )
        elif command["cmd"] == "run":
            self._run()

    def _run(self) -> None:
        if self.script.run_events is not None:
            for frame in self.script.run_events:
                self.push(frame)
            return
        assert self.attest is not None
        outputs = self.launch_dir / "io" / "outputs"
        outputs.mkdir(parents=True, exist_ok=True)
        requestor = X25519Recipient.from_string(str(self.attest["requestor_key"]))
        entries = [
            _seal(outputs, name, data, requestor)
            for name, data in sorted({**self.script.outputs, "stdout": b"", "stderr": b""}.items())
        ]
        now = datetime.now(UTC)
        receipt = Receipt(
            task_id=bytes.fromhex(str(self.attest["task_id"])),
            nonce=bytes.fromhex(str(self.attest["nonce"])),
            measurement=Measurement(mrenclave=bytes(32), runner="sim", simulated=True),
            input_manifest_sha256=bytes(32),
            exit_status=0,
            termination="exited",
            outputs=tuple(entries),
            timings=Timings(started_at=now, finished_at=now, duration_ms=0),
            requestor_key=requestor.to_string(),
            enclave_key=self.enclave.recipient().public_bytes(),
            signing_key=self.signing_key.public_key().public_bytes_raw(),
        )
        data = sign_receipt(receipt, self.signing_key).to_json()
        (outputs / "receipt.json").write_bytes(data)
        if self.script.after_sealing is not None:
            self.script.after_sealing(self.launch_dir / "io")
        for event in (
            InputsOpened(inputs=0, bytes=0),
            Running(),
            Sealing(exit_status=0, termination="exited"),
            OutputsSealed(
                exit_status=0,
                termination="exited",
                outputs=len(entries),
                receipt_sha256=hashlib.sha256(data).digest(),
            ),
        ):
            self.push(encode(event))
        self.push(None)
        self._exited.set()  # like a real agent, it exits after its last frame

    async def wait(self) -> int:
        await self._exited.wait()
        return -9 if self.killed else 0

    @property
    def running(self) -> bool:
        return not self._exited.is_set()

    def failure_reason(self) -> str | None:
        return None

    def arm(self) -> None:
        self.armed = True

    def relocate(self, stderr_path: Path | None) -> None:
        pass

    def kill(self) -> None:
        self.killed = True
        self.push(None)
        self._exited.set()


def _seal(folder: Path, name: str, data: bytes, recipient: X25519Recipient) -> OutputEntry:
    buffer = io.BytesIO()
    encrypt_stream(io.BytesIO(data), buffer, [recipient])
    sealed = buffer.getvalue()
    (folder / f"{name}.age").write_bytes(sealed)
    return OutputEntry(
        name=name,
        size=len(data),
        plaintext_sha256=hashlib.sha256(data).digest(),
        ciphertext_size=len(sealed),
        ciphertext_sha256=hashlib.sha256(sealed).digest(),
    )


class ScriptedRunner:
    """Launches :class:`ScriptedEnclave` objects following :attr:`script`."""

    name = "sim"
    simulated = True

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or Script()
        self.launched: list[ScriptedEnclave] = []
        self.fail = False

    async def launch(
        self, image: Any, launch_dir: Path, *, stderr_path: Path, standby: bool = False
    ) -> ScriptedEnclave:
        if self.fail:
            raise RunnerError("the scripted enclave cannot start")
        launch_dir.mkdir(parents=True, exist_ok=True)
        enclave = ScriptedEnclave(launch_dir, self.script)
        self.launched.append(enclave)
        return enclave

    async def collateral_for(self, quote: bytes, at: datetime) -> None:
        return None


def new_task_args() -> tuple[str, str, str]:
    """A task id, a nonce (hex) and a requestor recipient, as a provider would pass them."""
    return (
        secrets.token_hex(16),
        secrets.token_hex(32),
        X25519Identity.generate().recipient().to_string(),
    )
