"""Running the provider: an async context manager around the engine and its HTTP site."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import json
import logging
import os
import signal
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from golem_graphene._internal.files import write_atomic
from golem_graphene.errors import ConfigError, RunnerError
from golem_graphene.host.runners import EnclaveRunner
from golem_graphene.provider.api import build_app
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.engine import TaskEngine

__all__ = ["DataDirLock", "ProviderServer", "bind_socket", "ready_document", "serve_forever"]

log = structlog.get_logger(__name__)


class ProviderServer:
    """``async with ProviderServer(config) as server:`` serves until the block ends.

    Entering it, in this order, touches nothing until every check passed: the data folder is
    locked (a second provider on it is refused: its recovery would kill the first one's
    enclaves), the runner is checked on this host, the address is bound (a port in use is
    refused), and only then are the previous run's tasks recovered and requests served.
    Each refusal is a :class:`ConfigError` or :class:`RunnerError` naming the value.
    """

    def __init__(self, config: ProviderConfig, runner: EnclaveRunner | None = None) -> None:
        self.config = config
        self._given_runner = runner
        self._lock: DataDirLock | None = None
        self._engine: TaskEngine | None = None
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def engine(self) -> TaskEngine:
        """The task engine (made when the server starts)."""
        if self._engine is None:
            raise RuntimeError("the provider server has not started")
        return self._engine

    @property
    def url(self) -> str:
        host = self.config.bind if ":" not in self.config.bind else f"[{self.config.bind}]"
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> ProviderServer:
        quiet_malformed_requests()
        self._lock = DataDirLock.acquire(self.config.data_dir)
        try:
            if self._given_runner is None:
                check_runner_or_refuse(self.config)
            sock = bind_socket(self.config.bind, self.config.port)
            try:
                self._engine = TaskEngine(self.config, self._given_runner)
                await self._engine.recover()
                app = build_app(self._engine)
                self._runner = web.AppRunner(
                    app,
                    access_log=None,
                    handler_cancellation=True,
                    shutdown_timeout=5.0,
                    keepalive_timeout=self.config.limits.connection_idle_seconds,
                )
                await self._runner.setup()
                site = web.SockSite(self._runner, sock)
                await site.start()
            except BaseException:
                sock.close()
                raise
        except BaseException:
            await self._close()
            raise
        self.port = sock.getsockname()[1]
        log.info(
            f"provider listening on {self.url}",
            url=self.url,
            runner=self.engine.runner.name,
            data_dir=str(self.config.data_dir),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()

    async def _close(self) -> None:
        try:
            if self._engine is not None:
                await self._engine.close()
            if self._runner is not None:
                await self._runner.cleanup()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None


class DataDirLock:
    """An exclusive lock on a provider's data folder (``flock`` on ``provider.lock`` in it),
    held for the provider's life and released by the kernel if it dies."""

    FILE = "provider.lock"

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, data_dir: Path) -> DataDirLock:
        """Create the folder if needed and lock it; raises ConfigError when it cannot be made or
        another provider holds it (naming that provider's pid)."""
        try:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(data_dir / cls.FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise ConfigError(
                f"data_dir {str(data_dir)!r}: cannot use it as the provider's data folder: "
                f"{exc.strerror or exc}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise ConfigError(
                    f"data_dir {str(data_dir)!r}: cannot lock it: {exc.strerror or exc}"
                ) from None
            raise ConfigError(
                f"data_dir {str(data_dir)!r} is in use by another provider (pid {holder}); "
                "nothing was touched: stop that provider first, or give this one another "
                "data folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def check_runner_or_refuse(config: ProviderConfig) -> None:
    """Raises RunnerError, with the whole reason, when the configured runner cannot run here."""
    from golem_graphene.host.runner_check import check_runner

    check = check_runner(config.runner, allow_insecure=tuple(config.allow_insecure))
    if not check.usable:
        raise RunnerError(
            f"the {config.runner} runner cannot run on this host, so the provider does not "
            f"serve: {check.detail}"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (not yet listening); raises ConfigError naming
    the address when it is in use, not on this host, or not allowed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "is in use (another provider or program listens there; choose another --port)"
        elif exc.errno == errno.EADDRNOTAVAIL:
            reason = "is not an address of this host"
        elif exc.errno == errno.EACCES:
            reason = "is not allowed for this user (ports below 1024 need privileges)"
        else:
            reason = f"cannot be bound: {exc.strerror or exc}"
        raise ConfigError(f"{host} port {port} {reason}") from None
    sock.setblocking(False)
    return sock


class _MalformedRequestFilter(logging.Filter):
    """aiohttp logs a request it cannot parse as an error with a traceback that quotes the
    offending bytes (the start of an oversized ``Authorization`` header is a token): log one
    warning line naming the peer and the refusal instead, without the request's bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.msg = "malformed HTTP request from %s refused with %s (%s); not logged"
            record.args = (peer, exc.code, type(exc).__name__)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_malformed_requests() -> None:
    """Install :class:`_MalformedRequestFilter` on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(_MalformedRequestFilter())


async def serve_forever(
    config: ProviderConfig, *, announce: bool = True, ready_file: Path | None = None
) -> None:
    """Serve until SIGINT, SIGTERM or SIGHUP.

    Once listening, one JSON line on stdout says where (:func:`ready_document`: the bound
    address, useful with ``port = 0``); with ``ready_file`` the same object is also written
    to that file (atomically, mode 0644), which is removed at shutdown.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    async with ProviderServer(config) as server:
        document = json.dumps(ready_document(server), sort_keys=True)
        if ready_file is not None:
            write_atomic(ready_file, document.encode() + b"\n", mode=0o644)
        sys.stdout.write(document + "\n")
        sys.stdout.flush()
        if announce:
            _announce(server)
        try:
            await stop.wait()
        finally:
            if ready_file is not None:
                ready_file.unlink(missing_ok=True)
        log.info("provider stopping")


def ready_document(server: ProviderServer) -> dict[str, object]:
    """What a listening provider tells a script: ``url``, ``bind``, ``port``, ``runner``,
    ``pid`` and, for the sim runner, ``simulation_root`` (its SPKI SHA-256)."""
    platform = getattr(server.engine.runner, "platform", None)
    return {
        # Shaped like a JSON log event too, so a script reading the provider's merged output
        # line by line meets one format.
        "level": "info",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "event": "listening",
        "url": server.url,
        "bind": server.config.bind,
        "port": server.port,
        "runner": server.engine.runner.name,
        "pid": os.getpid(),
        "simulation_root": platform.root_fingerprint if platform is not None else None,
    }


def _announce(server: ProviderServer) -> None:
    platform = getattr(server.engine.runner, "platform", None)
    if platform is not None:
        log.warning(
            "the sim runner gives NO SGX protection; requestors who accept it trust this "
            "simulation root by name",
            root_fingerprint=platform.root_fingerprint,
            certificate=str(Path(platform.root_path)),
        )
