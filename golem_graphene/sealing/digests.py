"""SHA-256 and byte count of a stream, taken while it is read or written.

Sealing, opening and downloading each need the digest of bytes that pass through anyway: hashing
on the way reads a file once instead of again afterwards, and the digest is of exactly the bytes
that passed, even if the file changed meanwhile.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Protocol, cast

__all__ = ["HashingReader", "HashingSink", "SealDigests"]


class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _Write(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


class HashingSink:
    """A binary sink that hashes and counts what is written, passing it on to ``raw`` if given
    (only what ``raw`` took: raw files may write partially)."""

    def __init__(self, raw: _Write | BinaryIO | None = None) -> None:
        self._raw: _Write | None = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int | None:
        view = memoryview(data)
        n = view.nbytes if self._raw is None else self._raw.write(view)
        if n:
            self.hash.update(view[:n])
            self.size += n
        return n

    def flush(self) -> None:
        flush = getattr(self._raw, "flush", None)
        if flush is not None:
            flush()


class HashingReader:
    """``readinto`` of ``raw`` that also hashes and counts what it read."""

    def __init__(self, raw: BinaryIO) -> None:
        # Binary files opened unbuffered (FileIO) have readinto; BinaryIO does not declare it.
        self._readinto = cast(_ReadInto, raw).readinto
        self.hash = hashlib.sha256()
        self.size = 0

    def readinto(self, view: memoryview) -> int | None:
        n = self._readinto(view)
        if n:
            self.hash.update(view[:n])
            self.size += n
        return n


class SealDigests:
    """What :func:`~golem_graphene.sealing.age.encrypt_file` read and wrote: SHA-256 (hash
    objects) and sizes of the plaintext and of the age file, filled in as it seals."""

    def __init__(self) -> None:
        self.plaintext = hashlib.sha256()
        self.ciphertext = hashlib.sha256()
        self.plaintext_size = 0
        self.ciphertext_size = 0

    def record(self, plaintext: HashingReader, ciphertext: HashingSink) -> None:
        """Take the digests of a finished seal."""
        self.plaintext, self.plaintext_size = plaintext.hash, plaintext.size
        self.ciphertext, self.ciphertext_size = ciphertext.hash, ciphertext.size
