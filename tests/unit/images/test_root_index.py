"""The root index round-trips byte for byte, and a damaged one is refused, never half-read."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_graphene.errors import ImageFormatError
from golem_graphene.images import RootEntry, RootIndex

ENTRIES = [
    RootEntry("usr", "dir", 0o555),
    RootEntry("usr/bin", "dir", 0o555),
    RootEntry("usr/bin/sh", "file", 0o555, size=3, sha256="ab" * 32),
    RootEntry("bin", "link", 0o777, target="usr/bin"),
    RootEntry("etc/caf\u00e9", "file", 0o444, size=0, sha256="00" * 32),
]


def test_round_trip_is_byte_for_byte() -> None:
    index = RootIndex.of(ENTRIES)
    data = index.to_bytes()
    again = RootIndex.from_bytes(data)
    assert again == index and again.to_bytes() == data
    assert [e.path for e in again.entries] == sorted(e.path for e in ENTRIES)
    assert RootIndex.from_bytes(RootIndex(()).to_bytes()).entries == ()


def test_entries_out_of_order_are_refused() -> None:
    lines = RootIndex.of(ENTRIES).to_bytes().splitlines()
    swapped = b"\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + b"\n"
    with pytest.raises(ImageFormatError, match="not in order"):
        RootIndex.from_bytes(swapped)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b'{"format":2}\n',
        b'{"format":1}\n{"path":"a","kind":"fifo","mode":420}\n',
        b'{"format":1}\n{"path":"a","kind":"file","mode":420}\n',
        b'{"format":1}\n{"path":"a","kind":"link","mode":511}\n',
        b'{"format":1}\n[1,2]\n',
        b'{"format":1}\n{"path":1,"kind":"dir","mode":493}\n',
        b'{"format":1}\n{"path":"a","kind":"dir","mode":493}\n}{\n',
    ],
)
def test_damaged_indexes_are_refused(data: bytes) -> None:
    with pytest.raises(ImageFormatError, match="root index is damaged"):
        RootIndex.from_bytes(data)


@given(st.binary(max_size=300))
def test_any_bytes_give_an_index_or_the_typed_error(data: bytes) -> None:
    with contextlib.suppress(ImageFormatError):  # any other exception fails the test
        RootIndex.from_bytes(b'{"format":1}\n' + data)
