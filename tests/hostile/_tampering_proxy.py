"""A hostile provider for the requestor's tests: a proxy in front of a real one, or a fake.

:class:`TamperingProxy` forwards every request to a real provider and streams the answer back,
except where a test tells it to lie: replace an answer (``answer``), drip a download one byte at
a time (``drip``), or stall it after some bytes (``stall``) and keep the connection open.
:func:`fake_provider` is a provider with no enclave at all, for attacks that end before any
quote is verified (what it says in words, its error bodies). Both serve on ``127.0.0.1`` port
0 in the test's own event loop, so the CLI can be run against them as a child process
(``asyncio.create_subprocess_exec``) while they answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}
SESSION: web.AppKey[aiohttp.ClientSession] = web.AppKey("session", aiohttp.ClientSession)


@dataclass
class TamperingProxy:
    """Forwards to ``upstream``; each rule applies to the request paths ending in its key."""

    upstream: str
    answer: dict[str, Handler] = field(default_factory=dict)
    """Path suffix -> handler that answers instead of the provider."""
    drip: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Path suffix -> (bytes sent at once, then seconds per further byte)."""
    stall: dict[str, int] = field(default_factory=dict)
    """Path suffix -> bytes sent, then nothing more (the connection stays open)."""
    rewrite: dict[str, Callable[[bytes], bytes]] = field(default_factory=dict)
    """Path suffix -> a function of the provider's whole answer body, sent instead."""
    stalled: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once a stalled download has sent its bytes."""
    url: str = ""

    def _rule(self, rules: dict[str, Any], path: str) -> Any:
        return next((rule for suffix, rule in rules.items() if path.endswith(suffix)), None)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        special = self._rule(self.answer, request.path)
        if special is not None:
            return await special(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        body = await request.read() if request.can_read_body else None
        session = request.app[SESSION]
        async with session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS},
            )
            rewrite = self._rule(self.rewrite, request.path)
            if rewrite is not None:
                response.headers.pop("Content-Length", None)
                await response.prepare(request)
                await response.write(rewrite(await upstream.read()))
                await response.write_eof()
                return response
            await response.prepare(request)
            drip = self._rule(self.drip, request.path)
            stall = self._rule(self.stall, request.path)
            sent = 0
            async for chunk in upstream.content.iter_any():
                if drip is not None:
                    fast, delay = drip
                    head, chunk = chunk[: max(0, fast - sent)], chunk[max(0, fast - sent) :]
                    if head:
                        await response.write(head)
                        sent += len(head)
                    for index in range(len(chunk)):
                        await asyncio.sleep(delay)
                        await response.write(chunk[index : index + 1])
                        sent += 1
                    continue
                if stall is not None and sent + len(chunk) >= stall:
                    await response.write(chunk[: stall - sent])
                    self.stalled.set()
                    await asyncio.Event().wait()  # until the client goes away
                await response.write(chunk)
                sent += len(chunk)
            await response.write_eof()
            return response

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TamperingProxy]:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            app[SESSION] = session
            async with _serving(app) as url:
                self.url = url
                yield self


@contextlib.asynccontextmanager
async def _serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


TASK_ID = "0123456789abcdef0123456789abcdef"
CAPABILITY = "c" * 43


def sse(*events: dict[str, Any]) -> Handler:
    """A handler answering with these task events as Server-Sent Events."""

    async def handle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in events:
            await response.write(f"data: {json.dumps(event)}\n\n".encode())
        await response.write_eof()
        return response

    return handle


def status(code: int, body: bytes, content_type: str = "application/json") -> Handler:
    """A handler answering ``code`` with ``body`` as it is."""

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, body=body, content_type=content_type)

    return handle


@contextlib.asynccontextmanager
async def fake_provider(routes: dict[tuple[str, str], Handler]) -> AsyncIterator[str]:
    """A provider without an enclave: ``routes`` maps (method, path) to a handler; create,
    cancel and delete answer as a provider would unless ``routes`` says otherwise."""
    base = f"/v1/tasks/{TASK_ID}"
    defaults: dict[tuple[str, str], Handler] = {
        ("POST", "/v1/tasks"): status(
            201, json.dumps({"task_id": TASK_ID, "capability_token": CAPABILITY}).encode()
        ),
        ("POST", f"{base}/cancel"): status(200, b"{}"),
        ("DELETE", base): status(204, b""),
    }
    app = web.Application()
    for (method, path), handler in {**defaults, **routes}.items():
        app.router.add_route(method, path, handler)
    async with _serving(app) as url:
        yield url


CLI = Path(sys.executable).parent / "golem-graphene"
"""The installed console script, as users run it."""


async def start_cli(
    *args: str | Path, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start the installed CLI with stdout and stderr piped."""
    return await asyncio.create_subprocess_exec(
        CLI,
        *(str(a) for a in args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )


async def golem_graphene(
    *args: str | Path, env: dict[str, str] | None = None
) -> tuple[int, bytes, bytes]:
    """Run the installed CLI while this loop keeps serving; returns its exit status, stdout and
    stderr as bytes."""
    proc = await start_cli(*args, env=env)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, stdout, stderr
