"""Running the provider: an async context manager around the engine and its HTTP site."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from types import TracebackType

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from golem_graphene._internal.files import write_atomic
from golem_graphene.host.runners import EnclaveRunner
from golem_graphene.provider.api import build_app
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.engine import TaskEngine

__all__ = ["ProviderServer", "ready_document", "serve_forever"]

log = structlog.get_logger(__name__)


class ProviderServer:
    """``async with ProviderServer(config) as server:`` serves until the block ends."""

    def __init__(self, config: ProviderConfig, runner: EnclaveRunner | None = None) -> None:
        self.config = config
        self.engine = TaskEngine(config, runner)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = self.config.bind if ":" not in self.config.bind else f"[{self.config.bind}]"
        return f"http://{host}:{self.port}"

    async def __aenter__(self) -> ProviderServer:
        quiet_malformed_requests()
        await self.engine.recover()
        app = build_app(self.engine)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=5.0,
            keepalive_timeout=self.config.limits.connection_idle_seconds,
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.bind, self.config.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.config.port
        log.info(
            "provider serving",
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
        await self.engine.close()
        if self._runner is not None:
            await self._runner.cleanup()


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
    """Serve until SIGINT or SIGTERM.

    Once listening, one JSON line on stdout says where (:func:`ready_document`: the bound
    address, useful with ``port = 0``); with ``ready_file`` the same object is also written
    to that file (atomically, mode 0644), which is removed at shutdown.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
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


def ready_document(server: ProviderServer) -> dict[str, object]:
    """What a listening provider tells a script: ``url``, ``bind``, ``port``, ``runner``,
    ``pid`` and, for the sim runner, ``simulation_root`` (its SPKI SHA-256)."""
    platform = getattr(server.engine.runner, "platform", None)
    return {
        "event": "listening",
        "url": server.url,
        "bind": server.config.bind,
        "port": server.port,
        "runner": server.engine.runner.name,
        "pid": os.getpid(),
        "simulation_root": platform.root_fingerprint if platform is not None else None,
    }


def _announce(server: ProviderServer) -> None:
    sys.stderr.write(f"provider listening on {server.url} (runner {server.engine.runner.name})\n")
    platform = getattr(server.engine.runner, "platform", None)
    if platform is not None:
        sys.stderr.write(
            "WARNING: the sim runner gives NO SGX protection. Requestors who accept it "
            f"trust this simulation root by name:\n  {platform.root_fingerprint}\n"
            f"  (certificate: {Path(platform.root_path)})\n"
        )
