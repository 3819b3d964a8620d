"""The public names of golem_graphene.attestation and golem_graphene.errors, and the stable
error codes the CLI and HTTP API report. A change to either list is an API change: make it on
purpose, here.
"""

from __future__ import annotations

import golem_graphene.attestation as attestation
import golem_graphene.errors as errors

ATTESTATION_NAMES = {
    "AllOf",
    "AllowedTcbStatus",
    "AnyOf",
    "CollateralCache",
    "EnclaveReportBody",
    "IasQuoteStatus",
    "IsvProdId",
    "MaxCollateralAge",
    "MinIsvSvn",
    "MrEnclave",
    "MrSigner",
    "NoDebug",
    "PcsClient",
    "QeIdentity",
    "QeTcbStatus",
    "Quote",
    "QuoteCollateral",
    "QuoteVerifier",
    "ReportDataEquals",
    "TcbInfo",
    "TcbStatus",
    "TrustAnchor",
    "VerifiedIasReport",
    "VerifiedQuote",
    "VerifyOptions",
    "build_policy",
    "collateral_for_quote",
    "default_policy",
    "verify_ias_report",
    "verify_quote",
}

# The stable ``code`` of every verification error class (JSON ``error.code``).
ERROR_CODES = {
    "Error": "error",
    "UsageError": "usage",
    "ConfigError": "config",
    "VerificationError": "verification",
    "QuoteFormatError": "quote_format",
    "UnsupportedQuoteError": "unsupported_quote",
    "CertificationDataError": "cert_data",
    "CertificateChainError": "chain",
    "UntrustedRootError": "untrusted_root",
    "CertificateSignatureError": "cert_signature",
    "CertificateExpiredError": "cert_expired",
    "CertificateNotYetValidError": "cert_not_yet_valid",
    "CertificateRevokedError": "cert_revoked",
    "CrlError": "crl",
    "CrlMissingError": "crl_missing",
    "CollateralError": "collateral",
    "CollateralFormatError": "collateral_format",
    "TcbInfoMismatchError": "tcb_info_mismatch",
    "TcbStatusUnknownError": "unknown_tcb_status",
    "TcbNotSupportedError": "tcb_not_supported",
    "QeReportSignatureError": "qe_report_signature",
    "QeReportDataError": "qe_report_data",
    "QeIdentityMismatchError": "qe_identity_mismatch",
    "QuoteSignatureError": "quote_signature",
    "CollateralSourceError": "collateral_source",
}

# Errors whose code names the document or check (``tcb_info_signature``, ``policy_debug``, ...).
DOCUMENT_ERRORS = {
    "CollateralSignatureError": "signature",
    "CollateralExpiredError": "expired",
    "CollateralNotYetValidError": "not_yet_valid",
}

ERROR_NAMES = {
    *ERROR_CODES,
    *DOCUMENT_ERRORS,
    "PolicyError",
    "IasReportError",
    "ProtocolError",
    "RunnerError",
    "SealingError",
    "ManifestError",
    "AgeArmorError",
    "AgeFormatError",
    "AgeHeaderError",
    "AgeHmacError",
    "AgeNoMatchError",
    "AgePayloadError",
    "ReceiptError",
    "UnsupportedRecipientError",
    # The provider's request errors (issue 11: one place, mapped to HTTP by ``http_status``).
    "AuthError",
    "LimitError",
    "NotFoundError",
    "TransitionError",
}


def test_attestation_names() -> None:
    exported = set(attestation.__all__)
    assert len(exported) == len(attestation.__all__)  # no duplicates
    assert exported == ATTESTATION_NAMES, sorted(exported ^ ATTESTATION_NAMES)
    for name in exported:
        assert getattr(attestation, name) is not None, name


def test_error_names() -> None:
    exported = set(errors.__all__)
    assert len(exported) == len(errors.__all__)
    assert exported == ERROR_NAMES, sorted(exported ^ ERROR_NAMES)
    for name in exported:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.Error), name


def test_error_codes_are_stable() -> None:
    for name, code in ERROR_CODES.items():
        assert getattr(errors, name).code == code, name
    assert len(set(ERROR_CODES.values())) == len(ERROR_CODES)


def test_document_error_codes() -> None:
    for name, suffix in DOCUMENT_ERRORS.items():
        cls = getattr(errors, name)
        for document in ("tcb_info", "qe_identity"):
            exc = cls(document, "message")
            assert exc.code == f"{document}_{suffix}"
            assert isinstance(exc, errors.CollateralError)
            assert exc.to_dict() == {"code": f"{document}_{suffix}", "message": "message"}
    policy = errors.PolicyError("debug", "refused", expected="a", found="b")
    assert policy.code == "policy_debug"
    assert policy.to_dict() == {"code": "policy_debug", "message": "refused: expected a, found b"}


def test_verification_errors_carry_established_fields() -> None:
    exc = errors.QuoteSignatureError("bad")
    assert exc.established == {}
    assert isinstance(exc, errors.VerificationError)
    assert issubclass(errors.CrlMissingError, errors.CrlError)
