"""``settle``: waiting for tasks told to stop, their outcomes consumed, the caller's own cancel
still raised (awaiting them under ``suppress(CancelledError)`` swallowed it, and a cancelled
caller went on)."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from golem_graphene._internal.tasks import settle


async def test_a_cancel_of_the_caller_is_raised() -> None:
    stubborn = asyncio.ensure_future(asyncio.sleep(3600))
    try:
        caller = asyncio.ensure_future(settle([stubborn]))
        await asyncio.sleep(0)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    finally:
        stubborn.cancel()
        await settle([stubborn])


async def test_outcomes_are_consumed_not_raised() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    failed = asyncio.ensure_future(fails())
    cancelled = asyncio.ensure_future(asyncio.sleep(3600))
    await asyncio.sleep(0)
    cancelled.cancel()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await settle([failed, cancelled])
        await settle([])
    assert failed.done() and cancelled.cancelled()
    # Retrieved: collecting the failed task logs no "exception was never retrieved".
    assert failed._log_traceback is False  # type: ignore[attr-defined]
    del failed
    gc.collect()
