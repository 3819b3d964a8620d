"""A bounded byte pipe between the event loop and one worker thread, and a way to run both.

Inputs are sealed, and outputs checked and decrypted, on worker threads (ChaCha20-Poly1305,
SHA-256 and file I/O release the GIL) while the event loop moves the bytes over HTTP. Handing
each block over with ``asyncio.to_thread`` costs a thread hop per block and runs the stages one
after the other; with a pipe both sides run continuously and wait only when it is full or
empty. Memory is bounded by the pipe's capacity (plus one item).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Pipe", "PipeAborted", "run_piped"]

T = TypeVar("T")


class PipeAborted(Exception):
    """The other side of the pipe failed; raised by this side's next pipe operation."""


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Pipe:
    """A FIFO of byte strings from one side to the other: the event loop on one side, one
    worker thread on the other, in either direction.

    ``put``/``get`` are the loop's side (coroutines), ``put_sync``/``take_sync`` the thread's.
    Puts wait while ``capacity`` bytes are queued. ``close`` marks the end of the stream;
    ``abort`` makes every later operation on either side raise :class:`PipeAborted`.
    """

    def __init__(self, capacity: int) -> None:
        self._loop = asyncio.get_running_loop()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # the thread side waits on this
        self._waiter: asyncio.Future[None] | None = None  # the loop side waits on this
        self._items: deque[bytes] = deque()
        self._size = 0
        self._capacity = capacity
        self._want = 0  # bytes take_sync waits for: wake it only then, not on every item
        self._closed = False
        self.cause: BaseException | None = None

    # Called with the lock held.

    def _check(self) -> None:
        if self.cause is not None:
            raise PipeAborted(str(self.cause) or type(self.cause).__name__)

    def _wake_loop(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                self._loop.call_soon_threadsafe(_resolve, waiter)

    # Either side.

    def close(self) -> None:
        """No more items: the reader gets the rest, then the end."""
        with self._lock:
            self._closed = True
            self._changed.notify_all()
            self._wake_loop()

    def abort(self, cause: BaseException) -> bool:
        """Stop both sides (queued items are dropped); False if the pipe was already aborted."""
        with self._lock:
            if self.cause is not None:
                return False
            self.cause = cause
            self._items.clear()
            self._size = 0
            self._changed.notify_all()
            self._wake_loop()
            return True

    # The loop's side.

    async def put(self, item: bytes) -> None:
        """Queue ``item``, waiting while the pipe is full."""
        while True:
            with self._lock:
                self._check()
                if self._size < self._capacity:
                    self._items.append(item)
                    self._size += len(item)
                    if self._want and self._size >= self._want:
                        self._changed.notify()
                    return
                waiter = self._waiter = self._loop.create_future()
            await waiter

    async def get(self) -> bytes | None:
        """The next item, waiting while the pipe is empty; None at the end."""
        while True:
            with self._lock:
                self._check()
                if self._items:
                    item = self._items.popleft()
                    self._size -= len(item)
                    self._changed.notify()
                    return item
                if self._closed:
                    return None
                waiter = self._waiter = self._loop.create_future()
            await waiter

    # The thread's side.

    def put_sync(self, item: bytes) -> None:
        """Queue ``item``, blocking while the pipe is full."""
        with self._lock:
            self._check()
            while self._size >= self._capacity:
                self._changed.wait()
                self._check()
            self._items.append(item)
            self._size += len(item)
            self._wake_loop()

    def take_sync(self, at_least: int) -> list[bytes]:
        """The oldest items, ``at_least`` bytes of them (fewer only at the end: what is left);
        waits until there are that many or the end came. [] at the end.

        Taking batches rather than single items keeps the wake-ups per byte few.
        """
        at_least = max(1, min(at_least, self._capacity))  # puts wait at the capacity
        with self._lock:
            self._check()
            while self._size < at_least and not self._closed:
                self._want = at_least
                self._changed.wait()
                self._check()
            self._want = 0
            items: list[bytes] = []
            taken = 0
            while self._items and taken < at_least:
                item = self._items.popleft()
                items.append(item)
                taken += len(item)
            self._size -= taken
            self._wake_loop()
            return items


async def run_piped(pipe: Pipe, work: Callable[[], T], feed: Callable[[], Awaitable[None]]) -> T:
    """Run ``work`` on a worker thread and ``feed`` on the loop, sharing ``pipe``.

    Whichever fails first aborts the pipe, so the other stops at its next pipe operation; the
    first failure is raised (the other side's consequent error is dropped). The thread is
    waited for before this returns or raises. Returns what ``work`` returned.
    """

    def guarded() -> T:
        try:
            return work()
        except BaseException as exc:
            pipe.abort(exc)
            raise

    worker = asyncio.ensure_future(asyncio.to_thread(guarded))
    try:
        await feed()
    except BaseException as exc:
        pipe.abort(exc)
        await asyncio.wait([worker])
        if not worker.cancelled():
            worker.exception()  # retrieved: only the first failure matters
        cause = pipe.cause
        if cause is not None and cause is not exc and not isinstance(exc, asyncio.CancelledError):
            raise cause from None
        raise
    return await worker
