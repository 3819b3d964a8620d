"""LEGACY: verify an archived Intel Attestation Service (IAS) report for an EPID quote.

IAS and EPID attestation are end of life. IAS stopped serving development keys on
1 October 2024 and EPID reached end of life for production on 2 April 2025 (Gramine removed its
EPID support in December 2024). No new reports can be obtained. This module only verifies
*archived* attestation verification reports (AVRs), always at a time the caller supplies: the
IAS report-signing leaf certificate itself expires on 2026-11-20, so "now" is often the wrong
time. New deployments attest with DCAP (:mod:`golem_graphene.attestation.verifier`).

An AVR is the HTTP response of ``POST /attestation/v{2..5}/report``:

- the JSON body, whose exact bytes are signed (it is never re-serialised);
- ``X-IASReport-Signature``: base64 RSA PKCS#1 v1.5 / SHA-256 signature over the body;
- ``X-IASReport-Signing-Certificate``: URL-encoded PEM chain, signing leaf then CA.

:func:`verify_ias_report` checks, in this order (numbered in the code):

1. Sizes and types of the three inputs.
2. The chain: exactly two certificates; the CA carries the pinned anchor's key (compared by key,
   never by name) and is validly self-signed; the leaf is an end-entity certificate issued by the
   anchor; leaf, CA and anchor are valid at ``at`` (notBefore <= T <= notAfter, inclusive).
3. The signature over the exact body bytes, by the leaf key.
4. The body: UTF-8 JSON without duplicate keys; typed fields (see "Unknown fields" below); a
   known ``isvEnclaveQuoteStatus``; ``isvEnclaveQuoteBody`` is base64 of exactly 432 bytes, an
   EPID quote header of version 2 followed by the enclave report body.
5. The status: ``SIGNATURE_INVALID`` (IAS rejected the quote's EPID signature) and
   ``SIGRL_VERSION_MISMATCH`` (IAS did not evaluate the quote; it must be regenerated with the
   current SigRL, so the report says nothing about the platform's TCB) raise
   :class:`~golem_graphene.errors.IasReportError`. The others map to a :class:`TcbStatus` that
   policies judge like a DCAP status:

   ==========================================  ====================================
   ``isvEnclaveQuoteStatus``                   :class:`TcbStatus`
   ==========================================  ====================================
   OK                                          UpToDate
   SW_HARDENING_NEEDED                         SWHardeningNeeded
   CONFIGURATION_NEEDED                        ConfigurationNeeded
   CONFIGURATION_AND_SW_HARDENING_NEEDED       ConfigurationAndSWHardeningNeeded
   GROUP_OUT_OF_DATE                           OutOfDate
   GROUP_REVOKED, SIGNATURE_REVOKED,           Revoked
   KEY_REVOKED
   ==========================================  ====================================

6. The report's ``timestamp`` (UTC, written without a zone) is not after ``at``. It is
   compared at whole seconds: ``--at`` and the archived vectors carry seconds while IAS writes
   microseconds.

Unknown fields: IAS added fields over its API versions (``advisoryIDs`` in v4,
``tcbEvaluationDataNumber`` in the v5 reports we hold). Every field this module knows is typed
strictly (a string where a string belongs, integers that are integers, bounded lengths), but
fields it does not know are tolerated and listed in :attr:`VerifiedIasReport.ignored_fields`.
This departs on purpose from the project's ``extra="forbid"`` rule: the document is signed by
Intel, nothing is read from an unknown field, and refusing them would reject genuine archived
reports.
"""

from __future__ import annotations

import base64
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, NoReturn
from urllib.parse import unquote_to_bytes

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.utils import CryptographyDeprecationWarning
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from golem_graphene.attestation._internal import pki
from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.quote import HEADER_SIZE, SIGNED_REGION_END, EnclaveReportBody
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.canonical_json import CanonicalJsonError, parse_json
from golem_graphene.errors import CertificateChainError, IasReportError, VerificationError
from golem_graphene.limits import MAX_IAS_REPORT_BYTES

__all__ = [
    "EPID_QUOTE_BODY_SIZE",
    "EPID_QUOTE_VERSION",
    "IAS_NONCE_MAX_LEN",
    "IasQuoteStatus",
    "VerifiedIasReport",
    "verify_ias_report",
]

EPID_QUOTE_BODY_SIZE: Final = SIGNED_REGION_END
"""``isvEnclaveQuoteBody`` holds the first 432 bytes of the EPID quote: header + report body."""

EPID_QUOTE_VERSION: Final = 2
"""The EPID quote header version IAS reports carry (u16 at offset 0)."""

IAS_NONCE_MAX_LEN: Final = 32
"""IAS echoes a request nonce of at most 32 characters (oasis-core and Gramine enforce this)."""

_EPID_SIGN_TYPES: Final = {0: "unlinkable", 1: "linkable"}
_EPID_PSEUDONYM_SIZE: Final = 128  # EPID B || K, 64 bytes each
_RSA_SIGNATURE_B64_MAX: Final = 1024  # base64 of a 4096-bit signature is 684 characters


class IasQuoteStatus(StrEnum):
    """The ``isvEnclaveQuoteStatus`` values of the IAS API (v2 to v5)."""

    OK = "OK"
    SIGNATURE_INVALID = "SIGNATURE_INVALID"
    GROUP_REVOKED = "GROUP_REVOKED"
    SIGNATURE_REVOKED = "SIGNATURE_REVOKED"
    KEY_REVOKED = "KEY_REVOKED"
    SIGRL_VERSION_MISMATCH = "SIGRL_VERSION_MISMATCH"
    GROUP_OUT_OF_DATE = "GROUP_OUT_OF_DATE"
    CONFIGURATION_NEEDED = "CONFIGURATION_NEEDED"
    SW_HARDENING_NEEDED = "SW_HARDENING_NEEDED"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "CONFIGURATION_AND_SW_HARDENING_NEEDED"


_TCB_STATUS: Final[Mapping[IasQuoteStatus, TcbStatus]] = {
    IasQuoteStatus.OK: TcbStatus.UP_TO_DATE,
    IasQuoteStatus.SW_HARDENING_NEEDED: TcbStatus.SW_HARDENING_NEEDED,
    IasQuoteStatus.CONFIGURATION_NEEDED: TcbStatus.CONFIGURATION_NEEDED,
    IasQuoteStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED: (
        TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED
    ),
    IasQuoteStatus.GROUP_OUT_OF_DATE: TcbStatus.OUT_OF_DATE,
    IasQuoteStatus.GROUP_REVOKED: TcbStatus.REVOKED,
    IasQuoteStatus.SIGNATURE_REVOKED: TcbStatus.REVOKED,
    IasQuoteStatus.KEY_REVOKED: TcbStatus.REVOKED,
}
"""Statuses that state something about the platform; the two others are refused outright."""


# --- the result ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedIasReport:
    """LEGACY: an IAS attestation verification report that verified at ``verified_at``.

    IAS and EPID are end of life (see the module docstring); this is the verdict on an archived
    report. It satisfies :class:`~golem_graphene.attestation.policy.Attested`, so the same
    policies judge it as a DCAP :class:`~golem_graphene.attestation.verifier.VerifiedQuote`:
    ``tcb_status`` is the mapped ``isvEnclaveQuoteStatus`` and ``collateral_issued_at`` is the
    report's timestamp, so :class:`~golem_graphene.attestation.policy.MaxCollateralAge` bounds
    the report's age.
    """

    report_body: EnclaveReportBody
    status: IasQuoteStatus
    tcb_status: TcbStatus
    advisory_ids: tuple[str, ...]
    advisory_url: str | None
    report_id: str
    timestamp: datetime
    version: int | None
    nonce: str | None
    epid_sign_type: int
    epid_group_id: bytes
    epid_pseudonym: bytes | None
    quote_body: bytes
    revocation_reason: int | None
    pse_manifest_status: str | None
    tcb_evaluation_data_number: int | None
    ignored_fields: tuple[str, ...]
    signing_window: tuple[datetime, datetime]
    verified_at: datetime
    anchor_label: str
    legacy: bool = True

    @property
    def collateral_issued_at(self) -> datetime:
        """The report's timestamp: policies measure the report's age from it."""
        return self.timestamp

    @property
    def debug(self) -> bool:
        """True for a debug enclave."""
        return self.report_body.debug

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields of ``verify-quote --ias-report --json`` (without verdict and error).

        The DCAP fields that have no EPID counterpart (``qe_tcb_status``, ``fmspc``, ``pceid``)
        are ``None``; ``legacy`` and ``attestation`` say which path produced the verdict.
        """
        out = _identity_fields(self.report_body)
        out.update(
            {
                "status": self.status.value,
                "platform_status": self.tcb_status.value,
                "qe_tcb_status": None,
                "advisory_ids": list(self.advisory_ids),
                "fmspc": None,
                "pceid": None,
                "legacy": True,
                "attestation": "epid-ias",
                "ias_report_id": self.report_id,
                "ias_timestamp": _iso(self.timestamp),
                "ias_version": self.version,
                "nonce": self.nonce,
                "epid_sign_type": self.epid_sign_type,
                "collateral_window": [_iso(self.signing_window[0]), _iso(self.signing_window[1])],
                "verified_at": _iso(self.verified_at),
                "root": self.anchor_label,
            }
        )
        return out


def _identity_fields(body: EnclaveReportBody) -> dict[str, Any]:
    return {
        "mrenclave": body.mrenclave.hex(),
        "mrsigner": body.mrsigner.hex(),
        "isvprodid": body.isvprodid,
        "isvsvn": body.isvsvn,
        "debug": body.debug,
        "report_data": body.report_data.hex(),
    }


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- verification -------------------------------------------------------------------------------


def verify_ias_report(
    body: bytes,
    signature_b64: bytes | str,
    certificates: bytes | str,
    *,
    at: datetime,
    anchor: TrustAnchor | None = None,
) -> VerifiedIasReport:
    """LEGACY: verify an archived IAS attestation verification report at time ``at``.

    ``body`` is the exact response body, ``signature_b64`` the ``X-IASReport-Signature`` value
    (whitespace is ignored) and ``certificates`` the ``X-IASReport-Signing-Certificate`` value,
    URL-encoded as IAS sends it or plain PEM. ``anchor`` defaults to the bundled Intel SGX
    Attestation Report Signing CA; ``at`` must be timezone-aware.

    Raises :class:`~golem_graphene.errors.CertificateChainError`,
    :class:`~golem_graphene.errors.UntrustedRootError`,
    :class:`~golem_graphene.errors.CertificateSignatureError`,
    :class:`~golem_graphene.errors.CertificateExpiredError` or
    :class:`~golem_graphene.errors.CertificateNotYetValidError` when the signing chain fails,
    and :class:`~golem_graphene.errors.IasReportError` for a bad signature, a malformed body or
    a status that is no TCB verdict. Errors raised once the body is parsed carry the enclave
    identity and report fields in ``established``. Whether the verified result is acceptable
    (status, debug, measurement) is for a policy to decide.
    """
    if at.tzinfo is None:
        raise ValueError("the verification time must be timezone-aware")
    anchor = anchor or TrustAnchor.ias_report_signing_ca()
    # 1. Sizes and types, before any parsing.
    data = _body_bytes(body)
    # 2. The signing chain, pinned to the anchor by key.
    leaf_key, window = _verify_chain(certificates, anchor, at)
    # 3. The signature over the exact body bytes.
    signature = _decode_signature(signature_b64)
    if not pki.verify_rsa_pkcs1v15_sha256(leaf_key, signature, data):
        raise IasReportError(
            "the IAS report signature does not verify over the report body "
            "(RSA PKCS#1 v1.5 / SHA-256 by the report signing certificate)"
        )
    # 4. The body (types, status, quote body).
    report = _parse_report(data)
    established = _established(report)
    try:
        return _judge(report, window, at, anchor)
    except VerificationError as exc:
        exc.established = established
        raise


def _judge(
    report: _ParsedReport, window: tuple[datetime, datetime], at: datetime, anchor: TrustAnchor
) -> VerifiedIasReport:
    doc = report.document
    # 5. Statuses that are no verdict on the platform.
    if report.status is IasQuoteStatus.SIGNATURE_INVALID:
        raise IasReportError(
            "IAS found the quote's EPID signature invalid (isvEnclaveQuoteStatus "
            "SIGNATURE_INVALID): the report attests nothing",
            found=report.status.value,
        )
    if report.status is IasQuoteStatus.SIGRL_VERSION_MISMATCH:
        raise IasReportError(
            "IAS did not evaluate the quote (isvEnclaveQuoteStatus SIGRL_VERSION_MISMATCH: "
            "it was made against an old signature revocation list); the report says nothing "
            "about the platform",
            found=report.status.value,
        )
    # 6. The report must exist at T (whole seconds, see the module docstring).
    issued = report.timestamp.replace(microsecond=0)
    if at < issued:
        raise IasReportError(
            "the IAS report was issued after the verification time",
            expected=f"report timestamp {_iso(report.timestamp)} <= T",
            found=f"T = {_iso(at)}",
        )
    return VerifiedIasReport(
        report_body=report.report_body,
        status=report.status,
        tcb_status=_TCB_STATUS[report.status],
        advisory_ids=doc.advisoryIDs or (),
        advisory_url=doc.advisoryURL,
        report_id=doc.id,
        timestamp=report.timestamp,
        version=doc.version,
        nonce=doc.nonce,
        epid_sign_type=report.epid_sign_type,
        epid_group_id=report.epid_group_id,
        epid_pseudonym=report.epid_pseudonym,
        quote_body=report.quote_body,
        revocation_reason=doc.revocationReason,
        pse_manifest_status=doc.pseManifestStatus,
        tcb_evaluation_data_number=doc.tcbEvaluationDataNumber,
        ignored_fields=report.ignored_fields,
        signing_window=(max(window[0], issued), window[1]),
        verified_at=at,
        anchor_label=anchor.label,
    )


def _established(report: _ParsedReport) -> dict[str, object]:
    """What a refusal after parsing can still report (the to_dict keys known so far)."""
    out: dict[str, object] = dict(_identity_fields(report.report_body))
    out.update(
        status=report.status.value,
        platform_status=(
            _TCB_STATUS[report.status].value if report.status in _TCB_STATUS else None
        ),
        advisory_ids=list(report.document.advisoryIDs or ()),
        legacy=True,
        attestation="epid-ias",
        ias_report_id=report.document.id,
        ias_timestamp=_iso(report.timestamp),
        ias_version=report.document.version,
        nonce=report.document.nonce,
    )
    return out


def _body_bytes(body: bytes) -> bytes:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(f"the IAS report body must be bytes, not {type(body).__name__}")
    data = bytes(body)
    if len(data) > MAX_IAS_REPORT_BYTES:
        raise IasReportError(
            "the IAS report body is too large",
            expected=f"<= {MAX_IAS_REPORT_BYTES} bytes",
            found=len(data),
        )
    return data


def _header_text(value: bytes | str, what: str) -> str:
    """An HTTP header value as text: ASCII only, bounded, surrounding whitespace removed."""
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if len(raw) > MAX_IAS_REPORT_BYTES:
            _too_large(what, len(raw))
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CertificateChainError(f"the {what} is not ASCII text") from exc
    elif isinstance(value, str):
        text = value
        if len(text) > MAX_IAS_REPORT_BYTES:
            _too_large(what, len(text))
        if not text.isascii():
            raise CertificateChainError(f"the {what} is not ASCII text")
    else:
        raise TypeError(f"the {what} must be bytes or str, not {type(value).__name__}")
    return text.strip()


def _too_large(what: str, size: int) -> NoReturn:
    raise CertificateChainError(
        f"the {what} is too large", expected=f"<= {MAX_IAS_REPORT_BYTES} bytes", found=size
    )


def _verify_chain(
    certificates: bytes | str, anchor: TrustAnchor, at: datetime
) -> tuple[object, tuple[datetime, datetime]]:
    """Step 2; returns the leaf's public key and the window in which the chain is valid."""
    what = "IAS signing certificate header"
    text = _header_text(certificates, what)
    try:
        if "-----BEGIN CERTIFICATE-----" not in text:
            # IAS percent-encodes the PEM (%20, %0A, %2B, %3D). A '+' stays a '+': decoding
            # it as a form-encoded space would corrupt the base64 of the certificates.
            text = _percent_decode(text, what)
        leaf, ca = pki.load_pem_chain(text.encode("ascii"), "the IAS signing certificate chain", 2)
        pki.require_anchor(ca, anchor, "IAS report signing")
        pki.require_end_entity(leaf, "IAS report signing leaf")
        pki.verify_issued_by(leaf, anchor.certificate, "IAS report signing leaf")
        windows = [
            pki.check_validity(leaf, at, "IAS report signing leaf"),
            pki.check_validity(ca, at, "IAS report signing CA"),
        ]
        if ca != anchor.certificate:
            windows.append(pki.check_validity(anchor.certificate, at, "IAS trust anchor"))
        key: object = leaf.public_key()
    except (
        ValueError,
        TypeError,
        UnsupportedAlgorithm,
        x509.InvalidVersion,
        x509.DuplicateExtension,
        CryptographyDeprecationWarning,
    ) as exc:
        # cryptography parses some certificate parts lazily, so a malformed one surfaces only
        # here; its deprecation warnings about malformed DER are exceptions when warnings are.
        raise CertificateChainError(
            f"the IAS signing certificate chain is unusable: {exc}"
        ) from exc
    return key, (max(w[0] for w in windows), min(w[1] for w in windows))


def _percent_decode(text: str, what: str) -> str:
    """Strict percent-decoding: every ``%`` starts a valid escape and the result is ASCII."""
    if re.search(r"%(?![0-9A-Fa-f]{2})", text):
        raise CertificateChainError(f"the {what} has a malformed percent escape")
    raw = unquote_to_bytes(text)
    if not raw.isascii():
        raise CertificateChainError(f"the {what} decodes to non-ASCII bytes")
    return raw.decode("ascii")


def _decode_signature(value: bytes | str) -> bytes:
    what = "IAS report signature"
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        if not raw.isascii():
            raise IasReportError(f"the {what} is not base64 text (non-ASCII bytes)")
        text = raw.decode("ascii")
    elif isinstance(value, str):
        if not value.isascii():
            raise IasReportError(f"the {what} is not base64 text (non-ASCII characters)")
        text = value
    else:
        raise TypeError(f"the {what} must be bytes or str, not {type(value).__name__}")
    compact = "".join(text.split())  # HTTP folding and file newlines are not part of the value
    if not compact:
        raise IasReportError(f"the {what} is empty")
    if len(compact) > _RSA_SIGNATURE_B64_MAX:
        raise IasReportError(
            f"the {what} is too long", expected=f"<= {_RSA_SIGNATURE_B64_MAX}", found=len(compact)
        )
    try:
        return base64.b64decode(compact, validate=True)
    except ValueError as exc:
        raise IasReportError(f"the {what} is not valid base64: {exc}") from exc


# --- the report body ----------------------------------------------------------------------------

_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
)
_AdvisoryId = Annotated[str, StringConstraints(min_length=1, max_length=64)]


class _ReportDocument(BaseModel):
    """The AVR JSON (Intel's field names); strict types, unknown fields collected not read."""

    model_config = ConfigDict(frozen=True, extra="allow", strict=True)

    id: str = Field(min_length=1, max_length=256)
    timestamp: str = Field(max_length=64)
    version: int | None = Field(default=None, ge=2, le=5)
    isvEnclaveQuoteStatus: str = Field(max_length=64)
    isvEnclaveQuoteBody: str = Field(max_length=1024)
    revocationReason: int | None = Field(default=None, ge=0, le=10)
    pseManifestStatus: (
        Literal["OK", "UNKNOWN", "INVALID", "OUT_OF_DATE", "REVOKED", "RL_VERSION_MISMATCH"] | None
    ) = None
    pseManifestHash: str | None = Field(default=None, pattern=r"^([0-9A-Fa-f]{64})?$")
    platformInfoBlob: str | None = Field(
        default=None, max_length=8192, pattern=r"^([0-9A-Fa-f]{2})*$"
    )
    nonce: str | None = Field(default=None, max_length=IAS_NONCE_MAX_LEN)
    epidPseudonym: str | None = Field(default=None, max_length=256)
    advisoryURL: str | None = Field(default=None, max_length=2048)
    advisoryIDs: tuple[_AdvisoryId, ...] | None = Field(default=None, max_length=256)
    attestationType: str | None = Field(default=None, max_length=64)
    tcbEvaluationDataNumber: int | None = Field(default=None, ge=0, le=0xFFFFFFFF)


@dataclass(frozen=True, slots=True)
class _ParsedReport:
    document: _ReportDocument
    status: IasQuoteStatus
    timestamp: datetime
    quote_body: bytes
    epid_sign_type: int
    epid_group_id: bytes
    epid_pseudonym: bytes | None
    report_body: EnclaveReportBody
    ignored_fields: tuple[str, ...]


def _parse_report(data: bytes) -> _ParsedReport:
    """Step 4: parse the (already authenticated) body; raises :class:`IasReportError`.

    Kept apart from the signature check so that the parser can be tested on edited bodies.
    """
    try:
        # The one strict parser: duplicate keys, NaN, lone surrogates... which pydantic accepts.
        obj = parse_json(data, floats=True)
    except CanonicalJsonError as exc:
        raise IasReportError(f"the IAS report body is not valid JSON: {exc.describe()}") from exc
    if not isinstance(obj, dict):
        raise IasReportError("the IAS report body must be a JSON object", found=type(obj).__name__)
    try:
        # The model reads the same text as JSON (its strict mode takes arrays as tuples only
        # there); the text passed the strict parser, so both see one document.
        doc = _ReportDocument.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        raise IasReportError(f"the IAS report is malformed at {where}: {first['msg']}") from None
    status = _parse_status(doc.isvEnclaveQuoteStatus)
    if (doc.revocationReason is not None) != (status is IasQuoteStatus.GROUP_REVOKED):
        raise IasReportError(
            "revocationReason must be present exactly when the status is GROUP_REVOKED",
            found=f"status {status.value}, revocationReason {doc.revocationReason}",
        )
    quote_body = _b64_field(doc.isvEnclaveQuoteBody, "isvEnclaveQuoteBody")
    if len(quote_body) != EPID_QUOTE_BODY_SIZE:
        raise IasReportError(
            "isvEnclaveQuoteBody has the wrong length (EPID quote header + report body)",
            expected=EPID_QUOTE_BODY_SIZE,
            found=len(quote_body),
        )
    version, sign_type = struct.unpack_from("<HH", quote_body, 0)
    if version != EPID_QUOTE_VERSION:
        raise IasReportError(
            "unsupported EPID quote version in isvEnclaveQuoteBody",
            expected=EPID_QUOTE_VERSION,
            found=version,
        )
    if sign_type not in _EPID_SIGN_TYPES:
        raise IasReportError(
            "unknown EPID signature type in isvEnclaveQuoteBody",
            expected="0 (unlinkable) or 1 (linkable)",
            found=sign_type,
        )
    pseudonym = None
    if doc.epidPseudonym:
        pseudonym = _b64_field(doc.epidPseudonym, "epidPseudonym")
        if len(pseudonym) != _EPID_PSEUDONYM_SIZE:
            raise IasReportError(
                "epidPseudonym has the wrong length (EPID B || K)",
                expected=_EPID_PSEUDONYM_SIZE,
                found=len(pseudonym),
            )
    return _ParsedReport(
        document=doc,
        status=status,
        timestamp=_parse_timestamp(doc.timestamp),
        quote_body=quote_body,
        epid_sign_type=sign_type,
        epid_group_id=quote_body[4:8],
        epid_pseudonym=pseudonym,
        report_body=EnclaveReportBody.from_bytes(quote_body[HEADER_SIZE:EPID_QUOTE_BODY_SIZE]),
        ignored_fields=tuple(sorted(doc.model_extra or {})),
    )


def _parse_status(value: str) -> IasQuoteStatus:
    """An ``isvEnclaveQuoteStatus`` string; unknown ones raise :class:`IasReportError`.

    Unknown statuses are refused rather than guessed at, so a report format we do not know can
    never pass as a good one.
    """
    try:
        return IasQuoteStatus(value)
    except ValueError:
        raise IasReportError(
            "unknown isvEnclaveQuoteStatus in the IAS report",
            expected="one of " + ", ".join(IasQuoteStatus),
            found=value,
        ) from None


def _parse_timestamp(value: str) -> datetime:
    """``YYYY-MM-DDTHH:MM:SS[.fraction]`` in UTC without a zone suffix (IAS's format)."""
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        raise IasReportError(
            "the IAS report timestamp is malformed",
            expected="YYYY-MM-DDTHH:MM:SS[.ffffff] (UTC, no zone)",
            found=value,
        )
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    micros = int((match.group(7) or "0").ljust(6, "0")[:6])
    try:
        return datetime(year, month, day, hour, minute, second, micros, tzinfo=UTC)
    except ValueError as exc:
        raise IasReportError(f"the IAS report timestamp is not a valid time: {value}") from exc


def _b64_field(value: str, name: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise IasReportError(f"{name} is not valid base64: {exc}") from exc
