"""SIGSTRUCT parsing (the ``.sig`` file ``gramine-sgx-sign`` writes).

Synthetic SIGSTRUCTs are laid out as Gramine's ``graminelibos/sigstruct.py`` lays them out
(research/gramine.md section 1.9; the date as graminelibos writes it: year u16 at 20, month at
22, day at 23).
"""

from __future__ import annotations

import hashlib
import os
import struct

import pytest

from golem_graphene.errors import RunnerError
from golem_graphene.gramine.sigstruct import SIGSTRUCT_SIZE, Sigstruct

HEADER = bytes.fromhex("06000000e10000000000010000000000")
HEADER2 = bytes.fromhex("01010000600000006000000001000000")


def synthetic(
    *,
    mrenclave: bytes = bytes(range(32)),
    modulus: bytes = b"\x5a" * 384,
    isvprodid: int = 0x1234,
    isvsvn: int = 0xBEEF,
    debug: bool = False,
    date: tuple[int, int, int] = (2025, 6, 18),
) -> bytes:
    data = bytearray(SIGSTRUCT_SIZE)
    data[0:16] = HEADER
    struct.pack_into("<HBB", data, 20, *date)
    data[24:40] = HEADER2
    data[128:512] = modulus
    struct.pack_into("<I", data, 512, 3)
    data[516:900] = os.urandom(384)  # signature: not interpreted by the parser
    struct.pack_into("<II", data, 900, 0, 0xFFFFFFFF)
    flags = 0x4 | (0x2 if debug else 0)
    struct.pack_into("<QQQQ", data, 928, flags, 0x3, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFF9FF1B)
    data[960:992] = mrenclave
    struct.pack_into("<HH", data, 1024, isvprodid, isvsvn)
    data[1040:1808] = os.urandom(768)  # q1, q2
    return bytes(data)


def test_round_trip_of_every_field() -> None:
    modulus = os.urandom(384)
    parsed = Sigstruct.from_bytes(synthetic(modulus=modulus, mrenclave=b"\xab" * 32))
    assert parsed.mrenclave == b"\xab" * 32
    assert parsed.mrsigner == hashlib.sha256(modulus).digest()
    assert (parsed.isvprodid, parsed.isvsvn) == (0x1234, 0xBEEF)
    assert (parsed.attribute_flags, parsed.attribute_xfrm) == (0x4, 0x3)
    assert parsed.debug is False
    assert parsed.date == "2025-06-18"


def test_debug_attribute_is_read_from_the_flags() -> None:
    parsed = Sigstruct.from_bytes(synthetic(debug=True))
    assert parsed.attribute_flags == 0x6
    assert parsed.debug is True


def test_fields_are_read_at_their_offsets_not_elsewhere() -> None:
    # Changing bytes the parser must ignore (signature, q1/q2, reserved) changes nothing.
    base = synthetic()
    other = bytearray(base)
    other[516:900] = bytes(384)
    other[992:1008] = b"\xff" * 16
    assert Sigstruct.from_bytes(base) == Sigstruct.from_bytes(bytes(other))


@pytest.mark.parametrize("size", [0, 1, SIGSTRUCT_SIZE - 1, SIGSTRUCT_SIZE + 1, 4096])
def test_wrong_size_is_refused(size: int) -> None:
    data = (synthetic() * 3)[:size]
    with pytest.raises(RunnerError, match="wrong size") as info:
        Sigstruct.from_bytes(data)
    assert info.value.expected == SIGSTRUCT_SIZE
    assert info.value.found == size


@pytest.mark.parametrize("offset", [0, 4, 15, 24, 30, 39])
def test_a_changed_header_byte_is_refused(offset: int) -> None:
    data = bytearray(synthetic())
    data[offset] ^= 0x01
    with pytest.raises(RunnerError, match="bad header"):
        Sigstruct.from_bytes(bytes(data))


def test_an_all_zero_file_of_the_right_size_is_refused() -> None:
    with pytest.raises(RunnerError, match="not an SGX SIGSTRUCT"):
        Sigstruct.from_bytes(bytes(SIGSTRUCT_SIZE))
