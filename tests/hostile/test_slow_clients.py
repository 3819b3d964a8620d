"""Slow and abusive clients: the provider applies timeouts and limits and keeps serving others.

The provider here runs with ``limits.upload_idle_seconds = 1`` and
``limits.connection_idle_seconds = 2`` so that the timeouts show within the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from _hostile_support import (
    TOKEN_A,
    TOKEN_B,
    StartProvider,
    ThreadProvider,
    auth,
    create_body,
    create_raw,
    send_until_answered,
    wait_state,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.usefixtures("sandbox_ok")]

IDLE = 2.0


@pytest.fixture(scope="module")
def slow_provider(start_module_provider: StartProvider) -> Iterator[ThreadProvider]:
    with start_module_provider(
        {"upload_idle_seconds": 1.0, "connection_idle_seconds": IDLE}
    ) as running:
        yield running


def _address(provider: ThreadProvider) -> tuple[str, int]:
    host, port = provider.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def _head(method: str, path: str, headers: dict[str, str], length: int | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: provider"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _healthy(provider: ThreadProvider, within: float = 2.0) -> None:
    """The provider answers an authenticated request promptly."""
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{provider.url}/v1/specs", headers=auth(TOKEN_B)) as response,
    ):
        assert response.status == 200
        assert (await response.json())["specs"]
    assert time.monotonic() - started < within


async def _attested(http: aiohttp.ClientSession, provider: ThreadProvider) -> tuple[str, str]:
    task_id, token = await create_raw(http, provider.url, provider.specs_dir)
    await wait_state(http, provider.url, task_id, token, {"attested"})
    return task_id, token


async def test_trickled_upload_is_accepted(slow_provider: ThreadProvider) -> None:
    """Ten bytes every half second: slower than the idle limit in total, never idle."""
    async with aiohttp.ClientSession() as http:
        task_id, token = await _attested(http, slow_provider)
        head = _head("PUT", f"/v1/tasks/{task_id}/inputs/data.txt", auth(TOKEN_A, token), 60)
        started = time.monotonic()
        response, sent = await asyncio.to_thread(
            send_until_answered, slow_provider.url, head, iter([b"x" * 10] * 6), pause=0.5
        )
        assert time.monotonic() - started > 2.0
        assert (response.status, sent) == (201, 60), response
        assert response.json() == {"name": "data.txt", "size": 60}
        await http.delete(f"{slow_provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, token))


async def test_stalled_upload_gets_408_and_leaves_nothing(slow_provider: ThreadProvider) -> None:
    async with aiohttp.ClientSession() as http:
        task_id, token = await _attested(http, slow_provider)
        head = _head("PUT", f"/v1/tasks/{task_id}/inputs/data.txt", auth(TOKEN_A, token), 1000)
        started = time.monotonic()
        # Three chunks at a pace below the idle limit, then silence with 970 bytes missing.
        response, sent = await asyncio.to_thread(
            send_until_answered, slow_provider.url, head, iter([b"x" * 10] * 3), pause=0.5
        )
        elapsed = time.monotonic() - started
        assert sent == 30
        assert response.status == 408, response
        error = response.json()
        assert error["code"] == "upload_stalled"
        assert "limits.upload_idle_seconds" in error["message"]
        assert 1.0 <= elapsed < 10.0
        inputs = slow_provider.data_dir / "tasks" / task_id / "launch" / "io" / "inputs"
        assert list(inputs.iterdir()) == []  # no partial file, no input
        async with http.get(
            f"{slow_provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, token)
        ) as status:
            assert (await status.json())["input_bytes"] == 0
        await _healthy(slow_provider)
        await http.delete(f"{slow_provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, token))


async def test_abandoned_downloads_do_not_hold_up_other_clients(
    slow_provider: ThreadProvider, tmp_path: Path
) -> None:
    data = tmp_path / "data.txt"
    data.write_bytes(b"x")
    size = 3_000_000
    async with slow_provider.requestor(TOKEN_A) as requestor, aiohttp.ClientSession() as http:
        created = await requestor.create(slow_provider.specs_dir / "shell")
        attested = await requestor.attest(created)
        command = f"head -c {size} /dev/zero > outputs/out.bin"
        await requestor.send_inputs(attested, {"data.txt": data}, args=["-c", command])
        await requestor.start(attested)
        await requestor.wait(attested)
        ref = attested.ref
        url = f"{slow_provider.url}/v1/tasks/{ref.task_id}/outputs/out.bin.age"
        baseline = _fds()
        # Sixteen clients ask for the 3 MB output and never read a byte.
        request = _head("GET", url.removeprefix(slow_provider.url), auth(TOKEN_A, ref.token))
        stalled = []
        for _ in range(16):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(_address(slow_provider))
            sock.sendall(request)
            stalled.append(sock)
        try:
            await asyncio.sleep(IDLE + 1.0)  # past the idle limit: these are not idle
            assert _fds() >= baseline + 2 * len(stalled)  # their downloads are in progress
            # Others are served meanwhile: a full download, and a request of another requestor.
            async with http.get(url, headers=auth(TOKEN_A, ref.token)) as response:
                assert response.status == 200
                body = await response.read()
            assert body.startswith(b"age-encryption.org/v1\n") and len(body) > size
            await _healthy(slow_provider)
        finally:
            for sock in stalled:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
                sock.close()
        # Their connections and open files are released once they are gone.
        for _ in range(75):
            if _fds() <= baseline + 2:
                break
            await asyncio.sleep(0.2)
        assert _fds() <= baseline + 2
        await requestor.channel.delete(ref)


async def test_connection_flood_and_slowloris_are_cut_off(slow_provider: ThreadProvider) -> None:
    address = _address(slow_provider)
    idle = [socket.create_connection(address) for _ in range(300)]
    slow = []
    for _ in range(20):
        sock = socket.create_connection(address)
        sock.sendall(b"GET /v1/specs HTTP/1.1\r\nHost: provider\r\n")
        slow.append(sock)
    try:
        started = time.monotonic()
        await _healthy(slow_provider)
        # The slowloris clients keep sending header lines, one every half second.
        while time.monotonic() - started < IDLE + 2.0:
            for number, sock in enumerate(slow):
                with contextlib.suppress(OSError):
                    sock.sendall(f"X-Slow-{number}: {time.monotonic()}\r\n".encode())
            await asyncio.sleep(0.5)
        await _healthy(slow_provider)

        closed = await asyncio.to_thread(_closed_by_server, idle + slow, 5.0)
        assert not set(idle) - closed, f"{len(set(idle) - closed)} idle connections left open"
        assert not set(slow) - closed, f"{len(set(slow) - closed)} slowloris ones left open"
    finally:
        for sock in idle + slow:
            sock.close()
    await _healthy(slow_provider)


def _closed_by_server(sockets: list[socket.socket], timeout: float) -> set[socket.socket]:
    """Those of ``sockets`` the server has closed (end of file or reset) within ``timeout``."""
    closed: set[socket.socket] = set()
    by_fd = {sock.fileno(): sock for sock in sockets}
    poller = select.poll()  # not select(): descriptor numbers may pass FD_SETSIZE
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    while len(closed) < len(sockets) and (left := deadline - time.monotonic()) > 0:
        for fd, _ in poller.poll(left * 1000):
            sock = by_fd[fd]
            try:
                data = sock.recv(4096, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            if data == b"":
                closed.add(sock)
                poller.unregister(fd)
    return closed


def _raw(provider: ThreadProvider, request: bytes) -> tuple[int, str, bytes]:
    with socket.create_connection(_address(provider), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data:
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    None,
                )
                if length is not None and len(body) >= length:
                    break
    status_line, _, rest = data.partition(b"\r\n")
    content_type = next(
        (
            line.split(b":", 1)[1].strip().decode()
            for line in rest.split(b"\r\n")
            if line.lower().startswith(b"content-type:")
        ),
        "",
    )
    return int(status_line.split()[1]), content_type, data.partition(b"\r\n\r\n")[2]


async def test_oversized_headers_and_bodies_get_4xx(slow_provider: ThreadProvider) -> None:
    token = auth(TOKEN_A)
    cases = {
        "a 20 kB header value": (
            _head("GET", "/v1/specs", {**token, "X-Big": "a" * 20_000}),
            {400, 431},
        ),
        "300 headers": (
            _head("GET", "/v1/specs", {**token, **{f"X-H{i}": "a" for i in range(300)}}),
            {400, 431},
        ),
        "a 20 kB request line": (_head("GET", "/v1/" + "a" * 20_000, token), {400, 414}),
        "a 20 kB bearer token": (
            _head("GET", "/v1/specs", {"Authorization": "Bearer " + "t" * 20_000}),
            {400, 431},
        ),
        "an 8 kB bearer token": (
            _head("GET", "/v1/specs", {"Authorization": "Bearer " + "t" * 8000}),
            {401},
        ),
        "a 100 GB JSON body announced": (
            _head("POST", "/v1/tasks", token, 100 << 30) + b"{",
            {413},
        ),
        "a malformed Content-Length": (
            _head("POST", "/v1/tasks", {**token, "Content-Length": "-5"}),
            {400},
        ),
    }
    for what, (request, wanted) in cases.items():
        status, content_type, body = await asyncio.to_thread(_raw, slow_provider, request)
        assert status in wanted, (what, status, body[:200])
        if status in (401, 413):  # answered by the API itself: JSON with a stable code
            assert content_type.startswith("application/json"), what
    async with aiohttp.ClientSession() as http:
        task_id, cap = await _attested(http, slow_provider)
        path = f"/v1/tasks/{task_id}/inputs/data.txt"
        status, content_type, body = await asyncio.to_thread(
            _raw, slow_provider, _head("PUT", path, auth(TOKEN_A, cap), 100 << 30)
        )
        assert status == 413 and b"input_too_large" in body
        assert content_type.startswith("application/json")

        async def chunks() -> object:
            for _ in range(64):
                yield b" " * 4096

        async with http.post(
            f"{slow_provider.url}/v1/tasks", data=chunks(), headers=token
        ) as response:
            assert response.status == 413
            assert (await response.json())["code"] == "body_too_large"
        await http.delete(f"{slow_provider.url}/v1/tasks/{task_id}", headers=auth(TOKEN_A, cap))
    await _healthy(slow_provider)


async def test_json_body_in_pieces_is_whole_and_a_stalled_one_gets_408(
    slow_provider: ThreadProvider,
) -> None:
    body = json.dumps({**create_body(slow_provider.specs_dir), "spec_name": "no-such-spec"})
    raw = body.encode()
    head = _head("POST", "/v1/tasks", {**auth(TOKEN_A), "Content-Type": "application/json"})
    pieces = [
        raw[: len(raw) // 3],
        raw[len(raw) // 3 : 2 * len(raw) // 3],
        raw[2 * len(raw) // 3 :],
    ]
    response, _ = await asyncio.to_thread(
        send_until_answered,
        slow_provider.url,
        head.replace(b"\r\n\r\n", f"\r\nContent-Length: {len(raw)}\r\n\r\n".encode()),
        iter(pieces),
        pause=0.3,
    )
    # Parsed whole: the spec is unknown (a truncated body would be invalid JSON, 400).
    assert (response.status, response.json()["code"]) == (404, "not_found"), response
    stalled = head.replace(b"\r\n\r\n", b"\r\nContent-Length: 500\r\n\r\n")
    response, sent = await asyncio.to_thread(
        send_until_answered, slow_provider.url, stalled, iter([raw[:20]]), pause=0.1
    )
    assert sent == 20
    assert (response.status, response.json()["code"]) == (408, "upload_stalled"), response
    await _healthy(slow_provider)
