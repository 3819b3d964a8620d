"""Quote.from_bytes on real quotes (every field against the raw offsets) and malformed ones."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from golem_graphene.attestation.pck import PckExtension
from golem_graphene.attestation.quote import (
    ATTRIBUTE_DEBUG,
    INTEL_QE_VENDOR_ID,
    SIGNED_REGION_END,
    CertificationDataType,
    EnclaveReportBody,
    Quote,
)
from golem_graphene.errors import CertificationDataError, QuoteFormatError, UnsupportedQuoteError
from golem_graphene.limits import MAX_QUOTE_BYTES

PACKS = ["phala_sgx", "oasis_sgx", "intel_qvl_sample_TEST_PKI", "oasis_eppid_cert_type3"]


def _quote(vectors: Path, name: str) -> bytes:
    if name == "cosmian":
        return (vectors / "sources" / "cosmian-intel-sgx-ra" / "quote.dat").read_bytes()
    return (vectors / "dcap" / name / "quote.bin").read_bytes()


def _case(vectors: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "dcap" / name / "case.json").read_text())
    return data


@pytest.mark.parametrize("name", [*PACKS, "cosmian"])
def test_fields_sit_at_their_offsets(vectors: Path, name: str) -> None:
    raw = _quote(vectors, name)
    quote = Quote.from_bytes(raw)
    h = quote.header
    assert (h.version, h.att_key_type, h.tee_type) == (3, 2, 0)
    assert (h.qe_svn, h.pce_svn) == struct.unpack_from("<HH", raw, 8)
    assert h.qe_vendor_id == raw[12:28] == INTEL_QE_VENDOR_ID
    assert h.is_intel_qe
    assert h.user_data == raw[28:48]
    assert quote.report_body.raw == raw[48:432]
    assert quote.signed_region == raw[:SIGNED_REGION_END] == raw[:432]
    assert struct.unpack_from("<I", raw, 432)[0] == len(raw) - 436
    assert quote.signature == raw[436:500]
    assert quote.attestation_key == raw[500:564]
    assert quote.qe_report_raw == quote.qe_report_body.raw == raw[564:948]
    assert quote.qe_report_signature == raw[948:1012]
    n = struct.unpack_from("<H", raw, 1012)[0]
    assert quote.qe_auth_data == raw[1014 : 1014 + n]
    cert_type, size = struct.unpack_from("<HI", raw, 1014 + n)
    assert quote.certification_data_type == cert_type
    assert quote.certification_data == raw[1020 + n : 1020 + n + size]
    assert 1020 + n + size == len(raw)
    assert quote.raw == raw
    body = quote.report_body
    assert body.mrenclave == raw[112:144]
    assert body.mrsigner == raw[176:208]
    assert (body.isvprodid, body.isvsvn, body.configsvn) == struct.unpack_from("<HHH", raw, 304)
    assert body.report_data == raw[368:432]
    assert body.attributes == raw[96:112]
    assert body.cpusvn == raw[48:64]
    assert body.miscselect == raw[64:68]
    assert body.isvextprodid == raw[80:96]
    assert body.configid == raw[240:304]
    assert body.isvfamilyid == raw[352:368]


@pytest.mark.parametrize("name", ["phala_sgx", "oasis_sgx", "intel_qvl_sample_TEST_PKI"])
def test_identity_matches_the_pack(vectors: Path, name: str) -> None:
    expected = _case(vectors, name)["expected"]
    body = Quote.from_bytes(_quote(vectors, name)).report_body
    assert body.mrenclave.hex() == expected["mrenclave"]
    assert body.mrsigner.hex() == expected["mrsigner"]
    assert body.isvprodid == expected["isvprodid"]
    assert body.isvsvn == expected["isvsvn"]
    assert body.debug is expected["debug"]
    assert body.report_data.hex() == expected["report_data"]


def test_phala_header_and_attributes(vectors: Path) -> None:
    quote = Quote.from_bytes(_quote(vectors, "phala_sgx"))
    assert (quote.header.qe_svn, quote.header.pce_svn) == (10, 15)
    assert quote.report_body.attribute_flags == 0x05  # INIT | MODE64BIT
    assert quote.report_body.xfrm == 0xE7
    assert quote.report_body.debug is False
    assert quote.qe_report_body.isvprodid == 1
    assert quote.qe_report_body.isvsvn == 10
    assert len(quote.qe_auth_data) == 32
    assert quote.certification_data_type == CertificationDataType.PCK_CERT_CHAIN
    assert quote.certification_data.endswith(b"\0")


def test_cosmian_quote_as_its_source_asserts(vectors: Path) -> None:
    # SOURCE.txt: byte-exact round trip, MRSIGNER, 3 certificates, 6-byte FMSPC.
    raw = _quote(vectors, "cosmian")
    quote = Quote.from_bytes(raw)
    assert quote.raw == raw and len(raw) == 4734
    assert quote.report_body.mrsigner.hex() == (
        "ac2c9fa87e4c91768b1d0c47169466c50d5a98c790639fbaefe7352a59919980"
    )
    assert quote.report_body.mrenclave.hex() == (
        "e413a4ed616c7a79634d5ca05a2fda746a1f0c71349a80b25a02828846fab90e"
    )
    assert (quote.header.qe_svn, quote.header.pce_svn) == (9, 14)
    certs = x509.load_pem_x509_certificates(quote.pck_chain_pem())
    assert len(certs) == 3
    ext = PckExtension.from_certificate(certs[0])
    assert ext.fmspc == bytes.fromhex("30606A000000")
    assert quote.report_body.debug is False


def test_pck_chain_pem_strips_the_nul(vectors: Path) -> None:
    quote = Quote.from_bytes(_quote(vectors, "phala_sgx"))
    pem = quote.pck_chain_pem()
    assert not pem.endswith(b"\0")
    assert pem == quote.certification_data.rstrip(b"\0")
    assert pem.count(b"-----BEGIN CERTIFICATE-----") == 3


@pytest.mark.parametrize(
    ("name", "cert_type"), [("intel_qvl_sample_TEST_PKI", 1), ("oasis_eppid_cert_type3", 3)]
)
def test_quotes_without_a_chain(vectors: Path, name: str, cert_type: int) -> None:
    quote = Quote.from_bytes(_quote(vectors, name))
    assert quote.certification_data_type == cert_type
    with pytest.raises(CertificationDataError) as info:
        quote.pck_chain_pem()
    assert (info.value.expected, info.value.found) == (5, cert_type)
    assert info.value.code == "cert_data"


def test_intel_sample_has_no_qe_auth_data(vectors: Path) -> None:
    # Intel's QVL sample quote: 0 bytes of QE auth data (do not hard-code 32).
    quote = Quote.from_bytes(_quote(vectors, "intel_qvl_sample_TEST_PKI"))
    assert quote.qe_auth_data == b""
    assert len(quote.raw) == 1054


def test_debug_flag() -> None:
    body = bytearray(384)
    body[48] = 0x07
    parsed = EnclaveReportBody.from_bytes(bytes(body))
    assert parsed.debug is True
    assert parsed.attribute_flags & ATTRIBUTE_DEBUG
    body[48] = 0x05
    assert EnclaveReportBody.from_bytes(bytes(body)).debug is False


@pytest.mark.parametrize("size", [0, 383, 385])
def test_report_body_length(size: int) -> None:
    with pytest.raises(QuoteFormatError) as info:
        EnclaveReportBody.from_bytes(bytes(size))
    assert (info.value.expected, info.value.found) == (384, size)


# --- malformed --------------------------------------------------------------------------------


def _patch(raw: bytes, offset: int, data: bytes) -> bytes:
    return raw[:offset] + data + raw[offset + len(data) :]


@pytest.fixture(scope="module")
def phala(vectors: Path) -> bytes:
    return _quote(vectors, "phala_sgx")


@pytest.mark.parametrize(
    ("offset", "data", "field"),
    [
        (0, b"\x02\x00", "version"),
        (0, b"\x04\x00", "version"),
        (0, b"\x05\x00", "version"),
        (0, b"\xff\xff", "version"),
        (2, b"\x03\x00", "key type"),
        (2, b"\x00\x00", "key type"),
        (4, b"\x81\x00\x00\x00", "TEE type"),
        (4, b"\x01\x00\x00\x00", "TEE type"),
        (1046, b"\x00\x00", "certification data type"),
        (1046, b"\x06\x00", "certification data type"),
        (1046, b"\x07\x00", "certification data type"),
    ],
)
def test_unsupported(phala: bytes, offset: int, data: bytes, field: str) -> None:
    with pytest.raises(UnsupportedQuoteError) as info:
        Quote.from_bytes(_patch(phala, offset, data))
    assert field in info.value.message
    assert info.value.code == "unsupported_quote"


@pytest.mark.parametrize("cert_type", [1, 2, 3, 4, 5])
def test_all_v3_certification_types_parse(phala: bytes, cert_type: int) -> None:
    quote = Quote.from_bytes(_patch(phala, 1046, struct.pack("<H", cert_type)))
    assert quote.certification_data_type == cert_type


def test_too_large() -> None:
    with pytest.raises(QuoteFormatError) as info:
        Quote.from_bytes(bytes(MAX_QUOTE_BYTES + 1))
    assert "too large" in info.value.message


def test_shortest_header_only_quote_is_truncated() -> None:
    with pytest.raises(QuoteFormatError) as info:
        Quote.from_bytes(bytes(435))
    assert "truncated" in info.value.message


def test_signature_data_too_short(phala: bytes) -> None:
    # A length field that matches the rest of the quote exactly, but too little data for the
    # fixed part of the signature data.
    raw = phala[:432] + struct.pack("<I", 100) + bytes(100)
    with pytest.raises(QuoteFormatError) as info:
        Quote.from_bytes(raw)
    assert "too short" in info.value.message


def test_signature_data_length_mismatch_names_the_direction(phala: bytes) -> None:
    with pytest.raises(QuoteFormatError, match="trailing bytes"):
        Quote.from_bytes(phala + b"\0")
    with pytest.raises(QuoteFormatError, match="truncated"):
        Quote.from_bytes(phala[:-1])


def test_trailing_bytes_inside_the_signature_data(phala: bytes) -> None:
    raw = _patch(phala, 432, struct.pack("<I", len(phala) - 436 + 3)) + b"xyz"
    with pytest.raises(QuoteFormatError) as info:
        Quote.from_bytes(raw)
    assert "trailing bytes after the certification data" in info.value.message
    assert info.value.found == 3


@pytest.mark.parametrize(
    ("auth_len", "words"),
    [(0xFFFF, "QE auth data"), (4000, "QE auth data")],
)
def test_qe_auth_data_length_beyond_the_end(phala: bytes, auth_len: int, words: str) -> None:
    with pytest.raises(QuoteFormatError) as info:
        Quote.from_bytes(_patch(phala, 1012, struct.pack("<H", auth_len)))
    assert words in info.value.message


def test_certification_data_size_beyond_the_end(phala: bytes) -> None:
    size = struct.unpack_from("<I", phala, 1048)[0]
    with pytest.raises(QuoteFormatError) as info:
        Quote.from_bytes(_patch(phala, 1048, struct.pack("<I", size + 1)))
    assert "certification data" in info.value.message


def test_bytearray_and_memoryview_input(phala: bytes) -> None:
    assert Quote.from_bytes(bytearray(phala)).raw == phala
    assert Quote.from_bytes(memoryview(phala)).raw == phala  # type: ignore[arg-type]
