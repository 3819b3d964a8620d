"""Every vector of the age test kit (C2SP/CCTV ``age/testdata``), each its own test.

For each vector we decrypt with the vector's identities through the three decryption entry
points (``decrypt_stream``, ``decrypt_async``, ``decrypt_file``) and check:

* the exact error class for the vector's ``expect`` (the kit's failure classes are distinct
  errors here, see ``EXPECTED_ERROR``);
* the SHA-256 of the plaintext the API released (the kit's ``payload``, also for failures);
* that ``decrypt_file`` leaves nothing behind on failure (no output, no temporary file).

We implement X25519 only. Vectors whose key material is a passphrase or a post-quantum identity
can only be opened with a key kind we refuse; for those, what the kit calls ``success`` or ``no
match`` is :class:`UnsupportedRecipientError` here, while failures we can detect without that key
(malformed stanzas, armor) keep the kit's class. ``RULE_EXCEPTIONS`` lists, with the reason, the
few vectors where that rule does not give our outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from golem_graphene.errors import (
    AgeArmorError,
    AgeHeaderError,
    AgeHmacError,
    AgeNoMatchError,
    AgePayloadError,
    Error,
    UnsupportedRecipientError,
)
from golem_graphene.sealing import (
    X25519Identity,
    decrypt_async,
    decrypt_file,
    decrypt_stream,
)
from golem_graphene.sealing._internal.armor import looks_armored

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "age-testkit"
assert VECTORS.is_dir()
_NOT_VECTORS = {"README.md", "SOURCE.txt"}
KNOWN_KEYS = {
    "expect",
    "payload",
    "identity",
    "passphrase",
    "armored",
    "file key",
    "comment",
    "compressed",
}

EXPECTED_ERROR: dict[str, type[Error] | None] = {
    "success": None,
    "no match": AgeNoMatchError,
    "HMAC failure": AgeHmacError,
    "header failure": AgeHeaderError,
    "payload failure": AgePayloadError,
    "armor failure": AgeArmorError,
}

# Vectors where "unsupported key material => UnsupportedRecipientError" is not our outcome.
RULE_EXCEPTIONS: dict[str, tuple[type[Error] | None, str]] = {
    "scrypt_uppercase": (
        AgeNoMatchError,
        "'Scrypt' is not the scrypt type (types are case-sensitive): an unknown stanza that no "
        "identity opens, so no match, as the kit says",
    ),
}


@dataclass
class Vector:
    name: str
    expect: str
    payload_sha256: str | None
    identities: list[X25519Identity] = field(default_factory=list)
    unsupported_keys: list[str] = field(default_factory=list)
    armored: bool = False
    data: bytes = b""

    @property
    def expected_error(self) -> type[Error] | None:
        if self.name in RULE_EXCEPTIONS:
            return RULE_EXCEPTIONS[self.name][0]
        needs_unsupported_key = not self.identities and bool(self.unsupported_keys)
        if needs_unsupported_key and self.expect in ("success", "no match"):
            return UnsupportedRecipientError
        return EXPECTED_ERROR[self.expect]


def load_vector(path: Path) -> Vector:
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    assert sep, f"{path.name}: no blank line after the vector header"
    fields: list[tuple[str, str]] = []
    for line in head.decode("utf-8").splitlines():
        key, colon, value = line.partition(": ")
        assert colon and key in KNOWN_KEYS, f"{path.name}: unknown vector header line {line!r}"
        fields.append((key, value))
    values = dict(fields)
    vector = Vector(
        name=path.name,
        expect=values["expect"],
        payload_sha256=values.get("payload"),
        armored=values.get("armored") == "yes",
    )
    assert vector.expect in EXPECTED_ERROR, f"{path.name}: unknown expect {vector.expect!r}"
    for key, value in fields:
        if key == "identity":
            try:
                vector.identities.append(X25519Identity.from_string(value))
            except UnsupportedRecipientError:
                # Only post-quantum identities may be refused; anything else must parse.
                assert value.startswith("AGE-SECRET-KEY-PQ-1"), value
                vector.unsupported_keys.append("post-quantum identity")
        elif key == "passphrase":
            vector.unsupported_keys.append("passphrase")
    if values.get("compressed") == "zlib":
        body = zlib.decompress(body)
    else:
        assert "compressed" not in values, f"{path.name}: unknown compression"
    vector.data = body
    # We detect armor from the bytes (as the age CLI does); it must agree with the label.
    assert looks_armored(body) == vector.armored, f"{path.name}: armor detection disagrees"
    return vector


VECTOR_PATHS = sorted(p for p in VECTORS.iterdir() if p.name not in _NOT_VECTORS)


def test_vector_set_is_complete() -> None:
    # SOURCE.txt records how many vectors this copy holds; a lost file must not go unnoticed.
    assert len(VECTOR_PATHS) == 115
    assert all((VECTORS / name).is_file() for name in RULE_EXCEPTIONS)


def _check_released(vector: Vector, released: bytes) -> None:
    if vector.expected_error in (None, AgePayloadError):
        # The kit's hash covers all plaintext released, also before a payload failure.
        assert vector.payload_sha256 is not None
        assert hashlib.sha256(released).hexdigest() == vector.payload_sha256
    else:
        # Failures before the payload must not release a single byte.
        assert released == b""


@pytest.mark.parametrize("path", VECTOR_PATHS, ids=[p.name for p in VECTOR_PATHS])
def test_decrypt_stream(path: Path) -> None:
    vector = load_vector(path)
    out = io.BytesIO()
    expected = vector.expected_error
    if expected is None:
        n = decrypt_stream(io.BytesIO(vector.data), out, vector.identities)
        assert n == len(out.getvalue())
    else:
        with pytest.raises(Error) as info:
            decrypt_stream(io.BytesIO(vector.data), out, vector.identities)
        assert type(info.value) is expected, info.value
    _check_released(vector, out.getvalue())


@pytest.mark.parametrize("path", VECTOR_PATHS, ids=[p.name for p in VECTOR_PATHS])
def test_decrypt_async(path: Path) -> None:
    vector = load_vector(path)
    received: list[bytes] = []

    async def pieces() -> AsyncIterator[bytes]:
        # Odd-sized pieces so that header lines and chunks straddle piece boundaries.
        for i in range(0, len(vector.data), 7919):
            yield vector.data[i : i + 7919]

    async def write(data: bytes) -> None:
        received.append(data)

    expected = vector.expected_error
    if expected is None:
        n = asyncio.run(decrypt_async(pieces(), write, vector.identities))
        assert n == sum(map(len, received))
    else:
        with pytest.raises(Error) as info:
            asyncio.run(decrypt_async(pieces(), write, vector.identities))
        assert type(info.value) is expected, info.value
    _check_released(vector, b"".join(received))


@pytest.mark.parametrize("path", VECTOR_PATHS, ids=[p.name for p in VECTOR_PATHS])
def test_decrypt_file(path: Path, tmp_path: Path) -> None:
    vector = load_vector(path)
    src = tmp_path / "in.age"
    src.write_bytes(vector.data)
    dst = tmp_path / "out"
    expected = vector.expected_error
    if expected is None:
        decrypt_file(src, dst, vector.identities)
        assert vector.payload_sha256 == hashlib.sha256(dst.read_bytes()).hexdigest()
    else:
        with pytest.raises(Error) as info:
            decrypt_file(src, dst, vector.identities)
        assert type(info.value) is expected, info.value
        assert sorted(p.name for p in tmp_path.iterdir()) == ["in.age"]
