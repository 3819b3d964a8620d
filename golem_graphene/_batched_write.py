"""Writing received pieces to a file in batches, off the event loop (uploads and downloads)."""

from __future__ import annotations

import os

__all__ = ["write_and_close", "writev_all"]

_IOV_MAX = 1024


def writev_all(fd: int, pieces: list[bytes]) -> None:
    """Write all of ``pieces`` to ``fd``: one ``writev`` per batch, more if it writes short."""
    views = [memoryview(p) for p in pieces if p]
    while views:
        n = os.writev(fd, views[:_IOV_MAX])
        while n:
            if n >= len(views[0]):
                n -= len(views.pop(0))
            else:
                views[0] = views[0][n:]
                n = 0


def write_and_close(fd: int, pieces: list[bytes]) -> None:
    """Write ``pieces`` at ``fd``'s offset, then close ``fd``. Give it a descriptor of its own
    (``os.dup``): a cancelled transfer closes its own while this may still run on a worker
    thread, and must not have it write into a reused descriptor."""
    try:
        writev_all(fd, pieces)
    finally:
        os.close(fd)
