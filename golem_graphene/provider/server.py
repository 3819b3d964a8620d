"""Running the provider: an async context manager around the engine and its HTTP site."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from types import TracebackType

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from golem_graphene.host.runners import EnclaveRunner
from golem_graphene.provider.api import build_app
from golem_graphene.provider.config import ProviderConfig
from golem_graphene.provider.engine import TaskEngine

__all__ = ["ProviderServer", "serve_forever"]

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


async def serve_forever(config: ProviderConfig, *, announce: bool = True) -> None:
    """Serve until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with ProviderServer(config) as server:
        if announce:
            _announce(server)
        await stop.wait()


def _announce(server: ProviderServer) -> None:
    import sys

    sys.stderr.write(f"provider listening on {server.url} (runner {server.engine.runner.name})\n")
    platform = getattr(server.engine.runner, "platform", None)
    if platform is not None:
        sys.stderr.write(
            "WARNING: the sim runner gives NO SGX protection. Requestors who accept it "
            f"trust this simulation root by name:\n  {platform.root_fingerprint}\n"
            f"  (certificate: {Path(platform.root_path)})\n"
        )
