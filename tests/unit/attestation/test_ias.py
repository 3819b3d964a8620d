"""Legacy IAS report verification: chain, signature, body parsing, status mapping, fuzzing.

Real Intel reports (``tests/vectors/ias``) cover the chain and signature checks. Checks that
need a *validly signed* edited body (statuses, established fields) use a throw-away RSA PKI
built here and passed as an explicit anchor; body parsing alone is tested through the internal
parser ``ias._parse_report``, because any edit to a real body breaks Intel's signature first.
"""

from __future__ import annotations

import base64
import contextlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golem_graphene.attestation import ias
from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.ias import IasQuoteStatus, VerifiedIasReport, verify_ias_report
from golem_graphene.attestation.policy import AllOf, AllowedTcbStatus, MaxCollateralAge, NoDebug
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.errors import (
    CertificateChainError,
    CertificateExpiredError,
    CertificateNotYetValidError,
    CertificateSignatureError,
    Error,
    IasReportError,
    PolicyError,
    UntrustedRootError,
)
from golem_graphene.limits import MAX_IAS_REPORT_BYTES

LEAF_NOT_BEFORE = datetime(2016, 11, 22, 9, 36, 58, tzinfo=UTC)
LEAF_NOT_AFTER = datetime(2026, 11, 20, 9, 36, 58, tzinfo=UTC)


@dataclass(frozen=True)
class Avr:
    """One archived report: body, signature header, certificate header, time to verify at."""

    body: bytes
    signature: bytes
    certificates: bytes
    at: datetime

    def verify(self, **changes: Any) -> VerifiedIasReport:
        args: dict[str, Any] = {
            "body": self.body,
            "signature_b64": self.signature,
            "certificates": self.certificates,
            "at": self.at,
        }
        args.update(changes)
        return verify_ias_report(
            args.pop("body"), args.pop("signature_b64"), args.pop("certificates"), **args
        )


def _load_case(folder: Path) -> Avr:
    case = json.loads((folder / "case.json").read_text())
    files = case["files"]
    return Avr(
        body=(folder / files["body"]).read_bytes(),
        signature=(folder / files["signature_b64"]).read_bytes(),
        certificates=(folder / files["cert_chain_urlencoded"]).read_bytes(),
        at=datetime.fromtimestamp(case["verify_at_epoch"], UTC),
    )


@pytest.fixture(scope="module")
def v4(vectors: Path) -> Avr:
    return _load_case(vectors / "ias" / "oasis_avr_v4")


@pytest.fixture(scope="module")
def v5(vectors: Path) -> Avr:
    return _load_case(vectors / "ias" / "oasis_avr_v5")


def _pem_blocks(avr: Avr) -> list[str]:
    """The chain as separate PEM blocks (leaf, CA)."""
    text = unquote(avr.certificates.decode().strip())
    end = "-----END CERTIFICATE-----\n"
    return [block + end for block in text.split(end) if block.strip()]


# --- the real reports ---------------------------------------------------------------------------


def test_real_reports_verify(v4: Avr, v5: Avr) -> None:
    r4, r5 = v4.verify(), v5.verify()
    assert (r4.status, r4.tcb_status) == (
        IasQuoteStatus.SW_HARDENING_NEEDED,
        TcbStatus.SW_HARDENING_NEEDED,
    )
    assert r4.version == 4 and r5.version == 5
    assert r4.legacy is True and r4.to_dict()["legacy"] is True
    assert (
        r4.collateral_issued_at
        == r4.timestamp
        == datetime(2020, 5, 11, 9, 21, 15, 454051, tzinfo=UTC)
    )
    assert r4.verified_at == v4.at
    assert r4.epid_sign_type == 1 and len(r4.quote_body) == 432
    assert r4.quote_body[48:] == r4.report_body.raw
    assert r4.epid_pseudonym is not None and len(r4.epid_pseudonym) == 128
    # v5 carries tcbEvaluationDataNumber, which is modelled; nothing is ignored.
    assert r5.tcb_evaluation_data_number == 16 and r5.ignored_fields == ()
    # The window starts at the report's issue (whole seconds) and ends with the leaf.
    assert r4.signing_window == (v4.at, LEAF_NOT_AFTER)


def test_default_anchor_is_the_vectors_root(vectors: Path) -> None:
    root = TrustAnchor.from_pem((vectors / "ias" / "oasis_avr_v4" / "root.pem").read_bytes())
    assert root.fingerprint == TrustAnchor.ias_report_signing_ca().fingerprint


def test_flipped_body_byte_fails_the_signature(v4: Avr) -> None:
    body = bytearray(v4.body)
    i = body.index(b"SW_HARDENING_NEEDED")
    body[i] ^= 0x01  # still valid JSON, still a plausible body: only the signature can tell
    with pytest.raises(IasReportError, match="signature does not verify") as info:
        v4.verify(body=bytes(body))
    assert info.value.code == "ias_report"
    assert info.value.established == {}  # nothing is reported from an unauthenticated body


def test_body_of_another_report_fails_the_signature(v4: Avr, v5: Avr) -> None:
    with pytest.raises(IasReportError, match="signature"):
        v4.verify(body=v5.body, at=v5.at)


@pytest.mark.parametrize(
    "root_file", ["TEST_ONLY_intel_qvl_sampledata_root.pem", "Intel_SGX_Root_CA.pem"]
)
def test_wrong_anchor_is_untrusted_root(v4: Avr, vectors: Path, root_file: str) -> None:
    anchor = TrustAnchor.from_pem((vectors / "sources" / "roots" / root_file).read_bytes())
    with pytest.raises(UntrustedRootError) as info:
        v4.verify(anchor=anchor)
    assert info.value.code == "untrusted_root"


def test_leaf_only_chain(v4: Avr) -> None:
    leaf, _ = _pem_blocks(v4)
    with pytest.raises(CertificateChainError) as info:
        v4.verify(certificates=quote(leaf))
    assert (info.value.expected, info.value.found) == (2, 1)


def test_three_certificate_chain(v4: Avr) -> None:
    leaf, ca = _pem_blocks(v4)
    with pytest.raises(CertificateChainError) as info:
        v4.verify(certificates=quote(leaf + ca + ca))
    assert (info.value.expected, info.value.found) == (2, 3)


def test_reversed_chain_is_untrusted(v4: Avr) -> None:
    leaf, ca = _pem_blocks(v4)
    with pytest.raises(UntrustedRootError):
        v4.verify(certificates=quote(ca + leaf))


def test_ca_as_signing_leaf_is_refused(v4: Avr) -> None:
    _, ca = _pem_blocks(v4)
    with pytest.raises(CertificateChainError, match="CA certificate"):
        v4.verify(certificates=quote(ca + ca))


def test_after_leaf_not_after_is_expired(v4: Avr) -> None:
    assert v4.verify(at=LEAF_NOT_AFTER).verified_at == LEAF_NOT_AFTER  # inclusive bound
    with pytest.raises(CertificateExpiredError) as info:
        v4.verify(at=LEAF_NOT_AFTER + timedelta(seconds=1))
    assert info.value.code == "cert_expired"


def test_before_leaf_not_before_is_not_yet_valid(v4: Avr) -> None:
    with pytest.raises(CertificateNotYetValidError) as info:
        v4.verify(at=LEAF_NOT_BEFORE - timedelta(seconds=1))
    assert info.value.code == "cert_not_yet_valid"


def test_before_the_report_was_issued(v4: Avr) -> None:
    with pytest.raises(IasReportError, match="issued after the verification time") as info:
        v4.verify(at=v4.at - timedelta(seconds=1))
    established = info.value.established
    assert established["mrenclave"] == (
        "92143ea742e1628677b5a8e280173b7264470bfb0611d520c2474aab9846168e"
    )
    assert established["status"] == "SW_HARDENING_NEEDED"
    assert established["ias_version"] == 4


@pytest.mark.parametrize(
    ("signature", "message"),
    [
        (b"not base64 at all!", "not valid base64"),
        (b"", "empty"),
        (b" \n\t", "empty"),
        ("sign\u00e9".encode(), "non-ASCII"),
        (base64.b64encode(b"\x00" * 256), "does not verify"),
        (base64.b64encode(b"\x00" * 255), "does not verify"),
        (b"A" * 2000, "too long"),
    ],
)
def test_bad_signature_values(v4: Avr, signature: bytes, message: str) -> None:
    with pytest.raises(IasReportError, match=message):
        v4.verify(signature_b64=signature)


def test_truncated_signature_fails(v4: Avr) -> None:
    raw = base64.b64decode(v4.signature)
    with pytest.raises(IasReportError, match="does not verify"):
        v4.verify(signature_b64=base64.b64encode(raw[:-1]))


def test_signature_whitespace_and_str_are_tolerated(v4: Avr) -> None:
    text = v4.signature.decode().strip()
    folded = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
    assert v4.verify(signature_b64=f"  {folded}\r\n").status is IasQuoteStatus.SW_HARDENING_NEEDED


def test_certificates_as_plain_pem_or_str(v4: Avr) -> None:
    pem = "".join(_pem_blocks(v4))
    assert "+" in pem  # a plus sign must not be read as a form-encoded space
    assert v4.verify(certificates=pem).report_id == v4.verify().report_id
    assert v4.verify(certificates=f"\n  {pem}\n").version == 4
    assert v4.verify(certificates=v4.certificates.decode()).version == 4


@pytest.mark.parametrize(
    ("certificates", "error"),
    [
        (b"-----BEGIN%20CERTIFICATE-----%ZZ", CertificateChainError),
        (b"%C3%A9", CertificateChainError),
        ("caf\u00e9", CertificateChainError),
        (b"\xff\xfe", CertificateChainError),
        (b"", CertificateChainError),
        (b"x" * (MAX_IAS_REPORT_BYTES + 1), CertificateChainError),
    ],
)
def test_bad_certificate_headers(v4: Avr, certificates: bytes | str, error: type[Error]) -> None:
    with pytest.raises(error):
        v4.verify(certificates=certificates)


def test_oversized_body(v4: Avr) -> None:
    with pytest.raises(IasReportError, match="too large"):
        v4.verify(body=v4.body + b" " * MAX_IAS_REPORT_BYTES)


def test_naive_time_is_a_programming_error(v4: Avr) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        v4.verify(at=v4.at.replace(tzinfo=None))


def test_report_age_is_judged_from_the_report_timestamp(v4: Avr) -> None:
    later = v4.at + timedelta(days=2)
    result = v4.verify(at=later)
    MaxCollateralAge(timedelta(days=3)).check(result)
    with pytest.raises(PolicyError) as info:
        MaxCollateralAge(timedelta(days=1)).check(result)
    assert info.value.code == "policy_collateral_age"


def test_policies_judge_a_verified_report(v4: Avr) -> None:
    result = v4.verify()
    AllOf(AllowedTcbStatus([TcbStatus.SW_HARDENING_NEEDED])).check(result)
    with pytest.raises(PolicyError) as info:
        AllOf(AllowedTcbStatus([TcbStatus.SW_HARDENING_NEEDED]), NoDebug()).check(result)
    assert info.value.code == "policy_debug"


# --- a throw-away IAS PKI for validly signed edited reports -------------------------------------


@dataclass(frozen=True)
class IasTestPki:
    """An RSA report-signing CA and leaf; ``sign`` produces the three header values."""

    __test__ = False

    ca: x509.Certificate
    leaf: x509.Certificate
    leaf_key: rsa.RSAPrivateKey
    ca_key: rsa.RSAPrivateKey

    @property
    def anchor(self) -> TrustAnchor:
        return TrustAnchor(self.ca, "test IAS CA")

    def chain(self, *certs: x509.Certificate) -> str:
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
        return quote(pem.decode())

    def sign(self, body: bytes, key: rsa.RSAPrivateKey | None = None) -> bytes:
        signature = (key or self.leaf_key).sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime(2016, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2049, 12, 31, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def fake_ias() -> IasTestPki:
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = "Test IAS Report Signing CA"
    ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    leaf = _cert("Test IAS Report Signing", leaf_key, ca_name, ca_key, ca=False)
    return IasTestPki(ca=ca, leaf=leaf, leaf_key=leaf_key, ca_key=ca_key)


def _quote_body(
    *, version: int = 2, sign_type: int = 0, debug: bool = False, size: int = 432
) -> str:
    raw = bytearray(432)
    struct.pack_into("<HH", raw, 0, version, sign_type)
    raw[4:8] = bytes.fromhex("c50b0000")
    raw[96] = 0x07 if debug else 0x05  # INIT | MODE64BIT (| DEBUG)
    raw[112:144] = bytes(range(32))  # MRENCLAVE
    raw[176:208] = bytes(range(32, 64))  # MRSIGNER
    struct.pack_into("<HH", raw, 304, 7, 3)  # ISVPRODID, ISVSVN
    raw[368:432] = b"\xab" * 64  # report data
    return base64.b64encode(bytes(raw[:size]) + bytes(max(0, size - 432))).decode()


def _doc(**changes: Any) -> dict[str, Any]:
    """A v4-shaped report; a change of ``None`` removes the field."""
    doc: dict[str, Any] = {
        "id": "123456789",
        "timestamp": "2020-05-11T09:21:15.454051",
        "version": 4,
        "isvEnclaveQuoteStatus": "OK",
        "isvEnclaveQuoteBody": _quote_body(),
        "nonce": "n0nce",
        "advisoryURL": "https://security-center.intel.com",
        "advisoryIDs": [],
    }
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def _body(**changes: Any) -> bytes:
    return json.dumps(_doc(**changes), separators=(",", ":")).encode()


T_REPORT = datetime(2020, 5, 11, 9, 21, 15, tzinfo=UTC)


def _verify_signed(pki: IasTestPki, body: bytes, at: datetime = T_REPORT) -> VerifiedIasReport:
    return verify_ias_report(
        body, pki.sign(body), pki.chain(pki.leaf, pki.ca), at=at, anchor=pki.anchor
    )


@pytest.mark.parametrize(
    ("status", "tcb_status"),
    [
        ("OK", TcbStatus.UP_TO_DATE),
        ("SW_HARDENING_NEEDED", TcbStatus.SW_HARDENING_NEEDED),
        ("CONFIGURATION_NEEDED", TcbStatus.CONFIGURATION_NEEDED),
        (
            "CONFIGURATION_AND_SW_HARDENING_NEEDED",
            TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        ),
        ("GROUP_OUT_OF_DATE", TcbStatus.OUT_OF_DATE),
        ("SIGNATURE_REVOKED", TcbStatus.REVOKED),
        ("KEY_REVOKED", TcbStatus.REVOKED),
    ],
)
def test_status_mapping(fake_ias: IasTestPki, status: str, tcb_status: TcbStatus) -> None:
    result = _verify_signed(fake_ias, _body(isvEnclaveQuoteStatus=status))
    assert result.status == status
    assert result.tcb_status is tcb_status
    fields = result.to_dict()
    assert (fields["status"], fields["platform_status"]) == (status, tcb_status.value)


def test_group_revoked_with_reason_is_revoked(fake_ias: IasTestPki) -> None:
    body = _body(isvEnclaveQuoteStatus="GROUP_REVOKED", revocationReason=1)
    result = _verify_signed(fake_ias, body)
    assert result.tcb_status is TcbStatus.REVOKED and result.revocation_reason == 1


@pytest.mark.parametrize("status", ["SIGNATURE_INVALID", "SIGRL_VERSION_MISMATCH"])
def test_statuses_that_are_no_verdict(fake_ias: IasTestPki, status: str) -> None:
    with pytest.raises(IasReportError, match=status) as info:
        _verify_signed(fake_ias, _body(isvEnclaveQuoteStatus=status))
    established = info.value.established
    assert established["status"] == status
    assert established["platform_status"] is None
    assert established["mrenclave"] == bytes(range(32)).hex()
    assert established["isvprodid"] == 7 and established["isvsvn"] == 3
    assert established["legacy"] is True


def test_unknown_status_with_a_valid_signature(fake_ias: IasTestPki) -> None:
    with pytest.raises(IasReportError, match="unknown isvEnclaveQuoteStatus"):
        _verify_signed(fake_ias, _body(isvEnclaveQuoteStatus="MAYBE_OK"))


def test_to_dict_shape(fake_ias: IasTestPki) -> None:
    fields = _verify_signed(fake_ias, _body(version=None, nonce=None)).to_dict()
    assert fields == {
        "mrenclave": bytes(range(32)).hex(),
        "mrsigner": bytes(range(32, 64)).hex(),
        "isvprodid": 7,
        "isvsvn": 3,
        "debug": False,
        "report_data": "ab" * 64,
        "status": "OK",
        "platform_status": "UpToDate",
        "qe_tcb_status": None,
        "advisory_ids": [],
        "fmspc": None,
        "pceid": None,
        "legacy": True,
        "attestation": "epid-ias",
        "ias_report_id": "123456789",
        "ias_timestamp": "2020-05-11T09:21:15.454051Z",
        "ias_version": None,
        "nonce": None,
        "epid_sign_type": 0,
        "collateral_window": ["2020-05-11T09:21:15Z", "2049-12-31T00:00:00Z"],
        "verified_at": "2020-05-11T09:21:15Z",
        "root": "test IAS CA",
    }


def test_unknown_fields_are_listed_not_read(fake_ias: IasTestPki) -> None:
    result = _verify_signed(fake_ias, _body(attestationType="EPID", zNewField={"a": 1}))
    assert result.ignored_fields == ("zNewField",)


def test_leaf_from_an_impostor_ca_with_the_same_name(fake_ias: IasTestPki) -> None:
    impostor_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = _cert(
        "Test IAS Report Signing",
        impostor_key,
        "Test IAS Report Signing CA",
        impostor_key,
        ca=False,
    )
    body = _body()
    with pytest.raises(CertificateSignatureError):
        verify_ias_report(
            body,
            fake_ias.sign(body, impostor_key),
            fake_ias.chain(leaf, fake_ias.ca),
            at=T_REPORT,
            anchor=fake_ias.anchor,
        )


def test_signature_by_the_ca_key_is_not_the_leaf_signature(fake_ias: IasTestPki) -> None:
    body = _body()
    with pytest.raises(IasReportError, match="does not verify"):
        verify_ias_report(
            body,
            fake_ias.sign(body, fake_ias.ca_key),
            fake_ias.chain(fake_ias.leaf, fake_ias.ca),
            at=T_REPORT,
            anchor=fake_ias.anchor,
        )


# --- the body parser alone ----------------------------------------------------------------------


def _parse(doc: dict[str, Any] | None = None, raw: bytes | None = None) -> Any:
    data = raw if raw is not None else json.dumps(doc).encode()
    return ias._parse_report(data)


def test_parser_reads_the_real_v4_body(v4: Avr) -> None:
    parsed = ias._parse_report(v4.body)
    assert parsed.status is IasQuoteStatus.SW_HARDENING_NEEDED
    assert parsed.document.advisoryIDs == ("INTEL-SA-00334",)


def test_parser_unknown_status_in_a_real_body(v4: Avr) -> None:
    body = v4.body.replace(b'"SW_HARDENING_NEEDED"', b'"SW_HARDENING_MAYBE"')
    with pytest.raises(IasReportError, match="unknown isvEnclaveQuoteStatus") as info:
        ias._parse_report(body)
    assert info.value.found == "SW_HARDENING_MAYBE"


@pytest.mark.parametrize("status", list(IasQuoteStatus))
def test_parser_accepts_every_known_status(status: IasQuoteStatus) -> None:
    reason = 0 if status is IasQuoteStatus.GROUP_REVOKED else None
    parsed = _parse(_doc(isvEnclaveQuoteStatus=status.value, revocationReason=reason))
    assert parsed.status is status


@pytest.mark.parametrize(
    ("quote_body", "message"),
    [
        (_quote_body(size=431), "wrong length"),
        (_quote_body(size=433), "wrong length"),
        (_quote_body(size=0), "wrong length"),
        (base64.b64encode(bytes(1116)).decode(), "isvEnclaveQuoteBody"),  # a full EPID quote
        (_quote_body(version=3), "EPID quote version"),
        (_quote_body(version=1), "EPID quote version"),
        (_quote_body(sign_type=2), "EPID signature type"),
        ("AgAB!AAA", "not valid base64"),
        (_quote_body()[:-1], "not valid base64"),
    ],
)
def test_parser_quote_body(quote_body: str, message: str) -> None:
    with pytest.raises(IasReportError, match=message):
        _parse(_doc(isvEnclaveQuoteBody=quote_body))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (b'"OK"', "JSON object"),
        (b'{"version": NaN}', "not valid JSON"),
        (b'{"id": "1", "id": "2"}', "duplicate object key"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_parser_refuses_non_documents(raw: bytes, message: str) -> None:
    with pytest.raises(IasReportError, match=message):
        _parse(raw=raw)


@pytest.mark.parametrize(
    "changes",
    [
        {"isvEnclaveQuoteStatus": None},
        {"isvEnclaveQuoteBody": None},
        {"id": None},
        {"id": ""},
        {"id": 123},
        {"timestamp": None},
        {"timestamp": "2020-05-11T09:21:15.454051Z"},
        {"timestamp": "2020-05-11 09:21:15"},
        {"timestamp": "2020-13-11T09:21:15"},
        {"timestamp": "2020-05-11T09:21:15.1234567890"},
        {"timestamp": "\u0662020-05-11T09:21:15"},
        {"version": 6},
        {"version": 1},
        {"version": "4"},
        {"version": 4.0},
        {"version": True},
        {"isvEnclaveQuoteStatus": 1},
        {"nonce": "n" * 33},
        {"advisoryIDs": "INTEL-SA-00334"},
        {"advisoryIDs": [1]},
        {"advisoryIDs": [""]},
        {"revocationReason": 1},
        {"isvEnclaveQuoteStatus": "GROUP_REVOKED"},
        {"isvEnclaveQuoteStatus": "GROUP_REVOKED", "revocationReason": 11},
        {"pseManifestStatus": "FINE"},
        {"pseManifestHash": "ab"},
        {"platformInfoBlob": "xyz"},
        {"epidPseudonym": base64.b64encode(bytes(64)).decode()},
        {"epidPseudonym": "!!"},
        {"tcbEvaluationDataNumber": -1},
    ],
    ids=lambda changes: json.dumps(changes)[:60],
)
def test_parser_refuses_bad_fields(changes: dict[str, Any]) -> None:
    with pytest.raises(IasReportError):
        _parse(_doc(**changes))


def test_parser_accepts_optional_and_api_v2_shapes() -> None:
    parsed = _parse(
        _doc(
            version=None,
            advisoryIDs=None,
            advisoryURL=None,
            nonce=None,
            timestamp="2016-12-01T00:00:00",
            pseManifestStatus="OK",
            pseManifestHash="AB" * 32,
            platformInfoBlob="1502006504000F00",
            epidPseudonym=base64.b64encode(bytes(128)).decode(),
        )
    )
    assert parsed.document.version is None and parsed.document.advisoryIDs is None
    assert parsed.timestamp == datetime(2016, 12, 1, tzinfo=UTC)
    nanos = _parse(_doc(timestamp="2020-05-11T09:21:15.123456789"))
    assert nanos.timestamp.microsecond == 123456


# --- nothing but our errors, whatever the input -------------------------------------------------

_FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for pos, value in edits:
        if out:
            out[pos % len(out)] = value
    return bytes(out)


_edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=4)


def _only_our_errors(call: Callable[[], VerifiedIasReport]) -> None:
    try:
        result = call()
    except Error:
        return
    assert isinstance(result, VerifiedIasReport)


@_FUZZ
@given(
    body=st.binary(max_size=2048), signature=st.binary(max_size=400), certs=st.binary(max_size=600)
)
def test_fuzz_random_inputs(v4: Avr, body: bytes, signature: bytes, certs: bytes) -> None:
    _only_our_errors(lambda: v4.verify(body=body, signature_b64=signature, certificates=certs))
    _only_our_errors(lambda: v4.verify(body=body))
    _only_our_errors(lambda: v4.verify(signature_b64=signature))
    _only_our_errors(lambda: v4.verify(certificates=certs))


@_FUZZ
@given(edits=_edits)
def test_fuzz_mutated_body(v4: Avr, edits: list[tuple[int, int]]) -> None:
    body = _mutate(v4.body, edits)
    if body == v4.body:
        return
    with pytest.raises(IasReportError):
        v4.verify(body=body)


@_FUZZ
@given(edits=_edits)
def test_fuzz_mutated_signature(v4: Avr, edits: list[tuple[int, int]]) -> None:
    _only_our_errors(lambda: v4.verify(signature_b64=_mutate(v4.signature, edits)))


@_FUZZ
@given(edits=_edits)
def test_fuzz_mutated_certificates(v4: Avr, edits: list[tuple[int, int]]) -> None:
    _only_our_errors(lambda: v4.verify(certificates=_mutate(v4.certificates, edits)))


@_FUZZ
@given(edits=_edits)
def test_fuzz_mutated_plain_pem(v4: Avr, edits: list[tuple[int, int]]) -> None:
    pem = "".join(_pem_blocks(v4)).encode()
    _only_our_errors(lambda: v4.verify(certificates=_mutate(pem, edits)))


def _der_chain(v4: Avr) -> list[bytes]:
    return [
        x509.load_pem_x509_certificate(block.encode()).public_bytes(serialization.Encoding.DER)
        for block in _pem_blocks(v4)
    ]


def _pem_of(ders: list[bytes]) -> bytes:
    return b"".join(
        b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
        for der in ders
    )


@pytest.mark.parametrize(
    ("offset", "value"),
    [
        (12, 110),  # version INTEGER 110: cryptography raises InvalidVersion, not ValueError
        (15, 0x80),  # negative serial: a CryptographyDeprecationWarning (an error under pytest)
        (9, 0x7F),  # version [0] with a length past its end
    ],
)
def test_malformed_leaf_der(v4: Avr, offset: int, value: int) -> None:
    leaf, ca = _der_chain(v4)
    # TBSCertificate opens with "a0 03 02 01 02" (version v3), then "02 09 00 d1 07 ..." (serial).
    assert leaf[8:13] == bytes.fromhex("a003020102") and leaf[13:16] == bytes.fromhex("020900")
    edited = leaf[:offset] + bytes([value]) + leaf[offset + 1 :]
    with pytest.raises((CertificateChainError, CertificateSignatureError)):
        v4.verify(certificates=quote(_pem_of([edited, ca]).decode()))


def test_duplicate_leaf_extension(v4: Avr) -> None:
    leaf, ca = _der_chain(v4)
    key_usage_oid = bytes.fromhex("0603551d0f")  # 2.5.29.15
    assert leaf.count(key_usage_oid) == 1
    # Renamed to BasicConstraints (2.5.29.19), which the leaf already has: DuplicateExtension,
    # which cryptography raises lazily and which is no ValueError.
    edited = leaf.replace(key_usage_oid, bytes.fromhex("0603551d13"))
    with pytest.raises(CertificateChainError, match="malformed field: Duplicate"):
        v4.verify(certificates=quote(_pem_of([edited, ca]).decode()))


@settings(_FUZZ, max_examples=400)
@given(which=st.integers(0, 1), edits=_edits)
def test_fuzz_mutated_certificate_der(v4: Avr, which: int, edits: list[tuple[int, int]]) -> None:
    # Mutating the DER (not the text) reaches cryptography's certificate parser: versions,
    # serials, extensions and keys that are malformed in ways a PEM edit rarely produces.
    ders = _der_chain(v4)
    ders[which] = _mutate(ders[which], edits)
    _only_our_errors(lambda: v4.verify(certificates=quote(_pem_of(ders).decode())))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=10,
)


@_FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from(sorted(ias._ReportDocument.model_fields)), _json_values, max_size=4
    )
)
def test_fuzz_parser_field_values(changes: dict[str, Any]) -> None:
    doc = _doc()
    doc.update(changes)
    with contextlib.suppress(IasReportError):
        ias._parse_report(json.dumps(doc).encode())


@_FUZZ
@given(edits=_edits)
def test_fuzz_parser_mutated_real_body(v5: Avr, edits: list[tuple[int, int]]) -> None:
    with contextlib.suppress(IasReportError):
        ias._parse_report(_mutate(v5.body, edits))


def test_public_names() -> None:
    assert sorted(ias.__all__) == [
        "EPID_QUOTE_BODY_SIZE",
        "EPID_QUOTE_VERSION",
        "IAS_NONCE_MAX_LEN",
        "IasQuoteStatus",
        "VerifiedIasReport",
        "verify_ias_report",
    ]
