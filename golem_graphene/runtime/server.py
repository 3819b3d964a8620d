"""The blocking-mode runtime server: ya-runtime-api requests on stdin, answers on stdout.

``start`` runs this for the whole activity (research/golem.md section 2.6). Every message is a
length-delimited protobuf (``runtime.proto``); stdout carries nothing else (logs go to stderr,
and file descriptor 1 itself is pointed at stderr so that no stray write can corrupt the stream).

- ``Hello`` is answered with our protocol version, ``0.1.0``.
- ``RunProcess`` starts an ExeScript entry point (:mod:`golem_graphene.runtime.session`) and is
  answered with a pid at once; a ``ProcessStatus`` event with ``running = false``, the return
  code and the step's output follows when the step ends.
- ``KillProcess`` cancels a running step (which aborts the task); ``Shutdown`` kills the
  enclave, answers, and ends the server.
- Anything else (``CreateNetwork``, an unknown command, an undecodable or oversized frame) gets
  an ``Error`` response and the server carries on; only a frame whose length cannot be read
  ends it, since the stream can no longer be followed.
- ``RuntimeStatus`` events report the task's state and the usage counter
  ``golem.usage.gramine-sgx.enclave_sec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import BinaryIO

import structlog
from google.protobuf.message import DecodeError

from golem_graphene._internal.tasks import settle
from golem_graphene.runtime.framing import FrameError, frame, read_frame
from golem_graphene.runtime.proto import runtime_pb2 as pb
from golem_graphene.runtime.session import ActivitySession, StepResult
from golem_graphene.runtime.settings import (
    COUNTER_ENCLAVE_SECONDS,
    ENTRYPOINTS,
    SERVICE_PROTOCOL_VERSION,
)

__all__ = ["MAX_STEP_OUTPUT", "STATE_NAME", "RuntimeServer", "serve_stdio"]

log = structlog.get_logger(__name__)

MAX_STEP_OUTPUT = 64 * 1024
"""Bytes of a step's stdout (and stderr) returned when the request sets no ``at_end`` size."""

STATE_NAME = "gramine-sgx.task"
"""``RuntimeStatus.State`` name of task state changes; the value is JSON ``{state, task_id}``."""

STATUS_GRACE_SECONDS = 0.05
"""Least time between a ``RunProcess`` answer and that process's final status.

The ExeUnit starts listening for a pid's events only after it has read the ``RunProcess``
answer, so a status sent in the same instant could arrive before anyone listens for it.
"""

Sink = Callable[[bytes], Awaitable[None]]


def _tail(data: bytes, output: pb.Output) -> bytes:
    limit = output.at_end if output.WhichOneof("type") == "at_end" else MAX_STEP_OUTPUT
    return data[-limit:] if limit else b""


class RuntimeServer:
    """Serve one activity's session over a reader and a sink of bytes."""

    def __init__(
        self,
        session: ActivitySession,
        reader: asyncio.StreamReader,
        sink: Sink,
        *,
        counter_interval: float = 5.0,
    ) -> None:
        self.session = session
        self._reader = reader
        self._sink = sink
        self._counter_interval = counter_interval
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pids = itertools.count(1)
        self._steps: dict[int, asyncio.Task[None]] = {}
        self._kill_signals: dict[int, int] = {}
        self._last_counter: float | None = None
        self._closing = False
        if session.on_state is None:
            session.on_state = self._state_changed

    # -- output -----------------------------------------------------------------------------------

    def _send(self, response: pb.Response) -> None:
        if not self._closing:
            self._outbox.put_nowait(frame(response.SerializeToString()))

    async def _writer(self) -> None:
        while (data := await self._outbox.get()) is not None:
            try:
                await self._sink(data)
            except (OSError, RuntimeError) as exc:
                log.warning("cannot write to the supervisor", error=str(exc))
                return

    def _error(self, request_id: int, code: int, message: str, **context: str) -> None:
        error = pb.Response.Error(code=code, message=message)  # type: ignore[arg-type]
        for key, value in context.items():
            error.context[key] = value
        self._send(pb.Response(id=request_id, error=error))

    def _state_changed(self, state: str, task_id: str | None) -> None:
        value = json.dumps({"state": state, "task_id": task_id}).encode()
        status = pb.Response.RuntimeStatus(
            state=pb.Response.RuntimeStatus.State(name=STATE_NAME, value=value)
        )
        self._send(pb.Response(event=True, rt_status=status))

    def _counter(self, *, force: bool = False) -> None:
        value = round(self.session.enclave_seconds(), 3)
        if force or value != self._last_counter:
            self._last_counter = value
            counter = pb.Response.RuntimeStatus.Counter(name=COUNTER_ENCLAVE_SECONDS, value=value)
            status = pb.Response.RuntimeStatus(counter=counter)
            self._send(pb.Response(event=True, rt_status=status))

    async def _counters(self) -> None:
        while True:
            await asyncio.sleep(self._counter_interval)
            self._counter()

    # -- requests ---------------------------------------------------------------------------------

    async def serve(self) -> int:
        """Serve until ``Shutdown``, the end of stdin or a fatal framing error; returns 0 or 1."""
        writer = asyncio.create_task(self._writer())
        counters = asyncio.create_task(self._counters())
        status = 0
        try:
            status = await self._read_loop()
        finally:
            counters.cancel()
            await self._stop_steps()
            await self.session.close()
            self._counter(force=True)
            self._outbox.put_nowait(None)
            self._closing = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(10):
                    await writer
        return status

    async def _read_loop(self) -> int:
        while True:
            try:
                data = await read_frame(self._reader)
            except FrameError as exc:
                self._error(0, pb.Response.BAD_REQUEST, exc.describe(), frame="malformed")
                if exc.fatal:
                    log.error("cannot follow the request stream", error=exc.describe())
                    return 1
                continue
            if data is None:
                log.info("the supervisor closed stdin")
                return 0
            try:
                request = pb.Request.FromString(data)
            except DecodeError as exc:
                self._error(0, pb.Response.BAD_REQUEST, f"undecodable request: {exc}")
                continue
            if await self._dispatch(request):
                return 0

    async def _dispatch(self, request: pb.Request) -> bool:
        """Handle one request; True when the server should end (after ``Shutdown``)."""
        kind = request.WhichOneof("command")
        if kind == "hello":
            if request.hello.version != SERVICE_PROTOCOL_VERSION:
                log.warning("supervisor speaks another version", version=request.hello.version)
            self._send(
                pb.Response(
                    id=request.id, hello=pb.Response.Hello(version=SERVICE_PROTOCOL_VERSION)
                )
            )
        elif kind == "run":
            self._start_step(request)
        elif kind == "kill":
            self._kill(request)
        elif kind == "shutdown":
            await self._stop_steps()
            await self.session.close()
            self._send(pb.Response(id=request.id, shutdown=pb.Response.Shutdown()))
            return True
        elif kind == "network":
            self._error(
                request.id,
                pb.Response.BAD_REQUEST,
                "gramine-sgx offers no networking: enclaves run without network access",
            )
        else:
            self._error(request.id, pb.Response.BAD_REQUEST, "unknown command")
        return False

    def _start_step(self, request: pb.Request) -> None:
        run = request.run
        name = PurePosixPath(run.bin).name
        args = list(run.args)
        if args and args[0] == name:
            args = args[1:]  # the ExeUnit passes the entry point's basename as args[0]
        if not name:
            self._error(request.id, pb.Response.BAD_REQUEST, "RunProcess without a bin")
            return
        if name not in ENTRYPOINTS:
            self._error(
                request.id,
                pb.Response.NOT_FOUND,
                f"unknown entry point {name!r}",
                known=", ".join(ENTRYPOINTS),
            )
            return
        pid = next(self._pids)
        self._send(pb.Response(id=request.id, run=pb.Response.RunProcess(pid=pid)))
        started = asyncio.get_running_loop().time()
        self._steps[pid] = asyncio.create_task(
            self._step(pid, name, args, run.stdout, run.stderr, started)
        )

    async def _step(
        self,
        pid: int,
        name: str,
        args: list[str],
        stdout: pb.Output,
        stderr: pb.Output,
        started: float,
    ) -> None:
        log.info("step", pid=pid, step=name)
        try:
            result = await self.session.run_step(name, args)
        except asyncio.CancelledError:
            sig = self._kill_signals.pop(pid, signal.SIGKILL)
            result = StepResult(128 + sig, b"", f"{name}: killed by signal {sig}\n".encode())
        finally:
            self._steps.pop(pid, None)
        wait = started + STATUS_GRACE_SECONDS - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)
        status = pb.Response.ProcessStatus(
            pid=pid,
            running=False,
            return_code=result.code,
            stdout=_tail(result.stdout, stdout),
            stderr=_tail(result.stderr, stderr),
        )
        self._send(pb.Response(event=True, status=status))
        self._counter()

    def _kill(self, request: pb.Request) -> None:
        pid = request.kill.pid
        task = self._steps.get(pid)
        if task is None or task.done():
            self._error(request.id, pb.Response.NOT_FOUND, f"no running process {pid}")
            return
        self._kill_signals[pid] = request.kill.signal or signal.SIGKILL
        task.cancel()
        self._send(pb.Response(id=request.id, kill=pb.Response.KillProcess()))

    async def _stop_steps(self) -> None:
        tasks = list(self._steps.values())
        for task in tasks:
            task.cancel()
        await settle(tasks)


# --- stdio --------------------------------------------------------------------------------------


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    except ValueError:  # stdin is a regular file: read it in a thread
        fd = sys.stdin.fileno()

        def pump() -> None:
            while chunk := os.read(fd, 1 << 16):
                loop.call_soon_threadsafe(reader.feed_data, chunk)
            loop.call_soon_threadsafe(reader.feed_eof)

        threading.Thread(target=pump, daemon=True).start()
    return reader


def _protocol_stdout() -> BinaryIO:
    """A private handle on the real stdout; fd 1 (and ``sys.stdout``) now go to stderr."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "wb", buffering=0)


async def serve_stdio(session: ActivitySession, counter_interval: float) -> int:
    """Serve ``session`` on this process's stdin and stdout until the supervisor is done."""
    out = _protocol_stdout()

    async def sink(data: bytes) -> None:
        await asyncio.to_thread(out.write, data)

    reader = await _stdin_reader()
    server = RuntimeServer(session, reader, sink, counter_interval=counter_interval)
    loop = asyncio.get_running_loop()
    serving = asyncio.create_task(server.serve())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, serving.cancel)
    try:
        return await serving
    except asyncio.CancelledError:
        log.info("runtime stopped by a signal")
        return 0
    finally:
        await session.close()
        with contextlib.suppress(OSError):
            out.close()
