"""The age header: encoding, strict parsing, bounds and the MAC."""

from __future__ import annotations

import io

import pytest

from golem_graphene import limits
from golem_graphene.errors import AgeHeaderError, AgeHmacError
from golem_graphene.sealing._internal.header import (
    VERSION_LINE,
    HeaderCollector,
    Stanza,
    encode_header,
    parse_header,
    verify_mac,
)
from golem_graphene.sealing._internal.source import SyncSource

FILE_KEY = bytes(range(16))


class TestEncodeParse:
    @pytest.mark.parametrize("body_len", [0, 1, 32, 47, 48, 49, 95, 96, 97, 300])
    def test_round_trip_and_body_wrapping(self, body_len: int) -> None:
        stanza = Stanza(("example.com/test", "arg"), bytes(range(256))[:body_len] * 1)
        data = encode_header([stanza], FILE_KEY)
        lines = data.split(b"\n")
        body_lines = lines[2:-2]
        # Full lines have 64 columns; the stanza always ends with a shorter (maybe empty) line.
        assert all(len(line) == 64 for line in body_lines[:-1])
        assert len(body_lines[-1]) < 64
        header = parse_header(data)
        assert header.stanzas == (stanza,)
        assert header.size == len(data)
        verify_mac(header, FILE_KEY)

    def test_mac_covers_through_the_dashes(self) -> None:
        data = encode_header([Stanza(("a",), b"")], FILE_KEY)
        header = parse_header(data)
        assert header.mac_input == data[: data.rindex(b"---") + 3]

    def test_several_stanzas(self) -> None:
        stanzas = [Stanza((f"t{i}", str(i)), bytes([i]) * i) for i in range(5)]
        assert parse_header(encode_header(stanzas, FILE_KEY)).stanzas == tuple(stanzas)

    def test_wrong_file_key_fails_the_mac(self) -> None:
        header = parse_header(encode_header([Stanza(("a",), b"x")], FILE_KEY))
        with pytest.raises(AgeHmacError):
            verify_mac(header, bytes(16))


class TestStrictness:
    @pytest.mark.parametrize(
        ("data", "match"),
        [
            (b"age-encryption.org/v2\n-> a\n\n--- " + b"A" * 43 + b"\n", "version"),
            (b"not age\n", "not an age file"),
            (VERSION_LINE + b"--- " + b"A" * 43 + b"\n", "no recipient stanza"),
            (VERSION_LINE + b"-> a\n\n--- " + b"A" * 42 + b"\n", "MAC line"),
            (VERSION_LINE + b"-> a\n\n---  " + b"A" * 43 + b"\n", "MAC line"),
            (VERSION_LINE + b"-> a\n\n--- " + b"A" * 42 + b"B\n", "canonical"),
            (VERSION_LINE + b"-> a\nQQ==\n--- " + b"A" * 43 + b"\n", "not base64"),
            (VERSION_LINE + b"-> a\nQR\n--- " + b"A" * 43 + b"\n", "canonical"),
            (VERSION_LINE + b"-> a \n\n--- " + b"A" * 43 + b"\n", "empty stanza argument"),
            (VERSION_LINE + b"-> a\x7f\n\n--- " + b"A" * 43 + b"\n", "non-VCHAR"),
            (VERSION_LINE + b"-> a\n" + b"A" * 64 + b"\n--- " + b"A" * 43 + b"\n", "final"),
            (VERSION_LINE + b"-> a\n" + b"A" * 65 + b"\n\n--- " + b"A" * 43 + b"\n", "64"),
            (VERSION_LINE + b"-> a\n\n", "no MAC line"),
        ],
    )
    def test_rejects(self, data: bytes, match: str) -> None:
        with pytest.raises(AgeHeaderError, match=match):
            parse_header(data)

    def test_too_many_stanzas(self) -> None:
        stanza = b"-> a\n\n"
        data = VERSION_LINE + stanza * (limits.MAX_AGE_STANZAS + 1) + b"--- " + b"A" * 43 + b"\n"
        with pytest.raises(AgeHeaderError, match="too many"):
            parse_header(data)


class TestCollector:
    def test_stops_at_the_mac_line(self) -> None:
        data = encode_header([Stanza(("a",), b"x")], FILE_KEY)
        source = SyncSource(io.BytesIO(data + b"PAYLOAD"))
        collector = HeaderCollector()
        while not collector.add(source.readline(collector.line_limit)):
            pass
        assert collector.header().size == len(data)
        assert source.read_exact(100) == b"PAYLOAD"

    def test_not_an_age_file_fails_on_the_first_line(self) -> None:
        # A large non-age input must be refused without reading it all.
        source = SyncSource(io.BytesIO(b"x" * 10_000_000))
        collector = HeaderCollector()
        with pytest.raises(AgeHeaderError, match="not an age file"):
            collector.add(source.readline(collector.line_limit))
        assert source.consumed <= limits.MAX_AGE_HEADER_LINE + 1

    def test_line_too_long(self) -> None:
        data = VERSION_LINE + b"-> " + b"a" * limits.MAX_AGE_HEADER_LINE + b"\n"
        source = SyncSource(io.BytesIO(data))
        collector = HeaderCollector()
        with pytest.raises(AgeHeaderError, match="too long"):
            while not collector.add(source.readline(collector.line_limit)):
                pass

    def test_header_too_large(self) -> None:
        data = VERSION_LINE + b"-> a\n" + (b"A" * 64 + b"\n") * (limits.MAX_AGE_HEADER_BYTES // 65)
        source = SyncSource(io.BytesIO(data + b"\n--- " + b"A" * 43 + b"\n"))
        collector = HeaderCollector()
        with pytest.raises(AgeHeaderError, match="too large"):
            while not collector.add(source.readline(collector.line_limit)):
                pass

    @pytest.mark.parametrize("data", [b"", b"age-enc", VERSION_LINE + b"-> a\n"])
    def test_truncated(self, data: bytes) -> None:
        source = SyncSource(io.BytesIO(data))
        collector = HeaderCollector()
        with pytest.raises(AgeHeaderError, match=r"ends|empty"):
            while not collector.add(source.readline(collector.line_limit)):
                pass
