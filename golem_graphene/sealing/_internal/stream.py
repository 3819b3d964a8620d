"""The age payload: ChaCha20-Poly1305 STREAM over 64 KiB chunks.

``payload key = HKDF-SHA-256(ikm=file key, salt=16-byte nonce, info="payload")``; chunk ``i`` is
sealed with nonce ``i`` (11 bytes, big endian) ``|| 0x01`` if it is the final chunk else
``0x00``. The counter stops reordering and dropping chunks, the final flag stops truncation at a
chunk boundary and appending after the end, and the payload key is unique per file, so chunks
from another file never open.

Both classes here work on *blocks*: runs of whole chunks in caller-owned buffers, so a file
streams through a few reused buffers with ``encrypt_into``/``decrypt_into`` and no per-chunk
allocation (with cryptography < 47, which lacks them, each chunk is copied once more). Whether
a block is the last one is the caller's knowledge (it read ahead to EOF).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from golem_graphene.errors import AgePayloadError

CHUNK_SIZE: Final = 64 * 1024
TAG_SIZE: Final = 16
SEALED_CHUNK_SIZE: Final = CHUNK_SIZE + TAG_SIZE
NONCE_SIZE: Final = 16
_MAX_CHUNKS: Final = 1 << 88
_LAST: Final = b"\x01"
_NOT_LAST: Final = b"\x00"


_IntoFn = Callable[[bytes, memoryview, None, memoryview], int]


def _into(aead: ChaCha20Poly1305, name: str) -> _IntoFn:
    """``aead.encrypt_into``/``decrypt_into`` (cryptography >= 47), else a copying stand-in."""
    fast: _IntoFn | None = getattr(aead, f"{name}_into", None)
    if fast is not None:
        return fast
    slow = getattr(aead, name)

    def copy_into(nonce: bytes, data: memoryview, aad: None, out: memoryview) -> int:
        result: bytes = slow(nonce, bytes(data), aad)
        out[: len(result)] = result
        return len(result)

    return copy_into


def payload_key(file_key: bytes, nonce: bytes) -> bytes:
    """The STREAM key for a file: HKDF-SHA-256(file key, salt=nonce, info="payload")."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=nonce, info=b"payload").derive(file_key)


def sealed_size(plain_size: int) -> int:
    """Payload bytes (without the 16-byte nonce) for ``plain_size`` bytes of plaintext."""
    chunks = max(1, -(-plain_size // CHUNK_SIZE))
    return plain_size + chunks * TAG_SIZE


class StreamSealer:
    """Seals consecutive plaintext blocks of one payload, counting chunks across calls."""

    def __init__(self, key: bytes) -> None:
        self._encrypt_into = _into(ChaCha20Poly1305(key), "encrypt")
        self._counter = 0

    def seal(self, plain: memoryview, out: memoryview, *, final: bool) -> int:
        """Seal ``plain`` into ``out``; returns the bytes written.

        ``plain`` must be whole chunks unless ``final``; the last chunk of a final block gets the
        final flag. An empty final block is only valid as the whole (empty) payload: it becomes
        one empty final chunk, and a full last chunk is never followed by an empty one.
        """
        size = len(plain)
        if not final and size % CHUNK_SIZE:
            raise ValueError("a non-final block must hold whole chunks")
        if final and size == 0 and self._counter:
            raise ValueError("the final block of a non-empty payload cannot be empty")
        counter = self._counter
        encrypt_into = self._encrypt_into
        pos = 0
        written = 0
        while True:
            end = min(pos + CHUNK_SIZE, size)
            last = final and end == size
            nonce = counter.to_bytes(11, "big") + (_LAST if last else _NOT_LAST)
            written += encrypt_into(
                nonce, plain[pos:end], None, out[written : written + end - pos + TAG_SIZE]
            )
            counter += 1
            pos = end
            if pos >= size:
                break
        if counter >= _MAX_CHUNKS:
            raise AgePayloadError("payload too long for the 88-bit STREAM counter")
        self._counter = counter
        return written


class StreamOpener:
    """Opens consecutive ciphertext blocks of one payload, counting chunks across calls."""

    def __init__(self, key: bytes) -> None:
        self._decrypt_into = _into(ChaCha20Poly1305(key), "decrypt")
        self._counter = 0
        self.verified = 0
        """Bytes of the last :meth:`open` output that authenticated (also after a failure)."""

    def _fail(self, message: str, released: int) -> AgePayloadError:
        self.verified = released
        return AgePayloadError(message)

    def open(self, sealed: memoryview, out: memoryview, *, final: bool) -> int:
        """Open ``sealed`` into ``out``; returns the plaintext bytes written.

        ``sealed`` must be whole sealed chunks unless ``final`` (the block ends at end of input).
        Raises AgePayloadError (and sets :attr:`verified` to the bytes of ``out`` that
        authenticated before the failure) when a chunk does not authenticate in its position
        (tampered, reordered, from another file), when the input ends without a final chunk or
        inside a chunk, when a full final chunk is followed by an empty one, or when data follows
        the final chunk.
        """
        size = len(sealed)
        if not final and size % SEALED_CHUNK_SIZE:
            raise ValueError("a non-final block must hold whole sealed chunks")
        if final and size == 0:
            raise self._fail(
                "payload has no chunks (truncated after the nonce)"
                if self._counter == 0
                else "payload ends without a final chunk (truncated)",
                0,
            )
        counter = self._counter
        decrypt_into = self._decrypt_into
        pos = 0
        released = 0
        while pos < size:
            end = min(pos + SEALED_CHUNK_SIZE, size)
            last = final and end == size
            length = end - pos
            if length < TAG_SIZE:
                raise self._fail(
                    f"chunk {counter} is truncated ({length} bytes, shorter than its tag)",
                    released,
                )
            if last and length == TAG_SIZE and counter > 0:
                raise self._fail(
                    f"chunk {counter} is an empty final chunk after a full chunk", released
                )
            prefix = counter.to_bytes(11, "big")
            chunk = sealed[pos:end]
            target = out[released : released + length - TAG_SIZE]
            try:
                released += decrypt_into(
                    prefix + (_LAST if last else _NOT_LAST), chunk, None, target
                )
            except InvalidTag:
                # A full chunk that opens with the other flag is authentic plaintext in the wrong
                # place: the stream was cut at a chunk boundary (opens as non-final, input ends)
                # or data was appended (opens as final, input goes on). Like age, release it and
                # then fail, so the released prefix is the same as age's.
                if length == SEALED_CHUNK_SIZE:
                    try:
                        released += decrypt_into(
                            prefix + (_NOT_LAST if last else _LAST), chunk, None, target
                        )
                    except InvalidTag:
                        pass
                    else:
                        raise self._fail(
                            "payload ends without a final chunk (truncated at a chunk boundary)"
                            if last
                            else f"data follows the final chunk (chunk {counter})",
                            released,
                        ) from None
                raise self._fail(
                    f"chunk {counter} does not authenticate"
                    + (
                        " as the final chunk (truncated or tampered)"
                        if last
                        else " (tampered or reordered)"
                    ),
                    released,
                ) from None
            counter += 1
            pos = end
        if counter >= _MAX_CHUNKS:
            raise AgePayloadError("payload too long for the 88-bit STREAM counter")
        self._counter = counter
        self.verified = released
        return released
