"""Helpers of the ``keygen``/``seal``/``open`` commands: opening the input, showing progress.

Progress (bytes and rate) is drawn only on a terminal: piped or redirected stderr stays quiet
(no carriage returns in logs); on a terminal the line is redrawn at most ten times a second, so
the display costs nothing next to the crypto.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import time
from typing import BinaryIO, TextIO

from golem_graphene.errors import UsageError

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")
_INTERVAL_S = 0.1


def human_bytes(n: float) -> str:
    """``n`` bytes with a binary unit, e.g. ``12.3 MiB``."""
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


class ProgressMeter:
    """A progress callback (``meter(done_bytes)``) that draws on ``stream`` if it is a terminal."""

    def __init__(
        self, stream: TextIO, label: str, total: int | None = None, *, enabled: bool | None = None
    ) -> None:
        self._stream = stream
        self._label = label
        self._total = total
        self.enabled = stream.isatty() if enabled is None else enabled
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._done = 0
        self._drawn = False

    def __call__(self, done: int) -> None:
        self._done = done
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw >= _INTERVAL_S:
            self._last_draw = now
            self._draw(now)

    def line(self, now: float | None = None) -> str:
        """The text of the progress line for the bytes done so far."""
        elapsed = max((time.monotonic() if now is None else now) - self._start, 1e-9)
        text = f"{self._label} {human_bytes(self._done)}"
        if self._total:
            text += f" / {human_bytes(self._total)} ({100 * self._done / self._total:.0f}%)"
        return f"{text}  {human_bytes(self._done / elapsed)}/s"

    def _draw(self, now: float) -> None:
        self._stream.write("\r" + self.line(now) + "\x1b[K")
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """Draw the final state and end the line (only if something was drawn)."""
        if self.enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()


def open_input(path: str | None) -> tuple[contextlib.AbstractContextManager[BinaryIO], int | None]:
    """The input (a file, or stdin for None/``-``) and its size when it is a regular file.

    Raises UsageError if the file cannot be opened.
    """
    if path is None or path == "-":
        return contextlib.nullcontext(sys.stdin.buffer), None
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - returned as a context manager
    except OSError as exc:
        raise UsageError(f"cannot open input {path!r}: {exc.strerror or exc}") from exc
    st = os.fstat(f.fileno())
    return f, st.st_size if stat.S_ISREG(st.st_mode) else None
