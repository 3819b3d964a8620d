"""SHA-256 and byte count of a stream, taken while it is read or written.

Sealing, opening and downloading each need the digest of bytes that pass through anyway: hashing
on the way reads a file once instead of again afterwards, and the digest is of exactly the bytes
that passed, even if the file changed meanwhile.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, Protocol, cast

from golem_graphene._batched_write import writev_all

if TYPE_CHECKING:
    import hashlib
    from concurrent.futures import Future

__all__ = ["HashingReader", "HashingSink", "PulledCiphertext", "SealDigests"]


def _sha256() -> hashlib._Hash:
    """A new SHA-256. hashlib is imported on first use: ``seal`` and ``open`` import this module
    but take no digests, and hashlib loads a second OpenSSL (milliseconds of start-up)."""
    import hashlib

    return hashlib.sha256()


class _ReadInto(Protocol):
    def readinto(self, buffer: memoryview, /) -> int | None: ...


class _Write(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


class HashingSink:
    """A binary sink that hashes and counts what is written, passing it on to ``raw`` if given
    (only what ``raw`` took: raw files may write partially)."""

    def __init__(self, raw: _Write | BinaryIO | None = None) -> None:
        self._raw: _Write | None = raw
        self.hash = _sha256()
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
        self.hash = _sha256()
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
        self.plaintext = _sha256()
        self.ciphertext = _sha256()
        self.plaintext_size = 0
        self.ciphertext_size = 0

    def record(self, plaintext: HashingReader, ciphertext: HashingSink) -> None:
        """Take the digests of a finished seal."""
        self.plaintext, self.plaintext_size = plaintext.hash, plaintext.size
        self.ciphertext, self.ciphertext_size = ciphertext.hash, ciphertext.size


class PulledCiphertext:
    """A ciphertext on its way to a decryptor (``read``/``readinto``), pulled in pieces.

    Counted as it is pulled, hashed and (with ``copy_fd``) appended to a kept copy on a thread
    of its own, one batch behind, so that hashing overlaps decryption. ``pull`` returns the
    next pieces, ``[]`` at the end. A context manager; ``hash`` and ``size`` are final after
    :meth:`finish`.
    """

    def __init__(self, pull: Callable[[], list[bytes]], copy_fd: int | None = None) -> None:
        self._pull = pull
        self._copy_fd = copy_fd
        self._pending: deque[memoryview] = deque()
        self._ended = False
        # Imported here: concurrent.futures (and the logging it imports) would cost every
        # seal/open command start-up time, and only this hashing sink needs a worker.
        from concurrent.futures import ThreadPoolExecutor

        self._absorber = ThreadPoolExecutor(1, thread_name_prefix="ciphertext-hash")
        self._absorbing: Future[None] | None = None
        self.hash = _sha256()
        self.size = 0

    def __enter__(self) -> PulledCiphertext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._absorber.shutdown(wait=True)

    def _absorb(self, pieces: list[bytes]) -> None:
        if self._copy_fd is not None:
            writev_all(self._copy_fd, pieces)
        for piece in pieces:
            self.hash.update(piece)

    def _more(self) -> bool:
        if self._ended:
            return False
        pieces = self._pull()
        if self._absorbing is not None:
            self._absorbing.result()  # at most two batches in flight
            self._absorbing = None
        if not pieces:
            self._ended = True
            return False
        self.size += sum(len(p) for p in pieces)
        self._absorbing = self._absorber.submit(self._absorb, pieces)
        self._pending.extend(memoryview(p) for p in pieces)
        return True

    def readinto(self, view: memoryview) -> int:
        filled, size = 0, len(view)
        while filled < size and (self._pending or self._more()):
            piece = self._pending[0]
            n = min(len(piece), size - filled)
            view[filled : filled + n] = piece[:n]
            filled += n
            if n == len(piece):
                self._pending.popleft()
            else:
                self._pending[0] = piece[n:]
        return filled

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            raise ValueError("read() needs a size")
        buf = bytearray(n)
        return bytes(buf[: self.readinto(memoryview(buf))])

    def finish(self) -> None:
        """Pull the rest without decrypting it (after a failure, or trailing bytes) and wait
        until everything pulled is hashed and copied."""
        self._pending.clear()
        while self._more():
            self._pending.clear()
        if self._absorbing is not None:
            self._absorbing.result()
            self._absorbing = None
