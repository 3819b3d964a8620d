"""Deadlines: how long the requestor waits for a provider that may stall, drip or stop.

The provider is trusted for availability only, so nothing it does may keep a requestor waiting
without bound: every step of a task has a deadline, the whole task has one, every single
request has one, and every upload and download must keep up a minimum rate. When a deadline
passes, the step fails with a :class:`DeadlineError` (or its :class:`TransferRateError`) that
names the step, the deadline, and what had arrived by then.

==============  ===============================================  ==============================
deadline        bounds                                           default
==============  ===============================================  ==============================
``total``       the whole task (``Requestor.run``; ``fetch``)   the ``wait`` deadline + 1 h
``create``      asking for the task                              60 s
``attest``      launch, evidence and its verification            300 s
``upload``      every input and the sealed manifest              none: the minimum rate
``wait``        the task running on the provider                 the spec's ``wall_seconds``
                                                                 + 600 s
``fetch``       the receipt and every output                     none: the minimum rate
``request``     any other single request (start, cancel,         60 s
                delete) and the headers of every answer
``min_rate``    uploads and downloads: at least                  64 KiB/s over 30 s
                ``min_rate * window`` bytes in every ``window``
==============  ===============================================  ==============================
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, replace
from typing import Final, TypeVar

from golem_graphene.errors import ProtocolError, UsageError

__all__ = [
    "DEFAULT_MIN_RATE",
    "STEPS",
    "DeadlineError",
    "Deadlines",
    "RateGuard",
    "TransferRateError",
    "parse_rate",
    "within",
]

T = TypeVar("T")

DEFAULT_MIN_RATE: Final = 64 * 1024
"""Bytes per second every transfer must keep up, averaged over the window."""

STEPS: Final = ("create", "attest", "upload", "wait", "fetch")
"""The steps of a task that have their own deadline (and can be set by name)."""

TOTAL_ALLOWANCE: Final = 3600.0
"""Seconds the default whole-task deadline allows beyond the ``wait`` deadline: launching,
attesting and the transfers."""

MAX_SECONDS: Final = 366 * 24 * 3600.0
"""The longest deadline accepted (a year): beyond it the value is a typo."""


class DeadlineError(ProtocolError):
    """A step (or the whole task) did not finish within its deadline.

    ``step`` names the step, ``deadline`` the seconds allowed, ``arrived`` what the provider
    had delivered by then (a state, a byte count)."""

    code = "deadline"

    def __init__(self, step: str, deadline: float, what: str, arrived: str = "") -> None:
        self.step = step
        self.deadline = deadline
        self.arrived = arrived
        message = f"{what} within the {step} deadline of {deadline:g} s"
        super().__init__(f"{message}; {arrived}" if arrived else message)


class TransferRateError(DeadlineError):
    """An upload or download fell below the minimum rate over the window."""

    code = "transfer_rate"

    def __init__(self, step: str, what: str, rate: float, window: float, arrived: str) -> None:
        self.step = step
        self.deadline = window
        self.arrived = arrived
        need = math.ceil(rate * window)
        super(DeadlineError, self).__init__(
            f"{what} fell below the minimum rate of {_rate(rate)} "
            f"(fewer than {need} bytes in {window:g} s); {arrived}"
        )


def _rate(bytes_per_second: float) -> str:
    if bytes_per_second >= 1 << 20:
        return f"{bytes_per_second / (1 << 20):g} MiB/s"
    if bytes_per_second >= 1 << 10:
        return f"{bytes_per_second / (1 << 10):g} KiB/s"
    return f"{bytes_per_second:g} B/s"


def parse_rate(text: str, what: str = "--min-rate") -> float:
    """A rate in bytes per second from ``65536``, ``64K``, ``1M``, ``1.5MiB`` (binary units,
    optional ``/s``); raises :class:`UsageError` naming ``what``."""
    value = text.strip().removesuffix("/s").removesuffix("iB").removesuffix("B")
    scale = 1
    if value[-1:].upper() in ("K", "M", "G"):
        scale = 1024 ** ("KMG".index(value[-1].upper()) + 1)
        value = value[:-1]
    try:
        number = float(value) * scale
    except ValueError:
        raise UsageError(
            f"{what} takes bytes per second (e.g. 65536, 64K, 1M)", found=text[:40]
        ) from None
    if not math.isfinite(number) or number <= 0:
        raise UsageError(f"{what} must be a positive rate", found=text[:40])
    return number


@dataclass(frozen=True)
class Deadlines:
    """The requestor's deadlines, in seconds (see the module's table for what each bounds).

    ``None`` means the default of the table (derived from the spec for ``wait`` and
    ``total``; only the minimum rate for ``upload`` and ``fetch``). Raises
    :class:`UsageError` for a value that is not a positive number of seconds (at most a year).
    """

    total: float | None = None
    create: float = 60.0
    attest: float = 300.0
    upload: float | None = None
    wait: float | None = None
    fetch: float | None = None
    request: float = 60.0
    min_rate: float = float(DEFAULT_MIN_RATE)
    window: float = 30.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or not 0 < value <= (MAX_SECONDS if field.name != "min_rate" else 1 << 40)
            ):
                raise UsageError(
                    f"the {field.name} deadline takes positive seconds"
                    if field.name != "min_rate"
                    else "the minimum rate takes positive bytes per second",
                    found=repr(value)[:40],
                )

    def with_steps(self, **seconds: float | None) -> Deadlines:
        """These deadlines with some replaced by name (``total``, a step, ``request``, ...)."""
        unknown = sorted(set(seconds) - {f.name for f in fields(self)})
        if unknown:
            raise UsageError(
                "unknown deadline",
                expected=", ".join(["total", *STEPS, "request"]),
                found=", ".join(unknown),
            )
        return replace(self, **seconds)  # type: ignore[arg-type]

    def wait_for(self, wall_seconds: float) -> float:
        """The ``wait`` deadline for a spec whose workload may run ``wall_seconds``."""
        return self.wait if self.wait is not None else wall_seconds + 600.0

    def total_for(self, wall_seconds: float) -> float:
        """The whole task's deadline for a spec whose workload may run ``wall_seconds``."""
        return (
            self.total if self.total is not None else self.wait_for(wall_seconds) + TOTAL_ALLOWANCE
        )


async def within(
    step: str,
    seconds: float | None,
    what: str,
    work: Awaitable[T],
    arrived: Callable[[], str] | None = None,
) -> T:
    """Await ``work`` for at most ``seconds`` (None: no bound); past it raise
    :class:`DeadlineError` saying ``what`` did not happen within the ``step`` deadline, and
    what had arrived (``arrived()``, asked at that moment)."""
    if seconds is None:
        return await work
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError:
        raise DeadlineError(step, seconds, what, arrived() if arrived else "") from None


class RateGuard:
    """Keeps one transfer at or above the minimum rate: at least ``min_rate * window`` bytes in
    every window, or the transfer is cancelled and :class:`TransferRateError` raised.

    ``async with guard:`` around the transfer; :meth:`add` counts each piece as it moves. A
    transfer smaller than one window's worth must complete within one window.
    """

    def __init__(
        self, step: str, what: str, deadlines: Deadlines, total: int | None = None
    ) -> None:
        self.step = step
        self.what = what
        self.rate = deadlines.min_rate
        self.window = deadlines.window
        self.total = total
        self.done = 0
        self._need = max(1, math.ceil(self.rate * self.window))
        self._in_window = 0
        self._timeout: asyncio.Timeout | None = None

    def add(self, n: int) -> None:
        """Count ``n`` more bytes; a full window's worth starts the next window."""
        self.done += n
        self._in_window += n
        if self._in_window >= self._need and self._timeout is not None:
            self._in_window = 0
            self._timeout.reschedule(asyncio.get_running_loop().time() + self.window)

    def arrived(self) -> str:
        """What moved so far, for an error message."""
        of = f" of {self.total}" if self.total is not None else ""
        return f"{self.done}{of} bytes of {self.what} had moved"

    async def __aenter__(self) -> RateGuard:
        self._timeout = asyncio.timeout_at(asyncio.get_running_loop().time() + self.window)
        await self._timeout.__aenter__()
        return self

    async def __aexit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        assert self._timeout is not None
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)  # type: ignore[arg-type]
        except TimeoutError:
            raise TransferRateError(
                self.step, self.what, self.rate, self.window, self.arrived()
            ) from None
