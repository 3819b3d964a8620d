"""Progress display for the ``seal``/``open`` commands: bytes and rate on a terminal only.

Piped or redirected stderr stays quiet (no carriage returns in logs); on a terminal the line is
redrawn at most ten times a second, so the display costs nothing next to the crypto.
"""

from __future__ import annotations

import time
from typing import TextIO

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
