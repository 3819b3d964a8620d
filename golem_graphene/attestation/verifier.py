"""DCAP ECDSA quote v3 verification, in Intel's order, with the time as an explicit argument.

The core is pure: quote bytes, a collateral bundle, a trust anchor and a time in; a
:class:`VerifiedQuote` (or a typed :class:`~golem_graphene.errors.VerificationError`) out.
Whether the verified result is *acceptable* (status, debug, measurement) is the business of
:mod:`golem_graphene.attestation.policy`.

Steps (numbered as in the comments below; Intel's QvE runs the PCK certificate, TCB info and
enclave identity checks before the quote itself):

1. PCK chain: three certificates, leaf <- PCK CA <- root, root pinned by key; validity at T.
2. CRLs: root CA CRL (issued by the root) covers the PCK CA; the processor or platform PCK CRL
   (issued by the PCK CA) covers the PCK leaf; thisUpdate <= T <= nextUpdate.
3. TCB info: TCB signing chain to the root, signature over the raw text, issueDate <= T <=
   nextUpdate, FMSPC and PCE-ID equal the PCK certificate's.
4. QE identity: same chain, signature and dates; id "QE", version 2.
5. QE report signed by the PCK leaf key.
6. QE report data = SHA-256(attestation key || QE auth data) || 32 zero bytes.
7. QE identity match (MISCSELECT, attributes under their masks, MRSIGNER, ISVPRODID) and the
   QE TCB level by ISVSVN.
8. ISV quote signature over bytes [0, 432) by the attestation key.
9. Platform TCB level from the PCK certificate's components and PCESVN.
10. Combined status as Intel's QVL converges platform and QE statuses.

Verified collateral and PCK chains are cached in memory (:class:`CollateralCache`) together
with the time window in which their checks hold, so later quotes from the same platform only
pay for the per-quote signatures.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from golem_graphene.attestation._internal import pki
from golem_graphene.attestation.anchors import TrustAnchor
from golem_graphene.attestation.collateral import QeIdentity, QuoteCollateral, TcbInfo
from golem_graphene.attestation.pck import PckExtension, pck_ca_kind
from golem_graphene.attestation.quote import EnclaveReportBody, Quote
from golem_graphene.attestation.tcb import QeTcbStatus, TcbStatus, converge_tcb_status
from golem_graphene.errors import (
    CertificationDataError,
    CollateralExpiredError,
    CollateralNotYetValidError,
    CollateralSignatureError,
    CrlMissingError,
    QeIdentityMismatchError,
    QeReportDataError,
    QeReportSignatureError,
    QuoteSignatureError,
    TcbInfoMismatchError,
    TcbNotSupportedError,
    UnsupportedQuoteError,
    UntrustedRootError,
    VerificationError,
)

__all__ = [
    "CRL_NAMES",
    "CollateralCache",
    "QuoteVerifier",
    "VerifiedQuote",
    "VerifyOptions",
    "verify_quote",
]

CRL_NAMES = frozenset({"root_ca_crl", "pck_crl"})

Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class VerifyOptions:
    """What the caller explicitly allows beyond the strict default.

    ``allow_missing_crls``: names from :data:`CRL_NAMES` whose absence is tolerated (the check is
    then skipped and the result says so). ``trusted_simulation_roots``: SPKI SHA-256 fingerprints
    of simulation roots (golem-graphene's ``sim`` runner) the caller trusts by name.
    """

    allow_missing_crls: frozenset[str] = frozenset()
    trusted_simulation_roots: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.allow_missing_crls) - CRL_NAMES
        if unknown:
            raise ValueError(f"unknown CRL names: {sorted(unknown)}")


@dataclass(frozen=True)
class VerifiedQuote:
    """A quote whose signatures, chains and collateral all verified at ``verified_at``."""

    quote: Quote
    status: TcbStatus
    platform_status: TcbStatus
    qe_tcb_status: QeTcbStatus
    advisory_ids: tuple[str, ...]
    fmspc: bytes
    pceid: bytes
    tcb_date: datetime
    pck_ca: str
    tcb_evaluation_data_number: int
    collateral_window: Window
    collateral_issued_at: datetime
    verified_at: datetime
    anchor_label: str
    simulated: bool
    skipped_checks: tuple[str, ...] = ()
    anchor_fingerprint: str = ""

    @property
    def debug(self) -> bool:
        """True for a debug enclave."""
        return self.quote.report_body.debug

    @property
    def report_body(self) -> EnclaveReportBody:
        """The attested enclave's report body (identity and report data)."""
        return self.quote.report_body

    @property
    def tcb_status(self) -> TcbStatus:
        """The combined TCB status that policies judge."""
        return self.status

    def to_dict(self) -> dict[str, Any]:
        """The JSON fields of ``verify-quote --json`` (without verdict and error)."""
        out = identity_fields(self.quote)
        out.update(
            {
                "status": self.status.value,
                "platform_status": self.platform_status.value,
                "qe_tcb_status": self.qe_tcb_status.value,
                "advisory_ids": list(self.advisory_ids),
                "fmspc": self.fmspc.hex().upper(),
                "pceid": self.pceid.hex().upper(),
                "tcb_date": _iso(self.tcb_date),
                "pck_ca": self.pck_ca,
                "tcb_evaluation_data_number": self.tcb_evaluation_data_number,
                "collateral_window": [
                    _iso(self.collateral_window[0]),
                    _iso(self.collateral_window[1]),
                ],
                "verified_at": _iso(self.verified_at),
                "root": self.anchor_label,
                "root_fingerprint": self.anchor_fingerprint,
                "simulated": self.simulated,
                "skipped_checks": list(self.skipped_checks),
            }
        )
        return out


def identity_fields(quote: Quote) -> dict[str, Any]:
    """The enclave identity fields of a parsed quote, as reported in JSON."""
    body = quote.report_body
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


# --- cached intermediate verdicts -------------------------------------------------------------


@dataclass(frozen=True)
class _PckVerdict:
    window: Window
    extension: PckExtension
    leaf_key: ec.EllipticCurvePublicKey
    ca_name: str
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class _CollateralVerdict:
    window: Window
    tcb_info: TcbInfo
    qe_identity: QeIdentity
    issued_at: datetime


class CollateralCache:
    """Bounded in-memory cache of verified PCK chains and collateral, keyed by their bytes.

    An entry is reused only at a time inside the window in which every one of its time checks
    holds; outside it the checks run again (and fail with the precise reason).
    """

    def __init__(self, max_entries: int = 256) -> None:
        self._entries: OrderedDict[Hashable, tuple[Window, object]] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def get(self, key: Hashable, at: datetime) -> object | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            (lo, hi), value = hit
            if not lo <= at <= hi:
                return None
            self._entries.move_to_end(key)
            return value

    def put(self, key: Hashable, window: Window, value: object) -> None:
        with self._lock:
            self._entries[key] = (window, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


# --- the verifier ---------------------------------------------------------------------------


@dataclass
class QuoteVerifier:
    """Verifies DCAP v3 quotes against one trust anchor, caching verified collateral."""

    anchor: TrustAnchor = field(default_factory=TrustAnchor.intel_sgx_root)
    options: VerifyOptions = field(default_factory=VerifyOptions)
    cache: CollateralCache = field(default_factory=CollateralCache)

    def verify(
        self, quote: Quote | bytes, collateral: QuoteCollateral, at: datetime
    ) -> VerifiedQuote:
        """Verify ``quote`` with ``collateral`` at time ``at`` (timezone-aware).

        Raises a :class:`VerificationError` subclass naming the failed check; its
        ``established`` attribute holds the fields known before the failure.
        """
        if at.tzinfo is None:
            raise ValueError("the verification time must be timezone-aware")
        parsed = quote if isinstance(quote, Quote) else Quote.from_bytes(quote)
        established: dict[str, object] = identity_fields(parsed)
        try:
            return self._verify(parsed, collateral, at, established)
        except VerificationError as exc:
            exc.established = established
            raise

    def _verify(
        self,
        quote: Quote,
        collateral: QuoteCollateral,
        at: datetime,
        established: dict[str, object],
    ) -> VerifiedQuote:
        simulated = self._check_simulation_trust()
        pck = self._pck_verdict(quote, collateral, at)  # steps 1-2
        if not simulated and not quote.header.is_intel_qe:
            raise UnsupportedQuoteError(
                "the quote's QE vendor id is not Intel's (a simulated quote?)",
                expected="939a7233f79c4ca9940a0db3957f0607",
                found=quote.header.qe_vendor_id.hex(),
            )
        established.update(
            fmspc=pck.extension.fmspc.hex().upper(), pceid=pck.extension.pceid.hex().upper()
        )
        coll = self._collateral_verdict(collateral, pck, at)  # steps 3-4

        # 5. QE report signed by the PCK leaf key.
        if not pki.verify_raw_ecdsa(pck.leaf_key, quote.qe_report_signature, quote.qe_report_raw):
            raise QeReportSignatureError(
                "the QE report signature does not verify under the PCK key"
            )
        # 6. QE report data binds the attestation key and the QE auth data.
        expected_rd = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(
            32
        )
        if quote.qe_report_body.report_data != expected_rd:
            raise QeReportDataError(
                "the QE report data does not bind the attestation key",
                expected=expected_rd.hex(),
                found=quote.qe_report_body.report_data.hex(),
            )
        # 7. The quoting enclave is the one the QE identity describes.
        qe_level = _match_qe_identity(quote, coll.qe_identity)
        established["qe_tcb_status"] = qe_level.status.value
        # 8. The ISV enclave report is signed by the attestation key.
        att_key = pki.p256_public_key(quote.attestation_key, "attestation key")
        if not pki.verify_raw_ecdsa(att_key, quote.signature, quote.signed_region):
            raise QuoteSignatureError(
                "the ISV quote signature does not verify under the attestation key"
            )
        # 9. Platform TCB level from the PCK certificate (never the quote's CPUSVN).
        level = _select_tcb_level(coll.tcb_info, pck.extension)
        # 10. Converge with the QE's status.
        status = converge_tcb_status(level.status, qe_level.status)
        advisories = tuple(dict.fromkeys(level.advisory_ids + qe_level.advisory_ids))
        established.update(
            status=status.value, platform_status=level.status.value, advisory_ids=list(advisories)
        )
        window = (max(pck.window[0], coll.window[0]), min(pck.window[1], coll.window[1]))
        return VerifiedQuote(
            quote=quote,
            status=status,
            platform_status=level.status,
            qe_tcb_status=qe_level.status,
            advisory_ids=advisories,
            fmspc=pck.extension.fmspc,
            pceid=pck.extension.pceid,
            tcb_date=level.tcb_date,
            pck_ca=pck.ca_name,
            tcb_evaluation_data_number=coll.tcb_info.tcb_evaluation_data_number,
            collateral_window=window,
            collateral_issued_at=coll.issued_at,
            verified_at=at,
            anchor_label=self.anchor.label,
            anchor_fingerprint=self.anchor.fingerprint,
            simulated=simulated,
            skipped_checks=pck.skipped,
        )

    def _check_simulation_trust(self) -> bool:
        """A simulation root is used only when the caller trusts it by name."""
        if not self.anchor.simulated:
            return False
        if self.anchor.fingerprint not in self.options.trusted_simulation_roots:
            raise UntrustedRootError(
                "the root is a golem-graphene simulation root, which is refused unless "
                "trusted by name (--trust-simulated-root)",
                expected="a trusted simulation root fingerprint",
                found=self.anchor.fingerprint,
            )
        return True

    # -- steps 1 and 2 -------------------------------------------------------------------------

    def _pck_verdict(self, quote: Quote, collateral: QuoteCollateral, at: datetime) -> _PckVerdict:
        if quote.certification_data_type == 5:
            chain_pem = quote.pck_chain_pem()
        elif collateral.pck_certificate_chain is not None:
            chain_pem = collateral.pck_certificate_chain.encode()
        else:
            quote.pck_chain_pem()  # raises CertificationDataError naming the type
            raise CertificationDataError("no PCK certificate chain")  # pragma: no cover
        key = (
            "pck",
            self.anchor.fingerprint,
            chain_pem,
            collateral.root_ca_crl,
            collateral.pck_crl,
            self.options.allow_missing_crls,
        )
        cached = self.cache.get(key, at)
        if isinstance(cached, _PckVerdict):
            return cached
        verdict = self._verify_pck_chain(chain_pem, collateral, at)
        self.cache.put(key, verdict.window, verdict)
        return verdict

    def _verify_pck_chain(
        self, chain_pem: bytes, collateral: QuoteCollateral, at: datetime
    ) -> _PckVerdict:
        # 1. Chain shape, root pinned by key, signatures, validity.
        leaf, pck_ca, root = pki.load_pem_chain(chain_pem, "the PCK certificate chain", 3)
        pki.require_anchor(root, self.anchor, "PCK")
        pki.require_cn(pck_ca, "CA", "PCK CA")
        pki.require_cn(leaf, "SGX PCK Certificate", "PCK leaf")
        pki.require_ca(pck_ca, "PCK CA")
        pki.require_end_entity(leaf, "PCK leaf")
        pki.verify_issued_by(pck_ca, self.anchor.certificate, "PCK CA")
        pki.verify_issued_by(leaf, pck_ca, "PCK leaf")
        windows = [
            pki.check_validity(self.anchor.certificate, at, "root CA"),
            pki.check_validity(pck_ca, at, "PCK CA"),
            pki.check_validity(leaf, at, "PCK leaf"),
        ]
        ca_name = pck_ca.subject.rfc4514_string()
        pck_ca_kind(pki.common_name(pck_ca.subject))
        extension = PckExtension.from_certificate(leaf)
        # 2. Revocation: the root CA CRL covers the PCK CA, the PCK CRL covers the leaf.
        skipped: list[str] = []
        root_crl = self._load_crl(collateral.root_ca_crl, "root_ca_crl", skipped)
        if root_crl is not None:
            windows.append(pki.check_crl(root_crl, self.anchor.certificate, at, "root CA CRL"))
            pki.check_not_revoked(root_crl, pck_ca, "PCK CA")
        pck_crl = self._load_crl(collateral.pck_crl, "pck_crl", skipped)
        if pck_crl is not None:
            windows.append(pki.check_crl(pck_crl, pck_ca, at, "PCK CRL"))
            pki.check_not_revoked(pck_crl, leaf, "PCK leaf")
        leaf_key = leaf.public_key()
        if not isinstance(leaf_key, ec.EllipticCurvePublicKey):
            raise QeReportSignatureError("the PCK leaf key is not an EC key")
        return _PckVerdict(
            window=_intersect(windows),
            extension=extension,
            leaf_key=leaf_key,
            ca_name=ca_name,
            skipped=tuple(skipped),
        )

    def _load_crl(
        self, der: bytes | None, name: str, skipped: list[str]
    ) -> x509.CertificateRevocationList | None:
        if der is None:
            if name not in self.options.allow_missing_crls:
                raise CrlMissingError(
                    f"the collateral has no {name.replace('_', ' ')} and its check "
                    "was not waived (--allow-missing-crl)"
                )
            skipped.append(name)
            return None
        return pki.load_crl(der, name.replace("_", " "))

    # -- steps 3 and 4 -------------------------------------------------------------------------

    def _collateral_verdict(
        self, collateral: QuoteCollateral, pck: _PckVerdict, at: datetime
    ) -> _CollateralVerdict:
        key = ("collateral", self.anchor.fingerprint, collateral, self.options.allow_missing_crls)
        cached = self.cache.get(key, at)
        if not isinstance(cached, _CollateralVerdict):
            cached = self._verify_collateral(collateral, at)
            self.cache.put(key, cached.window, cached)
        # 3 (cont.). The TCB info must be this platform's.
        tcb = cached.tcb_info
        if tcb.fmspc != pck.extension.fmspc:
            raise TcbInfoMismatchError(
                "the TCB info is for another platform (FMSPC)",
                expected=pck.extension.fmspc.hex().upper(),
                found=tcb.fmspc.hex().upper(),
            )
        if tcb.pceid != pck.extension.pceid:
            raise TcbInfoMismatchError(
                "the TCB info is for another PCE (PCE-ID)",
                expected=pck.extension.pceid.hex().upper(),
                found=tcb.pceid.hex().upper(),
            )
        return cached

    def _verify_collateral(self, collateral: QuoteCollateral, at: datetime) -> _CollateralVerdict:
        root_crl = (
            pki.load_crl(collateral.root_ca_crl, "root CA CRL")
            if collateral.root_ca_crl is not None
            else None
        )
        windows: list[Window] = []
        # 3. TCB info.
        windows += self._verify_signing_chain(
            collateral.tcb_info_issuer_chain, root_crl, at, "TCB info"
        )
        signer = pki.load_pem_chain(collateral.tcb_info_issuer_chain, "TCB info issuer chain", 2)[0]
        if not pki.verify_raw_ecdsa(
            signer.public_key(), collateral.tcb_info_signature, collateral.tcb_info.encode()
        ):
            raise CollateralSignatureError(
                "tcb_info", "the TCB info signature does not verify over its raw signed text"
            )
        tcb_info = TcbInfo.from_json(collateral.tcb_info)
        windows.append(
            _check_document_dates(
                "tcb_info", "TCB info", tcb_info.issue_date, tcb_info.next_update, at
            )
        )
        if tcb_info.tcb_type != 0:
            raise TcbInfoMismatchError("unsupported TCB type", expected=0, found=tcb_info.tcb_type)
        # 4. QE identity.
        windows += self._verify_signing_chain(
            collateral.qe_identity_issuer_chain, root_crl, at, "QE identity"
        )
        signer = pki.load_pem_chain(
            collateral.qe_identity_issuer_chain, "QE identity issuer chain", 2
        )[0]
        if not pki.verify_raw_ecdsa(
            signer.public_key(), collateral.qe_identity_signature, collateral.qe_identity.encode()
        ):
            raise CollateralSignatureError(
                "qe_identity", "the QE identity signature does not verify over its raw signed text"
            )
        qe_identity = QeIdentity.from_json(collateral.qe_identity)
        windows.append(
            _check_document_dates(
                "qe_identity", "QE identity", qe_identity.issue_date, qe_identity.next_update, at
            )
        )
        if qe_identity.id != "QE":
            raise QeIdentityMismatchError(
                "the enclave identity is not an SGX QE identity",
                expected="QE",
                found=qe_identity.id,
            )
        return _CollateralVerdict(
            window=_intersect(windows),
            tcb_info=tcb_info,
            qe_identity=qe_identity,
            issued_at=min(tcb_info.issue_date, qe_identity.issue_date),
        )

    def _verify_signing_chain(
        self, pem: str, root_crl: x509.CertificateRevocationList | None, at: datetime, what: str
    ) -> list[Window]:
        signer, root = pki.load_pem_chain(pem, f"{what} issuer chain", 2)
        pki.require_anchor(root, self.anchor, f"{what} signing")
        pki.require_cn(signer, "SGX TCB Signing", f"{what} signer")
        pki.require_end_entity(signer, f"{what} signer")
        pki.verify_issued_by(signer, self.anchor.certificate, f"{what} signer")
        windows = [pki.check_validity(signer, at, f"{what} signer")]
        if root_crl is not None:
            windows.append(pki.check_crl(root_crl, self.anchor.certificate, at, "root CA CRL"))
            pki.check_not_revoked(root_crl, signer, f"{what} signer")
        return windows


def _check_document_dates(
    code: str, what: str, issued: datetime, next_update: datetime, at: datetime
) -> Window:
    """issueDate <= T <= nextUpdate, both inclusive (Intel's QVL and dcap-qvl agree)."""
    if at < issued:
        raise CollateralNotYetValidError(
            code,
            f"the {what} is not yet valid",
            expected=f"issueDate {_iso(issued)} <= T",
            found=f"T = {_iso(at)}",
        )
    if at > next_update:
        raise CollateralExpiredError(
            code,
            f"the {what} has expired",
            expected=f"T <= nextUpdate {_iso(next_update)}",
            found=f"T = {_iso(at)}",
        )
    return issued, next_update


def _intersect(windows: list[Window]) -> Window:
    return max(w[0] for w in windows), min(w[1] for w in windows)


def _masked_equal(value: bytes, mask: bytes, expected: bytes) -> bool:
    return len(value) == len(mask) == len(expected) and all(
        (v & m) == (e & m) for v, m, e in zip(value, mask, expected, strict=True)
    )


def _match_qe_identity(quote: Quote, identity: QeIdentity) -> Any:
    qe = quote.qe_report_body
    if not _masked_equal(qe.miscselect, identity.miscselect_mask, identity.miscselect):
        raise QeIdentityMismatchError(
            "the QE's MISCSELECT does not match the QE identity",
            expected=identity.miscselect.hex(),
            found=qe.miscselect.hex(),
        )
    if not _masked_equal(qe.attributes, identity.attributes_mask, identity.attributes):
        raise QeIdentityMismatchError(
            "the QE's attributes do not match the QE identity",
            expected=identity.attributes.hex(),
            found=qe.attributes.hex(),
        )
    if qe.debug:
        raise QeIdentityMismatchError("the quoting enclave is a debug enclave")
    if qe.mrsigner != identity.mrsigner:
        raise QeIdentityMismatchError(
            "the QE's MRSIGNER does not match the QE identity",
            expected=identity.mrsigner.hex(),
            found=qe.mrsigner.hex(),
        )
    if qe.isvprodid != identity.isvprodid:
        raise QeIdentityMismatchError(
            "the QE's ISVPRODID does not match the QE identity",
            expected=identity.isvprodid,
            found=qe.isvprodid,
        )
    for level in identity.levels:  # highest ISVSVN first
        if qe.isvsvn >= level.isvsvn:
            return level
    raise TcbNotSupportedError("no QE TCB level matches the QE's ISVSVN", found=qe.isvsvn)


def _select_tcb_level(tcb_info: TcbInfo, ext: PckExtension) -> Any:
    for level in tcb_info.levels:  # highest first
        if ext.pcesvn >= level.pcesvn and all(
            have >= need for have, need in zip(ext.tcb_components, level.components, strict=True)
        ):
            return level
    raise TcbNotSupportedError(
        "no TCB level in the TCB info matches the platform",
        found=f"components {list(ext.tcb_components)}, PCESVN {ext.pcesvn}",
    )


def verify_quote(
    quote: Quote | bytes,
    collateral: QuoteCollateral,
    *,
    at: datetime,
    anchor: TrustAnchor | None = None,
    options: VerifyOptions | None = None,
) -> VerifiedQuote:
    """Verify one quote without keeping a cache; see :meth:`QuoteVerifier.verify`."""
    verifier = QuoteVerifier(
        anchor=anchor or TrustAnchor.intel_sgx_root(), options=options or VerifyOptions()
    )
    return verifier.verify(quote, collateral, at)
