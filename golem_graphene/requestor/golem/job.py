"""A confidential task inside a yapapi worker: the SDK yields the scripts, you yield them on.

::

    async def worker(ctx, tasks):
        async for task in tasks:
            async with ConfidentialTask(ctx, spec, task.data, out_dir, identity=me) as job:
                async for script in job:
                    yield script
            task.accept_result(job.result)

Between the scripts the SDK does the protocol's work (DESIGN.md section 4) with the same code as
the direct HTTP channel (:class:`~golem_graphene.requestor.client.Requestor` over a
:class:`~golem_graphene.requestor.golem.channel.GolemChannel`): it verifies the evidence the
first script downloaded before it seals anything to the enclave, seals the inputs and the
manifest for the second, and checks the receipt and every output before anything lands in
``out_dir``. A failure anywhere raises :class:`~golem_graphene.requestor.client.TaskStepError`
out of the ``async with`` block (catch it to ``task.reject_result(..., retry=True)``: another
provider may do better). Works with yapapi's ``WorkContext`` and with
:mod:`golem_graphene.requestor.golem.work`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from golem_graphene._internal.tasks import settle
from golem_graphene.errors import UsageError
from golem_graphene.requestor.client import (
    EventCallback,
    Requestor,
    RequestorPolicy,
    TaskResult,
    TaskStepError,
)
from golem_graphene.requestor.golem.channel import GolemChannel
from golem_graphene.requestor.golem.work import WorkContextExecutor
from golem_graphene.sealing.keys import X25519Identity

__all__ = ["ConfidentialTask"]


class ConfidentialTask:
    """One confidential task on a worker's activity; ``async with``, then ``async for`` scripts."""

    def __init__(
        self,
        ctx: Any,
        spec: str | Path,
        inputs: Mapping[str, str | Path],
        out_dir: str | Path,
        *,
        identity: X25519Identity,
        policy: RequestorPolicy | None = None,
        args: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        on_event: EventCallback | None = None,
    ) -> None:
        self._scripts: asyncio.Queue[Any] = asyncio.Queue()
        self._executor = WorkContextExecutor(ctx, self._scripts.put_nowait)
        self._channel = GolemChannel(self._executor)
        self._requestor = Requestor(self._channel, identity=identity, policy=policy)
        self._call = (spec, dict(inputs), out_dir, args, env, on_event)
        self._runner: asyncio.Task[TaskResult] | None = None
        self._result: TaskResult | None = None

    @property
    def result(self) -> TaskResult:
        """The verified result (outputs decrypted in ``out_dir``); once the scripts are done."""
        if self._result is None:
            raise UsageError("the confidential task has not finished")
        return self._result

    async def _run(self) -> TaskResult:
        spec, inputs, out_dir, args, env, on_event = self._call
        async with self._requestor as requestor:
            return await requestor.run(spec, inputs, out_dir, args=args, env=env, on_event=on_event)

    async def __aenter__(self) -> ConfidentialTask:
        self._runner = asyncio.create_task(self._run())
        return self

    def __aiter__(self) -> ConfidentialTask:
        return self

    async def __anext__(self) -> Any:
        """The next script to ``yield``; ends when the task is verified (or raises its error)."""
        if self._runner is None:
            raise UsageError("use ConfidentialTask in `async with` before iterating")
        get = asyncio.ensure_future(self._scripts.get())
        await asyncio.wait({get, self._runner}, return_when=asyncio.FIRST_COMPLETED)
        if get.done():
            return get.result()
        get.cancel()
        await settle([get])
        self._result = self._runner.result()  # raises the task's TaskStepError
        raise StopAsyncIteration

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        runner = self._runner
        if runner is None or runner.done():
            if runner is not None and exc is None and not runner.cancelled():
                self._result = runner.result()
            return
        if exc is None or isinstance(exc, asyncio.CancelledError | GeneratorExit):
            # The worker left early: end the task without running anything more.
            self._executor.close("the worker left the confidential task")
            runner.cancel()
            await settle([runner])
            if exc is None:
                raise UsageError("the worker stopped yielding the confidential task's scripts")
            return
        # A command failed on the provider (yapapi raised it at the worker's `yield`): let the
        # protocol code turn it into the step's error, then raise that instead.
        self._executor.close(f"{type(exc).__name__}: {exc}")
        self._executor.fail(exc)
        try:
            await runner
        except TaskStepError as step_error:
            raise step_error from exc
