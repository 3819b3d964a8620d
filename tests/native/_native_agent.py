"""Driving the native agent (``native/agent``) as the host does, and checking what it produces
with the Python requestor code as the oracle.

* :func:`build_agent` builds the binaries once per session with ``make`` (a missing toolchain
  is an error that names the packages, never a skip).
* :func:`read_frame` parses the agent's events with the rules of ``docs/agent-protocol.md``
  section 2 (ASCII, flat, unique keys, exact key sets), independently of the agent's C code.
* :class:`AgentProcess` runs the agent on pipes; :class:`Requestor` is the requestor's side of
  one task (R, the nonce, sealing inputs and the manifest to the agent's ``E``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from golem_graphene.host.sim.attestation_device import AttestationDevice
from golem_graphene.host.sim.platform import EnclaveIdentity, SimPlatform
from golem_graphene.protocol.agent import AGENT_FAILURE_CODES
from golem_graphene.protocol.binding import Transcript, new_nonce, new_task_id
from golem_graphene.sealing.age import encrypt_file
from golem_graphene.sealing.input_manifest import InputEntry, InputManifest, seal_manifest
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

REPO = Path(__file__).resolve().parents[2]
AGENT_SOURCE = REPO / "native" / "agent"
BUILD_DIR = REPO / "build" / "agent"
MAX_FRAME = 256 * 1024
SIM_MRENCLAVE = bytes(range(32))

# --- building -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentBinaries:
    """The three builds the tests use."""

    production: Path  # what images carry: no test entry points, /dev/attestation fixed
    test: Path  # the same sources with the test entry points (AGENT_TEST_BUILD)
    asan: Path  # the test build with AddressSanitizer and UndefinedBehaviorSanitizer


def build_agent() -> AgentBinaries:
    """``make agent agent-test-binaries``; raises RuntimeError naming what is missing."""
    missing = [tool for tool in ("make", "gcc") if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(
            f"the native agent needs {', '.join(missing)}: run `make setup` (it installs the "
            "Debian packages gcc, make and libsodium-dev)"
        )
    done = subprocess.run(
        ["make", "-s", "-C", str(REPO), "agent", "agent-test-binaries"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(
            "building the native agent failed (is libsodium-dev installed? `make setup` "
            f"installs it):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )
    return AgentBinaries(
        production=BUILD_DIR / "golem-graphene-agent",
        test=BUILD_DIR / "golem-graphene-agent-test",
        asan=BUILD_DIR / "golem-graphene-agent-asan",
    )


# --- frames -------------------------------------------------------------------------------------

EVENT_KEYS: dict[str, set[str]] = {
    "ready": {"event", "protocol", "agent"},
    "evidence": {"event", "runner", "simulated", "quote", "enclave_key", "signing_key"},
    "progress": {"event", "phase", "name", "bytes_done", "bytes_total"},
    "inputs_opened": {"event", "inputs", "bytes"},
    "running": {"event"},
    "sealing": {"event", "exit_status", "termination"},
    "outputs_sealed": {"event", "exit_status", "termination", "outputs", "receipt_sha256"},
    "failed": {"event", "code", "message"},
}

STABLE_CODES = frozenset(AGENT_FAILURE_CODES)
"""The protocol's stable failure codes (golem_graphene.protocol.agent): the agent's too."""


class FrameError(AssertionError):
    """The agent wrote a frame that breaks section 2 of the protocol."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise FrameError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _no_float(text: str) -> Any:
    raise FrameError(f"a number that is not an integer: {text}")


def read_frame(line: bytes) -> dict[str, Any]:
    """Parse one event line (with its LF) by the protocol's rules; raises FrameError."""
    if not line.endswith(b"\n") or len(line) > MAX_FRAME:
        raise FrameError("a frame is at most 256 KiB and ends with LF")
    body = line[:-1]
    if any(not 0x20 <= b <= 0x7E for b in body):
        raise FrameError("a frame byte outside 0x20..0x7E")
    obj = json.loads(body, object_pairs_hook=_no_duplicates, parse_float=_no_float)
    if not isinstance(obj, dict):
        raise FrameError("a frame is a JSON object")
    for key, value in obj.items():
        if value is not None and not isinstance(value, str | int | bool):
            raise FrameError(f"{key!r} is not flat")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53 - 1:
            raise FrameError(f"{key!r} is outside the safe integers")
    if next(iter(obj), None) != "event":
        raise FrameError("the writer puts the event name first")
    name = obj["event"]
    if name not in EVENT_KEYS or set(obj) != EVENT_KEYS[name]:
        raise FrameError(f"event {name!r} has keys {sorted(obj)}")
    if name == "failed":
        if obj["code"] not in STABLE_CODES:
            raise FrameError(f"unknown failure code {obj['code']!r}")
        if not 1 <= len(obj["message"]) <= 1024:
            raise FrameError("a failure message has 1..1024 characters")
    return obj


def frame(obj: dict[str, Any]) -> bytes:
    """A command frame as the host writes it."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"


# --- the process --------------------------------------------------------------------------------


class AgentProcess:
    """One agent on pipes: commands to its stdin, events parsed from its stdout."""

    def __init__(
        self,
        binary: Path,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        prefix: list[str] | None = None,
    ) -> None:
        self.proc = subprocess.Popen(
            [*(prefix or []), str(binary), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env if env is not None else {"PATH": "/usr/bin:/bin"},
        )
        assert self.proc.stdout is not None
        self._out = self.proc.stdout.fileno()
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def send(self, data: bytes | dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(frame(data) if isinstance(data, dict) else data)
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def event(self, timeout: float = 30.0) -> dict[str, Any] | None:
        """The next event, or None at end of output; raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the agent wrote no complete event in time")
            ready, _, _ = select.select([self._out], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._out, 65536)
            if not chunk:
                if self._buffer:
                    raise FrameError("output ended inside a frame")
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        parsed = read_frame(line + b"\n")
        self.events.append(parsed)
        return parsed

    def expect(self, name: str, timeout: float = 30.0) -> dict[str, Any]:
        event = self.event(timeout)
        assert event is not None, f"output ended where {name!r} was expected"
        assert event["event"] == name, f"expected {name!r}, got {event}"
        return event

    def finish(self, timeout: float = 60.0) -> tuple[list[dict[str, Any]], int]:
        """Read events to the end of output; returns the events since this call and the exit
        status. Checks that nothing follows a terminal event."""
        start = len(self.events)
        while (event := self.event(timeout)) is not None:
            if event["event"] in ("outputs_sealed", "failed"):
                assert self.event(timeout) is None, "a frame after a terminal event"
                break
        code = self.proc.wait(timeout)
        self.close()
        return self.events[start:], code

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        if self.proc.stderr.closed:
            return ""
        return self.proc.stderr.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None and not stream.closed:
                with contextlib.suppress(BrokenPipeError):
                    stream.close()


# --- the attestation device ---------------------------------------------------------------------


@dataclass
class SimAttestation:
    """The sim runner's real ``/dev/attestation`` (FIFOs served by a thread) in a folder, quoting
    for a fixed measurement with a real simulated platform."""

    platform: SimPlatform
    directory: Path
    enclave: EnclaveIdentity = field(
        default_factory=lambda: EnclaveIdentity(mrenclave=SIM_MRENCLAVE, mrsigner=bytes(32))
    )
    device: AttestationDevice | None = None

    def __enter__(self) -> SimAttestation:
        self.device = AttestationDevice(self.directory, self._quote)
        self.device.start()
        return self

    def _quote(self, report_data: bytes) -> bytes:
        return self.platform.quote(self.enclave, report_data)

    def __exit__(self, *exc: object) -> None:
        assert self.device is not None
        self.device.stop()


# --- the requestor ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """``WORKLOAD_JSON`` (protocol section 5) with defaults for tests."""

    argv: list[str]
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=lambda: ["*"])
    wall_ms: int = 20_000
    cpu_seconds: int | None = None
    memory: int = 1 << 34
    output_size: int = 1 << 30
    max_outputs: int = 64

    def to_json(self) -> dict[str, Any]:
        return {
            "format": 1,
            "argv": self.argv,
            "args": self.args,
            "env": self.env,
            "workdir": self.workdir,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "limits": {
                "wall_ms": self.wall_ms,
                "cpu_seconds": self.cpu_seconds,
                "memory": self.memory,
                "output_size": self.output_size,
                "max_outputs": self.max_outputs,
            },
        }


def shell(script: str, **kw: Any) -> Workload:
    """A workload running ``script`` with /bin/sh in the workspace."""
    return Workload(argv=["/bin/sh", "-c", script], **kw)


@dataclass
class Requestor:
    """The requestor's side of one task: R, the task id and nonce, and what it seals."""

    identity: X25519Identity = field(default_factory=X25519Identity.generate)
    task_id: bytes = field(default_factory=new_task_id)
    nonce: bytes = field(default_factory=new_nonce)

    def attest(self) -> dict[str, Any]:
        return {
            "cmd": "attest",
            "task_id": self.task_id.hex(),
            "nonce": self.nonce.hex(),
            "requestor_key": self.identity.recipient().to_string(),
        }

    def transcript(self, evidence: dict[str, Any]) -> Transcript:
        return Transcript(
            task_id=self.task_id,
            nonce=self.nonce,
            enclave_key=bytes.fromhex(evidence["enclave_key"]),
            signing_key=bytes.fromhex(evidence["signing_key"]),
            requestor_key=self.identity.recipient().public_bytes(),
        )

    def seal_inputs(
        self, io_dir: Path, evidence: dict[str, Any], files: dict[str, bytes]
    ) -> list[InputEntry]:
        """Seal each plaintext to E as ``inputs/<name>.age``; the manifest entries."""
        inputs = io_dir / "inputs"
        inputs.mkdir(exist_ok=True)
        enclave = X25519Recipient.from_public_bytes(bytes.fromhex(evidence["enclave_key"]))
        entries = []
        for name, data in files.items():
            plain = io_dir / f".plain-{name}"
            plain.write_bytes(data)
            encrypt_file(plain, inputs / f"{name}.age", [enclave])
            plain.unlink()
            entries.append(entry_for(name, len(data), (inputs / f"{name}.age").read_bytes()))
        return entries

    def seal_manifest(
        self,
        io_dir: Path,
        evidence: dict[str, Any],
        entries: list[InputEntry],
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> InputManifest:
        manifest = InputManifest(
            task_id=self.task_id, args=args, env=env or {}, inputs=tuple(entries)
        )
        transcript = self.transcript(evidence)
        sealed = seal_manifest(manifest, self.identity, transcript.enclave_key, transcript)
        (io_dir / "manifest.sealed").write_bytes(sealed)
        return manifest


def entry_for(name: str, size: int, ciphertext: bytes) -> InputEntry:
    return InputEntry(
        name=name,
        size=size,
        ciphertext_size=len(ciphertext),
        ciphertext_sha256=hashlib.sha256(ciphertext).digest(),
    )


@dataclass
class TaskDirs:
    """The folders of one run: the image's workload file, IO_DIR and WORKSPACE_DIR."""

    root: Path

    @property
    def workload(self) -> Path:
        return self.root / "image" / "workload.json"

    @property
    def io(self) -> Path:
        return self.root / "io"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    def create(self, workload: Workload | dict[str, Any] | bytes) -> TaskDirs:
        for folder in (self.workload.parent, self.io, self.workspace):
            folder.mkdir(parents=True, exist_ok=True)
        if isinstance(workload, Workload):
            workload = workload.to_json()
        data = workload if isinstance(workload, bytes) else json.dumps(workload).encode()
        self.workload.write_bytes(data)
        return self

    def argv(self) -> list[str]:
        return [str(self.workload), str(self.io), str(self.workspace)]


Stage = Callable[["Conversation"], None]


@dataclass
class Conversation:
    """One agent run through the whole protocol, with hooks to change any step."""

    agent: AgentProcess
    dirs: TaskDirs
    requestor: Requestor
    ready: dict[str, Any] | None = None
    evidence: dict[str, Any] | None = None
    manifest: InputManifest | None = None

    def to_evidence(self) -> dict[str, Any]:
        self.ready = self.agent.expect("ready")
        self.agent.send(self.requestor.attest())
        self.evidence = self.agent.expect("evidence")
        return self.evidence

    def upload(
        self,
        files: dict[str, bytes],
        *,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ) -> InputManifest:
        assert self.evidence is not None
        entries = self.requestor.seal_inputs(self.dirs.io, self.evidence, files)
        (self.dirs.io / "inputs").mkdir(exist_ok=True)
        self.manifest = self.requestor.seal_manifest(
            self.dirs.io, self.evidence, entries, args=args, env=env
        )
        return self.manifest

    def run(self, timeout: float = 60.0) -> tuple[list[dict[str, Any]], int]:
        self.agent.send({"cmd": "run"})
        return self.agent.finish(timeout)


def outcome(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The terminal event of a run."""
    assert events and events[-1]["event"] in ("outputs_sealed", "failed"), events
    return events[-1]
