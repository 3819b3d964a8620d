"""ASCII armor for age files: strict PEM ("AGE ENCRYPTED FILE"), decoded and encoded in streams.

Rules (C2SP age, "ASCII armor", RFC 7468 strict form), each a guard against malleability:

* only whitespace-only lines may precede ``-----BEGIN AGE ENCRYPTED FILE-----`` and only
  whitespace may follow ``-----END AGE ENCRYPTED FILE-----`` (at most 1 KiB each);
* no PEM headers; lines end in LF or CRLF, with no other whitespace;
* every data line has exactly 64 columns except the last, which has 1 to 64 and carries the
  ``=`` padding; the base64 must be canonical.

Every violation is an :class:`AgeArmorError` ("armor failure" in the age test kit).
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from typing import Final

from golem_graphene import limits
from golem_graphene.errors import AgeArmorError

BEGIN: Final = b"-----BEGIN AGE ENCRYPTED FILE-----"
END: Final = b"-----END AGE ENCRYPTED FILE-----"
_COLUMNS: Final = 64
_BYTES_PER_LINE: Final = 48
_MAX_LINE: Final = max(len(BEGIN), _COLUMNS) + 2
_WHITESPACE: Final = b" \t\r\n\v\f"

_BEFORE, _DATA, _EXPECT_END, _AFTER = range(4)


def _leading(data: bytes, byte: bytes) -> int:
    """How many times ``byte`` repeats at the start of ``data``."""
    return len(data) - len(data.lstrip(byte))


def looks_armored(prefix: bytes) -> bool:
    """True if ``prefix`` (the first bytes of a file) starts a PEM block after whitespace.

    Binary age files start with ``age-encryption.org/``, so any ``-----`` start is treated as
    armor and then parsed strictly (a wrong label is an armor failure, not a header failure).
    """
    return prefix.lstrip(_WHITESPACE).startswith(b"-----")


class ArmorDecoder:
    """Incremental strict decoder: ``feed`` raw bytes, get decoded bytes; ``finish`` at EOF."""

    def __init__(self) -> None:
        self._state = _BEFORE
        self._partial = b""
        self._whitespace = 0
        self._lineno = 0

    def feed(self, data: bytes) -> bytes:
        """Decode the complete lines in ``data`` (plus what was buffered); keep the rest.

        Raises AgeArmorError as soon as a rule is broken.
        """
        if self._state == _AFTER:
            self._trailing(data)
            return b""
        buf = self._partial + data
        out: list[bytes] = []
        if self._state == _DATA:
            consumed, decoded = self._bulk(buf)
            if consumed:
                out.append(decoded)
                buf = buf[consumed:]
        lines = buf.split(b"\n")
        self._partial = lines.pop()
        for i, line in enumerate(lines):
            self._line(line, out)
            if self._state == _AFTER:
                rest = b"\n".join(lines[i + 1 :])
                if i + 1 < len(lines):
                    rest += b"\n"
                self._trailing(rest + self._partial)
                self._partial = b""
                break
        if len(self._partial) > _MAX_LINE:
            # No line is that long: refuse now rather than buffer an endless line.
            raise AgeArmorError(f"armor line {self._lineno + 1} is too long")
        return b"".join(out)

    def finish(self) -> bytes:
        """Signal end of input; returns any last decoded bytes.

        Raises AgeArmorError if the END line is missing.
        """
        out: list[bytes] = []
        if self._partial and self._state != _AFTER:
            # The END line may lack its line feed; anything else unterminated is an error below.
            self._line(self._partial, out)
            self._partial = b""
        if self._state != _AFTER:
            raise AgeArmorError("armored file ends without the END line")
        return b"".join(out)

    def _bulk(self, buf: bytes) -> tuple[int, bytes]:
        """Decode a leading run of full 64-column lines at C speed; returns (consumed, decoded).

        A run of ``k`` full lines is ``k`` strides of 65 bytes (66 with CRLF) with the line end
        at fixed offsets, so slicing checks the layout without a Python loop per line. The last
        full line of the run is left to the line-by-line path (it may be the padded final line);
        anything unusual makes this return (0, b"") and the line-by-line path decides.
        """
        eol = b"\r\n" if buf[_COLUMNS : _COLUMNS + 1] == b"\r" else b"\n"
        stride = _COLUMNS + len(eol)
        lines = len(buf) // stride - 1
        if lines < 1:
            return 0, b""
        ends = buf[_COLUMNS : lines * stride : stride]
        good = _leading(ends, eol[:1])
        if len(eol) == 2:
            good = min(good, _leading(buf[_COLUMNS + 1 : lines * stride : stride], b"\n"))
        if good < 1:
            return 0, b""
        size = good * stride
        text = buf[:size].replace(eol, b"")
        if len(text) != good * _COLUMNS or b"=" in text:
            return 0, b""
        try:
            decoded = binascii.a2b_base64(text, strict_mode=True)
        except binascii.Error:
            return 0, b""
        self._lineno += good
        return size, decoded

    def _trailing(self, data: bytes) -> None:
        if data.strip(_WHITESPACE):
            raise AgeArmorError("data after the END line of the armored file")
        self._whitespace += len(data)
        if self._whitespace > limits.MAX_AGE_ARMOR_WHITESPACE:
            raise AgeArmorError("too much whitespace after the armored file")

    def _line(self, raw: bytes, out: list[bytes]) -> None:
        self._lineno += 1
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if self._state == _BEFORE:
            if not line.strip(_WHITESPACE):
                self._whitespace += len(raw) + 1
                if self._whitespace > limits.MAX_AGE_ARMOR_WHITESPACE:
                    raise AgeArmorError("too much whitespace before the armored file")
                return
            if line != BEGIN:
                raise AgeArmorError(
                    f"armor line {self._lineno}: expected the BEGIN line", found=line[:64]
                )
            self._state = _DATA
            self._whitespace = 0
            return
        if line == END:
            self._state = _AFTER
            return
        if self._state == _EXPECT_END:
            raise AgeArmorError(
                f"armor line {self._lineno}: expected the END line after a short line",
                found=line[:64],
            )
        if not line or len(line) > _COLUMNS:
            raise AgeArmorError(
                f"armor line {self._lineno}: data lines must have 1 to 64 columns",
                found=len(line),
            )
        try:
            decoded = binascii.a2b_base64(line, strict_mode=True)
        except binascii.Error as exc:
            raise AgeArmorError(f"armor line {self._lineno}: invalid base64 ({exc})") from None
        if len(decoded) < _BYTES_PER_LINE:
            # The short (or padded) line is the last one; it must be canonical.
            if binascii.b2a_base64(decoded, newline=False) != line:
                raise AgeArmorError(f"armor line {self._lineno}: non-canonical base64")
            self._state = _EXPECT_END
        out.append(decoded)


class ArmorWriter:
    """Wraps a ``write`` function: binary in, armored lines out; call :meth:`close` at the end."""

    def __init__(self, write: Callable[[memoryview], object]) -> None:
        self._write = write
        self._pending = bytearray()
        self._started = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Buffer ``data`` and emit every complete 64-column line; returns ``len(data)``."""
        if not self._started:
            self._write(memoryview(BEGIN + b"\n"))
            self._started = True
        self._pending += data
        whole = len(self._pending) - len(self._pending) % _BYTES_PER_LINE
        if whole >= 64 * _BYTES_PER_LINE:
            self._emit(bytes(self._pending[:whole]))
            del self._pending[:whole]
        return len(data)

    def _emit(self, data: bytes) -> None:
        text = binascii.b2a_base64(data, newline=False)
        lines = [text[i : i + _COLUMNS] for i in range(0, len(text), _COLUMNS)]
        self._write(memoryview(b"\n".join(lines) + b"\n"))

    def close(self) -> None:
        """Emit the remaining bytes and the END line."""
        if not self._started:
            self._write(memoryview(BEGIN + b"\n"))
            self._started = True
        if self._pending:
            self._emit(bytes(self._pending))
            self._pending.clear()
        self._write(memoryview(END + b"\n"))
