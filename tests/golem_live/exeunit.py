"""Stand-ins for what PyPI lacks on the provider's side: ya-provider's activity part and exe-unit.

Without ``exe-unit`` a real yagna cannot run an activity: creation waits for the ExeUnit to
report ``Initialized`` (408 otherwise), and ExeScript batches go to the ExeUnit over the Golem
service bus. Here:

- :class:`ProviderActivities` plays ya-provider's activity loop on the provider's REST key: it
  takes ``CreateActivity``/``DestroyActivity`` events from yagna (``GET /activity-api/v1/events``)
  and reports the ExeUnit's states with ``PUT /activity-api/v1/activity/{id}/state``, so yagna's
  real activity service creates and destroys the activity for yapapi;
- :class:`ExeUnitStandIn` runs one activity's ExeScript as the ExeUnit does (``deploy``: fetch
  ``golem.srv.comp.task_package`` from the agreement and check its SHA3 hash, then the runtime's
  ``deploy``; ``start``; ``run``; ``transfer`` between ``container:`` paths and gftp URLs;
  results in ``ExeScriptCommandResult`` form), driving the real runtime process through the
  supervisor simulator of ``tests/golem`` (``supervisor.ExeUnitSimulator``);
- :class:`ActivityProxy` is where the batches reach it: yapapi's activity client is pointed at
  this loopback server (``ApiConfig(activity_url=...)``), which answers ``exec`` and the batch
  results itself and forwards every other activity call (create, destroy, state) to yagna.

So yapapi's engine, yagna's market, activity and payment services and our runtime are real;
exe-unit, its service-bus leg and gftp's transport are simulated.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from market import Rest, RestError
from supervisor import ExeUnitSimulator

EXEC_TIMEOUT = 300.0


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class CommandResult:
    index: int
    ok: bool
    stdout: str | None = None
    stderr: str | None = None
    message: str | None = None
    event_date: str = field(default_factory=_now)

    def to_json(self, last: int) -> dict[str, Any]:
        """ya-client's ``ExeScriptCommandResult``."""
        return {
            "index": self.index,
            "eventDate": self.event_date,
            "result": "Ok" if self.ok else "Error",
            "stdout": self.stdout,
            "stderr": self.stderr,
            "message": self.message,
            "isBatchFinished": self.index == last or not self.ok,
        }


@dataclass
class Batch:
    commands: list[dict[str, Any]]
    results: list[CommandResult] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def finished(self) -> bool:
        return bool(self.results) and (
            len(self.results) == len(self.commands) or not self.results[-1].ok
        )


class ExeUnitError(Exception):
    """A command failed as the ExeUnit would report it (the message goes to the result)."""


@dataclass
class ExeUnitStandIn:
    """One activity: its ExeScript batches, run in order on the real runtime process."""

    activity_id: str
    agreement_id: str
    workdir: Path
    runtime_flags: list[str]
    provider: Rest
    gftp_dir: Path
    set_state: Callable[[str], Awaitable[None]]
    exeunit: ExeUnitSimulator | None = None
    batches: dict[str, Batch] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def submit(self, commands: list[dict[str, Any]]) -> str:
        batch_id = secrets.token_hex(16)
        batch = Batch(commands)
        self.batches[batch_id] = batch
        batch.task = asyncio.create_task(self._run(batch))
        return batch_id

    async def _run(self, batch: Batch) -> None:
        async with self._lock:  # the ExeUnit runs one batch at a time, in order
            for index, command in enumerate(batch.commands):
                try:
                    result = await self._one(index, command)
                except (ExeUnitError, OSError, KeyError, ValueError, AssertionError) as exc:
                    result = CommandResult(index, False, message=str(exc) or type(exc).__name__)
                batch.results.append(result)
                batch.changed.set()
                if not result.ok:
                    return

    async def _one(self, index: int, command: dict[str, Any]) -> CommandResult:
        ((name, args),) = command.items()
        if name == "deploy":
            await self._deploy()
            await self.set_state("Deployed")
            return CommandResult(index, True)
        if name == "start":
            assert self.exeunit is not None, "start before deploy"
            await self.exeunit.start()
            await self.set_state("Ready")
            return CommandResult(index, True)
        if name == "run":
            assert self.exeunit is not None, "run before deploy"
            out = await self.exeunit.run(args["entry_point"], list(args.get("args") or []))
            if out.code != 0:
                message = f"ExeScript command exited with code {out.code}"  # exe-unit's words
                return CommandResult(index, False, out.stdout, out.stderr, message)
            return CommandResult(index, True, out.stdout, out.stderr)
        if name == "transfer":
            self._transfer(str(args["from"]), str(args["to"]))
            return CommandResult(index, True)
        if name == "terminate":
            return CommandResult(index, True)
        raise ExeUnitError(f"unsupported ExeScript command: {name}")

    async def _deploy(self) -> None:
        """Download the agreement's task package, check its hash, deploy the runtime."""
        agreement = await self.provider.call(
            "GET", f"/market-api/v1/agreements/{self.agreement_id}"
        )
        value = str(agreement["demand"]["properties"]["golem.srv.comp.task_package"])
        _, algorithm, digest, url = value.split(":", 3)
        if algorithm != "sha3" or len(digest) != 56:
            raise ExeUnitError(f"unsupported task package hash: {value[:80]}")
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as response,
        ):
            if response.status != 200:
                raise ExeUnitError(f"task package download failed: {response.status}")
            data = await response.read()
        if hashlib.sha3_224(data).hexdigest() != digest:
            raise ExeUnitError("task package hash mismatch")
        package = self.workdir.parent / f"{self.activity_id}.tar"
        package.write_bytes(data)
        self.exeunit = ExeUnitSimulator(self.workdir, package, list(self.runtime_flags))
        await self.exeunit.deploy()

    def _gftp_file(self, url: str, mode: str) -> Path:
        entry = self.gftp_dir / f"{url.rsplit('/', 1)[-1]}.json"
        if not url.startswith("gftp://") or not entry.exists():
            raise ExeUnitError(f"unknown transfer URL: {url}")
        record = json.loads(entry.read_text())
        if record["mode"] != mode:
            raise ExeUnitError(f"{url} is not open for {mode}")
        return Path(record["file"])

    def _transfer(self, source: str, target: str) -> None:
        assert self.exeunit is not None, "transfer before deploy"
        if source.startswith("container:"):
            src = self.exeunit.resolve(source.removeprefix("container:"))
            dst = self._gftp_file(target, "receive")
        elif target.startswith("container:"):
            src = self._gftp_file(source, "publish")
            dst = self.exeunit.resolve(target.removeprefix("container:"))
            dst.parent.mkdir(parents=True, exist_ok=True)
        else:
            raise ExeUnitError(f"a transfer needs one container: side, got {source} -> {target}")
        shutil.copyfile(src, dst)

    def enclave_seconds(self) -> float:
        """The runtime's last reported ``golem.usage.gramine-sgx.enclave_sec`` (0 if none)."""
        if self.exeunit is None or self.exeunit.server is None:
            return 0.0
        values = [
            float(r.body["value"])
            for r in self.exeunit.server.events("rt_status")
            if r.body.get("counter") == "golem.usage.gramine-sgx.enclave_sec"
        ]
        return values[-1] if values else 0.0

    async def close(self) -> None:
        for batch in self.batches.values():
            if batch.task is not None and not batch.task.done():
                batch.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await batch.task
        if self.exeunit is not None:
            if self.exeunit.server is not None and self.exeunit.server.proc.returncode is None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.exeunit.shutdown(), 30)
            await self.exeunit.close()


@dataclass
class ProviderActivities:
    """ya-provider's activity loop: yagna's activity events in, ExeUnit states out."""

    rest: Rest
    root: Path
    runtime_flags: list[str]
    gftp_dir: Path
    activities: dict[str, ExeUnitStandIn] = field(default_factory=dict)
    destroyed: list[str] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    def check(self) -> None:
        if self._task is not None and self._task.done() and not self._task.cancelled():
            error = self._task.exception()
            if error is not None:
                raise RuntimeError("the provider's activity loop failed") from error

    async def _set_state(self, activity_id: str, state: str) -> None:
        await self.rest.call(
            "PUT",
            f"/activity-api/v1/activity/{activity_id}/state",
            body={"state": [state, None], "reason": None, "errorMessage": None},
        )

    async def _loop(self) -> None:
        after = _now()
        while True:
            try:
                events = await self.rest.call(
                    "GET",
                    "/activity-api/v1/events",
                    params={"afterTimestamp": after, "timeout": "2", "maxEvents": "10"},
                )
            except RestError as exc:
                if exc.status != 408:  # yagna answers a poll without events with 408
                    raise
                continue
            for event in events:
                after = event["eventDate"]
                # yagna 0.17.6 sends the kind as {"CreateActivity": {}}, not a plain string.
                kind = event["eventType"]
                kind = next(iter(kind)) if isinstance(kind, dict) else str(kind)
                activity_id = event["activityId"]
                if kind == "CreateActivity" and activity_id not in self.activities:
                    workdir = self.root / activity_id / "work"
                    workdir.parent.mkdir(parents=True)

                    async def set_state(state: str, activity_id: str = activity_id) -> None:
                        await self._set_state(activity_id, state)

                    self.activities[activity_id] = ExeUnitStandIn(
                        activity_id,
                        event["agreementId"],
                        workdir,
                        self.runtime_flags,
                        self.rest,
                        self.gftp_dir,
                        set_state,
                    )
                    await self._set_state(activity_id, "Initialized")
                elif kind == "DestroyActivity" and activity_id in self.activities:
                    await self.activities[activity_id].close()
                    await self._set_state(activity_id, "Terminated")
                    self.destroyed.append(activity_id)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        for activity in self.activities.values():
            await activity.close()


@dataclass
class ActivityProxy:
    """yapapi's activity API endpoint: ``exec`` answered by the stand-in, the rest forwarded."""

    yagna_url: str
    activities: ProviderActivities
    packages: dict[str, Path] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/activity-api/v1/activity/{id}/exec", self._exec)
        app.router.add_get("/activity-api/v1/activity/{id}/exec/{batch}", self._results)
        app.router.add_route("*", "/activity-api/v1/{tail:.*}", self._forward)
        # The requestor's package server, on the same loopback listener.
        app.router.add_get("/packages/{name}", self._package)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    def _activity(self, request: web.Request) -> ExeUnitStandIn:
        activity = self.activities.activities.get(request.match_info["id"])
        if activity is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "no such activity"}))
        return activity

    async def _exec(self, request: web.Request) -> web.Response:
        activity = self._activity(request)
        body = await request.json()
        batch_id = activity.submit(json.loads(body["text"]))
        return web.json_response(batch_id)

    async def _results(self, request: web.Request) -> web.Response:
        activity = self._activity(request)
        batch = activity.batches.get(request.match_info["batch"])
        if batch is None:
            raise web.HTTPNotFound(text=json.dumps({"message": "no such batch"}))
        timeout = min(float(request.query.get("timeout", "5")), EXEC_TIMEOUT)
        seen = len(batch.results)
        deadline = time.monotonic() + timeout
        # Long poll, as yagna does: answer as soon as a command finishes, or at the timeout.
        while len(batch.results) == seen and not batch.finished:
            batch.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(batch.changed.wait(), remaining)
        last = len(batch.commands) - 1
        return web.json_response([r.to_json(last) for r in batch.results])

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        if request.content_type:
            headers["Content-Type"] = request.content_type
        async with self._session.request(
            request.method,
            f"{self.yagna_url}{request.rel_url}",
            headers=headers,
            data=await request.read(),
            timeout=aiohttp.ClientTimeout(total=120),
        ) as response:
            body = await response.read()
            return web.Response(
                status=response.status, body=body, content_type=response.content_type
            )

    async def _package(self, request: web.Request) -> web.FileResponse:
        path = self.packages.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
