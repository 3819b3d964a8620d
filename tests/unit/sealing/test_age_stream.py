"""STREAM: chunking rules, the final flag and the counter across blocks."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from golem_graphene.errors import AgePayloadError
from golem_graphene.sealing._internal import stream as stream_module
from golem_graphene.sealing._internal.stream import (
    CHUNK_SIZE,
    SEALED_CHUNK_SIZE,
    TAG_SIZE,
    StreamOpener,
    StreamSealer,
    payload_key,
    sealed_size,
)

KEY = payload_key(bytes(16), bytes(16))


def seal_blocks(blocks: list[bytes]) -> bytes:
    sealer = StreamSealer(KEY)
    out = bytearray()
    for i, block in enumerate(blocks):
        buf = bytearray(len(block) + (len(block) // CHUNK_SIZE + 1) * TAG_SIZE)
        n = sealer.seal(memoryview(block), memoryview(buf), final=i == len(blocks) - 1)
        out += buf[:n]
    return bytes(out)


def open_all(sealed: bytes) -> bytes:
    out = bytearray(len(sealed))
    opener = StreamOpener(KEY)
    n = opener.open(memoryview(sealed), memoryview(out), final=True)
    return bytes(out[:n])


@pytest.mark.parametrize(
    ("size", "chunks"),
    [
        (0, 1),
        (1, 1),
        (CHUNK_SIZE - 1, 1),
        (CHUNK_SIZE, 1),
        (CHUNK_SIZE + 1, 2),
        (3 * CHUNK_SIZE, 3),
    ],
)
def test_chunk_count(size: int, chunks: int) -> None:
    # A full last chunk is final itself: never followed by an empty chunk.
    sealed = seal_blocks([os.urandom(size)])
    assert len(sealed) == sealed_size(size) == size + chunks * TAG_SIZE


def test_blocks_continue_the_counter() -> None:
    data = os.urandom(5 * CHUNK_SIZE + 7)
    split = seal_blocks([data[: 2 * CHUNK_SIZE], data[2 * CHUNK_SIZE :]])
    assert open_all(split) == data


def test_nonce_is_bound_to_the_key() -> None:
    sealed = seal_blocks([b"x"])
    opener = StreamOpener(payload_key(bytes(16), b"\x01" * 16))
    with pytest.raises(AgePayloadError):
        opener.open(memoryview(sealed), memoryview(bytearray(16)), final=True)


def test_empty_final_chunk_after_a_full_chunk_is_refused() -> None:
    # Hand-build: one full non-final chunk, then an empty final chunk (the spec forbids it).
    aead = ChaCha20Poly1305(KEY)
    full = aead.encrypt(bytes(11) + b"\x00", b"a" * CHUNK_SIZE, None)
    empty = aead.encrypt((1).to_bytes(11, "big") + b"\x01", b"", None)
    opener = StreamOpener(KEY)
    out = bytearray(CHUNK_SIZE)
    with pytest.raises(AgePayloadError, match="empty final chunk"):
        opener.open(memoryview(full + empty), memoryview(out), final=True)
    assert opener.verified == CHUNK_SIZE


def test_verified_prefix_is_reported() -> None:
    data = os.urandom(3 * CHUNK_SIZE)
    sealed = bytearray(seal_blocks([data]))
    sealed[2 * SEALED_CHUNK_SIZE + 5] ^= 1
    opener = StreamOpener(KEY)
    out = bytearray(len(sealed))
    with pytest.raises(AgePayloadError, match="chunk 2"):
        opener.open(memoryview(sealed), memoryview(out), final=True)
    assert opener.verified == 2 * CHUNK_SIZE
    assert out[: opener.verified] == data[: 2 * CHUNK_SIZE]


def test_no_chunks() -> None:
    with pytest.raises(AgePayloadError, match="no chunks"):
        StreamOpener(KEY).open(memoryview(b""), memoryview(bytearray()), final=True)


def test_misuse_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="whole chunks"):
        StreamSealer(KEY).seal(memoryview(b"x"), memoryview(bytearray(17)), final=False)
    with pytest.raises(ValueError, match="whole sealed chunks"):
        StreamOpener(KEY).open(memoryview(b"x" * 17), memoryview(bytearray(1)), final=False)


def test_without_the_into_methods_of_older_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    # cryptography < 47 has no encrypt_into/decrypt_into: the copying fallback must agree.
    data = os.urandom(2 * CHUNK_SIZE + 5)
    fast = seal_blocks([data])

    class Old:
        def __init__(self, key: bytes) -> None:
            self._aead = ChaCha20Poly1305(key)
            self.encrypt = self._aead.encrypt
            self.decrypt = self._aead.decrypt

    monkeypatch.setattr(stream_module, "ChaCha20Poly1305", Old)
    assert seal_blocks([data]) == fast
    assert open_all(fast) == data
    tampered = bytearray(fast)
    tampered[-1] ^= 1
    with pytest.raises(AgePayloadError):
        open_all(bytes(tampered))
