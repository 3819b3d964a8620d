"""Byte sources for decryption: header lines first, then bulk payload reads, armor removed.

An age file is read in two phases: the text header line by line (bounded), then the binary payload
in large blocks. Both sources here detect ASCII armor from the first bytes and decode it
transparently, so the rest of the code only ever sees binary age.

``SyncSource`` wraps a binary file object (``readinto`` straight into the caller's buffer when
the file is not armored); ``AsyncSource`` wraps an async byte stream (``read(n)`` coroutine, as
``asyncio.StreamReader`` and aiohttp's ``StreamReader`` have, or an async iterator of bytes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, BinaryIO, Final

from golem_graphene import limits
from golem_graphene.errors import AgeHeaderError, SealingError, UsageError
from golem_graphene.sealing._internal.armor import ArmorDecoder, looks_armored

_PIECE: Final = 64 * 1024
_SNIFF: Final = 64
_WHITESPACE: Final = b" \t\r\n\v\f"


class SyncSource:
    """A blocking source over a binary file object (see the module docstring)."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._readinto: Callable[[memoryview], int | None] | None = getattr(raw, "readinto", None)
        self._buf = bytearray()
        self._armor: ArmorDecoder | None = None
        self._raw_eof = False
        self.consumed = 0

    def _read_raw(self, n: int) -> bytes:
        try:
            data = self._raw.read(n)
        except OSError as exc:
            raise SealingError(f"cannot read the input: {exc}") from exc
        if data is None:
            raise SealingError("the input is a non-blocking stream with no data ready")
        return data

    def sniff_armor(self) -> bool:
        """Look at the first bytes; switch to armor decoding if they start a PEM block."""
        raw = b""
        # Skip leading whitespace (bounded) to reach the first significant bytes.
        while len(raw.lstrip(_WHITESPACE)) < 5 and len(raw) <= limits.MAX_AGE_ARMOR_WHITESPACE:
            data = self._read_raw(_SNIFF)
            if not data:
                self._raw_eof = True
                break
            raw += data
        if looks_armored(raw):
            self._armor = ArmorDecoder()
            self._buf += self._armor.feed(raw)
            if self._raw_eof:
                self._buf += self._armor.finish()
            return True
        self._buf += raw
        return False

    def _pull(self) -> bool:
        """Append more decoded bytes to the buffer; False at end of input."""
        while not self._raw_eof:
            data = self._read_raw(_PIECE)
            if self._armor is None:
                if not data:
                    self._raw_eof = True
                    return False
                self._buf += data
                return True
            if not data:
                self._raw_eof = True
                self._buf += self._armor.finish()
                return True
            decoded = self._armor.feed(data)
            if decoded:
                self._buf += decoded
                return True
        return False

    def readline(self, limit: int) -> bytes:
        """The next line with its LF, at most ``limit`` bytes (shorter at end of input)."""
        start = 0
        while True:
            nl = self._buf.find(b"\n", start, limit)
            if nl >= 0:
                return self._take(nl + 1)
            if len(self._buf) >= limit:
                return self._take(limit)
            start = len(self._buf)
            if not self._pull():
                return self._take(len(self._buf))

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self.consumed += n
        return data

    def read_exact(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at end of input."""
        while len(self._buf) < n and self._pull():
            pass
        return self._take(min(n, len(self._buf)))

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` completely unless the input ends first; returns the bytes stored."""
        size = len(view)
        filled = min(len(self._buf), size)
        if filled:
            view[:filled] = self._buf[:filled]
            del self._buf[:filled]
        if self._armor is None and self._readinto is not None:
            while filled < size and not self._raw_eof:
                try:
                    n = self._readinto(view[filled:])
                except OSError as exc:
                    raise SealingError(f"cannot read the input: {exc}") from exc
                if n is None:
                    raise SealingError("the input is a non-blocking stream with no data ready")
                if n == 0:
                    self._raw_eof = True
                filled += n
        else:
            while filled < size and self._pull():
                take = min(len(self._buf), size - filled)
                view[filled : filled + take] = self._buf[:take]
                del self._buf[:take]
                filled += take
        self.consumed += filled
        return filled


class AsyncSource:
    """A source over an async byte stream (see the module docstring)."""

    def __init__(self, stream: Any) -> None:
        read = getattr(stream, "read", None)
        self._read: Callable[[int], Awaitable[bytes]] | None = read if callable(read) else None
        self._iter: AsyncIterator[bytes] | None = None
        if self._read is None:
            if not hasattr(stream, "__aiter__"):
                raise UsageError(
                    "the source must have an async read(n) or be an async iterable of bytes",
                    found=type(stream).__name__,
                )
            self._iter = aiter(stream)
        self._buf = bytearray()
        self._armor: ArmorDecoder | None = None
        self._eof = False

    async def _next_piece(self) -> bytes:
        """The next non-empty piece of the stream, or ``b""`` at its end."""
        while True:
            if self._read is not None:
                data = await self._read(_PIECE)
            else:
                assert self._iter is not None
                try:
                    data = await anext(self._iter)
                except StopAsyncIteration:
                    return b""
            if not isinstance(data, bytes | bytearray | memoryview):
                raise SealingError("the async source yielded something other than bytes")
            if data or self._read is not None:
                return bytes(data)

    async def _pull(self) -> bool:
        while not self._eof:
            data = await self._next_piece()
            if self._armor is None:
                if not data:
                    self._eof = True
                    return False
                self._buf += data
                return True
            if not data:
                self._eof = True
                self._buf += self._armor.finish()
                return True
            decoded = self._armor.feed(data)
            if decoded:
                self._buf += decoded
                return True
        return False

    async def sniff_armor(self) -> bool:
        """Switch to armor decoding if the stream starts with a PEM block (after whitespace)."""
        while (
            len(bytes(self._buf).lstrip(_WHITESPACE)) < 5
            and len(self._buf) <= limits.MAX_AGE_ARMOR_WHITESPACE
            and await self._pull()
        ):
            pass
        raw = bytes(self._buf)
        if looks_armored(raw):
            self._armor = ArmorDecoder()
            self._buf = bytearray(self._armor.feed(raw))
            if self._eof:
                self._buf += self._armor.finish()
            return True
        return False

    async def readline(self, limit: int) -> bytes:
        """The next line with its LF, at most ``limit`` bytes (shorter at end of input)."""
        start = 0
        while True:
            nl = self._buf.find(b"\n", start, limit)
            if nl >= 0:
                return self._take(nl + 1)
            if len(self._buf) >= limit:
                return self._take(limit)
            start = len(self._buf)
            if not await self._pull():
                return self._take(len(self._buf))

    def _take(self, n: int) -> bytes:
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read_block(self, size: int) -> tuple[bytes, bool]:
        """The next ``size`` bytes and whether input ends right after them (read one ahead).

        Returns fewer bytes only at end of input (then the flag is True).
        """
        while len(self._buf) <= size and await self._pull():
            pass
        if len(self._buf) > size:
            return self._take(size), False
        return self._take(len(self._buf)), True


def short_nonce_error(got: int) -> AgeHeaderError:
    """The error for a file that ends before its 16-byte payload nonce (a header failure)."""
    return AgeHeaderError("file ends before the payload nonce", expected=16, found=got)
