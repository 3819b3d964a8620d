"""How a requestor reaches a provider: a channel interface and the direct HTTP channel.

The task protocol (:mod:`golem_graphene.requestor.client`) is written once against
:class:`Channel`; the direct HTTP API and the Golem network each implement it. Channels only
move bytes: everything they return is checked by the protocol code, never trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import aiohttp

from golem_graphene._batched_write import write_and_close
from golem_graphene._internal.text import escape, provider_says
from golem_graphene.canonical_json import CanonicalJsonError, parse_json
from golem_graphene.errors import Error, ProtocolError
from golem_graphene.protocol.binding import parse_task_id
from golem_graphene.protocol.messages import ErrorBody, TaskEvent
from golem_graphene.requestor.deadlines import within

__all__ = [
    "Channel",
    "ChannelError",
    "HttpChannel",
    "OutputStreams",
    "ProviderWords",
    "TaskRef",
    "task_ref_of",
]

MAX_JSON_RESPONSE = 4 << 20
MAX_ERROR_BODY = 64 * 1024
MAX_EVENT_LINE = 64 * 1024
EVENT_RETRY_MAX = 5.0  # seconds between reopenings of an event stream that brings nothing new
EVENT_SILENCE_MAX = 60.0  # seconds an event stream may stay silent (keep-alives come every 15 s)
WRITE_BATCH = 1 << 20  # downloads are written off the event loop, a MiB at a time


class ProviderWords(ProtocolError):
    """A provider's failure that comes with the provider's own words about it.

    ``message`` is ours; ``provider_text`` holds what the provider said (an error body's
    message, a failure event's message, a runtime's answer), raw: :meth:`describe` shows it
    escaped, bounded and marked as the provider's words, and :meth:`describe_own` leaves it
    out, for the line that carries a verdict.
    """

    def __init__(
        self,
        message: str,
        *,
        provider_text: str | None = None,
        expected: object = None,
        found: object = None,
    ) -> None:
        self.provider_text = provider_text or None
        super().__init__(message, expected=expected, found=found)

    def describe_own(self) -> str:
        """Our own words about the failure, without the provider's."""
        return super().describe()

    def describe(self) -> str:
        own = self.describe_own()
        return f"{own}; {provider_says(self.provider_text)}" if self.provider_text else own


class ChannelError(ProviderWords):
    """The provider answered with an error, or could not be reached (see
    :class:`ProviderWords` for ``provider_text``)."""

    code = "channel"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        provider_text: str | None = None,
    ) -> None:
        if code:
            self.code = code
        self.status = status
        super().__init__(message, provider_text=provider_text)


def _client_error(what: str, exc: BaseException) -> ChannelError:
    """An aiohttp failure as a :class:`ChannelError`: its text may quote the provider (a reason
    phrase, a header), so it is escaped and bounded."""
    return ChannelError(f"{what}: {escape(str(exc) or type(exc).__name__, 200)}")


async def _read_bounded(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body (``content.read(n)`` returns only what has arrived so far), or None as
    soon as it exceeds ``limit`` bytes."""
    data = bytearray()
    async for chunk in response.content.iter_any():
        data += chunk
        if len(data) > limit:
            return None
    return bytes(data)


@dataclass(frozen=True)
class TaskRef:
    """A task on a provider: its id and capability token."""

    task_id: str
    token: str


class Channel(Protocol):
    """The provider operations the task protocol needs."""

    async def create(self, request: dict[str, Any]) -> dict[str, Any]: ...
    async def evidence(self, task: TaskRef) -> bytes: ...
    async def put_input(self, task: TaskRef, name: str, body: AsyncIterable[bytes]) -> None: ...
    async def put_manifest(self, task: TaskRef, sealed: bytes) -> None: ...
    async def start(self, task: TaskRef) -> None: ...
    def events(self, task: TaskRef) -> AsyncIterator[TaskEvent]: ...
    async def outputs(self, task: TaskRef) -> list[dict[str, Any]]: ...
    async def download(self, task: TaskRef, name: str, dest: Path, limit: int) -> int: ...
    async def cancel(self, task: TaskRef) -> None: ...
    async def delete(self, task: TaskRef) -> None: ...
    async def close(self) -> None: ...


@runtime_checkable
class OutputStreams(Protocol):
    """A channel that can also hand an output file over as it arrives (the HTTP channel): the
    requestor then checks and decrypts it while it downloads instead of reading it back."""

    def stream_output(
        self, task: TaskRef, name: str, limit: int
    ) -> AsyncGenerator[bytes, None]: ...


class HttpChannel:
    """The provider's HTTP API (see ``/v1/openapi.json``) over aiohttp."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        session: aiohttp.ClientSession | None = None,
        timeout: float = 60.0,
    ) -> None:
        """``timeout`` bounds connecting, every read that brings no byte, and each whole
        request with a small answer (create, evidence, start, cancel, delete); uploads,
        downloads and the event stream are bounded by the requestor's deadlines."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._session = session
        self._own_session = session is None
        self.request_timeout = timeout
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeout, sock_read=timeout)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _headers(self, task: TaskRef | None = None) -> dict[str, str]:
        headers = {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if task is not None:
            headers["X-Task-Token"] = task.token
        return headers

    def _url(self, path: str) -> str:
        return f"{self.base_url}/v1{path}"

    async def _check(self, response: aiohttp.ClientResponse) -> None:
        """Raise :class:`ChannelError` for an error status: the body's code when it is a well
        formed error body (its message kept as the provider's words), else ``http_error``."""
        if response.status < 400:
            return
        body = await _read_bounded(response, MAX_ERROR_BODY)
        try:
            if body is None:
                raise ProtocolError("the error body is too large")
            error = ErrorBody.from_json(body)
            code, text = error.code, error.message
        except Error:
            code, text = "http_error", (body or b"")[:MAX_ERROR_BODY].decode(errors="replace")
        raise ChannelError(
            f"the provider answered HTTP {response.status} ({code})",
            code=code,
            status=response.status,
            provider_text=text,
        )

    async def _json(
        self,
        method: str,
        path: str,
        task: TaskRef | None = None,
        payload: dict[str, Any] | None = None,
    ) -> Any:
        async def request() -> bytes | None:
            async with self._http().request(
                method, self._url(path), json=payload, headers=self._headers(task)
            ) as response:
                await self._check(response)
                return await _read_bounded(response, MAX_JSON_RESPONSE)

        try:
            data = await within(
                "request", self.request_timeout, f"no complete answer to {method} {path}", request()
            )
        except aiohttp.ClientError as exc:
            raise _client_error(f"cannot reach the provider at {self.base_url}", exc) from exc
        return _parse_answer(data)

    async def create(self, request: dict[str, Any]) -> dict[str, Any]:
        result = await self._json("POST", "/tasks", payload=request)
        if not isinstance(result, dict):
            raise ChannelError("the provider answered create with a non-object")
        return result

    async def evidence(self, task: TaskRef) -> bytes:
        async def request() -> bytes | None:
            async with self._http().get(
                self._url(f"/tasks/{task.task_id}/evidence"), headers=self._headers(task)
            ) as response:
                await self._check(response)
                return await _read_bounded(response, MAX_JSON_RESPONSE)

        try:
            data = await within(
                "request", self.request_timeout, "the evidence did not arrive whole", request()
            )
        except aiohttp.ClientError as exc:
            raise _client_error("cannot fetch the evidence", exc) from exc
        if data is None:
            raise ChannelError("the evidence is too large")
        return data

    async def put_input(self, task: TaskRef, name: str, body: AsyncIterable[bytes]) -> None:
        try:
            async with self._http().put(
                self._url(f"/tasks/{task.task_id}/inputs/{name}"),
                data=body,
                headers=self._headers(task),
            ) as response:
                await self._check(response)
        except aiohttp.ClientError as exc:
            raise _client_error(f"uploading input {name!r} failed", exc) from exc

    async def put_manifest(self, task: TaskRef, sealed: bytes) -> None:
        try:
            async with self._http().put(
                self._url(f"/tasks/{task.task_id}/manifest"),
                data=sealed,
                headers=self._headers(task),
            ) as response:
                await self._check(response)
        except aiohttp.ClientError as exc:
            raise _client_error("uploading the input manifest failed", exc) from exc

    async def start(self, task: TaskRef) -> None:
        await self._json("POST", f"/tasks/{task.task_id}/start", task)

    async def put_spec(self, name: str, package: Path, *, answer_timeout: float) -> Any:
        """Upload the task package ``package`` as the spec ``name`` (``PUT /v1/specs/{name}``);
        returns the provider's parsed JSON answer, unchecked. ``answer_timeout`` bounds the
        wait for the answer once the upload is sent (the provider builds the image first)."""
        timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.request_timeout,
            sock_read=max(self.request_timeout, answer_timeout),
        )
        headers = {**self._headers(), "Content-Type": "application/x-tar"}
        try:
            with open(package, "rb") as body:
                async with self._http().put(
                    self._url(f"/specs/{name}"), data=body, headers=headers, timeout=timeout
                ) as response:
                    await self._check(response)
                    data = await _read_bounded(response, MAX_JSON_RESPONSE)
        except aiohttp.ClientError as exc:
            raise _client_error(f"offering the spec {name!r} failed", exc) from exc
        except OSError as exc:
            raise ChannelError(f"cannot read the task package {str(package)!r}: {exc}") from exc
        return _parse_answer(data)

    async def events(self, task: TaskRef) -> AsyncIterator[TaskEvent]:
        """Server-Sent Events of the task until its terminal state, each parsed strictly.

        A stream that ends early is reopened from the next event; one that brought nothing new
        is reopened only after a pause (up to :data:`EVENT_RETRY_MAX` seconds), so a provider
        that keeps closing it costs nothing. The caller's deadline bounds the whole wait.
        """
        since = 0
        pause = 0.0
        while True:
            if pause:
                await asyncio.sleep(pause)
            before = since
            try:
                async with self._http().get(
                    self._url(f"/tasks/{task.task_id}/events"),
                    params={"since": str(since)},
                    headers=self._headers(task),
                    # A provider sends a keep-alive every 15 s: silence is bounded apart from
                    # a short request deadline; the caller's deadline bounds the whole wait.
                    timeout=aiohttp.ClientTimeout(
                        total=None,
                        sock_connect=self.request_timeout,
                        sock_read=max(EVENT_SILENCE_MAX, self.request_timeout),
                    ),
                ) as response:
                    await self._check(response)
                    while True:
                        line = await response.content.readline()
                        if not line:
                            break
                        if len(line) > MAX_EVENT_LINE:
                            raise ChannelError("the provider sent an oversized event")
                        if not line.startswith(b"data: "):
                            continue
                        try:
                            event = TaskEvent.from_json(line[6:])
                        except Error as exc:
                            raise ChannelError(
                                f"the provider sent a malformed event: {exc.describe()}"
                            ) from None
                        if event.task_id.hex() != task.task_id:
                            raise ChannelError("the provider sent an event of another task")
                        since = event.seq + 1
                        yield event
                        if event.terminal:
                            return
            except aiohttp.ClientError as exc:
                raise _client_error("the event stream broke", exc) from exc
            pause = 0.0 if since > before else min(EVENT_RETRY_MAX, max(0.1, 2 * pause))

    async def outputs(self, task: TaskRef) -> list[dict[str, Any]]:
        result = await self._json("GET", f"/tasks/{task.task_id}/outputs", task)
        files = result.get("files") if isinstance(result, dict) else None
        if not isinstance(files, list):
            raise ChannelError("the provider's output list is malformed")
        return [f for f in files if isinstance(f, dict)]

    @contextlib.asynccontextmanager
    async def _output(self, task: TaskRef, name: str) -> AsyncIterator[aiohttp.ClientResponse]:
        async with self._http().get(
            self._url(f"/tasks/{task.task_id}/outputs/{name}"), headers=self._headers(task)
        ) as response:
            await self._check(response)
            yield response

    async def stream_output(
        self, task: TaskRef, name: str, limit: int
    ) -> AsyncGenerator[bytes, None]:
        """One output file in pieces as they arrive; refuses more than ``limit`` bytes. Close
        the iterator (``contextlib.aclosing``) when stopping early."""
        received = 0
        try:
            async with self._output(task, name) as response:
                async for piece in response.content.iter_any():
                    received += len(piece)
                    if received > limit:
                        raise ChannelError(f"output {name!r} is larger than the task allows")
                    yield piece
        except aiohttp.ClientError as exc:
            raise _client_error(f"downloading {name!r} failed", exc) from exc

    async def download(self, task: TaskRef, name: str, dest: Path, limit: int) -> int:
        """Stream one output file to ``dest`` (created, not overwritten); refuses more than
        ``limit`` bytes."""
        written = 0
        try:
            async with self._output(task, name) as response:
                fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
                try:
                    batch: list[bytes] = []
                    batched = 0
                    async for piece in response.content.iter_any():
                        written += len(piece)
                        if written > limit:
                            raise ChannelError(f"output {name!r} is larger than the task allows")
                        batch.append(piece)
                        batched += len(piece)
                        if batched >= WRITE_BATCH:
                            await asyncio.to_thread(write_and_close, os.dup(fd), batch)
                            batch, batched = [], 0
                    if batch:
                        await asyncio.to_thread(write_and_close, os.dup(fd), batch)
                finally:
                    os.close(fd)
        except aiohttp.ClientError as exc:
            raise _client_error(f"downloading {name!r} failed", exc) from exc
        return written

    async def cancel(self, task: TaskRef) -> None:
        await self._json("POST", f"/tasks/{task.task_id}/cancel", task)

    async def delete(self, task: TaskRef) -> None:
        async def request() -> None:
            async with self._http().delete(
                self._url(f"/tasks/{task.task_id}"), headers=self._headers(task)
            ) as response:
                await self._check(response)

        try:
            await within("request", self.request_timeout, "the task was not deleted", request())
        except aiohttp.ClientError as exc:
            raise _client_error("deleting the task failed", exc) from exc

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None


def _parse_answer(data: bytes | None) -> Any:
    """A provider's bounded JSON answer (``None`` when it was too large), parsed strictly."""
    if data is None:
        raise ChannelError("the provider's answer is too large")
    try:
        return parse_json(data) if data else None
    except CanonicalJsonError as exc:
        raise ChannelError(f"the provider answered with malformed JSON: {exc.describe()}") from exc


def task_ref_of(answer: Any) -> TaskRef:
    """The task id and capability token of a create answer, both checked."""
    if not isinstance(answer, dict):
        raise ProtocolError("the provider's create answer is not an object")
    task_id, token = answer.get("task_id"), answer.get("capability_token")
    if not isinstance(task_id, str) or not isinstance(token, str):
        raise ProtocolError("the provider's create answer is malformed")
    parse_task_id(task_id)
    if len(token) > 256 or not all(c.isascii() and (c.isalnum() or c in "-_") for c in token):
        raise ProtocolError("the provider's capability token is malformed")
    return TaskRef(task_id, token)
