"""The unpadded, canonical base64 of age headers (RFC 4648 section 4, no ``=``).

The spec requires decoders to reject padding and non-canonical encodings (non-zero unused bits in
the last character): otherwise one header would have several encodings, and the header MAC, which
covers the encoded bytes, would no longer pin a single meaning.
"""

from __future__ import annotations

import binascii

_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def is_base64_text(text: bytes) -> bool:
    """True if every byte of ``text`` is in the base64 alphabet (no padding, no whitespace)."""
    return _ALPHABET.issuperset(text)


def encode(data: bytes) -> bytes:
    """Unpadded base64 of ``data``."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=")


def decode(text: bytes) -> bytes | None:
    """Decode canonical unpadded base64; None if ``text`` is not exactly that."""
    if not is_base64_text(text) or len(text) % 4 == 1:
        return None
    padded = text + b"=" * (-len(text) % 4)
    try:
        data = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        return None
    if encode(data) != text:
        return None
    return data
