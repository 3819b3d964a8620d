"""Helpers of the hostile-client tests: specs, providers (in a thread or a process), scans.

Self-contained on purpose (the integration tests have their own fixtures). The tests import it
as ``_hostile_support``; ``conftest.py`` turns it into fixtures.

- :func:`write_specs` writes the ``shell`` spec: a native ``/bin/sh`` workload whose command the
  requestor passes as arguments (the input manifest's ``args``), with ``ln``, ``mkfifo``,
  ``mknod``, ``head``, ``cat`` and ``sleep`` trusted, so one image serves every attack.
- :class:`Template` builds the image and the sim platform once; each provider gets a copy.
- :class:`ThreadProvider` runs a real :class:`ProviderServer` on ``127.0.0.1:0`` in its own
  thread and event loop, so that synchronous clients (schemathesis, raw sockets) and async tests
  alike reach it over loopback.
- :class:`ProcessProvider` runs ``golem-graphene provider serve`` as a child process (for peak
  RSS and SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from _test_images import write_shell_spec

from golem_graphene.protocol.spec import spec_digest
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.engine import TaskEngine
from golem_graphene.provider.server import ProviderServer
from golem_graphene.requestor.client import Requestor, RequestorPolicy
from golem_graphene.sealing.keys import X25519Identity

TOKEN_A = "requestor-a-" + secrets.token_urlsafe(24)
TOKEN_B = "requestor-b-" + secrets.token_urlsafe(24)
SHELL = "shell"
SHELL_OUTPUT_LIMIT = 4 << 20
SHELL_INPUT_LIMIT = 96 << 20

SHELL_SPEC = f"""\
name = "{SHELL}"
description = "A /bin/sh workload whose command the requestor passes as arguments"

[enclave]
image = "{{image}}"
args = ["-c", "cat inputs/data.txt > outputs/out.txt"]
enclave_size = "256M"
max_threads = 4

[[inputs]]
name = "data.txt"
max_size = {SHELL_INPUT_LIMIT}

[outputs]
files = ["out*"]

[limits]
wall_seconds = 60
memory = "256M"
output_size = {SHELL_OUTPUT_LIMIT}
"""


def write_specs(root: Path) -> Path:
    """Write the hostile specs under ``root``; returns ``root``."""
    write_shell_spec(root / SHELL, SHELL_SPEC)
    return root


def bwrap_problem() -> str | None:
    """None when bwrap can create the sandbox's namespaces here, else why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    cmd = [bwrap, "--unshare-user", "--unshare-pid", "--unshare-net", "--die-with-parent"]
    cmd += ["--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "/bin/true"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return None if result.returncode == 0 else f"bwrap cannot sandbox here: {result.stderr}"


def provider_config(
    data_dir: Path, specs_dir: Path, limits: dict[str, Any] | None = None
) -> ProviderConfig:
    """Loopback, port 0, both requestor tokens, the given limits."""
    return ProviderConfig.model_validate(
        {
            "bind": "127.0.0.1",
            "port": 0,
            "data_dir": str(data_dir),
            "specs_dir": str(specs_dir),
            "auth": {"tokens": [TOKEN_A, TOKEN_B]},
            "limits": limits or {},
        }
    )


@dataclass(frozen=True)
class Template:
    """A data directory with the ``shell`` image built and the sim platform created."""

    data_dir: Path
    specs_dir: Path
    mrenclave: str
    root_fingerprint: str

    @classmethod
    def build(cls, directory: Path, specs_dir: Path) -> Template:
        engine = TaskEngine(provider_config(directory, specs_dir))
        digest = spec_digest(specs_dir / SHELL / "task.toml")
        image = asyncio.run(engine.image_for(SHELL, digest))
        platform = engine.runner.platform  # type: ignore[attr-defined]
        shutil.rmtree(directory / "tasks")
        return cls(directory, specs_dir, image.info["mrenclave"]["sim"], platform.root_fingerprint)

    def copy_to(self, directory: Path) -> Path:
        """A fresh provider data directory holding the prebuilt image and platform."""
        shutil.copytree(self.data_dir, directory, symlinks=True)
        return directory

    def policy(self) -> RequestorPolicy:
        """Accept this template's sim root (by name) and the ``shell`` image."""
        return RequestorPolicy(
            trusted_simulation_roots=(self.root_fingerprint,), expected_mrenclave=(self.mrenclave,)
        )


class ThreadProvider:
    """A :class:`ProviderServer` serving from its own thread; ``with`` starts and stops it."""

    def __init__(self, config: ProviderConfig, template: Template) -> None:
        self.config = config
        self.template = template
        self.data_dir = config.data_dir
        self.specs_dir = config.specs_dir
        self.server: ProviderServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="hostile-provider", daemon=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def engine(self) -> TaskEngine:
        assert self.server is not None
        return self.server.engine

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with ProviderServer(self.config) as server:
            self.server = server
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ThreadProvider:
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None or self.server is None:
            raise RuntimeError(f"the provider did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        assert not self._thread.is_alive(), "the provider thread did not stop"

    def requestor(self, token: str = TOKEN_A) -> Requestor:
        return Requestor(
            self.url,
            identity=X25519Identity.generate(),
            token=token,
            policy=self.template.policy(),
        )


StartProvider = Callable[..., contextlib.AbstractContextManager[ThreadProvider]]
"""``with start_provider({"max_concurrent_tasks": 4}) as provider:`` (see ``conftest.py``)."""

_LISTENING = re.compile(rb"provider listening on (http://[0-9.]+:[0-9]+)")


class ProcessProvider:
    """``golem-graphene provider serve --config FILE`` as a child process."""

    def __init__(
        self, template: Template, data_dir: Path, work: Path, limits: dict[str, Any] | None = None
    ) -> None:
        self.template = template
        self.data_dir = data_dir
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.config_path = work / "provider.toml"
        self.config_path.write_text(_config_toml(data_dir, template.specs_dir, limits or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.work / f"provider-{self.starts}.log"

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "golem_graphene",
                    "--log-format",
                    "json",
                    "--log-level",
                    "INFO",
                    "provider",
                    "serve",
                    "--config",
                    str(self.config_path),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING.search(self.log_path.read_bytes())
            if match:
                self.url = match.group(1).decode()
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the provider did not start:\n{self.log_path.read_text()[-4000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def peak_rss(self) -> int:
        """VmHWM of the provider process, in bytes."""
        return _status_kib(self.pid, "VmHWM") * 1024

    def rss(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> int:
        """SIGTERM and wait: the orderly shutdown; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def logs(self) -> str:
        return "".join(
            (self.work / f"provider-{n}.log").read_text(errors="replace")
            for n in range(1, self.starts + 1)
        )

    def requestor(self, token: str = TOKEN_A) -> Requestor:
        return Requestor(
            self.url,
            identity=X25519Identity.generate(),
            token=token,
            policy=self.template.policy(),
        )


def _config_toml(data_dir: Path, specs_dir: Path, limits: dict[str, Any]) -> str:
    lines = [
        'bind = "127.0.0.1"',
        "port = 0",
        f"data_dir = {json.dumps(str(data_dir))}",
        f"specs_dir = {json.dumps(str(specs_dir))}",
        "[auth]",
        f"tokens = [{json.dumps(TOKEN_A)}, {json.dumps(TOKEN_B)}]",
        "[limits]",
        *(f"{key} = {json.dumps(value)}" for key, value in limits.items()),
    ]
    return "\n".join(lines) + "\n"


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


# --- raw HTTP ------------------------------------------------------------------------------------


def auth(token: str = TOKEN_A, task_token: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if task_token is not None:
        headers["X-Task-Token"] = task_token
    return headers


def create_body(specs_dir: Path, spec: str = SHELL) -> dict[str, str]:
    """A valid create-task body for ``spec`` with a fresh key and nonce."""
    return {
        "spec_name": spec,
        "spec_digest": spec_digest(specs_dir / spec / "task.toml"),
        "requestor_key": X25519Identity.generate().recipient().to_string(),
        "nonce": secrets.token_hex(32),
    }


async def create_raw(
    session: aiohttp.ClientSession, url: str, specs_dir: Path, token: str = TOKEN_A
) -> tuple[str, str]:
    """Create a ``shell`` task over raw HTTP; returns (task id, capability token)."""
    async with session.post(
        f"{url}/v1/tasks", json=create_body(specs_dir), headers=auth(token)
    ) as response:
        body = await response.json()
        assert response.status == 201, body
    return body["task_id"], body["capability_token"]


async def wait_state(
    session: aiohttp.ClientSession,
    url: str,
    task_id: str,
    task_token: str,
    wanted: set[str],
    token: str = TOKEN_A,
    timeout: float = 60.0,
) -> dict[str, Any]:
    """Poll the task until its state is one of ``wanted``; returns the task status."""
    deadline = time.monotonic() + timeout
    while True:
        async with session.get(
            f"{url}/v1/tasks/{task_id}", headers=auth(token, task_token)
        ) as response:
            status = await response.json()
            assert response.status == 200, status
        if status["state"] in wanted:
            return status
        assert time.monotonic() < deadline, f"task stuck in {status['state']}: {status}"
        await asyncio.sleep(0.1)


# --- scans ---------------------------------------------------------------------------------------


def processes_marked(marker: str) -> list[str]:
    """Processes (other than this one) whose command line, working folder or mounts name
    ``marker``: a sandbox's mount table names the launch folder it binds."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd") if os.access(entry / "cwd", os.F_OK) else ""
            mounts = (entry / "mountinfo").read_text(errors="replace")
        except OSError:
            continue
        if marker in cmdline or marker in cwd or marker in mounts:
            found.append(f"{entry.name}: {cmdline[:200]}")
    return found


def wait_no_processes(marker: str, timeout: float = 10.0) -> list[str]:
    """Wait until no process is marked (the kernel reaps pid namespaces asynchronously)."""
    deadline = time.monotonic() + timeout
    while (left := processes_marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def stray_files(data_dir: Path) -> list[str]:
    """What a provider at rest must not leave behind in ``data_dir/tasks``.

    Partial uploads (``*.part``), temporary state files, folders without a task record, launch
    folders of finished tasks, and outputs of tasks that did not finish.
    """
    stray = []
    tasks = data_dir / "tasks"
    for path in tasks.rglob("*"):
        if path.name.endswith(".part") or path.name.endswith(".tmp"):
            stray.append(str(path.relative_to(data_dir)))
    for task_dir in sorted(p for p in tasks.iterdir()) if tasks.is_dir() else []:
        state_file = task_dir / "state.json"
        if not state_file.is_file():
            stray.append(f"{task_dir.name}: no state.json")
            continue
        state = json.loads(state_file.read_text())["state"]
        if state in ("done", "failed", "cancelled") and (task_dir / "launch").exists():
            stray.append(f"{task_dir.name}: launch folder of a {state} task")
        if state != "done" and (task_dir / "outputs").exists():
            stray.append(f"{task_dir.name}: outputs of a {state} task")
    return stray


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (relative), symlinks not followed."""
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def raw_request(
    url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, bytes]:
    """One request with ``path`` sent exactly as given (no client-side normalisation)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        conn.close()


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return RawResponse(int(lines[0].split()[1]), headers, body[:length])


def _readable(sock: socket.socket, timeout: float) -> bool:
    poller = select.poll()  # not select(): descriptor numbers may pass FD_SETSIZE
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def send_until_answered(
    url: str, head: bytes, chunks: Iterator[bytes], *, pause: float = 0.0, timeout: float = 30
) -> tuple[RawResponse, int]:
    """Send ``head`` then ``chunks`` (sleeping ``pause`` between them) until the server
    answers; returns its response and how many body bytes were sent before it did."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sent = 0
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(head)
        answered = False
        for chunk in chunks:
            if _readable(sock, pause):
                answered = True
                break
            try:
                sock.sendall(chunk)
            except OSError:  # the server answered and closed while we were sending
                answered = True
                break
            sent += len(chunk)
        if not answered:
            _readable(sock, timeout)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                part = sock.recv(65536)
            except OSError:
                break
            if not part:
                break
            data += part
            if b"\r\n\r\n" in data:
                response = parse_response(data)
                if len(response.body) >= int(response.headers.get("content-length", 0)):
                    return response, sent
    return parse_response(data), sent
