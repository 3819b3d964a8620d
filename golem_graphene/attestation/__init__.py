"""Attestation: SGX DCAP quote parsing and verification, collateral, policies, legacy IAS.

The core is pure (bytes and a time in, a verdict out); collateral fetching and caching wrap it.
"""

from typing import TYPE_CHECKING

from golem_graphene._lazy import lazy_exports

if TYPE_CHECKING:
    from golem_graphene.attestation.anchors import TrustAnchor
    from golem_graphene.attestation.collateral import QeIdentity, QuoteCollateral, TcbInfo
    from golem_graphene.attestation.ias import IasQuoteStatus, VerifiedIasReport, verify_ias_report
    from golem_graphene.attestation.pcs import PcsClient, collateral_for_quote
    from golem_graphene.attestation.policy import (
        AllOf,
        AllowedTcbStatus,
        AnyOf,
        IsvProdId,
        MaxCollateralAge,
        MinIsvSvn,
        MrEnclave,
        MrSigner,
        NoDebug,
        ReportDataEquals,
        build_policy,
        default_policy,
    )
    from golem_graphene.attestation.quote import EnclaveReportBody, Quote
    from golem_graphene.attestation.tcb import QeTcbStatus, TcbStatus
    from golem_graphene.attestation.verifier import (
        CollateralCache,
        QuoteVerifier,
        VerifiedQuote,
        VerifyOptions,
        verify_quote,
    )

__all__ = [
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
]

# Names resolve on first use, so importing one submodule does not import them all.
__getattr__ = lazy_exports(
    __name__,
    {
        "AllOf": "policy",
        "AllowedTcbStatus": "policy",
        "AnyOf": "policy",
        "CollateralCache": "verifier",
        "EnclaveReportBody": "quote",
        "IasQuoteStatus": "ias",
        "IsvProdId": "policy",
        "MaxCollateralAge": "policy",
        "MinIsvSvn": "policy",
        "MrEnclave": "policy",
        "MrSigner": "policy",
        "NoDebug": "policy",
        "PcsClient": "pcs",
        "QeIdentity": "collateral",
        "QeTcbStatus": "tcb",
        "Quote": "quote",
        "QuoteCollateral": "collateral",
        "QuoteVerifier": "verifier",
        "ReportDataEquals": "policy",
        "TcbInfo": "collateral",
        "TcbStatus": "tcb",
        "TrustAnchor": "anchors",
        "VerifiedIasReport": "ias",
        "VerifiedQuote": "verifier",
        "VerifyOptions": "verifier",
        "build_policy": "policy",
        "collateral_for_quote": "pcs",
        "default_policy": "policy",
        "verify_ias_report": "ias",
        "verify_quote": "verifier",
    },
)
