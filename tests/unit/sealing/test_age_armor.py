"""ASCII armor: strict decoding (fed in arbitrary pieces) and encoding."""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_graphene import limits
from golem_graphene.errors import AgeArmorError
from golem_graphene.sealing._internal.armor import (
    BEGIN,
    END,
    ArmorDecoder,
    ArmorWriter,
    looks_armored,
)


def armor(data: bytes) -> bytes:
    out = io.BytesIO()
    writer = ArmorWriter(lambda view: out.write(view))
    writer.write(data)
    writer.close()
    return out.getvalue()


def dearmor(text: bytes, piece: int = 1 << 20) -> bytes:
    decoder = ArmorDecoder()
    parts = [decoder.feed(text[i : i + piece]) for i in range(0, len(text), piece)]
    parts.append(decoder.finish())
    return b"".join(parts)


class TestRoundTrip:
    @pytest.mark.parametrize("size", [1, 2, 3, 47, 48, 49, 95, 96, 97, 3071, 3072, 3073, 10_000])
    def test_sizes(self, size: int) -> None:
        data = bytes(i % 251 for i in range(size))
        text = armor(data)
        lines = text.split(b"\n")
        assert lines[0] == BEGIN and lines[-2] == END and lines[-1] == b""
        assert all(len(line) == 64 for line in lines[1:-3])
        assert 0 < len(lines[-3]) <= 64
        assert dearmor(text) == data

    @settings(max_examples=50)
    @given(st.binary(min_size=1, max_size=2000), st.integers(min_value=1, max_value=200))
    def test_any_feeding(self, data: bytes, piece: int) -> None:
        assert dearmor(armor(data), piece) == data

    def test_crlf_and_outer_whitespace(self) -> None:
        text = armor(b"hello world" * 20).replace(b"\n", b"\r\n")
        assert dearmor(b"\n  \r\n\t\n" + text + b"  \n\n", piece=7) == b"hello world" * 20

    def test_end_line_without_line_feed(self) -> None:
        assert dearmor(armor(b"abc")[:-1], piece=5) == b"abc"

    def test_writes_in_batches(self) -> None:
        chunks: list[bytes] = []
        writer = ArmorWriter(lambda view: chunks.append(bytes(view)))
        for _ in range(100):
            writer.write(b"x" * 1000)
        writer.close()
        assert len(chunks) < 50
        assert dearmor(b"".join(chunks)) == b"x" * 100_000


class TestStrict:
    @pytest.mark.parametrize(
        ("text", "match"),
        [
            (b"-----BEGIN AGE ENCRYPTED FILE----- \nYWJj\n" + END + b"\n", "BEGIN"),
            (b"-----begin age encrypted file-----\nYWJj\n" + END + b"\n", "BEGIN"),
            (b" " + BEGIN + b"\nYWJj\n" + END + b"\n", "BEGIN"),
            (BEGIN + b"\nYWJj\n", "without the END"),
            (BEGIN + b"\nYWJj\n" + END + b"\nx\n", "after the END"),
            (BEGIN + b"\nYWJ\n" + END + b"\n", "invalid base64"),
            (BEGIN + b"\nYW==\n" + END + b"\n", "non-canonical"),
            (BEGIN + b"\nYWJ=\n" + END + b"\n", "non-canonical"),
            (BEGIN + b"\nYWJj\nYWJj\n" + END + b"\n", "END line after a short line"),
            (BEGIN + b"\n\nYWJj\n" + END + b"\n", "1 to 64"),
            (BEGIN + b"\n" + b"A" * 68 + b"\n" + END + b"\n", "1 to 64|too long"),
            (BEGIN + b"\nYWJj \n" + END + b"\n", "invalid base64"),
            (BEGIN + b"\nProc-Type: 4\n\nYWJj\n" + END + b"\n", "invalid base64"),
        ],
    )
    def test_rejects(self, text: bytes, match: str) -> None:
        for piece in (1, 3, len(text)):
            with pytest.raises(AgeArmorError, match=match):
                dearmor(text, piece)

    def test_whitespace_bounds(self) -> None:
        text = armor(b"abc")
        ok = b" " * (limits.MAX_AGE_ARMOR_WHITESPACE - 2)
        assert dearmor(text + ok) == b"abc"
        with pytest.raises(AgeArmorError, match="too much whitespace"):
            dearmor(text + b" " * (limits.MAX_AGE_ARMOR_WHITESPACE + 1))
        with pytest.raises(AgeArmorError, match="too much whitespace"):
            dearmor(b"\n" * (limits.MAX_AGE_ARMOR_WHITESPACE + 2) + text)

    def test_long_garbage_line_fails_early(self) -> None:
        decoder = ArmorDecoder()
        decoder.feed(BEGIN + b"\n")
        with pytest.raises(AgeArmorError, match="too long"):
            decoder.feed(b"A" * 1000)


def test_looks_armored() -> None:
    assert looks_armored(b"\r\n  -----BEGIN")
    assert looks_armored(b"-----begin")
    assert not looks_armored(b"age-encryption.org/v1\n")
    assert not looks_armored(b"")


class TestBulkPath:
    """Long runs of full lines are decoded in one call; errors must still name their line."""

    @pytest.mark.parametrize("eol", [b"\n", b"\r\n"])
    def test_large_file(self, eol: bytes) -> None:
        data = os.urandom(48 * 5000 + 7)
        text = armor(data).replace(b"\n", eol)
        for piece in (1 << 20, 65_536, 1000):
            assert dearmor(text, piece) == data

    @pytest.mark.parametrize(
        ("damage", "match"),
        [
            (lambda line: line[:10] + b"*" + line[11:], "armor line 51: invalid base64"),
            (lambda line: line[:-1], "armor line 51: invalid base64"),
            (lambda line: line + b"A", "armor line 51: data lines"),
            (lambda line: line[:-2] + b"==", "armor line 5[12]"),
            (lambda line: line[:30] + b"\r" + line[31:], "armor line 51: invalid base64"),
        ],
    )
    def test_damage_deep_inside(self, damage: Callable[[bytes], bytes], match: str) -> None:
        lines = armor(bytes(48 * 100)).split(b"\n")
        lines[50] = damage(lines[50])
        with pytest.raises(AgeArmorError, match=match):
            dearmor(b"\n".join(lines))
