"""In-memory helpers for the sealing tests, and a parser for the layout of our age files."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from golem_graphene.sealing import (
    X25519Identity,
    X25519Recipient,
    decrypt_stream,
    encrypt_stream,
)

CHUNK = 64 * 1024
SEALED_CHUNK = CHUNK + 16
BLOCK = 16 * CHUNK  # plaintext bytes per I/O block in golem_graphene.sealing.age


def seal(data: bytes, *recipients: X25519Recipient, armor: bool = False) -> bytes:
    out = io.BytesIO()
    assert encrypt_stream(io.BytesIO(data), out, list(recipients), armor=armor) == len(data)
    return out.getvalue()


def unseal(sealed: bytes, identities: Sequence[X25519Identity]) -> bytes:
    out = io.BytesIO()
    n = decrypt_stream(io.BytesIO(sealed), out, identities)
    assert n == len(out.getvalue())
    return out.getvalue()


@dataclass
class Layout:
    """A binary age file cut into header, payload nonce and sealed chunks."""

    header: bytes
    nonce: bytes
    chunks: list[bytes]

    @classmethod
    def of(cls, sealed: bytes) -> Layout:
        end = sealed.index(b"\n---") + 1
        end = sealed.index(b"\n", end) + 1
        nonce = sealed[end : end + 16]
        payload = sealed[end + 16 :]
        chunks = [payload[i : i + SEALED_CHUNK] for i in range(0, len(payload), SEALED_CHUNK)]
        return cls(sealed[:end], nonce, chunks)

    def join(self) -> bytes:
        return self.header + self.nonce + b"".join(self.chunks)
