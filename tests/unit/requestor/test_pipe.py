"""The pipe between the event loop and a worker thread, and ``run_piped``.

Uploads and downloads run their crypto on a thread joined to the event loop by a
:class:`Pipe`. What matters: memory stays bounded (a full pipe blocks the producer), either
side's failure stops the other (no thread left blocked on a pipe nobody drains), and the
error raised is the first one, not the other side's consequence.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest

from golem_graphene._batched_write import writev_all
from golem_graphene.requestor._pipe import Pipe, PipeAborted, run_piped


class Boom(Exception):
    pass


async def test_items_flow_from_the_thread_to_the_loop_in_order() -> None:
    pipe = Pipe(1000)
    items = [bytes([i]) * 300 for i in range(50)]

    def produce() -> int:
        for item in items:
            pipe.put_sync(item)
        pipe.close()
        return len(items)

    got: list[bytes] = []

    async def consume() -> None:
        while (item := await pipe.get()) is not None:
            got.append(item)

    assert await run_piped(pipe, produce, consume) == 50
    assert got == items


async def test_items_flow_from_the_loop_to_the_thread_in_batches() -> None:
    pipe = Pipe(10_000)
    items = [bytes([i % 256]) * 700 for i in range(200)]
    batches: list[list[bytes]] = []

    def consume() -> bytes:
        while batch := pipe.take_sync(4000):
            batches.append(batch)
        return b"".join(b"".join(batch) for batch in batches)

    async def produce() -> None:
        for item in items:
            await pipe.put(item)
        pipe.close()

    assert await run_piped(pipe, consume, produce) == b"".join(items)
    # Batches of several items (at least the requested bytes, but for the last one).
    assert all(sum(map(len, batch)) >= 4000 for batch in batches[:-1])
    assert len(batches) < len(items)


async def test_a_full_pipe_blocks_the_thread_until_the_loop_takes() -> None:
    pipe = Pipe(1000)
    queued = threading.Event()
    put = 0

    def produce() -> None:
        nonlocal put
        for _ in range(5):
            pipe.put_sync(b"x" * 600)
            put += 1
            queued.set()
        pipe.close()

    async def consume() -> None:
        await asyncio.to_thread(queued.wait)
        await asyncio.sleep(0.2)
        assert put == 2  # 1200 bytes queued: over the capacity, the third put waits
        while await pipe.get() is not None:
            pass

    await run_piped(pipe, produce, consume)
    assert put == 5


async def test_a_failing_loop_side_unblocks_and_stops_the_thread() -> None:
    pipe = Pipe(100)
    stopped = threading.Event()

    def produce() -> None:
        try:
            while True:
                pipe.put_sync(b"y" * 100)  # blocks: nobody drains after the failure
        finally:
            stopped.set()

    async def consume() -> None:
        await pipe.get()
        raise Boom("the channel failed")

    with pytest.raises(Boom, match="the channel failed"):
        await run_piped(pipe, produce, consume)
    assert stopped.is_set()  # run_piped returned only once the thread had stopped


async def test_a_failing_thread_wins_over_the_loop_sides_consequence() -> None:
    pipe = Pipe(100)

    def produce() -> None:
        pipe.put_sync(b"z")
        time.sleep(0.05)
        raise Boom("cannot read the input")

    async def consume() -> None:
        while await pipe.get() is not None:  # raises PipeAborted once the thread failed
            pass

    with pytest.raises(Boom, match="cannot read the input"):
        await run_piped(pipe, produce, consume)


async def test_a_failing_thread_stops_a_loop_side_waiting_for_room() -> None:
    pipe = Pipe(100)

    def consume() -> None:
        raise Boom("no space left")

    async def produce() -> None:
        while True:
            await pipe.put(b"w" * 100)

    with pytest.raises(Boom, match="no space left"):
        await run_piped(pipe, consume, produce)


async def test_an_aborted_pipe_refuses_both_sides() -> None:
    pipe = Pipe(100)
    assert pipe.abort(Boom("first"))
    assert not pipe.abort(Boom("second"))
    assert isinstance(pipe.cause, Boom) and str(pipe.cause) == "first"
    with pytest.raises(PipeAborted, match="first"):
        await pipe.put(b"a")
    with pytest.raises(PipeAborted):
        await pipe.get()
    with pytest.raises(PipeAborted):
        pipe.put_sync(b"a")
    with pytest.raises(PipeAborted):
        pipe.take_sync(1)


def test_writev_all_writes_every_piece(tmp_path: Path) -> None:
    path = tmp_path / "f"
    pieces = [os.urandom(n) for n in (0, 1, 70_000, 3, 1 << 20)] + [b"p"] * 2000
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        writev_all(fd, pieces)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(pieces)
