"""Bech32 as age uses it (BIP 173 checksums, no length limit)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_graphene._internal import bech32
from golem_graphene.errors import AgeFormatError


class TestDecode:
    def test_bip173_valid_empty_data(self) -> None:
        assert bech32.decode("A12UEL5L") == ("a", b"")
        assert bech32.decode("a12uel5l") == ("a", b"")

    def test_no_length_limit(self) -> None:
        # age recipients for post-quantum keys are ~1,900 characters: BIP 173's 90 must not apply.
        data = bytes(range(256)) * 5
        assert bech32.decode(bech32.encode("age1pq", data)) == ("age1pq", data)

    @pytest.mark.parametrize(
        "text",
        [
            "pzry9x0s0muk",  # no separator
            "1pzry9x0s0muk",  # empty human-readable part
            "x1b4n0q5v",  # 'b' is not in the data alphabet
            "li1dgmt3",  # checksum too short
            "A1G7SGD8",  # checksum computed over the upper-case HRP
            "10a06t8",  # empty HRP
            "1qzzfhee",  # empty HRP
            "A12uEL5L",  # mixed case
            "a12uel5l ",  # trailing space
            "\x801eym55h",  # HRP character out of range
        ],
    )
    def test_bip173_invalid(self, text: str) -> None:
        with pytest.raises(AgeFormatError):
            bech32.decode(text)

    def test_checksum_catches_a_typo(self) -> None:
        good = bech32.encode("age", bytes(32))
        typo = good[:10] + ("q" if good[10] != "q" else "p") + good[11:]
        with pytest.raises(AgeFormatError, match="checksum"):
            bech32.decode(typo)

    def test_non_zero_padding_is_rejected(self) -> None:
        # 1 byte = 8 bits -> two 5-bit groups with 2 padding bits; set a padding bit.
        text = bech32.encode("age", b"\x00")
        hrp, values = "age", [0, 1]
        polymod = bech32._polymod([*bech32._hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
        checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
        bad = "age1" + "".join(bech32._CHARSET[v] for v in values + checksum)
        assert bad != text
        with pytest.raises(AgeFormatError, match="padding"):
            bech32.decode(bad)


class TestEncode:
    def test_case_follows_hrp(self) -> None:
        assert bech32.encode("AGE-SECRET-KEY-", b"\x42" * 32).startswith("AGE-SECRET-KEY-1")
        assert bech32.encode("age", b"\x42" * 32).startswith("age1")

    def test_mixed_case_hrp_is_refused(self) -> None:
        with pytest.raises(AgeFormatError):
            bech32.encode("Age", b"")

    @given(st.binary(max_size=200), st.sampled_from(["age", "AGE-SECRET-KEY-", "x"]))
    def test_round_trip(self, data: bytes, hrp: str) -> None:
        assert bech32.decode(bech32.encode(hrp, data)) == (hrp.lower(), data)
