"""The agent's task flow inside the enclave: the agent side of ``docs/agent-protocol.md``.

Everything from outside is untrusted: the ``attest`` command (task id, nonce, requestor key),
which may come long after the enclave started, only enters the report data, where the
requestor checks it; the input manifest is authenticated with a key only the requestor and this
enclave can derive; input ciphertexts are checked against it before anything is decrypted.
Plaintext exists only in the enclave's private workspace (a tmpfs inside the enclave); what
leaves is sealed to the requestor's key ``R`` bound in the report data, and the receipt is
signed with ``S``, whose public half is bound there too.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
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
from typing import IO, Any, Final, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import golem_graphene
from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import Error
from golem_graphene.limits import MAX_AGENT_MESSAGE_CHARS, MAX_INPUT_MANIFEST_BYTES
from golem_graphene.protocol.agent import (
    AGENT_FAILURE_CODES,
    AgentEvent,
    AgentFailureCode,
    AgentProtocolError,
    Attest,
    EvidenceReady,
    Failed,
    InputsOpened,
    OutputsSealed,
    Progress,
    Ready,
    Run,
    Running,
    Sealing,
    encode,
    parse_command,
)
from golem_graphene.protocol.binding import Transcript
from golem_graphene.protocol.names import RunnerName, Termination, validate_file_name
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

ATTESTATION_DIR: Final = Path("/dev/attestation")
INTEL_QE_VENDOR_ID: Final = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
AGENT_NAME: Final = f"golem-graphene-agent-py/{golem_graphene.__version__}"
MAX_WORKLOAD_BYTES: Final = 1024 * 1024
RESERVED_OUTPUTS: Final = ("stdout", "stderr", "receipt.json")

# Our errors' codes that are not themselves protocol codes, mapped to the protocol's.
_CODE_MAP: Final = {
    "age_format": "age_header",
    "age_armor": "age_header",
    "unsupported_recipient": "age_no_match",
    "file_missing": "output_read",
    "file_not_regular": "output_not_regular",
    "file_read": "output_read",
    "file_size": "output_read",
}


class AgentError(Error):
    """The task cannot go on inside the enclave; ``code`` is a stable protocol code."""

    def __init__(self, code: str, message: str, **kw: Any) -> None:
        self.code = code
        super().__init__(message, **kw)


class Control:
    """The control channel: event frames out on stdout, command frames in on stdin."""

    def __init__(self, commands: IO[bytes], events: IO[bytes]) -> None:
        self._in = commands
        self._out = events

    def emit(self, event: AgentEvent) -> None:
        self._out.write(encode(event))
        self._out.flush()

    def command(self) -> Attest | Run:
        line = self._in.readline(256 * 1024)
        if not line:
            raise AgentError("control_closed", "the host closed the control channel")
        try:
            return parse_command(line)
        except AgentProtocolError as exc:
            raise AgentError("control_message", exc.describe()) from None


@dataclass(frozen=True)
class Workload:
    """The workload description (``docs/agent-protocol.md`` section 5), measured with the image."""

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
        try:
            with open(path, "rb") as f:
                obj = json.loads(f.read(MAX_WORKLOAD_BYTES + 1)[: MAX_WORKLOAD_BYTES + 1])
            if obj.get("format") != 1 or set(obj) != {
                "format",
                "argv",
                "args",
                "env",
                "inputs",
                "outputs",
                "limits",
            }:
                raise ValueError("unknown format or keys")
            limits = obj["limits"]
            workload = cls(
                argv=[str(a) for a in obj["argv"]],
                args=[str(a) for a in obj["args"]],
                env={str(k): str(v) for k, v in obj["env"].items()},
                inputs={validate_file_name(i["name"]): i for i in obj["inputs"]},
                outputs=[str(p) for p in obj["outputs"]],
                wall_seconds=int(limits["wall_ms"]) / 1000,
                cpu_seconds=limits["cpu_seconds"],
                memory=int(limits["memory"]),
                output_size=int(limits["output_size"]),
                max_outputs=int(limits["max_outputs"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise AgentError("workload_format", f"the workload description: {exc}") from None
        if not workload.argv or not workload.argv[0].startswith("/"):
            raise AgentError("workload_format", "the workload's argv[0] is not an absolute path")
        return workload

    def declares_output(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.outputs)


def _quote(report_data: bytes) -> bytes | None:
    """Gramine's dance: one write of the report data, then read a fresh quote."""
    quote_file = ATTESTATION_DIR / "quote"
    if not quote_file.exists():
        return None
    try:
        fd = os.open(ATTESTATION_DIR / "user_report_data", os.O_WRONLY)
        try:
            os.write(fd, report_data)
        finally:
            os.close(fd)
        return quote_file.read_bytes()
    except OSError as exc:
        raise AgentError("attestation", f"/dev/attestation failed: {exc.strerror}") from None


def _runner_of(quote: bytes | None) -> tuple[RunnerName, bool]:
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
    workload: Workload, manifest: InputManifest, workspace: Path
) -> tuple[int, Termination, datetime, datetime, int]:
    argv = workload.argv + (list(manifest.args) if manifest.args else workload.args)
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": str(workspace),
        **workload.env,
        **manifest.env,
    }
    started = datetime.now(UTC)
    t0 = time.monotonic()
    with open(workspace / ".stdout", "wb") as out, open(workspace / ".stderr", "wb") as err:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                preexec_fn=_limits(workload),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise AgentError(
                "workload_start", f"the workload could not be started: {exc}"
            ) from None
        termination: Termination = "exited"
        try:
            code = proc.wait(timeout=workload.wall_seconds)
        except subprocess.TimeoutExpired:
            termination = "timeout"
            os.killpg(proc.pid, signal.SIGKILL)
            code = proc.wait()
    # No process of the workload outlives it (its session is killed).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    finished = datetime.now(UTC)
    if termination == "exited" and code < 0:
        termination = "resource_limit" if -code in (signal.SIGXFSZ, signal.SIGXCPU) else "signaled"
    return max(code, -64), termination, started, finished, int((time.monotonic() - t0) * 1000)


def _collect_outputs(workload: Workload, outdir: Path) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path]] = []
    total = 0
    for entry in sorted(os.scandir(outdir), key=lambda e: e.name.encode()):
        if not workload.declares_output(entry.name):
            continue
        st = os.lstat(entry.path)
        if stat.S_ISLNK(st.st_mode):
            raise AgentError(
                "output_symlink",
                f"output {entry.name!r} is a symbolic link; outputs must be regular files",
            )
        if not stat.S_ISREG(st.st_mode):
            raise AgentError(
                "output_not_regular",
                f"output {entry.name!r} is not a regular file (FIFO, device or folder)",
            )
        if st.st_nlink != 1:
            raise AgentError(
                "output_hard_link",
                f"output {entry.name!r} is a hard link; outputs must be regular files",
            )
        if entry.name in RESERVED_OUTPUTS:
            raise AgentError("output_reserved", f"output name {entry.name!r} is reserved")
        total += st.st_size
        if total > workload.output_size:
            raise AgentError(
                "output_too_large",
                f"output {entry.name!r} takes the outputs over the spec's output_size limit",
                expected=f"<= {workload.output_size} bytes in all",
                found=f"> {workload.output_size}",
            )
        found.append((entry.name, Path(entry.path)))
    if len(found) > workload.max_outputs:
        raise AgentError(
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
    control.emit(Progress(phase="sealing", name=name, bytes_done=size, bytes_total=size))
    return OutputEntry(
        name=name,
        size=size,
        plaintext_sha256=digests.plaintext.digest(),
        ciphertext_size=digests.ciphertext_size,
        ciphertext_sha256=digests.ciphertext.digest(),
    )


def _read_manifest(path: Path) -> bytes:
    try:
        fd = open_regular(path, "manifest.sealed")
    except Error as exc:
        raise AgentError("input_manifest_format", exc.describe()) from None
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_INPUT_MANIFEST_BYTES + 1)
    if len(data) > MAX_INPUT_MANIFEST_BYTES:
        raise AgentError(
            "input_manifest_format",
            "the sealed input manifest is too large",
            expected=f"<= {MAX_INPUT_MANIFEST_BYTES} bytes",
        )
    return data


def _check_declared(workload: Workload, manifest: InputManifest) -> None:
    names = {e.name for e in manifest.inputs}
    for entry in manifest.inputs:
        spec = workload.inputs.get(entry.name)
        if spec is None:
            raise AgentError(
                "input_undeclared", f"input {entry.name!r} is not declared by the task spec"
            )
        if entry.size > int(spec["max_size"]):
            raise AgentError(
                "input_too_large",
                f"input {entry.name!r} exceeds its size limit",
                expected=f"<= {spec['max_size']} bytes",
                found=entry.size,
            )
    missing = [n for n, s in workload.inputs.items() if s.get("required", True) and n not in names]
    if missing:
        raise AgentError(
            "input_required",
            "required inputs are missing from the manifest",
            found=", ".join(missing),
        )


def run_agent(workload_path: Path, io: Path, workspace: Path, control: Control) -> None:
    """The whole in-enclave flow; raises :class:`Error` subclasses on any refusal."""
    workload = Workload.load(workload_path)
    # Loaded: the enclave may wait here, pre-started, until a task takes it.
    control.emit(Ready(agent=AGENT_NAME))
    command = control.command()
    if not isinstance(command, Attest):
        raise AgentError("control_message", "expected attest", found=command.cmd)
    recipient = X25519Recipient.from_string(command.requestor_key)
    enclave_identity = X25519Identity.generate()
    signing_key = Ed25519PrivateKey.generate()
    transcript = Transcript(
        task_id=command.task_id,
        nonce=command.nonce,
        enclave_key=enclave_identity.recipient().public_bytes(),
        signing_key=signing_key.public_key().public_bytes_raw(),
        requestor_key=recipient.public_bytes(),
    )
    # Step 2: bind E, S and R to this task in the quote.
    quote = _quote(transcript.report_data())
    runner, simulated = _runner_of(quote)
    control.emit(
        EvidenceReady(
            runner=runner,
            simulated=simulated,
            quote=quote,
            enclave_key=transcript.enclave_key,
            signing_key=transcript.signing_key,
        )
    )

    # Step 4 (enclave side): wait until the inputs are in place, then authenticate them.
    command = control.command()
    if not isinstance(command, Run):
        raise AgentError("control_message", "expected run", found=command.cmd)
    sealed = _read_manifest(io / "manifest.sealed")
    manifest = open_manifest(sealed, enclave_identity, recipient.public_bytes(), transcript)
    _check_declared(workload, manifest)
    paths = check_inputs(manifest, io / "inputs")
    private_inputs = workspace / "inputs"
    private_inputs.mkdir(parents=True, exist_ok=True)
    (workspace / "outputs").mkdir(parents=True, exist_ok=True)
    opened = 0
    for entry in manifest.inputs:
        size = decrypt_file(paths[entry.name], private_inputs / entry.name, [enclave_identity])
        if size != entry.size:
            raise AgentError(
                "input_size",
                f"input {entry.name!r} does not have the size the manifest states",
                expected=entry.size,
                found=size,
            )
        opened += size
        control.emit(Progress(phase="inputs", name=entry.name, bytes_done=size, bytes_total=size))
    control.emit(InputsOpened(inputs=len(manifest.inputs), bytes=opened))

    # Step 5: run, then seal every declared output and the standard streams to R.
    control.emit(Running())
    code, termination, started, finished, duration_ms = _run_workload(workload, manifest, workspace)
    control.emit(Sealing(exit_status=code, termination=termination))
    outputs_dir = io / "outputs"
    outputs_dir.mkdir(exist_ok=True)
    entries = [
        _seal(name, path, outputs_dir, recipient, control)
        for name, path in _collect_outputs(workload, workspace / "outputs")
    ]
    entries.append(_seal("stdout", workspace / ".stdout", outputs_dir, recipient, control))
    entries.append(_seal("stderr", workspace / ".stderr", outputs_dir, recipient, control))

    # Step 6: the signed receipt.
    mrenclave = quote[112:144] if quote else bytes(32)
    receipt = Receipt(
        task_id=transcript.task_id,
        nonce=transcript.nonce,
        measurement=Measurement(mrenclave=mrenclave, runner=runner, simulated=simulated),
        input_manifest_sha256=manifest.digest(),
        exit_status=code,
        termination=termination,
        outputs=tuple(entries),
        timings=Timings(started_at=started, finished_at=finished, duration_ms=duration_ms),
        requestor_key=recipient.to_string(),
        enclave_key=transcript.enclave_key,
        signing_key=transcript.signing_key,
    )
    data = sign_receipt(receipt, signing_key).to_json()
    write_atomic(outputs_dir / "receipt.json", data, mode=0o644)
    control.emit(
        OutputsSealed(
            exit_status=code,
            termination=termination,
            outputs=len(entries),
            receipt_sha256=hashlib.sha256(data).digest(),
        )
    )


def _failure(exc: BaseException) -> Failed:
    """The ``failed`` event for an exception (a stable code, a bounded message)."""
    if isinstance(exc, Error):
        code = _CODE_MAP.get(exc.code, exc.code)
        message = exc.describe()
    else:
        code, message = "internal", f"the agent failed: {type(exc).__name__}: {exc}"
    if code not in AGENT_FAILURE_CODES:
        code = "internal"
    return Failed(code=cast(AgentFailureCode, code), message=message[:MAX_AGENT_MESSAGE_CHARS])


def main(argv: list[str] | None = None) -> int:
    """``AGENT WORKLOAD_JSON IO_DIR WORKSPACE_DIR``: run the agent on the control channel."""
    args = sys.argv[1:] if argv is None else argv
    control = Control(sys.stdin.buffer, sys.stdout.buffer)
    try:
        if len(args) != 3:
            raise AgentError("workload_format", "usage: agent WORKLOAD_JSON IO_DIR WORKSPACE_DIR")
        run_agent(Path(args[0]), Path(args[1]), Path(args[2]), control)
    except (Error, OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
        control.emit(_failure(exc))
        return 1
    return 0
