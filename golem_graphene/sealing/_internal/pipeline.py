"""Write-behind: output blocks are written on a worker thread while the caller seals the next one.

Sealing a file is three costs of similar size: reading, ChaCha20-Poly1305, and writing (on tmpfs
mostly page allocation in the kernel). ``cryptography`` and file I/O both release the GIL, so
handing finished blocks to a writer thread lets the write of block *n* overlap the read and the
crypto of block *n+1*. Memory stays bounded by a fixed pool of block buffers.

Only writes are moved to the thread: reads stay in the caller's thread, so we never read ahead of
what a synchronous implementation would have read, and the writer is always joined before we
return (it only ever does writes the caller asked for).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Final

from golem_graphene.errors import SealingError

_STOP: Final = None


def write_all(write: Callable[[memoryview], int | None], view: memoryview) -> None:
    """Call ``write`` until all of ``view`` is written (raw files may write partially)."""
    while view:
        n = write(view)
        if n is None:
            raise SealingError("the output is a non-blocking stream that is not ready")
        view = view[n:]


class WriteBehind:
    """A pool of ``depth`` buffers of ``block_size`` bytes and a thread that writes them out.

    Use as a context manager: ``acquire`` a free buffer, fill it, ``submit`` it. Leaving the block
    waits for every submitted write; the first write error is raised as SealingError (from the
    original OSError) from ``acquire``, ``submit`` or the exit.
    """

    def __init__(
        self, write: Callable[[memoryview], int | None], block_size: int, depth: int = 3
    ) -> None:
        self._write = write
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._full: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        for _ in range(depth):
            self._free.put(bytearray(block_size))
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="age-write-behind", daemon=True)
        self._thread.start()
        self._closed = False

    def _run(self) -> None:
        while True:
            item = self._full.get()
            if item is _STOP:
                return
            buf, n = item
            if self._error is None:
                try:
                    write_all(self._write, memoryview(buf)[:n])
                except BaseException as exc:  # handed to the caller's thread, raised there
                    self._error = exc
            self._free.put(buf)

    def _raise_error(self) -> None:
        exc = self._error
        if exc is None:
            return
        if isinstance(exc, SealingError):
            raise exc
        raise SealingError(f"cannot write the output: {exc}") from exc

    def acquire(self) -> bytearray:
        """A free buffer (waits for the writer if all are in flight)."""
        self._raise_error()
        buf = self._free.get()
        self._raise_error()
        return buf

    def submit(self, buf: bytearray, n: int) -> None:
        """Queue ``buf[:n]`` for writing; ``buf`` returns to the pool once written."""
        self._raise_error()
        if n:
            self._full.put((buf, n))
        else:
            self._free.put(buf)

    def close(self) -> None:
        """Wait for all submitted writes; raise the first write error, if any."""
        if not self._closed:
            self._closed = True
            self._full.put(_STOP)
            self._thread.join()
        self._raise_error()

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        # Already failing: still flush what was submitted (verified plaintext before a payload
        # failure is released, as the age spec describes), but keep the original error.
        with contextlib.suppress(SealingError):
            self.close()
