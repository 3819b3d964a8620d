"""Property tests: round trips around chunk and block boundaries; fuzzed input never escapes
our error family."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
from collections.abc import AsyncIterator

from _age_helpers import BLOCK, CHUNK, seal, unseal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_graphene.errors import Error
from golem_graphene.sealing import X25519Identity, decrypt_async, decrypt_stream

BOUNDARIES = [0, CHUNK, 2 * CHUNK, BLOCK, BLOCK + CHUNK]
identities = st.binary(min_size=32, max_size=32).map(X25519Identity.from_private_bytes)
sizes = st.one_of(
    st.builds(lambda b, d: max(0, b + d), st.sampled_from(BOUNDARIES), st.integers(-3, 3)),
    st.integers(0, 3 * CHUNK),
)

# One sealed file per kind, reused by the fuzzers (sealing per example would dominate the time).
_ALICE = X25519Identity.generate()
_PLAIN = os.urandom(2 * CHUNK + 123)
_SEALED = seal(_PLAIN, _ALICE.recipient())
_ARMORED = seal(_PLAIN[:3000], _ALICE.recipient(), armor=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=sizes, keys=st.lists(identities, min_size=1, max_size=4), pick=st.integers(0, 3))
def test_round_trip(size: int, keys: list[X25519Identity], pick: int) -> None:
    data = os.urandom(size)
    sealed = seal(data, *(k.recipient() for k in keys))
    assert unseal(sealed, [keys[pick % len(keys)]]) == data


def _decrypt_or_typed_error(blob: bytes) -> None:
    # Anything but our error family (ValueError, InvalidTag, IndexError...) fails the test.
    with contextlib.suppress(Error):
        decrypt_stream(io.BytesIO(blob), io.BytesIO(), [_ALICE])


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(_SEALED) - 1), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(_SEALED) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(_SEALED)), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, len(_SEALED) - 1), st.integers(1, 100)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(mutations, min_size=1, max_size=3), st.booleans())
def test_mutated_files_only_raise_typed_errors(
    edits: list[tuple[str, int, int]], armored: bool
) -> None:
    blob = bytearray(_ARMORED if armored else _SEALED)
    for kind, pos, value in edits:
        pos = min(pos, len(blob))
        if kind == "flip" and pos < len(blob):
            blob[pos] ^= value
        elif kind == "cut":
            del blob[pos:]
        elif kind == "insert":
            blob[pos:pos] = bytes([value])
        elif kind == "delete":
            del blob[pos : pos + value]
    out = io.BytesIO()
    try:
        decrypt_stream(io.BytesIO(bytes(blob)), out, [_ALICE])
    except Error:
        return
    # Whatever survives the edits must be the original plaintext, never something else.
    assert out.getvalue() == (_PLAIN[:3000] if armored else _PLAIN)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=600),
        st.binary(max_size=400).map(lambda b: b"age-encryption.org/v1\n" + b),
        st.binary(max_size=400).map(lambda b: b"age-encryption.org/v1\n-> X25519 " + b),
        st.binary(max_size=400).map(lambda b: b"-----BEGIN AGE ENCRYPTED FILE-----\n" + b),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef0123456789+/=\n\r -", max_size=400).map(
            lambda t: b"-----BEGIN AGE ENCRYPTED FILE-----\n" + t.encode()
        ),
    )
)
def test_random_bytes_only_raise_typed_errors(blob: bytes) -> None:
    _decrypt_or_typed_error(blob)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 50))
def test_async_random_bytes_only_raise_typed_errors(blob: bytes, piece: int) -> None:
    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(blob), piece):
            yield blob[i : i + piece]

    async def sink(data: bytes) -> None:
        pass

    with contextlib.suppress(Error):
        asyncio.run(decrypt_async(pieces(), sink, [_ALICE]))
