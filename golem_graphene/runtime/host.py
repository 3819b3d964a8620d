"""Process-per-command mode: ``run --entrypoint E`` with a session host that outlives commands.

In the ExeUnit's ``empty`` start mode every ExeScript ``run`` is a separate runtime process, but
the enclave and its keys must live from ``attest`` to ``collect-outputs``. ``run --entrypoint
attest`` therefore starts a *session host*: a detached runtime process that owns the
:class:`~golem_graphene.runtime.session.ActivitySession` and listens on a Unix socket in the
activity's private folder (``<workdir>/.gramine-sgx/session.sock``, mode 0700 folder). Each
``run`` sends one JSON line ``{"entrypoint", "args"}`` and gets ``{"code", "stdout", "stderr"}``
back (outputs base64). The host ends when the task is done, failed or aborted, or after an hour
without a request. Our deploy answers ``startMode: blocking``, so a stock ExeUnit uses the
blocking server instead; this mode serves supervisors and tools that run commands one by one.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from golem_graphene.errors import RunnerError
from golem_graphene.runtime.session import ActivitySession, StepResult
from golem_graphene.runtime.settings import STATE_DIR, RuntimeSettings

__all__ = ["HOST_IDLE_SECONDS", "SOCKET_NAME", "run_via_host", "serve_host", "settings_flags"]

log = structlog.get_logger(__name__)

SOCKET_NAME = "session.sock"
HOST_IDLE_SECONDS = 3600.0
HOST_START_SECONDS = 30.0
MAX_REQUEST_LINE = 1 << 20


def settings_flags(settings: RuntimeSettings) -> list[str]:
    """Command-line flags that recreate ``settings`` in another runtime process."""
    flags = ["--runner", settings.runner, "--data-dir", str(settings.data_dir)]
    if settings.pcs_url:
        flags += ["--pcs-url", settings.pcs_url]
    for name in settings.allow_insecure:
        flags += ["--allow-insecure", name]
    if settings.allow_network:
        flags.append("--allow-network")
    return [*flags, "--counter-interval", str(settings.counter_interval)]


async def serve_host(workdir: Path, settings: RuntimeSettings) -> int:
    """Serve steps on the activity's socket until the task ends or the host idles out."""
    state_dir = workdir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Unix socket paths are limited to 107 bytes and ExeUnit work folders are deep: bind the
    # socket by a relative name from inside its folder.
    os.chdir(state_dir)
    session = ActivitySession(workdir, settings)
    finished = asyncio.Event()
    activity = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        activity.set()
        try:
            line = await reader.readline()
            request = json.loads(line)
            entrypoint, args = request["entrypoint"], request["args"]
            if not isinstance(entrypoint, str) or not all(isinstance(a, str) for a in args):
                raise ValueError("malformed request")
            result = await session.run_step(entrypoint, args)
        except (ValueError, KeyError, TypeError) as exc:
            result = StepResult(2, b"", f"malformed session request: {exc}\n".encode())
        writer.write(
            json.dumps(
                {
                    "code": result.code,
                    "stdout": base64.b64encode(result.stdout).decode(),
                    "stderr": base64.b64encode(result.stderr).decode(),
                }
            ).encode()
            + b"\n"
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
        if session.state in ("done", "failed", "aborted"):
            finished.set()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(SOCKET_NAME)
    server = await asyncio.start_unix_server(handle, path=SOCKET_NAME, limit=MAX_REQUEST_LINE)
    log.info("session host serving", workdir=str(workdir))
    try:
        while not finished.is_set():
            activity.clear()
            waiters = {asyncio.create_task(finished.wait()), asyncio.create_task(activity.wait())}
            done, pending = await asyncio.wait(waiters, timeout=HOST_IDLE_SECONDS)
            for task in pending:
                task.cancel()
            if not done:
                log.warning("session host idle: ending the task")
                break
    finally:
        server.close()
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(SOCKET_NAME)
        await session.close()
    return 0


def _start_host(workdir: Path, settings: RuntimeSettings, state_dir: Path) -> None:
    log_file = open(state_dir / "session-host.log", "ab")  # noqa: SIM115 - handed to the child
    with log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "golem_graphene.runtime",
                *settings_flags(settings),
                "--workdir",
                str(workdir),
                "session-host",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            cwd=state_dir,
            start_new_session=True,
        )
    deadline = time.monotonic() + HOST_START_SECONDS
    while not (state_dir / SOCKET_NAME).exists():
        if process.poll() is not None:
            raise RunnerError(
                f"the session host exited (status {process.returncode}); see "
                f"{state_dir / 'session-host.log'}"
            )
        if time.monotonic() > deadline:
            process.kill()
            raise RunnerError("the session host did not start in time")
        time.sleep(0.02)


def _ask(state_dir: Path, entrypoint: str, args: Sequence[str]) -> StepResult:
    cwd = os.getcwd()
    os.chdir(state_dir)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(SOCKET_NAME)
            sock.sendall(
                json.dumps({"entrypoint": entrypoint, "args": list(args)}).encode() + b"\n"
            )
            chunks = []
            while chunk := sock.recv(1 << 16):
                chunks.append(chunk)
    finally:
        os.chdir(cwd)
    try:
        answer = json.loads(b"".join(chunks))
        return StepResult(
            int(answer["code"]),
            base64.b64decode(answer["stdout"]),
            base64.b64decode(answer["stderr"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RunnerError(f"the session host answered malformed data: {exc}") from exc


def run_via_host(
    workdir: Path, settings: RuntimeSettings, entrypoint: str, args: Sequence[str]
) -> StepResult:
    """One ``run --entrypoint`` in process-per-command mode (starts the host on ``attest``)."""
    state_dir = workdir / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not (state_dir / SOCKET_NAME).exists():
        if entrypoint == "abort":
            return StepResult(0, b'{"ok": true, "step": "abort", "state": "aborted"}\n', b"")
        if entrypoint != "attest":
            message = f"{entrypoint}: no task in progress in this activity (run attest first)"
            body = {"ok": False, "step": entrypoint, "code": "invalid_state", "message": message}
            return StepResult(2, json.dumps(body).encode() + b"\n", f"FAIL: {message}\n".encode())
        _start_host(workdir, settings, state_dir)
    try:
        return _ask(state_dir, entrypoint, args)
    except OSError as exc:
        raise RunnerError(f"cannot reach the session host: {exc}") from exc
