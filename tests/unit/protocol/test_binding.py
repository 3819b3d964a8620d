"""The report-data binding: the fixed layout, strict lengths, the check, task ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import golem_graphene.protocol as protocol
from golem_graphene.attestation.quote import Quote
from golem_graphene.errors import ProtocolError, VerificationError
from golem_graphene.protocol import binding
from golem_graphene.protocol.binding import (
    REPORT_DATA_LABEL,
    BindingError,
    Transcript,
    check_report_data,
    format_task_id,
    new_nonce,
    new_task_id,
    parse_task_id,
    report_data,
)

TASK_ID = bytes(range(16))
NONCE = bytes(range(32, 64))
E_PUB = b"\xee" * 32
S_PUB = b"\x55" * 32
R_PUB = b"\xaa" * 32

# Computed with coreutils: { printf 'golem-graphene/v1/report-data'; <the 144 field bytes>; }
# | sha512sum. It pins the layout the enclave agent and the simulator must reproduce.
PINNED = bytes.fromhex(
    "3676bec6e66439ac4418dceb21216b2c09537588ef82440f0fbeecf5d24aa89f"
    "abc26f29fde4a47662cfded6e307711f17a69ba6a4e1e2b2991fa593d5c91e36"
)


def _quote_with_report_data(vectors: Path, data: bytes) -> Quote:
    raw = bytearray((vectors / "dcap" / "phala_sgx" / "quote.bin").read_bytes())
    raw[368:432] = data
    return Quote.from_bytes(bytes(raw))


def test_public_names() -> None:
    assert sorted(protocol.__all__) == sorted(
        [
            "PROTOCOL_NAME",
            "PROTOCOL_VERSION",
            "BindingError",
            "CreateTaskRequest",
            "CreateTaskResponse",
            "ErrorBody",
            "Evidence",
            "Message",
            "Runner",
            "TaskEvent",
            "TaskState",
            "Transcript",
            "check_report_data",
            "format_task_id",
            "new_nonce",
            "new_task_id",
            "parse_task_id",
            "report_data",
        ]
    )
    assert protocol.PROTOCOL_VERSION == 1
    assert protocol.PROTOCOL_NAME == "golem-graphene/v1"
    assert sorted(binding.__all__) == sorted(
        [
            "KEY_SIZE",
            "NONCE_SIZE",
            "REPORT_DATA_LABEL",
            "REPORT_DATA_SIZE",
            "TASK_ID_SIZE",
            "BindingError",
            "Transcript",
            "check_report_data",
            "format_task_id",
            "new_nonce",
            "new_task_id",
            "parse_task_id",
            "report_data",
        ]
    )


def test_report_data_matches_the_pinned_vector() -> None:
    assert REPORT_DATA_LABEL == b"golem-graphene/v1/report-data"
    assert report_data(TASK_ID, NONCE, E_PUB, S_PUB, R_PUB) == PINNED
    assert (
        hashlib.sha512(REPORT_DATA_LABEL + TASK_ID + NONCE + E_PUB + S_PUB + R_PUB).digest()
        == PINNED
    )


def test_field_order_matters() -> None:
    # Swapping E and S must not give the same report data: a relay could otherwise present the
    # signing key as the input key.
    assert report_data(TASK_ID, NONCE, S_PUB, E_PUB, R_PUB) != PINNED
    assert report_data(TASK_ID, NONCE, E_PUB, S_PUB, b"\xab" * 32) != PINNED


@pytest.mark.parametrize(
    ("field", "size"),
    [
        ("task_id", 16),
        ("nonce", 32),
        ("enclave_key", 32),
        ("signing_key", 32),
        ("requestor_key", 32),
    ],
)
@pytest.mark.parametrize("delta", [-1, 1])
def test_wrong_lengths_are_protocol_errors(field: str, size: int, delta: int) -> None:
    values = {
        "task_id": TASK_ID,
        "nonce": NONCE,
        "enclave_key": E_PUB,
        "signing_key": S_PUB,
        "requestor_key": R_PUB,
    }
    values[field] = bytes(size + delta)
    with pytest.raises(ProtocolError, match=field) as info:
        report_data(**values)
    assert info.value.expected == size
    assert info.value.found == size + delta


def test_text_instead_of_bytes_is_refused() -> None:
    with pytest.raises(ProtocolError, match="must be bytes"):
        Transcript("00" * 16, NONCE, E_PUB, S_PUB, R_PUB)  # type: ignore[arg-type]


def test_transcript_encoding_and_purpose_digests() -> None:
    t = Transcript(TASK_ID, NONCE, E_PUB, S_PUB, R_PUB)
    assert t.encode() == TASK_ID + NONCE + E_PUB + S_PUB + R_PUB
    assert len(t.encode()) == 144
    assert t.report_data() == PINNED
    assert t.digest(b"a") == hashlib.sha256(b"a" + t.encode()).digest()
    assert t.digest(b"a") != t.digest(b"b")


def test_check_report_data_accepts_the_bound_quote(vectors: Path) -> None:
    t = Transcript(TASK_ID, NONCE, E_PUB, S_PUB, R_PUB)
    quote = _quote_with_report_data(vectors, t.report_data())
    check_report_data(quote.report_body, t)


def test_check_report_data_names_expected_and_found(vectors: Path) -> None:
    t = Transcript(TASK_ID, NONCE, E_PUB, S_PUB, R_PUB)
    quote = _quote_with_report_data(vectors, t.report_data())
    other = Transcript(TASK_ID, NONCE, E_PUB, b"\x56" * 32, R_PUB)  # a substituted S
    with pytest.raises(BindingError) as info:
        check_report_data(quote.report_body, other)
    err = info.value
    assert isinstance(err, VerificationError)
    assert err.code == "report_data_binding"
    assert err.expected == other.report_data().hex()
    assert err.found == t.report_data().hex()


def test_the_unpatched_quote_binds_nothing_of_ours(vectors: Path) -> None:
    raw = (vectors / "dcap" / "phala_sgx" / "quote.bin").read_bytes()
    with pytest.raises(BindingError):
        check_report_data(
            Quote.from_bytes(raw).report_body, Transcript(TASK_ID, NONCE, E_PUB, S_PUB, R_PUB)
        )


def test_new_ids_are_random_and_sized() -> None:
    ids = {new_task_id() for _ in range(64)}
    assert len(ids) == 64
    assert all(len(i) == 16 for i in ids)
    assert len(new_nonce()) == 32
    assert new_nonce() != new_nonce()


def test_task_id_text_round_trip() -> None:
    tid = new_task_id()
    text = format_task_id(tid)
    assert len(text) == 32
    assert text == text.lower()
    assert parse_task_id(text) == tid
    assert parse_task_id(text.upper()) == tid
    assert parse_task_id(f"  {text}\n") == tid


def test_task_id_accepts_a_uuid() -> None:
    assert parse_task_id("00010203-0405-0607-0809-0a0b0c0d0e0f") == TASK_ID


@pytest.mark.parametrize(
    "text",
    [
        "",
        "00" * 15,
        "00" * 17,
        "0g" + "00" * 15,
        "0001020-30405-0607-0809-0a0b0c0d0e0f",  # hyphens in the wrong places
        "{00010203-0405-0607-0809-0a0b0c0d0e0f}",
        "urn:uuid:00010203-0405-0607-0809-0a0b0c0d0e0f",
    ],
)
def test_task_id_rejects_other_text(text: str) -> None:
    with pytest.raises(ProtocolError, match="task id"):
        parse_task_id(text)


def test_task_id_rejects_non_text() -> None:
    with pytest.raises(ProtocolError):
        parse_task_id(TASK_ID)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        format_task_id(bytes(15))
