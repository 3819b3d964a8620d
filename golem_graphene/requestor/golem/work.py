"""yapapi's worker pattern, minimal and self-contained: ``WorkContext``, ``Script``, ``Task``.

A yapapi requestor writes a *worker*: an async generator that receives a ``WorkContext`` and the
tasks, builds scripts with ``ctx.new_script()`` (``script.run(...)``, ``script.upload_file``,
``script.download_file``), ``yield``s each script for the engine to run on the provider, and
accepts or rejects each task (yapapi ``script/__init__.py``, ``ctx.py``, engine
``process_batches``: the worker gets a future of the batch results back from ``yield``; a failed
command raises ``CommandExecutionError`` into the worker at the ``yield``, and its own future is
never resolved).

This module reproduces that contract without yapapi. With yapapi installed (the ``golem``
extra), :mod:`golem_graphene.requestor.golem` hands out yapapi's own classes instead; these stay
for :func:`execute_tasks`, which drives a worker on one activity without yagna:

- :class:`WorkContext`, :class:`Script`, :class:`CommandExecuted`,
  :class:`CommandExecutionError` and :class:`Task` mirror yapapi's names and methods;
- :func:`execute_tasks` plays yapapi's engine on one activity, any
  :class:`~golem_graphene.requestor.golem.executor.ExeScriptExecutor` (in the tests, the
  supervisor simulator driving the real runtime);
- :class:`WorkContextExecutor` goes the other way: it turns channel batches into scripts made
  with ``ctx.new_script()``, using only the yapapi calls listed above, so the confidential-task
  helper (:mod:`golem_graphene.requestor.golem.job`) runs on yapapi's real ``WorkContext`` too.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from golem_graphene.requestor.channel import ChannelError
from golem_graphene.requestor.golem.executor import (
    Command,
    CommandResult,
    DownloadFile,
    ExeScriptExecutor,
    Run,
    SendFile,
)

__all__ = [
    "CommandExecuted",
    "CommandExecutionError",
    "Script",
    "Task",
    "WorkContext",
    "WorkContextExecutor",
    "Worker",
    "execute_tasks",
]

D = TypeVar("D")
_script_ids = itertools.count(1)


@dataclass(frozen=True)
class CommandExecuted:
    """A command that ran (yapapi ``events.CommandExecuted``): ``success``, output, message."""

    command: str
    success: bool
    message: str | None = None
    stdout: str | None = None
    stderr: str | None = None


class CommandExecutionError(Exception):
    """A command of a yielded script failed (yapapi ``rest.activity.CommandExecutionError``)."""

    def __init__(self, command: str, message: str | None = None, stderr: str | None = None):
        self.command = command
        self.message = message
        self.stderr = stderr
        super().__init__(f"command {command} failed: {message or ''} {stderr or ''}".strip())


@dataclass
class _Scheduled:
    command: Command
    future: asyncio.Future[CommandExecuted]
    after: Callable[[], Awaitable[None]] | None = None


class Script:
    """Commands to run on the provider, in order, once the worker ``yield``s the script."""

    def __init__(self, ctx: WorkContext, timeout: timedelta | None = None) -> None:
        self._ctx = ctx
        self.timeout = timeout
        self.id = next(_script_ids)
        self._scheduled: list[_Scheduled] = []

    def _add(
        self, command: Command, after: Callable[[], Awaitable[None]] | None = None
    ) -> asyncio.Future[CommandExecuted]:
        future: asyncio.Future[CommandExecuted] = asyncio.get_running_loop().create_future()
        self._scheduled.append(_Scheduled(command, future, after))
        return future

    def run(self, cmd: str, *args: str) -> Awaitable[CommandExecuted]:
        """ExeScript ``run`` of ``cmd`` (for ``gramine-sgx``: an entry point) with ``args``."""
        return self._add(Run(cmd, tuple(args)))

    def upload_file(self, src_path: str, dst_path: str) -> Awaitable[CommandExecuted]:
        """Send the local file ``src_path`` to the provider's ``dst_path``."""
        return self._add(SendFile(Path(src_path), dst_path))

    def upload_bytes(self, data: bytes, dst_path: str) -> Awaitable[CommandExecuted]:
        """Send ``data`` to the provider's ``dst_path``."""
        source = self._ctx._staging_file()
        source.write_bytes(data)
        return self._add(SendFile(source, dst_path))

    def download_file(self, src_path: str, dst_path: str) -> Awaitable[CommandExecuted]:
        """Fetch the provider's ``src_path`` into the local ``dst_path``."""
        return self._add(DownloadFile(src_path, Path(dst_path)))

    def download_bytes(
        self,
        src_path: str,
        on_download: Callable[[bytes], Awaitable[Any]],
        limit: int = 1 << 20,
    ) -> Awaitable[CommandExecuted]:
        """Fetch ``src_path`` and pass its bytes (at most ``limit``) to ``on_download``."""
        target = self._ctx._staging_file()

        async def after() -> None:
            data = target.read_bytes()
            if len(data) > limit:
                raise CommandExecutionError(f"download {src_path}", "more bytes than the limit")
            await on_download(data)

        return self._add(DownloadFile(src_path, target), after)


class WorkContext:
    """One activity on one provider, as the worker sees it."""

    def __init__(
        self, activity: ExeScriptExecutor, *, provider_name: str = "", activity_id: str = ""
    ) -> None:
        self._activity = activity
        self.provider_name = provider_name
        self.id = activity_id or f"local-{id(self):x}"
        self._staging: Path | None = None
        self._files = itertools.count()

    def new_script(self, timeout: timedelta | None = None) -> Script:
        """A new, empty script on this activity."""
        return Script(self, timeout)

    def _staging_file(self) -> Path:
        if self._staging is None:
            self._staging = Path(tempfile.mkdtemp(prefix="golem-ctx-"))
        return self._staging / f"file-{next(self._files)}"

    async def _run_script(self, script: Script) -> list[CommandExecuted]:
        """Run ``script``: resolve each command's future, or raise at the first failure."""
        commands = [s.command for s in script._scheduled]
        timeout = script.timeout.total_seconds() if script.timeout else None
        async with asyncio.timeout(timeout):
            results = await self._activity.execute(commands)
        events: list[CommandExecuted] = []
        for scheduled, result in zip(script._scheduled, results, strict=False):
            event = CommandExecuted(
                _describe(scheduled.command),
                result.ok,
                result.message or None,
                result.stdout,
                result.stderr,
            )
            if not result.ok:
                raise CommandExecutionError(event.command, result.message, result.stderr)
            if scheduled.after is not None:
                await scheduled.after()
            scheduled.future.set_result(event)
            events.append(event)
        if len(results) < len(commands):
            raise CommandExecutionError("script", "the activity ran only part of the script")
        return events


def _describe(command: Command) -> str:
    if isinstance(command, Run):
        return " ".join(["run", command.entrypoint, *command.args])
    if isinstance(command, SendFile):
        return f"upload {command.dst}"
    return f"download {command.src}"


@dataclass
class Task(Generic[D]):
    """A unit of work handed to the worker (yapapi ``Task``)."""

    data: D
    result: Any = None
    rejected: str | None = None
    retries: int = 0
    accepted: bool = False
    _retry: bool = field(default=False, repr=False)

    def accept_result(self, result: Any = None) -> None:
        """The task is done with ``result``."""
        self.accepted, self.result, self.rejected = True, result, None

    def reject_result(self, reason: str | None = None, retry: bool = False) -> None:
        """The task failed; ``retry`` gives it to the worker again (at most three times)."""
        self.rejected = reason or "rejected"
        self._retry = retry


Worker = Callable[[WorkContext, AsyncIterator[Task[D]]], AsyncGenerator[Script, Any]]


async def execute_tasks(
    worker: Worker[D],
    data: Iterable[D],
    activity: ExeScriptExecutor,
    *,
    provider_name: str = "",
    max_retries: int = 3,
) -> AsyncIterator[Task[D]]:
    """Run ``worker`` over ``data`` on ``activity``, yielding each task once it is decided.

    The engine's side of yapapi's worker contract on a single activity: ``yield script`` gets
    a future of the batch's results, a failed command is raised into the worker at its
    ``yield``. An exception the worker lets escape ends the run and is raised here.
    """
    pending: collections.deque[Task[D]] = collections.deque(Task(d) for d in data)
    decided: collections.deque[Task[D]] = collections.deque()
    current: list[Task[D]] = []

    def settle() -> None:
        for task in list(current):
            if task.accepted or (
                task.rejected and not (task._retry and task.retries < max_retries)
            ):
                decided.append(task)
                current.remove(task)
            elif task.rejected:
                task.retries += 1
                task.rejected, task._retry = None, False
                current.remove(task)
                pending.append(task)

    async def tasks() -> AsyncIterator[Task[D]]:
        while True:
            settle()
            if not pending:
                return
            task = pending.popleft()
            current.append(task)
            yield task

    ctx = WorkContext(activity, provider_name=provider_name)
    agen = worker(ctx, tasks())
    loop = asyncio.get_running_loop()
    try:
        script: Script | None = await anext(agen)
    except StopAsyncIteration:
        script = None
    while script is not None:
        try:
            events = await ctx._run_script(script)
        except CommandExecutionError as exc:
            try:
                script = await agen.athrow(exc)
            except StopAsyncIteration:
                script = None
        else:
            results: asyncio.Future[list[CommandExecuted]] = loop.create_future()
            results.set_result(events)
            try:
                script = await agen.asend(results)
            except StopAsyncIteration:
                script = None
        settle()
        while decided:
            yield decided.popleft()
    settle()
    while decided:
        yield decided.popleft()


class WorkContextExecutor:
    """Channel batches as scripts of a (yapapi or our) ``WorkContext``, yielded by a worker.

    :meth:`execute` builds a script with ``ctx.new_script()`` and hands it to ``submit`` (the
    confidential-task helper passes it to the worker, which ``yield``s it); it then waits for
    the commands' futures. yapapi never resolves the future of a failed command and raises the
    error into the worker instead, so the helper reports it here with :meth:`fail`.
    """

    def __init__(self, ctx: Any, submit: Callable[[Any], None]) -> None:
        self._ctx = ctx
        self._submit = submit
        self._failure: asyncio.Future[BaseException] | None = None
        self._closed: str | None = None

    def fail(self, error: BaseException) -> None:
        """The worker saw ``error`` at its ``yield``: the pending batch failed."""
        if self._failure is not None and not self._failure.done():
            self._failure.set_result(error)

    def close(self, reason: str) -> None:
        """No more batches can run (the worker is ending)."""
        self._closed = reason

    async def execute(self, commands: Sequence[Command]) -> list[CommandResult]:
        if self._closed is not None:
            raise ChannelError(f"the activity's worker has ended: {self._closed}")
        script = self._ctx.new_script()
        futures: list[asyncio.Future[Any]] = []
        for command in commands:
            if isinstance(command, Run):
                awaitable = script.run(command.entrypoint, *command.args)
            elif isinstance(command, SendFile):
                awaitable = script.upload_file(str(command.src), command.dst)
            else:
                awaitable = script.download_file(command.src, str(command.dst))
            futures.append(asyncio.ensure_future(awaitable))
        self._failure = asyncio.get_running_loop().create_future()
        failure = self._failure
        self._submit(script)
        remaining: set[asyncio.Future[Any]] = set(futures)
        while remaining and not failure.done():
            await asyncio.wait(remaining | {failure}, return_when=asyncio.FIRST_COMPLETED)
            remaining = {f for f in remaining if not f.done()}
        self._failure = None
        return self._results(commands, futures, failure)

    @staticmethod
    def _results(
        commands: Sequence[Command],
        futures: list[asyncio.Future[Any]],
        failure: asyncio.Future[BaseException],
    ) -> list[CommandResult]:
        results: list[CommandResult] = []
        for command, future in zip(commands, futures, strict=True):
            if future.done() and not future.cancelled() and future.exception() is None:
                event = future.result()
                results.append(
                    CommandResult(
                        command,
                        True,
                        getattr(event, "stdout", None) or "",
                        getattr(event, "stderr", None) or "",
                    )
                )
                continue
            error: BaseException | None = None
            if future.done() and not future.cancelled():
                error = future.exception()
            elif failure.done():
                error = failure.result()
            results.append(
                CommandResult(
                    command,
                    False,
                    stderr=str(getattr(error, "stderr", "") or ""),
                    message=str(getattr(error, "message", None) or error or "failed"),
                )
            )
            break
        return results
