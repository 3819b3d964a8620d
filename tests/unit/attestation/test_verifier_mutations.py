"""Negative recipes (research note section 9), each asserting the precise error code.

Part 1 mutates the real ``phala_sgx`` pack at its time T (no new keys). Part 2 combines real
Intel-signed documents from different sources. Part 3 covers the checks that need re-signed
collateral, with the throw-away PKI of ``_sgx_test_pki``.

Not constructible without re-signing (so covered in part 3 only): a revoked PCK leaf, a CRL
issued after T but otherwise current, QE identity mismatches other than the id, TCB level
selection, QE status convergence, FMSPC/PCE-ID mismatch with everything else current.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from _sgx_test_pki import (
    ATTR_DEBUG,
    ATTR_INIT,
    ATTR_MODE64BIT,
    ATTR_PROVISIONKEY,
    DAY,
    DEFAULT_COMPONENTS,
    DEFAULT_PCESVN,
    DEFAULT_QE_ISVSVN,
    T0,
    SgxCase,
    SgxTestPki,
    make_cert,
    new_key,
    qe_identity_doc,
    qe_level,
    qe_report_body,
    quote_header,
    raw_public,
    raw_sign,
    report_body,
    sgx_extension_der,
    tcb_info_doc,
    tcb_level,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from golem_graphene.attestation import QuoteCollateral, QuoteVerifier, TrustAnchor, VerifyOptions
from golem_graphene.attestation.quote import Quote
from golem_graphene.errors import VerificationError

# --- part 1: the real phala_sgx pack, mutated ----------------------------------------------------


@dataclass(frozen=True)
class Pack:
    quote: bytes
    collateral: dict[str, str]
    anchor: TrustAnchor
    at: datetime

    def verify(
        self,
        quote: bytes | None = None,
        collateral: dict[str, str] | None = None,
        at: datetime | None = None,
    ) -> Any:
        return QuoteVerifier(anchor=self.anchor).verify(
            self.quote if quote is None else quote,
            QuoteCollateral.from_mapping(self.collateral if collateral is None else collateral),
            self.at if at is None else at,
        )

    def fails(
        self,
        code: str,
        quote: bytes | None = None,
        collateral: dict[str, str] | None = None,
        at: datetime | None = None,
    ) -> VerificationError:
        with pytest.raises(VerificationError) as info:
            self.verify(quote, collateral, at)
        assert info.value.code == code, info.value.describe()
        return info.value


@pytest.fixture(scope="module")
def phala(vectors: Path) -> Pack:
    pack = vectors / "dcap" / "phala_sgx"
    return Pack(
        quote=(pack / "quote.bin").read_bytes(),
        collateral=json.loads((pack / "collateral.json").read_text()),
        anchor=TrustAnchor.from_pem((pack / "root.pem").read_bytes()),
        at=datetime.fromtimestamp(1752919277, UTC),
    )


def _patch(quote: bytes, offset: int, data: bytes) -> bytes:
    out = bytearray(quote)
    out[offset : offset + len(data)] = data
    return bytes(out)


def _xor(offset: int) -> Callable[[bytes], bytes]:
    return lambda q: _patch(q, offset, bytes([q[offset] ^ 0x01]))


def _with_cert_data(quote: bytes, data: bytes, cert_type: int = 5) -> bytes:
    """Replace the certification data (phala: QE auth data is 32 bytes, type at 1046)."""
    sig = quote[436:1046] + struct.pack("<HI", cert_type, len(data)) + data
    return quote[:432] + struct.pack("<I", len(sig)) + sig


def _chain_certs(quote: bytes) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(Quote.from_bytes(quote).pck_chain_pem())


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


QUOTE_MUTATIONS: dict[str, tuple[Callable[[bytes], bytes], str, str]] = {
    "truncated_header": (lambda q: q[:40], "quote_format", "truncated"),
    "truncated_in_qe_report": (lambda q: q[:700], "quote_format", "does not match"),
    "truncated_last_byte": (lambda q: q[:-1], "quote_format", "does not match"),
    "trailing_byte": (lambda q: q + b"\0", "quote_format", "trailing bytes"),
    "trailing_bytes_length_fixed": (
        lambda q: _patch(q, 432, struct.pack("<I", len(q) - 436 + 4)) + b"abcd",
        "quote_format",
        "trailing bytes after the certification data",
    ),
    "signature_data_length_plus_1": (
        lambda q: _patch(q, 432, struct.pack("<I", len(q) - 436 + 1)),
        "quote_format",
        "truncated",
    ),
    "signature_data_length_minus_1": (
        lambda q: _patch(q, 432, struct.pack("<I", len(q) - 436 - 1)),
        "quote_format",
        "trailing bytes",
    ),
    "version_4": (lambda q: _patch(q, 0, b"\x04\x00"), "unsupported_quote", "version"),
    "version_5": (lambda q: _patch(q, 0, b"\x05\x00"), "unsupported_quote", "version"),
    "version_2_epid": (lambda q: _patch(q, 0, b"\x02\x00"), "unsupported_quote", "version"),
    "key_type_3_p384": (lambda q: _patch(q, 2, b"\x03\x00"), "unsupported_quote", "key type"),
    "tee_type_tdx": (lambda q: _patch(q, 4, b"\x81\0\0\0"), "unsupported_quote", "TEE type"),
    "qe_vendor_not_intel": (lambda q: _patch(q, 12, bytes(16)), "unsupported_quote", "vendor"),
    # QE auth data length off by one: the certification data header is read one byte off.
    "qe_auth_len_33": (
        lambda q: _patch(q, 1012, struct.pack("<H", 33)),
        "unsupported_quote",
        "certification data type",
    ),
    "qe_auth_len_31": (
        lambda q: _patch(q, 1012, struct.pack("<H", 31)),
        "unsupported_quote",
        "certification data type",
    ),
    "qe_auth_len_huge": (
        lambda q: _patch(q, 1012, b"\xff\xff"),
        "quote_format",
        "truncated in the QE auth data",
    ),
    "cert_data_size_plus_1": (
        lambda q: _patch(q, 1048, struct.pack("<I", len(q) - 1052 + 1)),
        "quote_format",
        "truncated in the certification data",
    ),
    "cert_type_0": (lambda q: _patch(q, 1046, b"\x00\x00"), "unsupported_quote", "type"),
    "cert_type_6_v4_only": (lambda q: _patch(q, 1046, b"\x06\x00"), "unsupported_quote", "type"),
    "cert_type_1_without_chain": (lambda q: _patch(q, 1046, b"\x01\x00"), "cert_data", "type 1"),
    "cert_type_3_without_chain": (lambda q: _patch(q, 1046, b"\x03\x00"), "cert_data", "type 3"),
    "cert_type_4_without_chain": (lambda q: _patch(q, 1046, b"\x04\x00"), "cert_data", "type 4"),
    "chain_of_2_certs": (
        lambda q: _with_cert_data(q, _pem(*_chain_certs(q)[:2]) + b"\0"),
        "chain",
        "wrong number of certificates",
    ),
    "chain_of_4_certs": (
        lambda q: _with_cert_data(q, _pem(*_chain_certs(q), _chain_certs(q)[2]) + b"\0"),
        "chain",
        "wrong number of certificates",
    ),
    "chain_garbage_pem": (
        lambda q: _with_cert_data(
            q, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n\0"
        ),
        "chain",
        "not a readable PEM",
    ),
    "chain_empty": (lambda q: _with_cert_data(q, b"\0"), "chain", "PEM"),
    "chain_leaf_and_ca_swapped": (
        lambda q: _with_cert_data(q, _pem(*[_chain_certs(q)[i] for i in (1, 0, 2)])),
        "chain",
        "PCK CA certificate has the wrong subject",
    ),
    "isv_signature_flipped": (_xor(436), "quote_signature", ""),
    "header_user_data_flipped": (_xor(40), "quote_signature", ""),
    "report_data_flipped": (_xor(400), "quote_signature", ""),
    # Setting the DEBUG bit of a production enclave is caught by the signature, not policy.
    "debug_bit_set": (
        lambda q: _patch(q, 96, bytes([q[96] | ATTR_DEBUG])),
        "quote_signature",
        "",
    ),
    "attestation_key_flipped": (_xor(530), "qe_report_data", "bind the attestation key"),
    "qe_auth_data_flipped": (_xor(1020), "qe_report_data", "bind the attestation key"),
    "qe_report_flipped": (_xor(600), "qe_report_signature", ""),
    "qe_report_signature_flipped": (_xor(980), "qe_report_signature", ""),
}


@pytest.mark.parametrize("name", sorted(QUOTE_MUTATIONS))
def test_quote_mutation(phala: Pack, name: str) -> None:
    mutate, code, words = QUOTE_MUTATIONS[name]
    mutated = mutate(phala.quote)
    assert mutated != phala.quote
    error = phala.fails(code, quote=mutated)
    assert words in error.describe()


def test_unmutated_phala_verifies(phala: Pack) -> None:
    # The baseline of every mutation above.
    assert phala.verify().status.value == "ConfigurationAndSWHardeningNeeded"


def test_chain_without_trailing_nul_is_accepted(phala: Pack) -> None:
    # The NUL terminator is a convention of Intel's QE, not part of the signed evidence.
    chain = _pem(*_chain_certs(phala.quote))
    assert phala.verify(quote=_with_cert_data(phala.quote, chain)).status.value == (
        "ConfigurationAndSWHardeningNeeded"
    )


def test_cert_type_1_with_chain_in_collateral_verifies(phala: Pack) -> None:
    # Certification data type 1 (PPID) plus the PCK chain in the collateral is the other
    # supported way (Intel's QVL sample uses it); here with the real chain of the quote.
    quote = _patch(phala.quote, 1046, b"\x01\x00")
    collateral = dict(phala.collateral)
    collateral["pck_certificate_chain"] = _pem(*_chain_certs(phala.quote)).decode()
    result = phala.verify(quote=quote, collateral=collateral)
    assert result.status.value == "ConfigurationAndSWHardeningNeeded"
    assert result.fmspc.hex().upper() == "00A067110000"


def test_collateral_chain_is_ignored_for_type_5(phala: Pack, vectors: Path) -> None:
    # A type-5 quote's own chain wins; a foreign chain in the collateral is not consulted.
    collateral = dict(phala.collateral)
    other = json.loads(
        (vectors / "dcap" / "intel_qvl_sample_TEST_PKI" / "collateral.json").read_text()
    )
    collateral["pck_certificate_chain"] = other["pck_certificate_chain"]
    assert phala.verify(collateral=collateral).fmspc.hex().upper() == "00A067110000"


def _blocks(chain: str) -> list[str]:
    """The PEM certificate blocks of a chain, each with its END line."""
    end = "-----END CERTIFICATE-----"
    return [part.strip() + "\n" + end + "\n" for part in chain.split(end) if part.strip()]


def _flip_hex(text: str) -> str:
    return ("1" if text[0] == "0" else "0") + text[1:]


COLLATERAL_MUTATIONS: dict[str, tuple[Callable[[dict[str, str]], dict[str, str]], str, str]] = {
    "tcb_info_signature_flipped": (
        lambda c: {**c, "tcb_info_signature": _flip_hex(c["tcb_info_signature"])},
        "tcb_info_signature",
        "",
    ),
    "qe_identity_signature_flipped": (
        lambda c: {**c, "qe_identity_signature": _flip_hex(c["qe_identity_signature"])},
        "qe_identity_signature",
        "",
    ),
    "tcb_info_one_byte": (
        lambda c: {**c, "tcb_info": c["tcb_info"].replace("00289", "00290", 1)},
        "tcb_info_signature",
        "",
    ),
    "tcb_info_trailing_space": (
        lambda c: {**c, "tcb_info": c["tcb_info"] + " "},
        "tcb_info_signature",
        "",
    ),
    "qe_identity_one_byte": (
        lambda c: {**c, "qe_identity": c["qe_identity"].replace('"isvprodid":1', '"isvprodid":2')},
        "qe_identity_signature",
        "",
    ),
    # Each document with the other's (valid) signature: the signature verifies, the content
    # is then the wrong kind of document.
    "tcb_info_slot_holds_qe_identity": (
        lambda c: {
            **c,
            "tcb_info": c["qe_identity"],
            "tcb_info_signature": c["qe_identity_signature"],
        },
        "collateral_format",
        "TCB info is malformed",
    ),
    "qe_identity_slot_holds_tcb_info": (
        lambda c: {
            **c,
            "qe_identity": c["tcb_info"],
            "qe_identity_signature": c["tcb_info_signature"],
        },
        "collateral_format",
        "QE identity is malformed",
    ),
    "crls_swapped": (
        lambda c: {**c, "root_ca_crl": c["pck_crl"], "pck_crl": c["root_ca_crl"]},
        "crl",
        "root CA CRL has the wrong issuer",
    ),
    "pck_crl_is_root_crl": (
        lambda c: {**c, "pck_crl": c["root_ca_crl"]},
        "crl",
        "PCK CRL has the wrong issuer",
    ),
    "root_crl_garbage": (lambda c: {**c, "root_ca_crl": "3000"}, "crl", "not a readable CRL"),
    "pck_crl_missing": (lambda c: {**c, "pck_crl": ""}, "crl_missing", "pck crl"),
    "root_crl_missing": (lambda c: {**c, "root_ca_crl": ""}, "crl_missing", "root ca crl"),
    "tcb_chain_is_pck_chain": (
        lambda c: {**c, "tcb_info_issuer_chain": c["pck_crl_issuer_chain"]},
        "chain",
        "TCB info signer certificate has the wrong subject",
    ),
    "tcb_chain_only_root": (
        lambda c: {**c, "tcb_info_issuer_chain": _blocks(c["tcb_info_issuer_chain"])[1]},
        "chain",
        "wrong number of certificates",
    ),
    "qe_chain_signer_twice": (
        lambda c: {
            **c,
            "qe_identity_issuer_chain": _blocks(c["qe_identity_issuer_chain"])[0]
            + c["qe_identity_issuer_chain"],
        },
        "chain",
        "wrong number of certificates",
    ),
}


@pytest.mark.parametrize("name", sorted(COLLATERAL_MUTATIONS))
def test_collateral_mutation(phala: Pack, name: str) -> None:
    mutate, code, words = COLLATERAL_MUTATIONS[name]
    mutated = mutate(dict(phala.collateral))
    assert mutated != phala.collateral
    error = phala.fails(code, collateral=mutated)
    assert words in error.describe()


def test_pck_crl_expired_is_reported_first(phala: Pack) -> None:
    # T one second after the PCK CRL's nextUpdate (2025-07-19T10:23:18Z). The QE identity has
    # expired too (10:01:18Z), but the PCK chain and its CRLs are checked before the collateral
    # documents (Intel's order: PCK certificate, then TCB info, then enclave identity), so the
    # CRL is what is reported.
    error = phala.fails("crl", at=datetime(2025, 7, 19, 10, 23, 19, tzinfo=UTC))
    assert "PCK CRL has expired" in error.message


def test_root_crl_expired(phala: Pack) -> None:
    error = phala.fails("crl", at=datetime(2026, 4, 3, 11, 21, 58, tzinfo=UTC))
    assert "root CA CRL has expired" in error.message


# --- part 2: real Intel-signed documents from different sources ----------------------------------


def _source(vectors: Path, name: str) -> dict[str, str]:
    data: dict[str, str] = json.loads((vectors / "sources" / "phala-dcap-qvl" / name).read_text())
    return data


def test_fmspc_mismatch_from_real_data(phala: Pack, vectors: Path) -> None:
    # The oasis PCK chain (Platform CA, FMSPC 00606A000000) inside the phala quote, with a real
    # PCK Platform CA CRL (from Phala's TDX collateral) so every certificate, CRL and signature
    # check passes; the phala TCB info (FMSPC 00A067110000) is then for another platform. T is
    # inside both the phala window and that CRL's window (nextUpdate 2025-07-19T10:00:35Z).
    oasis = (vectors / "dcap" / "oasis_sgx" / "quote.bin").read_bytes()
    quote = _with_cert_data(phala.quote, Quote.from_bytes(oasis).certification_data)
    collateral = {
        **phala.collateral,
        "pck_crl": _source(vectors, "tdx_quote_collateral.json")["pck_crl"],
    }
    error = phala.fails(
        "tcb_info_mismatch",
        quote=quote,
        collateral=collateral,
        at=datetime(2025, 7, 19, 10, 0, 0, tzinfo=UTC),
    )
    assert (error.expected, error.found) == ("00606A000000", "00A067110000")


def test_oasis_tcb_info_with_phala_quote(phala: Pack, vectors: Path) -> None:
    # The suggested FMSPC-mismatch recipe with real data fails earlier: the oasis TCB signing
    # certificate expired on 2025-05-21, before the phala T, and the chain is checked before the
    # content. (A current TCB info for another FMSPC needs re-signing: see part 3.)
    oasis = json.loads((vectors / "dcap" / "oasis_sgx" / "collateral.json").read_text())
    collateral = dict(phala.collateral)
    for key in ("tcb_info", "tcb_info_signature", "tcb_info_issuer_chain"):
        collateral[key] = oasis[key]
    error = phala.fails("cert_expired", collateral=collateral)
    assert "TCB info signer" in error.message


def test_td_qe_identity_refused(phala: Pack, vectors: Path) -> None:
    tdx = _source(vectors, "tdx_quote_collateral.json")
    collateral = dict(phala.collateral)
    for key in ("qe_identity", "qe_identity_signature", "qe_identity_issuer_chain"):
        collateral[key] = tdx[key]
    error = phala.fails("qe_identity_mismatch", collateral=collateral)
    assert (error.expected, error.found) == ("QE", "TD_QE")


def test_tdx_tcb_info_refused(phala: Pack, vectors: Path) -> None:
    tdx = _source(vectors, "tdx_quote_collateral.json")
    collateral = dict(phala.collateral)
    for key in ("tcb_info", "tcb_info_signature", "tcb_info_issuer_chain"):
        collateral[key] = tdx[key]
    error = phala.fails("collateral_format", collateral=collateral)
    assert "TCB info is malformed" in error.message


def test_foreign_pck_leaf_under_phala_ca(phala: Pack, vectors: Path) -> None:
    # The oasis PCK leaf (issued by the Platform CA) presented with the phala Processor CA.
    oasis = Quote.from_bytes((vectors / "dcap" / "oasis_sgx" / "quote.bin").read_bytes())
    leaf = x509.load_pem_x509_certificates(oasis.pck_chain_pem())[0]
    _, ca, root = _chain_certs(phala.quote)
    error = phala.fails("chain", quote=_with_cert_data(phala.quote, _pem(leaf, ca, root)))
    assert "PCK leaf" in error.message


# --- part 3: checks that need re-signed collateral (throw-away test PKI) --------------------------


@pytest.fixture(scope="module")
def pki() -> SgxTestPki:
    return SgxTestPki()


def _verify(case: SgxCase, at: datetime = T0, **options: Any) -> Any:
    verifier = QuoteVerifier(anchor=case.pki.anchor(), options=VerifyOptions(**options))
    return verifier.verify(case.quote, case.collateral(), at)


def _fails(case: SgxCase, code: str, at: datetime = T0) -> VerificationError:
    with pytest.raises(VerificationError) as info:
        _verify(case, at)
    assert info.value.code == code, info.value.describe()
    return info.value


def test_synthetic_baseline_verifies(pki: SgxTestPki) -> None:
    result = _verify(SgxCase(pki))
    assert result.status.value == "UpToDate"
    assert result.tcb_date == T0 - 400 * DAY
    assert "CN=Test SGX PCK Processor CA" in result.pck_ca


# TCB level selection: levels L1 (all 10, PCESVN 10), L2 (all 5, PCESVN 5).
LEVELS = [
    tcb_level([10] * 16, 10, "UpToDate"),
    tcb_level([5] * 16, 5, "OutOfDate", ["INTEL-SA-00005"]),
]


@pytest.mark.parametrize(
    ("components", "pcesvn", "status"),
    [
        ([10] * 16, 10, "UpToDate"),  # equal to the top level
        ([200] * 16, 300, "UpToDate"),  # all higher must pass
        ([10] * 15 + [9], 10, "OutOfDate"),  # one component lower falls to the next level
        ([9] + [10] * 15, 10, "OutOfDate"),
        ([10] * 16, 9, "OutOfDate"),  # PCESVN lower falls too
        ([5] * 16, 5, "OutOfDate"),
        ([255] * 15 + [4], 255, None),  # below every level in one component
        ([10] * 16, 4, None),
    ],
)
def test_tcb_level_selection(
    pki: SgxTestPki, components: list[int], pcesvn: int, status: str | None
) -> None:
    for levels in (LEVELS, LEVELS[::-1]):  # the document's order does not matter
        case = SgxCase(
            pki,
            tcb_info=tcb_info_doc(levels),
            leaf_options={"components": components, "pcesvn": pcesvn},
        )
        if status is None:
            _fails(case, "tcb_not_supported")
            continue
        result = _verify(case)
        assert result.status.value == status
        assert list(result.advisory_ids) == (["INTEL-SA-00005"] if status == "OutOfDate" else [])


def test_tcb_level_is_matched_component_wise_not_lexicographically(pki: SgxTestPki) -> None:
    # Platform [11, 0, ...] is lexicographically above [10, 5, ...] but not component-wise.
    levels = [tcb_level([10, 5] + [0] * 14, 0, "UpToDate"), tcb_level([0] * 16, 0, "OutOfDate")]
    case = SgxCase(
        pki,
        tcb_info=tcb_info_doc(levels),
        leaf_options={"components": [11] + [0] * 15, "pcesvn": 0},
    )
    assert _verify(case).status.value == "OutOfDate"


def test_tcb_level_uses_pck_components_not_quote_cpusvn(pki: SgxTestPki) -> None:
    # The quote's CPUSVN is all 0xFF; the PCK certificate says OutOfDate-level components.
    case = SgxCase(
        pki,
        tcb_info=tcb_info_doc(LEVELS),
        leaf_options={"components": [5] * 16, "pcesvn": 5},
        quote_options={"body": report_body(cpusvn=b"\xff" * 16)},
    )
    assert _verify(case).status.value == "OutOfDate"


def test_svn_128_and_255_encodings(pki: SgxTestPki) -> None:
    components = [128, 255, 127, 0] * 4
    case = SgxCase(
        pki,
        tcb_info=tcb_info_doc([tcb_level(components, 200, "UpToDate")]),
        leaf_options={"components": components, "pcesvn": 200},
    )
    assert _verify(case).status.value == "UpToDate"


QE_LEVELS = [
    qe_level(8, "UpToDate"),
    qe_level(6, "OutOfDate", ["INTEL-SA-00615"]),
    qe_level(2, "Revoked", ["INTEL-SA-00219"]),
]


@pytest.mark.parametrize(
    ("isvsvn", "qe_status", "status"),
    [
        (9, "UpToDate", "UpToDate"),
        (8, "UpToDate", "UpToDate"),
        (7, "OutOfDate", "OutOfDate"),
        (6, "OutOfDate", "OutOfDate"),
        (3, "Revoked", "Revoked"),
        (1, None, None),  # below every QE level
    ],
)
def test_qe_tcb_level(
    pki: SgxTestPki, isvsvn: int, qe_status: str | None, status: str | None
) -> None:
    case = SgxCase(
        pki,
        qe_identity=qe_identity_doc(list(reversed(QE_LEVELS))),
        quote_options={"qe_body": qe_report_body(isvsvn=isvsvn)},
    )
    if status is None:
        error = _fails(case, "tcb_not_supported")
        assert "QE" in error.message
        return
    result = _verify(case)
    assert (result.qe_tcb_status.value, result.status.value) == (qe_status, status)


QE_DEBUG = ATTR_INIT | ATTR_DEBUG | ATTR_MODE64BIT | ATTR_PROVISIONKEY


@pytest.mark.parametrize(
    ("qe_identity", "qe_body", "words"),
    [
        ({"mrsigner": "00" * 32}, {}, "MRSIGNER"),
        ({"isvprodid": 2}, {}, "ISVPRODID"),
        ({"miscselect": "00000001"}, {}, "MISCSELECT"),
        ({}, {"miscselect": 1}, "MISCSELECT"),
        ({"attributes": "13000000000000000000000000000000"}, {}, "attributes"),
        ({}, {"attributes": ATTR_INIT | ATTR_MODE64BIT}, "attributes"),  # no PROVISIONKEY
        ({}, {"attributes": QE_DEBUG}, "attributes"),  # Intel's mask keeps the DEBUG bit
        # A mask that ignores the DEBUG bit still cannot admit a debug QE.
        ({"attributesMask": "F9FFFFFFFFFFFFFF0000000000000000"}, {"attributes": QE_DEBUG}, "debug"),
        ({"id": "TD_QE"}, {}, "not an SGX QE identity"),
        ({"id": "QVE"}, {}, "not an SGX QE identity"),
    ],
)
def test_qe_identity_mismatch(
    pki: SgxTestPki, qe_identity: dict[str, Any], qe_body: dict[str, Any], words: str
) -> None:
    case = SgxCase(
        pki,
        qe_identity=qe_identity_doc(**qe_identity),
        quote_options={"qe_body": qe_report_body(**qe_body)},
    )
    error = _fails(case, "qe_identity_mismatch")
    assert words in error.message


def test_qe_masks_are_applied(pki: SgxTestPki) -> None:
    # Bits outside the masks may differ (XFRM is not in Intel's attributes mask). MISCSELECT is
    # compared as the report's raw (little-endian) bytes against the JSON hex bytes, as Intel's
    # QVL does (vectorToUint32 byte-swaps the JSON value): bit 0 is the first byte's low bit.
    case = SgxCase(
        pki,
        qe_identity=qe_identity_doc(miscselectMask="FEFFFFFF"),
        quote_options={"qe_body": qe_report_body(miscselect=1, xfrm=0x3)},
    )
    assert _verify(case).status.value == "UpToDate"


def test_qe_report_data_zero_tail_is_checked(pki: SgxTestPki) -> None:
    # The first 32 bytes bind the key correctly; only the tail (which must be zero) differs.
    key = new_key()
    bound = hashlib.sha256(raw_public(key) + bytes(range(32))).digest()
    qe = qe_report_body(report_data=bound + b"\x01" * 32)
    options = {"qe_body": qe, "fix_qe_report_data": False, "attestation_key": key}
    _fails(SgxCase(pki, quote_options=options), "qe_report_data")
    good = qe_report_body(report_data=bound + bytes(32))
    options = {"qe_body": good, "fix_qe_report_data": False, "attestation_key": key}
    assert _verify(SgxCase(pki, quote_options=options)).status.value == "UpToDate"


@pytest.mark.parametrize("size", [0, 1, 300])
def test_qe_auth_data_of_any_size(pki: SgxTestPki, size: int) -> None:
    # Intel's QVL sample quote has 0 bytes of QE auth data; do not hard-code 32.
    case = SgxCase(pki, quote_options={"qe_auth_data": bytes(i % 251 for i in range(size))})
    assert _verify(case).status.value == "UpToDate"


@pytest.mark.parametrize(
    ("tcb_info", "code", "words"),
    [
        ({"fmspc": bytes.fromhex("00906ED50001")}, "tcb_info_mismatch", "FMSPC"),
        ({"pceid": b"\x00\x01"}, "tcb_info_mismatch", "PCE-ID"),
        ({"tcbType": 1}, "tcb_info_mismatch", "TCB type"),
        ({"id": "TDX"}, "collateral_format", "id"),
        ({"version": 2}, "collateral_format", "v2 has no id"),
        ({"version": 2, "id": None}, "collateral_format", "does not match version"),
        ({"issue_date": T0 + DAY}, "tcb_info_not_yet_valid", "not yet valid"),
        ({"next_update": T0 - DAY}, "tcb_info_expired", "expired"),
        ({"tcbLevels": []}, "collateral_format", "tcbLevels"),
        (
            {"tcbLevels": [tcb_level(DEFAULT_COMPONENTS, DEFAULT_PCESVN, "Unknown")]},
            "unknown_tcb_status",
            "unknown TCB status",
        ),
        (
            {"tcbLevels": [tcb_level(DEFAULT_COMPONENTS[:15], DEFAULT_PCESVN, "UpToDate")]},
            "collateral_format",
            "sgxtcbcomponents",
        ),
        (
            {"tcbLevels": [tcb_level(DEFAULT_COMPONENTS, DEFAULT_PCESVN, "UpToDate")] * 2},
            "collateral_format",
            "duplicate",
        ),
    ],
)
def test_signed_tcb_info_content(
    pki: SgxTestPki, tcb_info: dict[str, Any], code: str, words: str
) -> None:
    error = _fails(SgxCase(pki, tcb_info=tcb_info_doc(**tcb_info)), code)
    assert words in error.describe()


@pytest.mark.parametrize(
    ("qe_identity", "code"),
    [
        ({"issue_date": T0 + DAY}, "qe_identity_not_yet_valid"),
        ({"next_update": T0 - DAY}, "qe_identity_expired"),
        ({"version": 1}, "collateral_format"),
        ({"tcbLevels": [qe_level(8, "SWHardeningNeeded")]}, "unknown_tcb_status"),
    ],
)
def test_signed_qe_identity_content(
    pki: SgxTestPki, qe_identity: dict[str, Any], code: str
) -> None:
    _fails(SgxCase(pki, qe_identity=qe_identity_doc(**qe_identity)), code)


def test_document_dates_are_inclusive(pki: SgxTestPki) -> None:
    case = SgxCase(pki)
    for at in (T0 - 5 * DAY, T0 + 20 * DAY):  # latest lower bound / earliest upper bound
        _verify(case, at)
    _fails(case, "tcb_info_expired", T0 + 20 * DAY + DAY / 86400)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"pck_crl_options": {"this_update": T0 + DAY}}, "PCK CRL is not yet valid"),
        ({"root_crl_options": {"this_update": T0 + DAY}}, "root CA CRL is not yet valid"),
        (
            {"pck_crl_options": {"this_update": T0 - 40 * DAY, "next_update": T0 - DAY}},
            "PCK CRL has expired",
        ),
        (
            {"root_crl_options": {"this_update": T0 - 40 * DAY, "next_update": T0 - DAY}},
            "root CA CRL has expired",
        ),
    ],
)
def test_crl_windows(pki: SgxTestPki, changes: dict[str, Any], words: str) -> None:
    error = _fails(SgxCase(pki, **changes), "crl")
    assert words in error.message


def test_crl_signed_by_another_key_with_the_right_name(pki: SgxTestPki) -> None:
    impostor = SgxTestPki()
    impostor.pck_ca = make_cert(
        subject="Test SGX PCK Processor CA",
        key=impostor.pck_ca_key,
        issuer=impostor.root,
        issuer_key=impostor.root_key,
        ca=True,
    )
    case = SgxCase(pki)
    case.collateral_map["pck_crl"] = impostor.crl("pck_ca").hex()
    error = _fails(case, "crl")
    assert "signature does not verify" in error.message


def test_pck_crl_issued_by_root_is_refused(pki: SgxTestPki) -> None:
    case = SgxCase(pki)
    case.collateral_map["pck_crl"] = case.collateral_map["root_ca_crl"]
    assert "wrong issuer" in _fails(case, "crl").message


def test_revoked_pck_leaf(pki: SgxTestPki) -> None:
    case = SgxCase(pki, leaf_options={"serial": 0x1234}, pck_crl_options={"revoked": [0x1234]})
    error = _fails(case, "cert_revoked")
    assert "PCK leaf" in error.message
    # Another serial on the list does not matter.
    ok = SgxCase(pki, leaf_options={"serial": 0x1235}, pck_crl_options={"revoked": [0x1234]})
    assert _verify(ok).status.value == "UpToDate"


def test_revoked_pck_ca(pki: SgxTestPki) -> None:
    case = SgxCase(pki, root_crl_options={"revoked": [pki.pck_ca.serial_number]})
    assert "PCK CA" in _fails(case, "cert_revoked").message


def test_revoked_tcb_signer(pki: SgxTestPki) -> None:
    case = SgxCase(pki, root_crl_options={"revoked": [pki.tcb_signer.serial_number]})
    assert "TCB info signer" in _fails(case, "cert_revoked").message


@pytest.mark.parametrize(
    ("leaf", "at", "code"),
    [
        ({"not_before": T0 + 1 * DAY}, T0, "cert_not_yet_valid"),
        ({"not_after": T0 - 1 * DAY}, T0, "cert_expired"),
    ],
)
def test_pck_leaf_validity(pki: SgxTestPki, leaf: dict[str, Any], at: datetime, code: str) -> None:
    assert "PCK leaf" in _fails(SgxCase(pki, leaf_options=leaf), code, at).message


def test_tcb_signer_expired(pki: SgxTestPki) -> None:
    # The TCB signer of the test PKI expires at T0 + 500 days; collateral re-dated to then.
    at = T0 + 501 * DAY
    case = SgxCase(
        pki,
        tcb_info=tcb_info_doc(issue_date=at - DAY, next_update=at + DAY),
        qe_identity=qe_identity_doc(issue_date=at - DAY, next_update=at + DAY),
        leaf_options={"not_after": at + DAY},
        root_crl_options={"this_update": at - DAY, "next_update": at + DAY},
        pck_crl_options={"this_update": at - DAY, "next_update": at + DAY},
    )
    assert "TCB info signer" in _fails(case, "cert_expired", at).message


def test_pck_leaf_without_sgx_extension(pki: SgxTestPki) -> None:
    case = SgxCase(pki)
    leaf = make_cert(
        subject="Test SGX PCK Certificate",
        key=case.leaf_key,
        issuer=pki.pck_ca,
        issuer_key=pki.pck_ca_key,
        ca=False,
    )
    chain = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (leaf, pki.pck_ca, pki.root)
    )
    case.quote = _with_cert_data(case.quote, chain + b"\0")
    assert "SGX extension" in _fails(case, "chain").message


def test_pck_leaf_with_malformed_sgx_extension(pki: SgxTestPki) -> None:
    case = SgxCase(pki, leaf_options={"extension": b"\x30\x03\x02\x01\x01"})
    assert "malformed" in _fails(case, "chain").message


def test_tcb_info_signed_by_the_pck_ca_key(pki: SgxTestPki) -> None:
    case = SgxCase(pki)
    case.collateral_map["tcb_info_signature"] = raw_sign(
        pki.pck_ca_key, case.collateral_map["tcb_info"].encode()
    ).hex()
    _fails(case, "tcb_info_signature")


def test_chain_under_another_root(pki: SgxTestPki) -> None:
    other = SgxTestPki()
    case = SgxCase(other)
    with pytest.raises(VerificationError) as info:
        QuoteVerifier(anchor=pki.anchor()).verify(case.quote, case.collateral(), T0)
    assert info.value.code == "untrusted_root"


def test_pck_chain_under_another_root_but_collateral_under_ours(pki: SgxTestPki) -> None:
    other = SgxTestPki()
    case = SgxCase(pki)
    foreign = SgxCase(other)
    case.quote = foreign.quote
    assert "PCK" in _fails(case, "untrusted_root").message


def test_platform_ca_kind(pki: SgxTestPki) -> None:
    platform = SgxTestPki(pck_ca_kind="Platform")
    result = _verify(SgxCase(platform, leaf_options={"sgx_type": 1}))
    assert "Platform" in result.pck_ca


def test_pck_ca_of_unknown_kind_is_refused() -> None:
    weird = SgxTestPki(pck_ca_kind="Mystery")
    assert "Processor or Platform" in _fails(SgxCase(weird), "chain").message


def test_simulation_root_is_refused_unless_trusted() -> None:
    sim = SgxTestPki(simulated=True)
    case = SgxCase(sim, quote_options={"header": quote_header()[:12] + bytes(16) + bytes(20)})
    anchor = sim.anchor()
    assert anchor.simulated
    error = _fails(case, "untrusted_root")
    assert "simulation root" in error.message
    result = _verify(case, trusted_simulation_roots=frozenset({anchor.fingerprint}))
    assert result.simulated is True
    assert result.to_dict()["simulated"] is True


def test_synthetic_debug_quote_verifies_and_reports_debug(pki: SgxTestPki) -> None:
    body = report_body(attributes=ATTR_INIT | ATTR_DEBUG | ATTR_MODE64BIT)
    result = _verify(SgxCase(pki, quote_options={"body": body}))
    assert result.debug is True
    assert result.to_dict()["debug"] is True


# Certificate roles by BasicConstraints (as dcap-qvl/webpki: CaUsedAsEndEntity,
# EndEntityUsedAsCa), not only by subject CN. Not reachable with Intel's real PKI (its root
# issues no such certificates), but research section 9 lists these recipes.


def test_ca_certificate_as_tcb_signer_is_refused() -> None:
    bad = SgxTestPki()
    bad.tcb_signer = make_cert(
        subject="Test SGX TCB Signing",
        key=bad.tcb_key,
        issuer=bad.root,
        issuer_key=bad.root_key,
        ca=True,
    )
    error = _fails(SgxCase(bad), "chain")
    assert "TCB info signer certificate is a CA certificate" in error.message


@pytest.mark.parametrize("constraints", [True, False], ids=["ca_false", "no_basic_constraints"])
def test_end_entity_as_pck_ca_is_refused(constraints: bool) -> None:
    bad = SgxTestPki()
    bad.pck_ca = make_cert(
        subject="Test SGX PCK Processor CA",
        key=bad.pck_ca_key,
        issuer=bad.root,
        issuer_key=bad.root_key,
        ca=False,
        basic_constraints=constraints,
    )
    error = _fails(SgxCase(bad), "chain")
    assert "PCK CA certificate is not a CA certificate" in error.message
    assert error.found == ("cA false" if constraints else "no BasicConstraints")


def test_ca_certificate_as_pck_leaf_is_refused(pki: SgxTestPki) -> None:
    case = SgxCase(pki)
    leaf = make_cert(
        subject="Test SGX PCK Certificate",
        key=case.leaf_key,
        issuer=pki.pck_ca,
        issuer_key=pki.pck_ca_key,
        ca=True,
        extra=[
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.2.840.113741.1.13.1"), sgx_extension_der()
            )
        ],
    )
    case.quote = _with_cert_data(case.quote, _pem(leaf, pki.pck_ca, pki.root) + b"\0")
    assert "PCK leaf certificate is a CA certificate" in _fails(case, "chain").message


def test_default_components_constant_is_what_the_pki_uses() -> None:
    # Guards the helper: level tests above rely on these defaults.
    assert DEFAULT_COMPONENTS[5] == 128 and DEFAULT_PCESVN == 13 and DEFAULT_QE_ISVSVN == 8
