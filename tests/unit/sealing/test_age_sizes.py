"""Sizes of age files computed without decrypting: a plaintext's size from the file's layout,
and the bound a provider puts on an upload."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from golem_graphene.errors import AgeHeaderError
from golem_graphene.sealing.age import (
    MAX_HEADER_ALLOWANCE,
    encrypt_stream,
    max_ciphertext_size,
    plaintext_size,
)
from golem_graphene.sealing.keys import X25519Identity

SIZES = [0, 1, 65535, 65536, 65537, 3 * 65536, 200_001]


def sealed(tmp_path: Path, size: int, recipients: int = 1) -> Path:
    sink = io.BytesIO()
    keys = [X25519Identity.generate().recipient() for _ in range(recipients)]
    encrypt_stream(io.BytesIO(b"\x5a" * size), sink, keys)
    path = tmp_path / "f.age"
    path.write_bytes(sink.getvalue())
    return path


@pytest.mark.parametrize("size", SIZES)
def test_plaintext_size_from_the_ciphertext_layout(tmp_path: Path, size: int) -> None:
    assert plaintext_size(sealed(tmp_path, size)) == size


@pytest.mark.parametrize("size", SIZES)
def test_the_upload_bound_holds_a_file_to_several_recipients(tmp_path: Path, size: int) -> None:
    path = sealed(tmp_path, size, recipients=8)
    assert path.stat().st_size <= max_ciphertext_size(size)
    # ... and is tight: one more byte than the payload and the allowance is refused.
    assert max_ciphertext_size(size) - path.stat().st_size < MAX_HEADER_ALLOWANCE


def test_a_file_without_a_header_or_with_a_torn_payload_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.age"
    bogus.write_bytes(b"not an age file at all")
    with pytest.raises(AgeHeaderError, match="no header"):
        plaintext_size(bogus)
    path = sealed(tmp_path, 65536)
    path.write_bytes(path.read_bytes() + b"\x00")  # a 1-byte chunk cannot hold its tag
    with pytest.raises(AgeHeaderError, match="fits no age payload"):
        plaintext_size(path)
