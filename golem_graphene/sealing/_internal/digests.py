"""SHA-256 of both sides of a seal, taken in the same pass as the encryption.

The agent lists each output's plaintext and ciphertext SHA-256 in the receipt. Hashing while
sealing reads the file once instead of three times, and the digests are of exactly the bytes
that were sealed and written, even if the file changed meanwhile.
"""

from __future__ import annotations

import hashlib
from typing import BinaryIO, Protocol, cast


class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class SealDigests:
    """Running SHA-256 and byte count of the plaintext read and the age file written."""

    def __init__(self) -> None:
        self.plaintext = hashlib.sha256()
        self.ciphertext = hashlib.sha256()
        self.plaintext_size = 0
        self.ciphertext_size = 0


class HashingReader:
    """``readinto`` of ``raw`` that also feeds what it read to ``digests.plaintext``."""

    def __init__(self, raw: BinaryIO, digests: SealDigests) -> None:
        # Binary files opened unbuffered (FileIO) have readinto; BinaryIO does not declare it.
        self._readinto = cast(_ReadInto, raw).readinto
        self._digests = digests

    def readinto(self, view: memoryview) -> int | None:
        n = self._readinto(view)
        if n:
            self._digests.plaintext.update(view[:n])
            self._digests.plaintext_size += n
        return n


class HashingWriter:
    """``write`` of ``raw`` that also feeds what it wrote to ``digests.ciphertext`` (called on
    the write-behind thread: hashing overlaps the next block's encryption)."""

    def __init__(self, raw: BinaryIO, digests: SealDigests) -> None:
        self._raw = raw
        self._digests = digests

    def write(self, view: memoryview) -> int | None:
        n = self._raw.write(view)
        if n:
            self._digests.ciphertext.update(view[:n])
            self._digests.ciphertext_size += n
        return n
