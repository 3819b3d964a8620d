"""The HTTP channel against a scripted aiohttp server: headers, errors, limits, event streams.

The channel only moves bytes, but it must turn every failure (error answers, unreachable
providers, malformed or oversized answers, broken event streams) into a :class:`ChannelError`
with the provider's code, and never hold more than its bounds in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from golem_graphene.requestor.channel import MAX_JSON_RESPONSE, ChannelError, HttpChannel, TaskRef

TOKEN = "requestor-token-for-the-channel-tests"
TASK = TaskRef("0" * 32, "task-token-" + "t" * 32)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[HttpChannel]]]:
    """``await serve({(method, path): handler})`` starts a server; returns a channel to it."""
    servers: list[TestServer] = []
    channels: list[HttpChannel] = []

    async def start(routes: dict[tuple[str, str], Handler]) -> HttpChannel:
        app = web.Application()
        for (method, path), handler in routes.items():
            app.router.add_route(method, path, handler)
        server = TestServer(app)
        await server.start_server()
        servers.append(server)
        channel = HttpChannel(str(server.make_url("/")), token=TOKEN, timeout=5)
        channels.append(channel)
        return channel

    yield start
    for channel in channels:
        await channel.close()
    for server in servers:
        await server.close()


def error(status: int, code: str, message: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"code": code, "message": message}, status=status)

    return handler


TASK_PATH = f"/v1/tasks/{TASK.task_id}"


async def test_headers_carry_both_tokens(serve: Any) -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.Response:
        seen.update(request.headers)
        return web.json_response({"files": []})

    channel = await serve({("GET", f"{TASK_PATH}/outputs"): handler})
    assert await channel.outputs(TASK) == []
    assert seen["Authorization"] == f"Bearer {TOKEN}"
    assert seen["X-Task-Token"] == TASK.token


@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "unauthorized"), (403, "forbidden"), (404, "not_found"), (409, "invalid_state")],
)
async def test_error_answers_keep_the_providers_code(serve: Any, status: int, code: str) -> None:
    channel = await serve({("POST", f"{TASK_PATH}/start"): error(status, code, "nope")})
    with pytest.raises(ChannelError) as caught:
        await channel.start(TASK)
    assert (caught.value.code, caught.value.status) == (code, status)
    assert f"provider answered HTTP {status} ({code})" in str(caught.value)
    assert caught.value.provider_text == "nope"


async def test_a_non_json_error_is_still_a_channel_error(serve: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>")

    channel = await serve({("GET", f"{TASK_PATH}/evidence"): handler})
    with pytest.raises(ChannelError) as caught:
        await channel.evidence(TASK)
    assert (caught.value.code, caught.value.status) == ("http_error", 502)
    assert "bad gateway" in str(caught.value)


async def test_an_unreachable_provider_is_a_channel_error(unused_tcp_port: int) -> None:
    channel = HttpChannel(f"http://127.0.0.1:{unused_tcp_port}", token=TOKEN, timeout=2)
    try:
        with pytest.raises(ChannelError) as caught:
            await channel.create({})
    finally:
        await channel.close()
    assert "cannot reach the provider" in str(caught.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1, 2]", "non-object"),
        (b"{not json", "malformed JSON"),
        (b" " * (MAX_JSON_RESPONSE + 1), "too large"),
    ],
    ids=["not-an-object", "malformed", "oversized"],
)
async def test_create_refuses_bad_answers(serve: Any, body: bytes, message: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", status=201)

    channel = await serve({("POST", "/v1/tasks"): handler})
    with pytest.raises(ChannelError, match=message):
        await channel.create({"spec_name": "x"})


async def test_answers_arriving_in_pieces_are_read_whole(serve: Any) -> None:
    """A JSON answer (here the evidence) split across writes is read to its end."""
    body = json.dumps({"quote": "q" * 100_000, "enclave_key": "e"}).encode()

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for start in range(0, len(body), 30_000):
            await response.write(body[start : start + 30_000])
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response

    channel = await serve(
        {("GET", f"{TASK_PATH}/evidence"): handler, ("POST", "/v1/tasks"): handler}
    )
    assert await channel.evidence(TASK) == body
    assert (await channel.create({}))["enclave_key"] == "e"


async def test_malformed_output_list_is_refused(serve: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"files": "all of them"})

    channel = await serve({("GET", f"{TASK_PATH}/outputs"): handler})
    with pytest.raises(ChannelError, match="output list is malformed"):
        await channel.outputs(TASK)


async def test_download_streams_and_enforces_its_limit(serve: Any, tmp_path: Path) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 300_000)

    channel = await serve({("GET", f"{TASK_PATH}/outputs/{{name}}"): handler})
    assert await channel.download(TASK, "a.age", tmp_path / "a", 300_000) == 300_000
    assert (tmp_path / "a").read_bytes() == b"x" * 300_000
    with pytest.raises(ChannelError, match="larger than the task allows"):
        await channel.download(TASK, "b.age", tmp_path / "b", 100_000)
    assert (tmp_path / "b").stat().st_size <= 100_000 + 256 * 1024


async def test_stream_output_yields_pieces_and_enforces_its_limit(serve: Any) -> None:
    body = bytes(range(256)) * 4000

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(body), 100_000):
            await response.write(body[start : start + 100_000])
        await response.write_eof()
        return response

    async def missing(request: web.Request) -> web.Response:
        return web.json_response({"code": "not_found", "message": "no such output"}, status=404)

    channel = await serve(
        {
            ("GET", f"{TASK_PATH}/outputs/a.age"): handler,
            ("GET", f"{TASK_PATH}/outputs/b.age"): missing,
        }
    )
    pieces = [p async for p in channel.stream_output(TASK, "a.age", len(body))]
    assert b"".join(pieces) == body
    with pytest.raises(ChannelError, match="larger than the task allows"):
        async for _ in channel.stream_output(TASK, "a.age", len(body) - 1):
            pass
    with pytest.raises(ChannelError) as caught:
        async for _ in channel.stream_output(TASK, "b.age", 100):
            pass
    assert (caught.value.code, caught.value.status) == ("not_found", 404)
    # Stopped early and closed: the connection is released, the next call works.
    async with contextlib.aclosing(channel.stream_output(TASK, "a.age", len(body))) as stream:
        async for _ in stream:
            break
    assert b"".join([p async for p in channel.stream_output(TASK, "a.age", len(body))]) == body


async def test_uploads_stream_the_body(serve: Any) -> None:
    received: list[bytes] = []

    async def handler(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.json_response({"name": "x", "size": len(received[-1])}, status=201)

    async def body() -> AsyncIterator[bytes]:
        for i in range(5):
            yield bytes([i]) * 1000

    channel = await serve({("PUT", f"{TASK_PATH}/inputs/{{name}}"): handler})
    await channel.put_input(TASK, "x", body())
    assert received == [b"".join(bytes([i]) * 1000 for i in range(5))]


def sse(*events: dict[str, Any], keepalive: bool = True) -> bytes:
    out = b": keep-alive\n\n" if keepalive else b""
    for event in events:
        out += f"id: {event['seq']}\nevent: task\ndata: {json.dumps(event)}\n\n".encode()
    return out


async def test_events_resume_after_a_broken_stream_and_stop_at_the_end(serve: Any) -> None:
    """The provider closes the stream after each event; the channel resumes with ``since``."""
    states = ["created", "launching", "attested", "running", "done"]
    asked: list[str] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        since = int(request.query["since"])
        asked.append(request.query["since"])
        event = {"task_id": TASK.task_id, "state": states[since], "seq": since}
        return web.Response(body=sse(event), content_type="text/event-stream")

    channel = await serve({("GET", f"{TASK_PATH}/events"): handler})
    seen = [event.state async for event in channel.events(TASK)]
    assert seen == states
    assert asked == ["0", "1", "2", "3", "4"]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"data: {broken\n\n", "malformed event"),
        (b"data: [1]\n\n", "malformed event"),
        (b"data: " + b"x" * (70 * 1024) + b"\n\n", "oversized event"),
    ],
    ids=["not-json", "not-an-object", "oversized"],
)
async def test_bad_events_are_refused(serve: Any, payload: bytes, message: str) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(body=payload, content_type="text/event-stream")

    channel = await serve({("GET", f"{TASK_PATH}/events"): handler})
    with pytest.raises(ChannelError, match=message):
        async for _ in channel.events(TASK):
            pass
