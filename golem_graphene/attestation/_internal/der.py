"""A minimal, strict DER reader for the SGX extension of PCK certificates.

``cryptography`` hands us unknown extensions as raw bytes; the SGX extension is a small tree of
SEQUENCE, OID, INTEGER, OCTET STRING, ENUMERATED and BOOLEAN values. Anything malformed raises
:class:`DerError`, which callers wrap into their own typed errors.
"""

from __future__ import annotations

from dataclasses import dataclass

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30


class DerError(ValueError):
    """Malformed DER."""


@dataclass(frozen=True, slots=True)
class Tlv:
    """One DER element: its tag and content bytes."""

    tag: int
    content: bytes

    def children(self) -> list[Tlv]:
        """Elements inside a SEQUENCE."""
        if self.tag != TAG_SEQUENCE:
            raise DerError(f"expected SEQUENCE, found tag {self.tag:#x}")
        return parse_all(self.content)

    def as_oid(self) -> str:
        """Dotted OID string."""
        if self.tag != TAG_OID or not self.content:
            raise DerError("expected a non-empty OBJECT IDENTIFIER")
        first = self.content[0]
        arcs = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
        value = 0
        for i, byte in enumerate(self.content[1:], start=1):
            if value == 0 and byte == 0x80:
                raise DerError("non-minimal OID arc")
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                arcs.append(value)
                value = 0
            elif i == len(self.content) - 1:
                raise DerError("truncated OID arc")
        return ".".join(str(a) for a in arcs)

    def as_int(self, tag: int = TAG_INTEGER) -> int:
        """Signed integer content (INTEGER or ENUMERATED)."""
        if self.tag != tag or not self.content:
            raise DerError(f"expected tag {tag:#x} with content, found {self.tag:#x}")
        if len(self.content) > 1 and (
            (self.content[0] == 0 and not self.content[1] & 0x80)
            or (self.content[0] == 0xFF and self.content[1] & 0x80)
        ):
            raise DerError("non-minimal INTEGER encoding")
        return int.from_bytes(self.content, "big", signed=True)

    def as_octets(self) -> bytes:
        """OCTET STRING content."""
        if self.tag != TAG_OCTET_STRING:
            raise DerError(f"expected OCTET STRING, found tag {self.tag:#x}")
        return self.content

    def as_bool(self) -> bool:
        """BOOLEAN content (DER: 0x00 or 0xFF)."""
        if self.tag != TAG_BOOLEAN or self.content not in (b"\x00", b"\xff"):
            raise DerError("expected a DER BOOLEAN")
        return self.content == b"\xff"


def parse_one(data: bytes, pos: int = 0) -> tuple[Tlv, int]:
    """Read one element at ``pos``; returns it and the position after it."""
    if pos + 2 > len(data):
        raise DerError("truncated element header")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers are not used here")
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad length encoding")
        length = int.from_bytes(data[pos : pos + count], "big")
        if length < 0x80 or data[pos] == 0:
            raise DerError("non-minimal length encoding")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("element runs past the end of its container")
    return Tlv(tag, data[pos:end]), end


def parse_all(data: bytes) -> list[Tlv]:
    """Read consecutive elements filling ``data`` exactly."""
    out: list[Tlv] = []
    pos = 0
    while pos < len(data):
        tlv, pos = parse_one(data, pos)
        out.append(tlv)
    return out


def parse_exact(data: bytes) -> Tlv:
    """Read exactly one element that fills ``data``."""
    tlv, end = parse_one(data)
    if end != len(data):
        raise DerError("trailing bytes after the element")
    return tlv


# --- encoding (used by the simulator to build a PCK certificate's SGX extension) ----------------


def _encode_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def encode(tag: int, content: bytes) -> bytes:
    """One DER element."""
    return bytes([tag]) + _encode_length(len(content)) + content


def encode_sequence(*items: bytes) -> bytes:
    """A SEQUENCE of already-encoded elements."""
    return encode(TAG_SEQUENCE, b"".join(items))


def encode_oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted form."""
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body.extend(reversed(chunk))
    return encode(TAG_OID, bytes(body))


def encode_int(value: int, tag: int = TAG_INTEGER) -> bytes:
    """A minimal two's-complement INTEGER (or ENUMERATED)."""
    size = max(1, (value.bit_length() + 8) // 8)
    return encode(tag, value.to_bytes(size, "big", signed=True))


def encode_octets(value: bytes) -> bytes:
    """An OCTET STRING."""
    return encode(TAG_OCTET_STRING, value)
