"""Waiting for asyncio tasks that were told to stop, without swallowing one's own cancel."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["settle"]


async def settle(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Wait until every one of ``tasks`` is done, their outcomes consumed (nothing raised).

    ``asyncio.wait`` rather than ``await`` under ``suppress(CancelledError)``: that would also
    swallow a cancellation of the caller arriving meanwhile, and a cancelled caller would go
    on (the hang behind a DELETE that never answered). A cancel of the caller is raised here.
    """
    waiting = list(tasks)
    if not waiting:
        return
    await asyncio.wait(waiting)
    for task in waiting:
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" at collection
