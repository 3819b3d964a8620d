"""Fuzzing the quote and collateral parsers and the full verifier (hypothesis).

Malformed input may only ever raise ``golem_graphene.errors.Error`` subclasses (the internal
DER decoding raises ``CertificateChainError``); any other exception fails the test. Inputs are
random bytes, every truncation, and single- and multi-byte mutations of real quotes, collateral
bundles, signed TCB info / QE identity documents and PCK certificate extensions.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from _sgx_test_pki import T0, SgxCase, SgxTestPki
from cryptography import x509
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_graphene.attestation import (
    QeIdentity,
    Quote,
    QuoteCollateral,
    QuoteVerifier,
    TcbInfo,
    TrustAnchor,
    VerifyOptions,
)
from golem_graphene.attestation.pck import SGX_EXTENSION_OID, PckExtension
from golem_graphene.errors import (
    CertificateChainError,
    CollateralError,
    Error,
    QuoteFormatError,
    VerificationError,
)

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors"
DCAP = VECTORS / "dcap"

QUOTES = {
    name: (DCAP / name / "quote.bin").read_bytes()
    for name in ("phala_sgx", "oasis_sgx", "intel_qvl_sample_TEST_PKI", "oasis_eppid_cert_type3")
}
QUOTES["cosmian"] = (VECTORS / "sources" / "cosmian-intel-sgx-ra" / "quote.dat").read_bytes()
PHALA = QUOTES["phala_sgx"]
PHALA_COLLATERAL_TEXT = (DCAP / "phala_sgx" / "collateral.json").read_text()
PHALA_COLLATERAL: dict[str, str] = json.loads(PHALA_COLLATERAL_TEXT)
PHALA_AT = datetime.fromtimestamp(1752919277, UTC)
PHALA_VERIFIER = QuoteVerifier(
    anchor=TrustAnchor.from_pem((DCAP / "phala_sgx" / "root.pem").read_bytes())
)
DOCUMENTS = {
    f"{pack}/{key}": json.loads((DCAP / pack / "collateral.json").read_text())[key]
    for pack in ("phala_sgx", "oasis_sgx", "intel_qvl_sample_TEST_PKI")
    for key in ("tcb_info", "qe_identity")
}

R = TypeVar("R")


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :]


def typed(fn: Callable[..., R], *args: Any) -> R | Error:
    """Call ``fn``; return its result or the typed error it raised. Anything else propagates."""
    try:
        with warnings.catch_warnings():
            # cryptography warns (it does not raise) about an over-long country name in a
            # corrupted certificate or CRL; pytest's filterwarnings=error would make it raise.
            warnings.filterwarnings("ignore", "Attribute's length must be", UserWarning)
            return fn(*args)
    except Error as exc:
        return exc


def _verify_phala(quote: bytes, collateral: QuoteCollateral) -> Any:
    return PHALA_VERIFIER.verify(quote, collateral, PHALA_AT)


# --- quotes -----------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=6000))
def test_random_bytes(data: bytes) -> None:
    assert isinstance(typed(Quote.from_bytes, data), VerificationError)


@FUZZ
@given(st.binary(min_size=388, max_size=5000))
def test_random_bytes_behind_a_valid_header(tail: bytes) -> None:
    # Past the header checks, into the signature-data parser.
    result = typed(Quote.from_bytes, PHALA[:48] + tail)
    assert isinstance(result, Error | Quote)


@pytest.mark.parametrize("name", sorted(QUOTES))
def test_every_truncation_is_a_format_error(name: str) -> None:
    quote = QUOTES[name]
    Quote.from_bytes(quote)
    for n in range(len(quote)):
        with pytest.raises(QuoteFormatError):
            Quote.from_bytes(quote[:n])


@pytest.mark.parametrize("name", sorted(QUOTES))
def test_real_quotes_round_trip(name: str) -> None:
    assert Quote.from_bytes(QUOTES[name]).raw == QUOTES[name]


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for offset, value in edits:
        out[offset % len(out)] ^= value
    return bytes(out)


EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), min_size=1, max_size=4)


@FUZZ
@given(st.sampled_from(sorted(QUOTES)), EDITS)
def test_mutated_real_quotes_parse_or_fail_typed(name: str, edits: list[tuple[int, int]]) -> None:
    typed(Quote.from_bytes, _mutate(QUOTES[name], edits))


@FUZZ
@given(st.integers(0, len(PHALA) - 1), st.integers(1, 255))
def test_single_byte_mutation_never_verifies_signed_evidence(offset: int, xor: int) -> None:
    mutated = _mutate(PHALA, [(offset, xor)])
    collateral = QuoteCollateral.from_mapping(dict(PHALA_COLLATERAL))
    result = typed(_verify_phala, mutated, collateral)
    if not isinstance(result, Error):
        # Only the certification data (the PEM chain, which no signature covers) is malleable
        # without failing a check, and then the evidence itself is unchanged.
        assert offset >= 1052, offset
        assert result.report_body.raw == Quote.from_bytes(PHALA).report_body.raw


@FUZZ
@given(EDITS)
def test_multi_byte_mutation_full_verify(edits: list[tuple[int, int]]) -> None:
    collateral = QuoteCollateral.from_mapping(dict(PHALA_COLLATERAL))
    typed(_verify_phala, _mutate(PHALA, edits), collateral)


@FUZZ
@given(st.integers(0, len(PHALA)), st.binary(min_size=1, max_size=64))
def test_insertions_into_quotes(offset: int, junk: bytes) -> None:
    mutated = PHALA[:offset] + junk + PHALA[offset:]
    collateral = QuoteCollateral.from_mapping(dict(PHALA_COLLATERAL))
    assert isinstance(typed(_verify_phala, mutated, collateral), Error)


# --- collateral bundles ---------------------------------------------------------------------------


TEXT_EDIT = st.tuples(
    st.sampled_from(["delete", "insert", "replace"]),
    st.integers(0, 1 << 16),
    st.characters(codec="utf-8"),
)


def _edit_text(text: str, edits: list[tuple[str, int, str]]) -> str:
    for op, pos, char in edits:
        i = pos % (len(text) + 1)
        if op == "delete":
            text = text[:i] + text[i + 1 :]
        elif op == "insert":
            text = text[:i] + char + text[i:]
        else:
            text = text[:i] + char + text[i + 1 :]
    return text


@FUZZ
@given(st.lists(TEXT_EDIT, min_size=1, max_size=4))
def test_mutated_collateral_json(edits: list[tuple[str, int, str]]) -> None:
    text = _edit_text(PHALA_COLLATERAL_TEXT, edits)
    collateral = typed(QuoteCollateral.from_json, text)
    if isinstance(collateral, QuoteCollateral):
        typed(_verify_phala, PHALA, collateral)
    collateral = typed(QuoteCollateral.from_json, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=2000))
def test_random_collateral_bytes(data: bytes) -> None:
    assert isinstance(typed(QuoteCollateral.from_json, data), CollateralError)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(
    st.sampled_from(sorted(PHALA_COLLATERAL)),
    st.one_of(
        st.text(max_size=200),
        st.binary(max_size=100).map(bytes.hex),
        JSON_VALUES,
        st.sampled_from(sorted(PHALA_COLLATERAL)),  # another key's value
        st.integers(0, 5000),  # a truncation of the value
    ),
)
def test_collateral_value_replaced(key: str, value: Any) -> None:
    doc: dict[str, Any] = dict(PHALA_COLLATERAL)
    if isinstance(value, str) and value in PHALA_COLLATERAL:
        doc[key] = PHALA_COLLATERAL[value]
    elif isinstance(value, int) and not isinstance(value, bool):
        doc[key] = doc[key][:value]
    else:
        doc[key] = value
    collateral = typed(QuoteCollateral.from_json, json.dumps(doc))
    if isinstance(collateral, QuoteCollateral):
        typed(_verify_phala, PHALA, collateral)


@FUZZ
@given(st.sampled_from(["root_ca_crl", "pck_crl"]), EDITS)
def test_mutated_crls(key: str, edits: list[tuple[int, int]]) -> None:
    doc = dict(PHALA_COLLATERAL)
    doc[key] = _mutate(bytes.fromhex(doc[key]), edits).hex()
    typed(_verify_phala, PHALA, QuoteCollateral.from_mapping(doc))


# --- signed documents -----------------------------------------------------------------------------


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        out = dict(doc)
        if delete and not rest:
            del out[head]
        else:
            out[head] = _replace(doc[head], rest, value, delete)
        return out
    items = list(doc)
    if delete and not rest:
        del items[head]
    else:
        items[head] = _replace(doc[head], rest, value, delete)
    return items


def _parser(name: str) -> Callable[[str], Any]:
    return TcbInfo.from_json if name.endswith("tcb_info") else QeIdentity.from_json


@FUZZ
@given(st.sampled_from(sorted(DOCUMENTS)), st.data())
def test_structurally_mutated_documents(name: str, data: st.DataObject) -> None:
    doc = json.loads(DOCUMENTS[name])
    path = data.draw(st.sampled_from(_paths(doc)[1:]))
    delete = data.draw(st.booleans())
    value = data.draw(JSON_VALUES)
    text = json.dumps(_replace(doc, path, value, delete))
    result = typed(_parser(name), text)
    assert isinstance(result, TcbInfo | QeIdentity | CollateralError)


@FUZZ
@given(st.sampled_from(sorted(DOCUMENTS)), st.lists(TEXT_EDIT, min_size=1, max_size=3))
def test_textually_mutated_documents(name: str, edits: list[tuple[str, int, str]]) -> None:
    result = typed(_parser(name), _edit_text(DOCUMENTS[name], edits))
    assert isinstance(result, TcbInfo | QeIdentity | CollateralError)


@FUZZ
@given(st.text(max_size=300))
def test_random_documents(text: str) -> None:
    for parser in (TcbInfo.from_json, QeIdentity.from_json):
        assert isinstance(typed(parser, text), CollateralError)


# --- PCK certificate extension ------------------------------------------------------------------


def _extension_der(quote: bytes) -> bytes:
    leaf = x509.load_pem_x509_certificates(Quote.from_bytes(quote).pck_chain_pem())[0]
    ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


EXTENSIONS = {name: _extension_der(QUOTES[name]) for name in ("phala_sgx", "oasis_sgx", "cosmian")}


@FUZZ
@given(st.sampled_from(sorted(EXTENSIONS)), EDITS, st.integers(0, 600))
def test_mutated_pck_extension_der(name: str, edits: list[tuple[int, int]], cut: int) -> None:
    der = _mutate(EXTENSIONS[name], edits)
    for candidate in (der, der[:cut], EXTENSIONS[name][:cut]):
        with contextlib.suppress(CertificateChainError):  # its documented, typed error
            PckExtension.from_der(candidate)


@pytest.fixture(scope="module")
def pki() -> SgxTestPki:
    return SgxTestPki()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_pck_extension_in_a_signed_leaf(pki: SgxTestPki, data: st.DataObject) -> None:
    # The leaf is properly signed, so the verifier reaches the extension parser.
    der = _mutate(EXTENSIONS["phala_sgx"], data.draw(EDITS))
    case = SgxCase(pki, leaf_options={"extension": der})
    result = typed(
        QuoteVerifier(anchor=pki.anchor(), options=VerifyOptions()).verify,
        case.quote,
        case.collateral(),
        T0,
    )
    if isinstance(result, Error):
        assert result.code in {"chain", "tcb_info_mismatch", "tcb_not_supported"}, result


# --- regressions ---------------------------------------------------------------------------------


def _replace_char(text: str, index: int) -> str:
    return text[:index] + ("0" if text[index] != "0" else "1") + text[index + 1 :]


def _phala_collateral(**changes: str) -> QuoteCollateral:
    return QuoteCollateral.from_mapping({**PHALA_COLLATERAL, **changes})


# FORMER BUG, fixed in pki.py (d606498) by parsing certificate and CRL fields eagerly where they
# are loaded: cryptography decodes names, keys and CRL fields lazily, and pki.py / anchors.py
# used to touch them outside any ``try``, so these corrupted inputs raised a bare ValueError,
# UnsupportedAlgorithm or x509.InvalidVersion instead of a typed error.
@pytest.mark.parametrize(
    ("quote", "collateral", "code", "words"),
    [
        # PCK leaf subject corrupted in the quote's (unsigned) PEM chain.
        pytest.param(_flip(PHALA, 1362), {}, "chain", "malformed field", id="pck_leaf_subject"),
        # Root public key corrupted in the TCB info issuer chain.
        pytest.param(
            PHALA,
            {
                "tcb_info_issuer_chain": _replace_char(
                    PHALA_COLLATERAL["tcb_info_issuer_chain"], 1401
                )
            },
            "chain",
            "Invalid key",
            id="root_public_key",
        ),
        # Curve OID of the root key in the quote's PEM chain corrupted.
        pytest.param(
            _flip(PHALA, 8693 % len(PHALA)), {}, "chain", "not supported", id="root_curve_oid"
        ),
        # Root CA CRL issuer name corrupted.
        pytest.param(
            PHALA,
            {"root_ca_crl": _flip(bytes.fromhex(PHALA_COLLATERAL["root_ca_crl"]), 33).hex()},
            "crl",
            "not a readable CRL",
            id="root_crl_issuer",
        ),
        # PCK CRL version INTEGER 1 -> 0.
        pytest.param(
            PHALA,
            {"pck_crl": _flip(bytes.fromhex(PHALA_COLLATERAL["pck_crl"]), 9).hex()},
            "crl",
            "not a valid CRL version",
            id="pck_crl_version",
        ),
    ],
)
def test_corrupt_certificate_and_crl_fields_are_typed(
    quote: bytes, collateral: dict[str, str], code: str, words: str
) -> None:
    with pytest.raises(VerificationError) as info:
        _verify_phala(quote, _phala_collateral(**collateral))
    assert info.value.code == code
    assert words in info.value.message
