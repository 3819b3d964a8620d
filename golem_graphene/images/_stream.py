"""Streams that check what flows through them: digests, sizes and decompression bounds."""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Callable
from typing import IO, Literal, Protocol

import zstandard

from golem_graphene.errors import ImageDigestError, ImageFormatError, ImageLimitError
from golem_graphene.images.limits import ImageLimits

Compression = Literal["none", "gzip", "zstd"]


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class VerifyingReader(io.RawIOBase):
    """Reads a blob, hashing every byte; at its end the size and SHA-256 must be the expected
    ones (``expected_size`` ``None``: any size up to ``max_size``).

    A caller that stops early must call :meth:`finish`, which drains and checks the rest: a
    blob is trusted only once its last byte was hashed.
    """

    def __init__(
        self,
        raw: IO[bytes],
        *,
        what: str,
        expected_digest: str | None,
        expected_size: int | None,
        max_size: int | None = None,
    ) -> None:
        super().__init__()
        self._raw = raw
        self._what = what
        self._digest = expected_digest
        self._size = expected_size
        self._max = expected_size if expected_size is not None else max_size
        self._hash = hashlib.sha256()
        self.count = 0
        self._checked = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._checked:
            return 0
        want = len(buffer)
        if self._max is not None:
            # One byte past the bound is enough to know the blob is too long.
            want = min(want, self._max - self.count + 1)
        data = self._raw.read(want) if want > 0 else b""
        if not data:
            self._check()
            return 0
        self.count += len(data)
        if self._max is not None and self.count > self._max:
            raise ImageDigestError(
                f"{self._what} is longer than its descriptor says",
                expected=f"{self._max} bytes",
                found=f"at least {self.count} bytes",
            )
        self._hash.update(data)
        n = len(data)
        buffer[:n] = data
        return n

    def _check(self) -> None:
        self._checked = True
        if self._size is not None and self.count != self._size:
            raise ImageDigestError(
                f"{self._what} is truncated or padded",
                expected=f"{self._size} bytes",
                found=f"{self.count} bytes",
            )
        found = "sha256:" + self._hash.hexdigest()
        if self._digest is not None and found != self._digest:
            raise ImageDigestError(
                f"{self._what} does not have its digest", expected=self._digest, found=found
            )

    @property
    def digest(self) -> str:
        """The SHA-256 of the bytes read so far (the whole blob after :meth:`finish`)."""
        return "sha256:" + self._hash.hexdigest()

    def finish(self) -> None:
        """Read the rest and check size and digest (raises :class:`ImageDigestError`)."""
        while not self._checked:
            self.read(1024 * 1024)


class BoundedDecompressedReader(io.RawIOBase):
    """The uncompressed bytes of one layer, hashed for its ``diff_id`` and bounded: the image's
    total uncompressed bytes (``budget``, shared by its layers) and the layer's compression
    ratio over ``compressed`` (the blob reader) are checked as bytes arrive."""

    def __init__(
        self,
        inner: Readable,
        *,
        what: str,
        compressed: VerifyingReader,
        limits: ImageLimits,
        spend: Callable[[int], None],
    ) -> None:
        super().__init__()
        self._inner = inner
        self._what = what
        self._compressed = compressed
        self._limits = limits
        self._spend = spend
        self._hash = hashlib.sha256()
        self.count = 0
        self.at_end = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            data = self._inner.read(len(buffer))
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            # Undecompressable bytes are most often altered bytes: say so when the digest shows it.
            self._compressed.finish()
            raise ImageFormatError(f"{self._what} does not decompress", found=str(exc)) from exc
        if not data:
            self.at_end = True
            return 0
        n = len(data)
        self.count += n
        self._spend(n)
        if self.count > self._limits.ratio_floor_bytes:
            ratio = self.count / max(1, self._compressed.count)
            if ratio > self._limits.max_compression_ratio:
                raise ImageLimitError(
                    f"{self._what} expands beyond the compression-ratio bound (a bomb?)",
                    expected=f"at most {self._limits.max_compression_ratio}x",
                    found=f"{ratio:.0f}x after {self.count} bytes",
                )
        self._hash.update(data)
        buffer[:n] = data
        return n

    @property
    def digest(self) -> str:
        return "sha256:" + self._hash.hexdigest()

    def drain(self) -> None:
        """Read to the end (so that the digests cover every byte)."""
        while self.read(1024 * 1024):
            pass


def sniff_compression(head: bytes) -> Compression:
    """The compression a blob's first bytes show (docker-archive layers carry no media type)."""
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_ZSTD_MAGIC):
        return "zstd"
    return "none"


def decompressing(stream: IO[bytes], compression: Compression) -> Readable:
    """A reader of ``stream``'s uncompressed bytes (streaming: memory stays bounded)."""
    if compression == "gzip":
        return gzip.GzipFile(fileobj=stream, mode="rb")
    if compression == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(
            stream, read_across_frames=True, closefd=False
        )
    return stream
