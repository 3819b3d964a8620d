"""Gramine size strings: ``parse_size_str`` semantics, and the shortest exact formatting."""

from __future__ import annotations

import pytest

from golem_graphene.errors import ManifestError
from golem_graphene.gramine.problems import ManifestValidationError
from golem_graphene.gramine.sizes import format_size, parse_size

# --- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0),
        ("4096", 4096),
        ("256K", 256 << 10),
        ("256k", 256 << 10),
        ("512M", 512 << 20),
        ("1g", 1 << 30),
        ("1024G", 1 << 40),
        ("007M", 7 << 20),
    ],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "K", "1KB", "1 K", "+1", "0x10", "1T", "1.0G", "1e3"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ManifestValidationError) as info:
        parse_size(text, key="sys.stack.size")
    assert info.value.key == "sys.stack.size"


def test_format_size() -> None:
    assert [format_size(n) for n in (0, 1, 1024, 256 << 20, 3 << 30, 1 << 40, 1536)] == [
        "0",
        "1",
        "1K",
        "256M",
        "3G",
        "1024G",
        "1536",
    ]
    with pytest.raises(ManifestError):
        format_size(-1)
