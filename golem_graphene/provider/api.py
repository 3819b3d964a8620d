"""The provider's HTTP API (aiohttp), published as OpenAPI at ``/v1/openapi.json``.

Authentication: requestors send ``Authorization: Bearer <requestor token>`` (from the provider
config, unless it runs in open mode); every call about a task also needs that task's capability
token in ``X-Task-Token``. Both are compared in constant time, and a task that belongs to
another requestor is reported as not found. Every error is JSON ``{"code", "message"}`` with a
stable code. Uploads stream to disk and downloads stream from disk; nothing is held whole in
memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import json
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from golem_graphene import __version__
from golem_graphene._batched_write import write_and_close
from golem_graphene.errors import (
    AuthError,
    Error,
    LimitError,
    NotFoundError,
    ProtocolError,
    TransitionError,
)
from golem_graphene.protocol.messages import CreateTaskRequest, CreateTaskResponse, ErrorBody
from golem_graphene.protocol.names import TaskState, validate_file_name
from golem_graphene.protocol.spec import TaskSpec
from golem_graphene.provider.engine import TaskEngine
from golem_graphene.provider.lifecycle import Task
from golem_graphene.provider.openapi import openapi_document
from golem_graphene.sealing.age import max_ciphertext_size
from golem_graphene.sealing.input_manifest import ciphertext_name

__all__ = ["build_app"]

log = structlog.get_logger(__name__)

UPLOAD_CHUNK = 256 * 1024
WRITE_BATCH = 4 << 20  # uploads reach the disk a few MiB at a time, off the event loop
MAX_SEALED_MANIFEST = 256 * 1024

ENGINE: web.AppKey[TaskEngine] = web.AppKey("engine", TaskEngine)


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = ErrorBody(code=code, message=message[:1000])
    return web.json_response(body.model_dump(mode="json"), status=status, headers=headers)


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except Error as exc:
        if exc.http_status in (401, 403, 429):
            # Refusals an operator watches for (wrong tokens, a requestor over its limits):
            # the route, the code and the peer, never a header (tokens travel in headers).
            log.warning(
                "request refused",
                status=exc.http_status,
                code=exc.code,
                method=request.method,
                path=request.path,
                peer=request.remote,
            )
        return _error(exc.http_status, exc.code, exc.describe())
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
                exc.status, "http_error"
            )
            allow = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            return _error(exc.status, code, exc.reason, allow)
        raise
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error in a request", path=request.path)
        return _error(500, "internal", "internal error (logged on the provider)")


def _engine(request: web.Request) -> TaskEngine:
    return request.app[ENGINE]


def _owner(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else None
    owner = _engine(request).config.auth.owner_of(token)
    if owner is None:
        raise AuthError(
            "unauthorized",
            "a valid requestor token is required (Authorization: Bearer <token>)",
            401,
        )
    return owner


def _task(request: web.Request) -> Task:
    owner = _owner(request)
    task_id = request.match_info["task_id"]
    task = _engine(request).store.get(task_id)
    if task is None or not hmac.compare_digest(task.owner, owner):
        raise NotFoundError("no such task", found=task_id[:64])
    token = request.headers.get("X-Task-Token", "")
    digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()
    if not hmac.compare_digest(digest, task.capability_sha256):
        raise AuthError("forbidden", "the task token (X-Task-Token) is missing or wrong", 403)
    return task


async def _json_body(request: web.Request) -> bytes:
    limit = _engine(request).config.limits.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise LimitError(
            "body_too_large",
            "the request body is too large",
            status=413,
            expected=f"<= {limit} bytes (limits.max_body_bytes)",
            found=request.content_length,
        )
    # read(n) returns what has arrived, not n bytes: read to the end (or past the limit), with
    # the upload idle timeout, so a body sent in pieces is whole and a stalled one ends.
    idle = _engine(request).config.limits.upload_idle_seconds
    data = bytearray()
    try:
        while chunk := await _read_within(request, limit + 1 - len(data), idle):
            data += chunk
            if len(data) > limit:
                raise LimitError(
                    "body_too_large",
                    "the request body is too large",
                    status=413,
                    expected=f"<= {limit} bytes (limits.max_body_bytes)",
                    found=f"> {limit}",
                )
    except TimeoutError:
        raise LimitError(
            "upload_stalled",
            "the request body stopped arriving",
            status=408,
            expected=f"data at least every {idle:g} s (limits.upload_idle_seconds)",
        ) from None
    return bytes(data)


async def _read_within(request: web.Request, size: int, seconds: float) -> bytes:
    """Up to ``size`` bytes of the body as they arrive; ``TimeoutError`` after ``seconds``."""
    async with asyncio.timeout(seconds):
        return await request.content.read(size)


# --- handlers ----------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    engine = _engine(request)
    info: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "runner": engine.runner.name,
        "simulated": engine.runner.simulated,
    }
    platform = getattr(engine.runner, "platform", None)
    if platform is not None:
        info["sim_root_fingerprint"] = platform.root_fingerprint
    return web.json_response(info)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def list_specs(request: web.Request) -> web.Response:
    _owner(request)
    return web.json_response({"specs": _engine(request).offered_specs()})


async def put_spec(request: web.Request) -> web.Response:
    """A requestor's own spec: the body is a task package (a tar of ``task.toml`` and its
    container image), kept under ``data_dir/requestor-specs/<name>`` once its image built."""
    _owner(request)
    engine = _engine(request)
    images = engine.config.images
    if not images.accept_from_requestors:
        raise AuthError(
            "images_not_accepted",
            "this provider runs only its own task specs (its operator has not set "
            "images.accept_from_requestors, --accept-images)",
            403,
        )
    try:
        name = validate_file_name(request.match_info["name"], "spec name")
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    folder = engine.requestor_specs_dir
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=".upload-", suffix=".tar", dir=folder)
    os.close(fd)
    package = Path(temp)
    try:
        await _stream_to_file(
            request,
            package,
            images.max_package_bytes,
            engine.config.limits.upload_idle_seconds,
            name,
            what=f"the task package of spec {name!r}",
            code="package_too_large",
            limit_name="images.max_package_bytes",
        )
        digest, new = await engine.add_requestor_spec(name, package)
    finally:
        package.unlink(missing_ok=True)
    return web.json_response({"name": name, "sha256": digest}, status=201 if new else 200)


async def create_task(request: web.Request) -> web.Response:
    owner = _owner(request)
    body = CreateTaskRequest.from_json(await _json_body(request))
    task, token = await _engine(request).create(
        owner=owner,
        spec_name=body.spec_name,
        spec_sha256=body.spec_digest.hex(),
        nonce=body.nonce.hex(),
        requestor_key=body.requestor_key,
    )
    response = CreateTaskResponse(task_id=bytes.fromhex(task.task_id), capability_token=token)
    return web.json_response(response.model_dump(mode="json"), status=201)


async def get_task(request: web.Request) -> web.Response:
    return web.json_response(_task(request).public())


async def get_evidence(request: web.Request) -> web.Response:
    task = _task(request)
    return web.Response(body=_engine(request).evidence(task), content_type="application/json")


def _upload_limit(engine: TaskEngine, task: Task, name: str) -> int:
    spec = TaskSpec.from_path(engine.spec_path(task.spec_name))
    declared = spec.input(name)
    if declared is None:
        raise NotFoundError("the task spec declares no such input", found=name)
    return max_ciphertext_size(declared.max_size)


async def put_input(request: web.Request) -> web.Response:
    task = _task(request)
    engine = _engine(request)
    if task.state is not TaskState.ATTESTED:
        raise TransitionError(
            "inputs are accepted only while the task is attested", found=task.state.value
        )
    try:
        name = validate_file_name(request.match_info["name"], "input name")
    except ValueError as exc:
        raise ProtocolError(str(exc)) from None
    per_input = _upload_limit(engine, task, name)
    per_task = engine.config.limits.max_input_bytes_per_task
    target = engine.io_dir(task.task_id) / "inputs" / ciphertext_name(name)
    previous = target.stat().st_size if target.exists() else 0
    written = await _stream_to_file(
        request,
        target,
        min(per_input, per_task - task.input_bytes + previous),
        engine.config.limits.upload_idle_seconds,
        name,
    )
    task.input_bytes += written - previous
    engine.store.save(task)
    await engine.store.event(
        task, bytes_done=written, bytes_total=written, message=f"input {name} received"
    )
    return web.json_response({"name": name, "size": written}, status=201)


async def _stream_to_file(
    request: web.Request,
    target: Path,
    limit: int,
    idle: float,
    name: str,
    *,
    what: str | None = None,
    code: str = "input_too_large",
    limit_name: str = "the spec's max_size or limits.max_input_bytes_per_task",
) -> int:
    what = what or f"input {name!r}"
    if request.content_length is not None and request.content_length > limit:
        raise LimitError(
            code,
            f"{what} is larger than allowed ({limit_name})",
            status=413,
            expected=f"<= {limit} bytes",
            found=request.content_length,
        )
    partial = target.with_name(target.name + ".part")
    loop = asyncio.get_running_loop()
    written = 0
    writing: asyncio.Future[None] | None = None
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        try:
            batch: list[bytes] = []
            batched = 0
            # One batch is written on a worker thread while the next arrives. The idle timeout
            # runs only while waiting for the client, not for the disk.
            async with asyncio.timeout(idle) as deadline:
                while True:
                    chunk = await request.content.readany()
                    if chunk:
                        written += len(chunk)
                        if written > limit:
                            raise LimitError(
                                code,
                                f"{what} is larger than allowed ({limit_name})",
                                status=413,
                                expected=f"<= {limit} bytes",
                                found=f"> {limit}",
                            )
                        batch.append(chunk)
                        batched += len(chunk)
                    if batched >= WRITE_BATCH or (batch and not chunk):
                        if writing is not None:
                            deadline.reschedule(None)
                            await writing
                        writing = loop.run_in_executor(None, write_and_close, os.dup(fd), batch)
                        batch, batched = [], 0
                    if not chunk:
                        break
                    deadline.reschedule(loop.time() + idle)
                deadline.reschedule(None)
                if writing is not None:
                    await writing
        finally:
            os.close(fd)
        os.replace(partial, target)
    except TimeoutError:
        raise LimitError(
            "upload_stalled",
            "the upload sent nothing for too long",
            status=408,
            expected=f"data at least every {idle:g} s (limits.upload_idle_seconds)",
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise LimitError(
            "insufficient_storage",
            f"the provider has no disk space left for {name!r}",
            status=507,
            found=f"{written} bytes received",
        ) from None
    finally:
        if writing is not None:
            # Not awaited after an earlier failure: its error (if any) is not news.
            writing.add_done_callback(_retrieve)
        partial.unlink(missing_ok=True)
    return written


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()


async def put_manifest(request: web.Request) -> web.Response:
    task = _task(request)
    engine = _engine(request)
    if task.state is not TaskState.ATTESTED:
        raise TransitionError(
            "the manifest is accepted only while the task is attested", found=task.state.value
        )
    target = engine.io_dir(task.task_id) / "manifest.sealed"
    size = await _stream_to_file(
        request, target, MAX_SEALED_MANIFEST, engine.config.limits.upload_idle_seconds, "manifest"
    )
    return web.json_response({"size": size}, status=201)


async def start_task(request: web.Request) -> web.Response:
    task = _task(request)
    await _engine(request).begin(task)
    return web.json_response(task.public(), status=202)


async def events(request: web.Request) -> web.StreamResponse:
    task = _task(request)
    engine = _engine(request)
    try:
        seq = int(request.query.get("since", request.headers.get("Last-Event-ID", "0")))
    except ValueError:
        raise ProtocolError("since must be an integer") from None
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    while True:
        # A finished task gets no new event: end at once rather than after a keep-alive.
        wait = 0.0 if task.terminal else 15.0
        items = await engine.store.events_since(task.task_id, max(seq, 0), timeout=wait)
        if not items:
            await response.write(b": keep-alive\n\n")
            if task.terminal:
                break
            continue
        for item in items:
            await response.write(
                f"id: {item['seq']}\nevent: task\ndata: {json.dumps(item)}\n\n".encode()
            )
            seq = item["seq"] + 1
        if (
            task.terminal
            and engine.store.get(task.task_id) is not None
            and items[-1]["state"] in ("done", "failed", "cancelled")
        ):
            break
    with contextlib.suppress(ConnectionResetError):
        await response.write_eof()
    return response


def _output_path(engine: TaskEngine, task: Task, name: str) -> Path:
    if task.state is not TaskState.DONE:
        raise TransitionError("outputs are ready once the task is done", found=task.state.value)
    if name != "receipt.json":
        try:
            validate_file_name(name, "output file")
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
    path = engine.outputs_dir(task.task_id) / name
    if not path.is_file() or path.is_symlink():
        raise NotFoundError("no such output", found=name)
    return path


async def list_outputs(request: web.Request) -> web.Response:
    task = _task(request)
    engine = _engine(request)
    _output_path(engine, task, "receipt.json")
    files = [
        {"name": p.name, "size": p.stat().st_size}
        for p in sorted(engine.outputs_dir(task.task_id).iterdir())
        if p.is_file() and not p.is_symlink()
    ]
    return web.json_response({"files": files})


async def get_output(request: web.Request) -> web.StreamResponse:
    task = _task(request)
    path = _output_path(_engine(request), task, request.match_info["name"])
    return web.FileResponse(
        path, chunk_size=UPLOAD_CHUNK, headers={"Content-Type": "application/octet-stream"}
    )


async def get_receipt(request: web.Request) -> web.StreamResponse:
    task = _task(request)
    path = _output_path(_engine(request), task, "receipt.json")
    return web.FileResponse(path, headers={"Content-Type": "application/json"})


async def cancel_task(request: web.Request) -> web.Response:
    task = _task(request)
    await _engine(request).cancel(task)
    return web.json_response(task.public())


async def delete_task(request: web.Request) -> web.Response:
    task = _task(request)
    await _engine(request).delete(task)
    return web.Response(status=204)


def build_app(engine: TaskEngine) -> web.Application:
    """The aiohttp application serving ``engine``."""
    app = web.Application(
        middlewares=[errors_middleware], client_max_size=engine.config.limits.max_body_bytes
    )
    app[ENGINE] = engine
    app.router.add_get("/v1/health", health)
    app.router.add_get("/v1/openapi.json", openapi)
    app.router.add_get("/v1/specs", list_specs)
    app.router.add_put("/v1/specs/{name}", put_spec)
    app.router.add_post("/v1/tasks", create_task)
    app.router.add_get("/v1/tasks/{task_id}", get_task)
    app.router.add_delete("/v1/tasks/{task_id}", delete_task)
    app.router.add_get("/v1/tasks/{task_id}/evidence", get_evidence)
    app.router.add_put("/v1/tasks/{task_id}/inputs/{name}", put_input)
    app.router.add_put("/v1/tasks/{task_id}/manifest", put_manifest)
    app.router.add_post("/v1/tasks/{task_id}/start", start_task)
    app.router.add_get("/v1/tasks/{task_id}/events", events)
    app.router.add_get("/v1/tasks/{task_id}/outputs", list_outputs)
    app.router.add_get("/v1/tasks/{task_id}/outputs/{name}", get_output)
    app.router.add_get("/v1/tasks/{task_id}/receipt", get_receipt)
    app.router.add_post("/v1/tasks/{task_id}/cancel", cancel_task)
    return app
