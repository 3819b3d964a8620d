"""Helpers of the ``keygen``/``seal``/``open`` commands: their age-style flags, keys named on the
command line, the input and output, progress.

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
from typing import TYPE_CHECKING, Any, BinaryIO, TextIO

from golem_graphene.errors import Error, UsageError
from golem_graphene.sealing._internal.atomic import DiscardOnExit

if TYPE_CHECKING:
    from golem_graphene.sealing._internal.atomic import AtomicOutput, StreamOutput
    from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

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


def add_age_output_flags(parser: Any) -> None:
    """``-o/--output``, ``--force`` and ``-v/--verbose``, as every age-style command has them."""
    parser.add_argument(
        "-o", "--output", metavar="OUT", help="output file (default or '-': stdout)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace OUT if it is an existing regular file"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="say what was written (silent otherwise)"
    )


def refuse_other_mode(given: bool, message: str) -> None:
    """``seal -d`` / ``open -e``: age's flag of the other mode, answered with the right command."""
    if given:
        raise UsageError(message)


def _key_file_error(flag: str, path: str, exc: Error) -> UsageError:
    return UsageError(f"{flag} {path!r}: {exc.describe()}")


def recipients_from_args(
    recipients: list[str], recipient_files: list[str], identity_files: list[str]
) -> list[X25519Recipient]:
    """The recipients of ``-r``, ``-R`` and ``-i`` (in that order); raises UsageError naming
    the value for a malformed or unreadable one, or when there is none."""
    from golem_graphene.sealing.keys import X25519Recipient, load_identities, load_recipients

    out: list[X25519Recipient] = []
    for text in recipients:
        if text.strip().upper().startswith("AGE-SECRET-KEY-"):
            # Never echo a secret key back (terminal scrollback, CI logs).
            raise UsageError(
                "-r takes a public key (age1...), not a secret key; to seal to your own key "
                "give its identity file with -i"
            )
        try:
            out.append(X25519Recipient.from_string(text))
        except Error as exc:
            raise UsageError(
                f"-r {text!r} is not an age X25519 recipient: {exc.describe()}"
            ) from None
    for path in recipient_files:
        try:
            out.extend(load_recipients(path))
        except UsageError:
            raise
        except Error as exc:
            raise _key_file_error("-R", path, exc) from None
    for path in identity_files:
        out.extend(identity.recipient() for identity in _load_identities(path, load_identities))
    if not out:
        raise UsageError("no recipients: give -r age1..., -R FILE or -i IDENTITY_FILE")
    return out


def identities_from_args(identity_files: list[str]) -> list[X25519Identity]:
    """The identities of every ``-i`` file; raises UsageError naming the file for a malformed
    or unreadable one, or when none is given."""
    from golem_graphene.sealing.keys import load_identities

    out: list[X25519Identity] = []
    for path in identity_files:
        out.extend(_load_identities(path, load_identities))
    if not out:
        raise UsageError("no identities: give -i IDENTITY_FILE")
    return out


def _load_identities(path: str, load: Any) -> list[X25519Identity]:
    try:
        identities: list[X25519Identity] = load(path)
    except UsageError:
        raise
    except Error as exc:
        raise _key_file_error("-i", path, exc) from None
    return identities


class CommandOutput(DiscardOnExit):
    """Where ``-o`` sends a command's bytes: stdout (none or ``-``), a regular file written
    atomically, or a character device or FIFO written in place.

    Raises UsageError before anything is written: an existing file without ``--force``, a
    directory or other unwritable path, or binary output bound for a terminal.
    """

    def __init__(self, path: str | None, force: bool, *, binary: bool) -> None:
        self._target: AtomicOutput | StreamOutput | None = None
        if path is None or path == "-":
            self.name = "stdout"
            self.file: BinaryIO = sys.stdout.buffer
            terminal = sys.stdout.isatty()
        else:
            from golem_graphene.sealing._internal.atomic import StreamOutput, open_output

            self.name = path
            self._target = open_output(path, overwrite=force)
            self.file = self._target.file
            terminal = isinstance(self._target, StreamOutput) and self._target.isatty()
        if binary and terminal:
            self.discard()
            raise UsageError(
                f"refusing to write binary age output to a terminal ({self.name}); "
                "use -o FILE or --armor"
            )
        self._terminal = terminal

    @property
    def to_terminal(self) -> bool:
        """Whether the bytes go to a terminal."""
        return self._terminal

    def meter(self, label: str, total: int | None) -> ProgressMeter:
        """A progress meter on stderr (off when the output itself is the terminal)."""
        enabled = sys.stderr.isatty() and not self._terminal
        return ProgressMeter(sys.stderr, label, total, enabled=enabled)

    def flush_stream(self) -> None:
        """Push what was written to a stream out now (stdout may be a pipe a reader waits on)."""
        if self._target is None:
            self.file.flush()

    def commit(self) -> None:
        """The output is complete: move the file into place, or flush the stream."""
        if self._target is None:
            self.file.flush()
        else:
            self._target.commit()

    def discard(self) -> None:
        if self._target is not None:
            self._target.discard()


def output_for(path: str | None, force: bool, *, binary: bool) -> CommandOutput:
    """The :class:`CommandOutput` of ``-o path``."""
    return CommandOutput(path, force, binary=binary)
