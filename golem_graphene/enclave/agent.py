"""The agent's task flow inside the enclave (DESIGN.md section 4, steps 2, 5 and 6).

Everything from outside is untrusted: the ``attest`` command (task id, nonce, requestor key),
which may come long after the enclave started, only enters the report data, where the
requestor checks it; the input manifest is authenticated with a key
only the requestor and this enclave can derive; input ciphertexts are checked against it before
anything is decrypted. Plaintext exists only in the enclave's private workspace (``/workspace``,
a tmpfs inside the enclave); what leaves is sealed to the requestor's key ``R`` bound in the
report data, and the receipt is signed with ``S``, whose public half is bound there too.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from golem_graphene.errors import Error, ProtocolError, RunnerError, SealingError
from golem_graphene.protocol.binding import Transcript, format_task_id, parse_task_id
from golem_graphene.sealing.age import SealDigests, decrypt_file, encrypt_file
from golem_graphene.sealing.input_manifest import (
    InputManifest,
    check_inputs,
    ciphertext_name,
    open_manifest,
    open_regular,
)
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient
from golem_graphene.sealing.receipt_document import (
    Measurement,
    OutputEntry,
    Receipt,
    Timings,
    sign_receipt,
)

__all__ = ["AgentError", "main"]

ATTESTATION_DIR = Path("/dev/attestation")
IMAGE_DIR = Path("/image")
WORKSPACE = Path("/workspace")
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
MAX_COMMAND = 64 * 1024


class AgentError(Error):
    """The task cannot go on inside the enclave; the message says why."""

    code = "agent"


class OutputRefusedError(AgentError):
    """An output the workload left cannot be sealed; ``code`` says why, the message names it."""

    def __init__(self, code: str, message: str, **kw: Any) -> None:
        self.code = code
        super().__init__(message, **kw)


class Control:
    """The control pipe: events out on stdout, commands in on stdin (JSON lines)."""

    def __init__(self, commands: IO[bytes], events: IO[bytes]) -> None:
        self._in = commands
        self._out = events

    def emit(self, event: str, **fields: Any) -> None:
        self._out.write(json.dumps({"event": event, **fields}).encode() + b"\n")
        self._out.flush()

    def command(self) -> dict[str, Any]:
        line = self._in.readline(MAX_COMMAND)
        if not line:
            raise AgentError("the provider closed the control pipe")
        try:
            cmd = json.loads(line)
        except ValueError as exc:
            raise AgentError("malformed command on the control pipe") from exc
        if not isinstance(cmd, dict):
            raise AgentError("malformed command on the control pipe")
        return cmd


@dataclass(frozen=True)
class Workload:
    """``/image/workload.json``: measured with the image, so the provider cannot change it."""

    argv: list[str]
    args: list[str]
    env: dict[str, str]
    inputs: dict[str, dict[str, Any]]
    outputs: list[str]
    wall_seconds: float
    cpu_seconds: int | None
    memory: int
    output_size: int
    max_outputs: int

    @classmethod
    def load(cls, path: Path) -> Workload:
        obj = json.loads(path.read_text())
        limits = obj["limits"]
        return cls(
            argv=list(obj["argv"]),
            args=list(obj["args"]),
            env=dict(obj["env"]),
            inputs={i["name"]: i for i in obj["inputs"]},
            outputs=list(obj["outputs"]),
            wall_seconds=float(limits["wall_seconds"]),
            cpu_seconds=limits.get("cpu_seconds"),
            memory=int(limits["memory"]),
            output_size=int(limits["output_size"]),
            max_outputs=int(limits["max_outputs"]),
        )

    def declares_output(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.outputs)


def _parse_task(command: dict[str, Any]) -> tuple[bytes, bytes, X25519Recipient]:
    """The ``attest`` command: which task this enclave serves (untrusted: it only enters the
    report data, where the requestor checks it)."""
    if command.get("cmd") != "attest":
        raise AgentError("the provider aborted the enclave before giving it a task")
    try:
        task_id = parse_task_id(command["task_id"])
        nonce = bytes.fromhex(command["nonce"])
        recipient = X25519Recipient.from_string(command["requestor_key"])
    except (Error, ValueError, KeyError, TypeError) as exc:
        raise AgentError(f"the attest command is malformed: {exc}") from exc
    return task_id, nonce, recipient


def _quote(report_data: bytes) -> bytes | None:
    """Gramine's dance: one write of the report data, then read a fresh quote."""
    quote_file = ATTESTATION_DIR / "quote"
    if not quote_file.exists():
        return None
    fd = os.open(ATTESTATION_DIR / "user_report_data", os.O_WRONLY)
    try:
        os.write(fd, report_data)
    finally:
        os.close(fd)
    return quote_file.read_bytes()


def _runner_of(quote: bytes | None) -> tuple[str, bool]:
    if quote is None:
        return "gramine-direct", True
    if quote[12:28] == INTEL_QE_VENDOR_ID:
        return "gramine-sgx", False
    return "sim", True


def _limits(workload: Workload) -> Any:
    def apply() -> None:
        # One byte over the limit: an output that reaches it is refused by name, never sealed
        # silently truncated at exactly the limit.
        _cap(resource.RLIMIT_FSIZE, workload.output_size + 1)
        _cap(resource.RLIMIT_AS, workload.memory)
        _cap(resource.RLIMIT_CORE, 0)
        if workload.cpu_seconds:
            _cap(resource.RLIMIT_CPU, workload.cpu_seconds)

    return apply


def _cap(which: int, value: int) -> None:
    """Set a limit, never above the enclave's own (raising a hard limit fails, and a spec's
    ``memory`` may exceed the enclave size, which already bounds the workload)."""
    hard = resource.getrlimit(which)[1]
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def _run_workload(
    workload: Workload, manifest: InputManifest
) -> tuple[int, str, datetime, datetime, int]:
    argv = workload.argv + (list(manifest.args) if manifest.args else workload.args)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(WORKSPACE),
        **workload.env,
        **manifest.env,
    }
    started = datetime.now(UTC)
    t0 = time.monotonic()
    with open(WORKSPACE / ".stdout", "wb") as out, open(WORKSPACE / ".stderr", "wb") as err:
        proc = subprocess.Popen(
            argv,
            cwd=WORKSPACE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=_limits(workload),
        )
        termination = "exited"
        try:
            code = proc.wait(timeout=workload.wall_seconds)
        except subprocess.TimeoutExpired:
            termination = "timeout"
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    with_group_killed(proc.pid)
    finished = datetime.now(UTC)
    if termination == "exited" and code < 0:
        termination = "resource_limit" if -code in (signal.SIGXFSZ, signal.SIGXCPU) else "signaled"
    return code, termination, started, finished, int((time.monotonic() - t0) * 1000)


def with_group_killed(pgid: int) -> None:
    """No process of the workload outlives it (its session is killed)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _collect_outputs(workload: Workload) -> list[tuple[str, Path]]:
    outdir = WORKSPACE / "outputs"
    found: list[tuple[str, Path]] = []
    total = 0
    for entry in sorted(os.scandir(outdir), key=lambda e: e.name):
        if not workload.declares_output(entry.name):
            continue
        st = os.lstat(entry.path)
        if stat.S_ISLNK(st.st_mode):
            raise OutputRefusedError(
                "output_symlink",
                f"output {entry.name!r} is a symbolic link; outputs must be regular files",
            )
        if not stat.S_ISREG(st.st_mode):
            raise OutputRefusedError(
                "output_not_regular",
                f"output {entry.name!r} is not a regular file (FIFO, device or folder)",
            )
        if st.st_nlink != 1:
            raise OutputRefusedError(
                "output_hard_link",
                f"output {entry.name!r} is a hard link; outputs must be regular files",
            )
        if entry.name in ("stdout", "stderr", "receipt.json"):
            raise OutputRefusedError("output_reserved", f"output name {entry.name!r} is reserved")
        total += st.st_size
        if total > workload.output_size:
            raise OutputRefusedError(
                "output_too_large",
                f"output {entry.name!r} takes the outputs over the spec's output_size limit",
                expected=f"<= {workload.output_size} bytes in all",
                found=f"> {workload.output_size}",
            )
        found.append((entry.name, Path(entry.path)))
    if len(found) > workload.max_outputs:
        raise OutputRefusedError(
            "too_many_outputs",
            "too many outputs",
            expected=f"<= {workload.max_outputs}",
            found=len(found),
        )
    return found


def _seal(
    name: str, source: Path, dest_dir: Path, recipient: X25519Recipient, control: Control
) -> OutputEntry:
    # One pass: the digests are of exactly the bytes sealed and written. The workspace is the
    # workload's: never follow a link it left or block on a FIFO.
    digests = SealDigests()
    with os.fdopen(open_regular(source, name), "rb", buffering=0) as plaintext:
        target = dest_dir / ciphertext_name(name)
        size = encrypt_file(plaintext, target, [recipient], overwrite=True, digests=digests)
    control.emit("progress", phase="sealing", output=name, bytes_done=size, bytes_total=size)
    return OutputEntry(
        name=name,
        size=size,
        plaintext_sha256=digests.plaintext.digest(),
        ciphertext_size=digests.ciphertext_size,
        ciphertext_sha256=digests.ciphertext.digest(),
    )


def run_agent(io: Path, control: Control) -> None:
    """The whole in-enclave flow; raises :class:`Error` subclasses on any refusal."""
    workload = Workload.load(IMAGE_DIR / "workload.json")
    # Loaded: the enclave may wait here, pre-started, until a task takes it.
    control.emit("ready")
    task_id, nonce, recipient = _parse_task(control.command())
    enclave_identity = X25519Identity.generate()
    signing_key = Ed25519PrivateKey.generate()
    transcript = Transcript(
        task_id=task_id,
        nonce=nonce,
        enclave_key=enclave_identity.recipient().public_bytes(),
        signing_key=signing_key.public_key().public_bytes_raw(),
        requestor_key=recipient.public_bytes(),
    )
    # Step 2: bind E, S and R to this task in the quote.
    quote = _quote(transcript.report_data())
    runner, simulated = _runner_of(quote)
    evidence = {
        "quote": quote.hex() if quote else None,
        "enclave_key": transcript.enclave_key.hex(),
        "signing_key": transcript.signing_key.hex(),
        "runner": runner,
        "simulated": simulated,
    }
    _write_atomic(io / "evidence.json", json.dumps(evidence).encode())
    control.emit("attested", runner=runner)

    # Step 4 (enclave side): wait until the inputs are in place, then authenticate them.
    command = control.command()
    if command.get("cmd") != "run":
        raise AgentError("the provider aborted the task before it ran")
    inputs_dir = io / "inputs"
    try:
        sealed = (io / "manifest.sealed").read_bytes()
    except OSError as exc:
        raise ProtocolError("the sealed input manifest is missing") from exc
    manifest = open_manifest(sealed, enclave_identity, recipient.public_bytes(), transcript)
    _check_declared(workload, manifest)
    paths = check_inputs(manifest, inputs_dir)
    private_inputs = WORKSPACE / "inputs"
    private_inputs.mkdir(parents=True, exist_ok=True)
    (WORKSPACE / "outputs").mkdir(parents=True, exist_ok=True)
    for entry in manifest.inputs:
        size = decrypt_file(paths[entry.name], private_inputs / entry.name, [enclave_identity])
        if size != entry.size:
            raise SealingError(
                f"input {entry.name!r} does not have the size the manifest states",
                expected=entry.size,
                found=size,
            )
        control.emit(
            "progress", phase="inputs", input=entry.name, bytes_done=size, bytes_total=size
        )

    # Step 5: run, then seal every declared output and the standard streams to R.
    control.emit("running")
    code, termination, started, finished, duration_ms = _run_workload(workload, manifest)
    control.emit("sealing", exit_status=code, termination=termination)
    outputs_dir = io / "outputs"
    outputs_dir.mkdir(exist_ok=True)
    entries = [
        _seal(name, path, outputs_dir, recipient, control)
        for name, path in _collect_outputs(workload)
    ]
    entries.append(_seal("stdout", WORKSPACE / ".stdout", outputs_dir, recipient, control))
    entries.append(_seal("stderr", WORKSPACE / ".stderr", outputs_dir, recipient, control))

    # Step 6: the signed receipt.
    mrenclave = quote[112:144] if quote else bytes(32)
    receipt = Receipt(
        task_id=task_id,
        nonce=nonce,
        measurement=Measurement(mrenclave=mrenclave, runner=runner, simulated=simulated),
        input_manifest_sha256=manifest.digest(),
        exit_status=max(code, -64),
        termination=termination,
        outputs=tuple(entries),
        timings=Timings(started_at=started, finished_at=finished, duration_ms=duration_ms),
        requestor_key=recipient.to_string(),
        enclave_key=transcript.enclave_key,
        signing_key=transcript.signing_key,
    )
    signed = sign_receipt(receipt, signing_key)
    _write_atomic(outputs_dir / "receipt.json", signed.to_json())
    control.emit("done", task_id=format_task_id(task_id), exit_status=code, termination=termination)


def _check_declared(workload: Workload, manifest: InputManifest) -> None:
    names = {e.name for e in manifest.inputs}
    for entry in manifest.inputs:
        spec = workload.inputs.get(entry.name)
        if spec is None:
            raise AgentError(f"input {entry.name!r} is not declared by the task spec")
        if entry.size > int(spec["max_size"]):
            raise AgentError(
                f"input {entry.name!r} exceeds its size limit",
                expected=f"<= {spec['max_size']} bytes",
                found=entry.size,
            )
    missing = [n for n, s in workload.inputs.items() if s.get("required", True) and n not in names]
    if missing:
        raise AgentError("required inputs are missing from the manifest", found=", ".join(missing))


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Run the agent with the untrusted folder given as the only argument."""
    args = sys.argv[1:] if argv is None else argv
    io = Path(args[0] if args else "/untrusted")
    control = Control(sys.stdin.buffer, sys.stdout.buffer)
    try:
        run_agent(io, control)
    except Error as exc:
        control.emit("failed", code=exc.code, message=exc.describe())
        return 1
    except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        err = RunnerError(f"the agent failed: {type(exc).__name__}: {exc}")
        control.emit("failed", code=err.code, message=err.describe())
        return 1
    return 0
