"""Length-delimited framing of the runtime protocol: a base-128 varint byte count, then the bytes.

This is protobuf's ``writeDelimitedTo`` framing, which the ExeUnit uses in both directions on
the runtime's stdin and stdout (research/golem.md section 2.6). A frame longer than the limit
is skipped byte for byte and reported, so the stream stays in step; a length that is not a valid
varint, or a stream that ends inside a frame, cannot be resynchronised and is fatal.
"""

from __future__ import annotations

import asyncio

from golem_graphene.errors import ProtocolError

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_VARINT_BYTES",
    "FrameError",
    "decode_varint",
    "encode_varint",
    "frame",
    "read_frame",
]

MAX_FRAME_BYTES = 4 << 20
"""The largest request we read (requests are a few hundred bytes; arguments are bounded)."""

MAX_VARINT_BYTES = 10
"""A 64-bit value needs at most ten base-128 digits."""

_SKIP_CHUNK = 64 * 1024


class FrameError(ProtocolError):
    """A frame could not be read; ``fatal`` when the stream cannot be followed any further."""

    code = "frame"

    def __init__(
        self, message: str, *, fatal: bool, expected: object = None, found: object = None
    ) -> None:
        self.fatal = fatal
        super().__init__(message, expected=expected, found=found)


def encode_varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as a base-128 varint, least significant group first."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"a varint holds 0..2**64-1, not {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, offset: int = 0) -> tuple[int, int]:
    """Decode a varint at ``offset``; returns ``(value, next_offset)``.

    Raises :class:`FrameError` when the bytes end early or the varint is longer than ten bytes
    or larger than 64 bits.
    """
    value = 0
    for i in range(MAX_VARINT_BYTES):
        if offset + i >= len(data):
            raise FrameError("the varint is truncated", fatal=True)
        byte = data[offset + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if value >= 1 << 64:
                raise FrameError("the varint is larger than 64 bits", fatal=True)
            return value, offset + i + 1
    raise FrameError("the varint is longer than ten bytes", fatal=True)


def frame(message: bytes) -> bytes:
    """One length-delimited frame holding ``message``."""
    return encode_varint(len(message)) + message


async def read_frame(
    reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES
) -> bytes | None:
    """Read one frame; ``None`` at a clean end of stream (before any byte of a frame).

    Raises :class:`FrameError`: not fatal for a frame over ``max_bytes`` (its body is read and
    dropped, in chunks, so the next frame is found), fatal for a malformed length or a stream
    that ends inside a frame.
    """
    length = 0
    for i in range(MAX_VARINT_BYTES):
        byte = await reader.read(1)
        if not byte:
            if i == 0:
                return None
            raise FrameError("the stream ended inside a frame length", fatal=True)
        length |= (byte[0] & 0x7F) << (7 * i)
        if not byte[0] & 0x80:
            break
    else:
        raise FrameError("the frame length is not a varint (more than ten bytes)", fatal=True)
    if length >= 1 << 64:
        raise FrameError("the frame length is larger than 64 bits", fatal=True)
    if length > max_bytes:
        remaining = length
        while remaining:
            chunk = await reader.read(min(remaining, _SKIP_CHUNK))
            if not chunk:
                raise FrameError("the stream ended inside an oversized frame", fatal=True)
            remaining -= len(chunk)
        raise FrameError(
            "the frame is larger than the runtime accepts",
            fatal=False,
            expected=f"<= {max_bytes} bytes",
            found=length,
        )
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError(
            "the stream ended inside a frame", fatal=True, expected=length, found=len(exc.partial)
        ) from None
