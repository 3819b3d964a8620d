"""The age v1 header: strict parsing, encoding and the header MAC.

Grammar (C2SP age, "ABNF definition of file header")::

    header     = "age-encryption.org/v1" LF 1*stanza "---" SP 43base64char LF
    stanza     = "->" 1*(SP argument) LF *(64base64char LF) *63base64char LF
    argument   = 1*VCHAR

Parsing is strict so that one header has exactly one encoding: the MAC is computed over the bytes
as read, and a lenient parser would let an attacker change them without changing their meaning.
Every failure here is an :class:`AgeHeaderError` ("header failure" in the age test kit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from golem_graphene import limits
from golem_graphene.errors import AgeHeaderError, AgeHmacError
from golem_graphene.sealing._internal import b64

VERSION_LINE = b"age-encryption.org/v1\n"
_VERSION_PREFIX = b"age-encryption.org/"
_STANZA_PREFIX = b"-> "
_MAC_PREFIX = b"---"
_COLUMNS = 64
_MAC_B64_LEN = 43
FILE_KEY_SIZE = 16


class Stanza(NamedTuple):
    """One recipient stanza: its arguments (the first names the type) and its decoded body."""

    args: tuple[str, ...]
    body: bytes

    @property
    def type(self) -> str:
        """The recipient type, e.g. ``X25519``; case-sensitive."""
        return self.args[0]

    def encode(self) -> bytes:
        """The stanza as it appears in a header: argument line, then the body at 64 columns."""
        lines = [_STANZA_PREFIX + " ".join(self.args).encode("ascii")]
        text = b64.encode(self.body)
        lines.extend(text[i : i + _COLUMNS] for i in range(0, len(text), _COLUMNS))
        if len(text) % _COLUMNS == 0:
            # A body that fills its last line exactly still needs a short (empty) final line.
            lines.append(b"")
        return b"\n".join(lines) + b"\n"


class Header(NamedTuple):
    """A parsed header: the stanzas, the MAC and the exact bytes the MAC covers."""

    stanzas: tuple[Stanza, ...]
    mac: bytes
    mac_input: bytes
    size: int


class HeaderCollector:
    """Accumulates header lines until the MAC line, enforcing the size bounds on the way.

    Feed it lines as read (each with its LF, or without one at end of input); ``add`` returns True
    once the MAC line arrived. Sync and async readers share it so that both apply the same limits.
    """

    def __init__(self) -> None:
        self._lines: list[bytes] = []
        self._size = 0

    @property
    def line_limit(self) -> int:
        """How many bytes to ask the reader for: one more than the longest allowed line."""
        return limits.MAX_AGE_HEADER_LINE + 1

    def add(self, line: bytes) -> bool:
        """Take the next line; True when the header is complete.

        Raises AgeHeaderError if the input is not an age file, ends inside the header, or
        exceeds MAX_AGE_HEADER_LINE / MAX_AGE_HEADER_BYTES.
        """
        if not self._lines and not line.startswith(_VERSION_PREFIX):
            if _VERSION_PREFIX.startswith(line):
                raise AgeHeaderError(
                    "not an age file: the input is empty"
                    if not line
                    else f"not an age file: the input ends after {len(line)} bytes"
                )
            raise AgeHeaderError("not an age file: the first line is not an age version line")
        if not line.endswith(b"\n"):
            if len(line) > limits.MAX_AGE_HEADER_LINE:
                raise AgeHeaderError(
                    "header line too long", expected=limits.MAX_AGE_HEADER_LINE, found=len(line)
                )
            raise AgeHeaderError("file ends inside the header (no MAC line)")
        self._size += len(line)
        if self._size > limits.MAX_AGE_HEADER_BYTES:
            raise AgeHeaderError(
                "header too large", expected=f"<= {limits.MAX_AGE_HEADER_BYTES} bytes"
            )
        self._lines.append(line)
        return line.startswith(_MAC_PREFIX)

    def header(self) -> Header:
        """Parse the collected lines; see :func:`parse_header`."""
        return parse_header(b"".join(self._lines))


def _decode_args(line: bytes, lineno: int) -> tuple[str, ...]:
    raw_args = line[len(_STANZA_PREFIX) :].split(b" ")
    for arg in raw_args:
        if not arg:
            raise AgeHeaderError(f"header line {lineno}: empty stanza argument")
        if any(not 0x21 <= c <= 0x7E for c in arg):
            raise AgeHeaderError(f"header line {lineno}: stanza argument has non-VCHAR bytes")
    return tuple(a.decode("ascii") for a in raw_args)


def parse_header(data: bytes) -> Header:
    """Parse a complete header (version line through MAC line, nothing after it).

    Raises AgeHeaderError naming the offending line on any deviation from the grammar: another
    version, CRLF line ends, a bad stanza start, empty or non-VCHAR arguments, body lines longer
    than 64 columns or a missing short final body line, padded or non-canonical base64, a MAC line
    with extra spaces or the wrong length, or no stanza at all.
    """
    if not data.endswith(b"\n"):
        raise AgeHeaderError("file ends inside the header (no MAC line)")
    lines = data[:-1].split(b"\n")
    if lines[0] + b"\n" != VERSION_LINE:
        if lines[0].startswith(_VERSION_PREFIX):
            raise AgeHeaderError(
                "unsupported age version", expected="age-encryption.org/v1", found=lines[0][:64]
            )
        raise AgeHeaderError("not an age file: the first line is not an age version line")
    stanzas: list[Stanza] = []
    i = 1
    while i < len(lines):
        line = lines[i]
        lineno = i + 1
        if line.startswith(_MAC_PREFIX):
            if i != len(lines) - 1:
                raise AgeHeaderError(f"header line {lineno}: data after the MAC line")
            if not stanzas:
                raise AgeHeaderError("header has no recipient stanza")
            if not line.startswith(b"--- ") or len(line) != 4 + _MAC_B64_LEN:
                raise AgeHeaderError(
                    f"header line {lineno}: malformed MAC line",
                    expected="'--- ' and 43 base64 characters",
                )
            mac = b64.decode(line[4:])
            if mac is None:
                raise AgeHeaderError(f"header line {lineno}: MAC is not canonical base64")
            mac_input_len = len(data) - len(line) - 1 + len(_MAC_PREFIX)
            return Header(tuple(stanzas), mac, data[:mac_input_len], len(data))
        if not line.startswith(_STANZA_PREFIX):
            raise AgeHeaderError(
                f"header line {lineno}: expected a stanza ('-> ') or the MAC line ('--- ')"
            )
        if len(stanzas) >= limits.MAX_AGE_STANZAS:
            raise AgeHeaderError("too many recipient stanzas", expected=limits.MAX_AGE_STANZAS)
        args = _decode_args(line, lineno)
        body_lines: list[bytes] = []
        while True:
            i += 1
            if i >= len(lines) or lines[i].startswith(_MAC_PREFIX):
                raise AgeHeaderError(f"header line {lineno}: stanza has no short final body line")
            body_line = lines[i]
            if len(body_line) > _COLUMNS:
                raise AgeHeaderError(
                    f"header line {i + 1}: stanza body line longer than 64 columns",
                    found=len(body_line),
                )
            if not b64.is_base64_text(body_line):
                raise AgeHeaderError(f"header line {i + 1}: stanza body is not base64")
            body_lines.append(body_line)
            if len(body_line) < _COLUMNS:
                break
        body = b64.decode(b"".join(body_lines))
        if body is None:
            raise AgeHeaderError(f"header line {lineno}: stanza body is not canonical base64")
        stanzas.append(Stanza(args, body))
        i += 1
    raise AgeHeaderError("file ends inside the header (no MAC line)")


def _hmac_key(file_key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"header").derive(file_key)


def compute_mac(file_key: bytes, mac_input: bytes) -> bytes:
    """HMAC-SHA-256 over the header through ``---``, keyed by HKDF(file key, info="header")."""
    # cryptography's HMAC, not the standard library's: its OpenSSL is loaded already, while
    # hashlib would load a second one (milliseconds of every seal's and open's start-up).
    mac = hmac.HMAC(_hmac_key(file_key), hashes.SHA256())
    mac.update(mac_input)
    return mac.finalize()


def verify_mac(header: Header, file_key: bytes) -> None:
    """Check the header MAC with the unwrapped file key.

    Raises AgeHmacError if it does not match: the stanzas were altered, or a stanza from another
    file was spliced in (its file key then differs from the one this MAC was made with).
    """
    mac = hmac.HMAC(_hmac_key(file_key), hashes.SHA256())
    mac.update(header.mac_input)
    try:
        mac.verify(header.mac)  # constant time
    except InvalidSignature:
        raise AgeHmacError(
            "header MAC does not verify (the header was altered or spliced)"
        ) from None


def encode_header(stanzas: Sequence[Stanza], file_key: bytes) -> bytes:
    """The complete header for ``stanzas``, with its MAC line."""
    mac_input = VERSION_LINE + b"".join(s.encode() for s in stanzas) + _MAC_PREFIX
    return mac_input + b" " + b64.encode(compute_mac(file_key, mac_input)) + b"\n"
