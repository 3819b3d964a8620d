"""A supervisor simulator: what yagna's ExeUnit does with a runtime, written from its documentation.

Everything here comes from research/golem.md section 2.6 (and the yagna sources it cites), not
from ``golem_graphene.runtime``: the protobuf wire format is encoded and decoded by hand from the
documented field numbers (so a wrong number in our ``runtime.proto`` would show), frames are
varint length-delimited, and the command line, ``DeployResult`` parsing and container-path
resolution follow the ExeUnit's documented behaviour:

- the runtime is invoked as ``<runtime> --workdir W --task-package P <command>``;
- ``deploy`` prints ``DeployResult`` JSON (the ExeUnit reads from the first ``{``; empty output
  means ``valid: Ok``, no volumes, ``empty`` start mode);
- ``start`` in blocking mode runs a server; the supervisor sends ``Hello{version: "0.1.0"}``
  first, then for each ExeScript ``run`` a ``RunProcess{bin: entry_point, args: [basename,
  *args]}`` and waits for the ``ProcessStatus`` event of the returned pid with ``running =
  false``; ``Shutdown`` at the end;
- a transfer to or from ``container:/path`` resolves to ``<workdir>/<volume name>/<rest>`` for
  the volume whose ``path`` is the longest prefix of ``/path``.

:class:`ExeUnitSimulator` also implements the requestor's ExeScript executor interface, so the
requestor SDK can drive the real runtime process through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from golem_graphene.requestor.golem.executor import (
    Command,
    CommandResult,
    DownloadFile,
    Run,
    SendFile,
)

RUNTIME_BINARY = Path(sys.executable).with_name("golem-graphene")
PROTOCOL_VERSION = "0.1.0"

# --- protobuf wire format, by hand ---------------------------------------------------------------

VARINT, FIXED64, LENGTH = 0, 1, 2


def varint(value: int) -> bytes:
    """Base-128 varint; negative numbers as 64-bit two's complement (int32 fields)."""
    if value < 0:
        value += 1 << 64
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def tag(number: int, wire: int) -> bytes:
    return varint(number << 3 | wire)


def f_int(number: int, value: int) -> bytes:
    return tag(number, VARINT) + varint(value) if value else b""


def f_bytes(number: int, value: bytes) -> bytes:
    return tag(number, LENGTH) + varint(len(value)) + value


def f_str(number: int, value: str) -> bytes:
    return f_bytes(number, value.encode()) if value else b""


def f_double(number: int, value: float) -> bytes:
    return tag(number, FIXED64) + struct.pack("<d", value) if value else b""


def f_msg(number: int, body: bytes) -> bytes:
    """A sub-message field (present even when empty, as a set oneof member is)."""
    return f_bytes(number, body)


def delimited(message: bytes) -> bytes:
    return varint(len(message)) + message


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def fields(data: bytes) -> dict[int, list[Any]]:
    """Decode one message into {field number: [values]} (ints, bytes or floats)."""
    out: dict[int, list[Any]] = {}
    pos = 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            value, pos = read_varint(data, pos)
        elif wire == FIXED64:
            value = struct.unpack("<d", data[pos : pos + 8])[0]
            pos += 8
        elif wire == LENGTH:
            size, pos = read_varint(data, pos)
            value = data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unexpected wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _one(f: dict[int, list[Any]], number: int, default: Any) -> Any:
    return f[number][-1] if number in f else default


def _int32(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


# Requests (research/golem.md 2.6): Request{id=1; hello=2; run=10; kill=11; shutdown=12;
# network=30}; Hello{version=1}; RunProcess{bin=1; args=2; work_dir=3; stdout=4; stderr=5};
# Output{at_end=2}; KillProcess{pid=1; signal=2}; Shutdown{}.


def hello(request_id: int, version: str = PROTOCOL_VERSION) -> bytes:
    return f_int(1, request_id) + f_msg(2, f_str(1, version))


def run_process(
    request_id: int,
    entrypoint: str,
    args: Sequence[str] = (),
    *,
    work_dir: str = "",
    at_end: int | None = None,
) -> bytes:
    basename = PurePosixPath(entrypoint).name
    body = f_str(1, entrypoint) + b"".join(f_str(2, a) for a in [basename, *args])
    body += f_str(3, work_dir)
    if at_end is not None:
        body += f_msg(4, f_int(2, at_end)) + f_msg(5, f_int(2, at_end))
    return f_int(1, request_id) + f_msg(10, body)


def kill(request_id: int, pid: int, signal: int = 9) -> bytes:
    return f_int(1, request_id) + f_msg(11, f_int(1, pid) + f_int(2, signal))


def shutdown(request_id: int) -> bytes:
    return f_int(1, request_id) + f_msg(12, b"")


def create_network(request_id: int) -> bytes:
    network = f_str(1, "10.0.0.2") + f_str(2, "10.0.0.1") + f_str(3, "255.255.255.0")
    return f_int(1, request_id) + f_msg(30, f_msg(1, network))


# Responses: Response{event=1; id=2; error=3; hello=4; run=10; kill=11; shutdown=12; status=20;
# rt_status=21; network=30}; Error{code=1; message=2; context=3 (map)}; ErrorCode INTERNAL=0,
# NOT_FOUND=1, BAD_REQUEST=2; ProcessStatus{pid=1; running=2; return_code=3; stdout=4;
# stderr=5}; RuntimeStatus{state=1 {name=1; value=2}; counter=2 {name=1; value=2 (double)}}.

ERROR_CODES = {0: "INTERNAL", 1: "NOT_FOUND", 2: "BAD_REQUEST"}
_KINDS = {
    3: "error",
    4: "hello",
    10: "run",
    11: "kill",
    12: "shutdown",
    20: "status",
    21: "rt_status",
    30: "network",
}


@dataclass
class Response:
    """One decoded response or event."""

    event: bool
    id: int
    kind: str
    body: dict[str, Any]
    raw: bytes


def parse_response(raw: bytes) -> Response:
    f = fields(raw)
    kinds = [n for n in f if n in _KINDS]
    if len(kinds) != 1:
        raise AssertionError(f"a response must set exactly one command, found fields {sorted(f)}")
    number = kinds[0]
    sub = fields(f[number][-1])
    body: dict[str, Any]
    if number == 3:
        context = {}
        for entry in sub.get(3, []):
            kv = fields(entry)
            context[_one(kv, 1, b"").decode()] = _one(kv, 2, b"").decode()
        body = {
            "code": ERROR_CODES[_one(sub, 1, 0)],
            "message": _one(sub, 2, b"").decode(),
            "context": context,
        }
    elif number == 4:
        body = {"version": _one(sub, 1, b"").decode()}
    elif number == 10:
        body = {"pid": _one(sub, 1, 0)}
    elif number == 20:
        body = {
            "pid": _one(sub, 1, 0),
            "running": bool(_one(sub, 2, 0)),
            "return_code": _int32(_one(sub, 3, 0)),
            "stdout": _one(sub, 4, b""),
            "stderr": _one(sub, 5, b""),
        }
    elif number == 21:
        if 1 in sub:
            state = fields(sub[1][-1])
            body = {
                "state": _one(state, 1, b"").decode(),
                "value": _one(state, 2, b""),
            }
        else:
            counter = fields(sub[2][-1])
            body = {"counter": _one(counter, 1, b"").decode(), "value": _one(counter, 2, 0.0)}
    else:
        body = {}
    return Response(bool(_one(f, 1, 0)), _one(f, 2, 0), _KINDS[number], body, raw)


# --- the runtime process in blocking mode --------------------------------------------------------


class RuntimeServerProcess:
    """The runtime's ``start`` process: requests on its stdin, frames read from its stdout."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.responses: list[Response] = []
        self.stdout_bytes = bytearray()
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())
        self.stream_error: str | None = None

    @classmethod
    async def spawn(cls, argv: Sequence[str], stderr_path: Path) -> RuntimeServerProcess:
        with open(stderr_path, "ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
            )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        buffer = b""
        while True:
            chunk = await self.proc.stdout.read(65536)
            if not chunk:
                break
            self.stdout_bytes += chunk
            buffer += chunk
            while buffer:
                try:
                    length, pos = read_varint(buffer, 0)
                except IndexError:
                    break
                if len(buffer) < pos + length:
                    break
                try:
                    response = parse_response(buffer[pos : pos + length])
                except (AssertionError, ValueError, IndexError, KeyError) as exc:
                    self.stream_error = f"undecodable frame on stdout: {exc}"
                    response = None
                buffer = buffer[pos + length :]
                async with self._changed:
                    if response is not None:
                        self.responses.append(response)
                    self._changed.notify_all()
        if buffer:
            self.stream_error = f"{len(buffer)} trailing bytes that are no frame"
        async with self._changed:
            self._changed.notify_all()

    async def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def send(self, message: bytes) -> None:
        await self.send_raw(delimited(message))

    async def wait_for(self, predicate: Callable[[Response], bool], timeout: float) -> Response:
        async def find() -> Response:
            async with self._changed:
                while True:
                    for response in self.responses:
                        if predicate(response):
                            return response
                    if self._reader.done():
                        raise AssertionError("the runtime closed stdout before answering")
                    await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    async def reply(self, request_id: int, timeout: float = 30) -> Response:
        return await self.wait_for(lambda r: not r.event and r.id == request_id, timeout)

    async def finished(self, pid: int, timeout: float = 120) -> Response:
        return await self.wait_for(
            lambda r: r.kind == "status" and r.body["pid"] == pid and not r.body["running"],
            timeout,
        )

    def events(self, kind: str) -> list[Response]:
        return [r for r in self.responses if r.event and r.kind == kind]

    async def wait_exit(self, timeout: float = 30) -> int:
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._reader, 5)
        return code

    async def close(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


# --- the ExeUnit --------------------------------------------------------------------------------


@dataclass
class Volume:
    name: str
    path: str


@dataclass
class DeployResult:
    valid: dict[str, str]
    vols: list[Volume]
    start_mode: str
    raw: str


def parse_deploy_result(stdout: str) -> DeployResult:
    """As the ExeUnit: empty output is a valid deploy; otherwise JSON from the first ``{``."""
    if not stdout.strip():
        return DeployResult({"Ok": ""}, [], "empty", stdout)
    obj = json.loads(stdout[stdout.index("{") :])
    vols = [Volume(v["name"], v["path"]) for v in obj.get("vols", [])]
    return DeployResult(obj["valid"], vols, obj.get("startMode", "empty"), stdout)


@dataclass
class ProcessOutput:
    code: int
    stdout: str
    stderr: str


async def run_cli(argv: Sequence[str], timeout: float = 300) -> ProcessOutput:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return ProcessOutput(proc.returncode, out.decode(), err.decode())


@dataclass
class ExeUnitSimulator:
    """One activity's ExeUnit: deploy, start, ExeScript commands and transfers, shutdown."""

    workdir: Path
    task_package: Path | None
    runtime_flags: list[str]
    binary: list[str] = field(default_factory=lambda: [str(RUNTIME_BINARY), "runtime"])
    on_download: Callable[[str, Path], None] | None = None
    server: RuntimeServerProcess | None = None
    deploy_result: DeployResult | None = None
    _ids: int = 0

    def argv(self, command: str, *extra: str) -> list[str]:
        args = [*self.binary, *self.runtime_flags, "--workdir", str(self.workdir)]
        if self.task_package is not None:
            args += ["--task-package", str(self.task_package)]
        return [*args, command, *extra]

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    async def deploy(self) -> DeployResult:
        out = await run_cli(self.argv("deploy"))
        self.deploy_result = parse_deploy_result(out.stdout)
        if out.code != 0:
            raise AssertionError(f"deploy failed ({out.code}): {out.stderr[-2000:]}")
        return self.deploy_result

    async def start(self) -> RuntimeServerProcess:
        assert self.deploy_result is not None and self.deploy_result.start_mode == "blocking"
        self.server = await RuntimeServerProcess.spawn(
            self.argv("start"), self.workdir.parent / f"{self.workdir.name}.runtime.log"
        )
        request_id = self.next_id()
        await self.server.send(hello(request_id))
        answer = await self.server.reply(request_id)
        assert answer.kind == "hello", answer
        return self.server

    async def run(self, entrypoint: str, args: Sequence[str] = ()) -> ProcessOutput:
        """ExeScript ``run`` in blocking mode: RunProcess, then that pid's final status."""
        assert self.server is not None
        request_id = self.next_id()
        await self.server.send(run_process(request_id, entrypoint, args))
        answer = await self.server.reply(request_id)
        if answer.kind == "error":
            return ProcessOutput(-1, "", answer.body["message"])
        status = await self.server.finished(answer.body["pid"])
        return ProcessOutput(
            status.body["return_code"],
            status.body["stdout"].decode(),
            status.body["stderr"].decode(),
        )

    def resolve(self, container_path: str) -> Path:
        """The host path of ``container_path`` (longest volume prefix), as the ExeUnit does."""
        assert self.deploy_result is not None
        best: Volume | None = None
        for vol in self.deploy_result.vols:
            matches = container_path == vol.path or container_path.startswith(vol.path + "/")
            if matches and (best is None or len(vol.path) > len(best.path)):
                best = vol
        if best is None:
            raise FileNotFoundError(f"path not found in container: {container_path}")
        base = self.workdir / best.name
        if container_path == best.path:
            return base
        rest = container_path[len(best.path) + 1 :]
        if rest.startswith("/"):
            raise FileNotFoundError(f"invalid path format: {container_path}")
        return base / rest

    async def execute(self, commands: Sequence[Command]) -> list[CommandResult]:
        """The requestor's executor interface: run the batch, stop at the first failure."""
        results: list[CommandResult] = []
        for command in commands:
            result = await self._one(command)
            results.append(result)
            if not result.ok:
                break
        return results

    async def _one(self, command: Command) -> CommandResult:
        try:
            if isinstance(command, Run):
                out = await self.run(command.entrypoint, command.args)
                return CommandResult(
                    command,
                    out.code == 0,
                    out.stdout,
                    out.stderr,
                    "" if out.code == 0 else f"exit status {out.code}",
                )
            if isinstance(command, SendFile):
                target = self.resolve(command.dst)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(command.src, target)
                return CommandResult(command, True)
            assert isinstance(command, DownloadFile)
            source = self.resolve(command.src)
            if self.on_download is not None:
                self.on_download(command.src, source)
            shutil.copyfile(source, command.dst)
            return CommandResult(command, True)
        except OSError as exc:
            return CommandResult(command, False, message=f"transfer failed: {exc}")

    async def shutdown(self) -> int:
        assert self.server is not None
        request_id = self.next_id()
        await self.server.send(shutdown(request_id))
        answer = await self.server.reply(request_id)
        assert answer.kind == "shutdown", answer
        code = await self.server.wait_exit()
        assert self.server.stream_error is None, self.server.stream_error
        return code

    async def close(self) -> None:
        if self.server is not None:
            await self.server.close()


@dataclass
class CommandModeExeUnit(ExeUnitSimulator):
    """The ExeUnit in process-per-command mode: each ``run`` is ``run --entrypoint E ARGS``."""

    async def run(self, entrypoint: str, args: Sequence[str] = ()) -> ProcessOutput:
        return await run_cli(self.argv("run", "--entrypoint", entrypoint, *args))
