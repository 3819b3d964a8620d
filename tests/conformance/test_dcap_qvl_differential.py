"""Differential test against dcap-qvl 0.7.0 (Phala's Rust verifier, PyPI test dependency).

For every pack both verifiers run at the pack's time T. They must agree -- the same status and
advisory ids when both verify, both failing otherwise -- except for the differences listed in
``KNOWN_DIFFERENCES`` / ``DOCUMENTED_DIFFERENCES``, each with its reason. Each listed difference
is asserted to still be a difference of exactly that kind, so the list cannot silently rot: when
dcap-qvl changes, this test says which entry to remove.

The same comparison runs on synthetic cases signed by the throw-away test PKI of
``tests/unit/attestation/_sgx_test_pki.py`` (dcap-qvl takes any root through
``verify_with_root_ca``), which reaches checks real data cannot: QE status convergence, CRL
windows, revoked leaves, debug enclaves.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from golem_graphene.attestation import QuoteCollateral, QuoteVerifier, TrustAnchor, VerifyOptions
from golem_graphene.errors import VerificationError

DCAP_DIR = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
PACKS = sorted(p.name for p in DCAP_DIR.iterdir() if (p / "case.json").is_file())


def _load_test_pki() -> ModuleType:
    """The synthetic-PKI helper next to the attestation unit tests (one module instance)."""
    if "_sgx_test_pki" in sys.modules:
        return sys.modules["_sgx_test_pki"]
    path = Path(__file__).resolve().parents[1] / "unit" / "attestation" / "_sgx_test_pki.py"
    spec = importlib.util.spec_from_file_location("_sgx_test_pki", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sgx_test_pki"] = module
    spec.loader.exec_module(module)
    return module


tp = _load_test_pki()


@dataclass(frozen=True)
class Outcome:
    """One verifier's verdict: status and advisories, or the failure (our code / their text)."""

    ok: bool
    status: str | None = None
    advisory_ids: tuple[str, ...] = ()
    qe_status: str | None = None
    platform_status: str | None = None
    error: str | None = None


def ours(
    quote: bytes,
    collateral: dict[str, Any],
    anchor: TrustAnchor,
    at: int,
    allow_missing: frozenset[str] = frozenset(),
) -> Outcome:
    verifier = QuoteVerifier(anchor=anchor, options=VerifyOptions(allow_missing_crls=allow_missing))
    try:
        result = verifier.verify(
            quote, QuoteCollateral.from_mapping(collateral), datetime.fromtimestamp(at, UTC)
        )
    except VerificationError as exc:
        return Outcome(ok=False, error=exc.code)
    return Outcome(
        ok=True,
        status=result.status.value,
        advisory_ids=result.advisory_ids,
        qe_status=result.qe_tcb_status.value,
        platform_status=result.platform_status.value,
    )


def theirs(quote: bytes, collateral: dict[str, Any], root_der: bytes, at: int) -> Outcome:
    try:
        parsed = dcap_qvl.QuoteCollateralV3.from_json(json.dumps(collateral))
        report = dcap_qvl.verify_with_root_ca(quote, parsed, root_der, at)
    except ValueError as exc:  # dcap-qvl raises ValueError for every verification failure
        return Outcome(ok=False, error=" | ".join(line.strip() for line in str(exc).splitlines()))
    detail = json.loads(report.to_json())
    return Outcome(
        ok=True,
        status=report.status,
        advisory_ids=tuple(report.advisory_ids),
        qe_status=detail["qe_status"]["status"],
        platform_status=detail["platform_status"]["status"],
    )


def _pack(name: str) -> tuple[bytes, dict[str, Any], TrustAnchor, bytes, dict[str, Any]]:
    pack = DCAP_DIR / name
    root_pem = (pack / "root.pem").read_bytes()
    root_der = x509.load_pem_x509_certificate(root_pem).public_bytes(serialization.Encoding.DER)
    return (
        (pack / "quote.bin").read_bytes(),
        json.loads((pack / "collateral.json").read_text()),
        TrustAnchor.from_pem(root_pem),
        root_der,
        json.loads((pack / "case.json").read_text()),
    )


def _both(name: str, at: int | None = None) -> tuple[Outcome, Outcome]:
    quote, collateral, anchor, root_der, case = _pack(name)
    t = case["verify_at_epoch"] if at is None else at
    waived = frozenset(case.get("missing_collateral", []))
    return ours(quote, collateral, anchor, t, waived), theirs(quote, collateral, root_der, t)


# --- the packs ------------------------------------------------------------------------------

# Packs where dcap-qvl returns a different verdict, with the reason and a marker of its error.
KNOWN_DIFFERENCES = {
    "oasis_sgx": (
        "the source ships no CRLs (root_ca_crl/pck_crl are empty, verified with the CRL checks "
        "explicitly waived); dcap-qvl 0.7.0 requires both CRLs and cannot parse an empty one",
        "Failed to parse root CA CRL",
    ),
    "intel_qvl_sample_TEST_PKI": (
        "TCB Info v2 (sgxtcbcompNNsvn keys): dcap-qvl 0.7.0 decodes only TCB Info v3",
        "missing field `sgxtcbcomponents`",
    ),
}

# Negative packs where both fail, but dcap-qvl fails *before* the intended check, on the
# missing CRLs (vacuous agreement: it never reaches the check the pack exercises).
VACUOUS = {
    n: "Failed to parse root CA CRL"
    for n in PACKS
    if json.loads((DCAP_DIR / n / "case.json").read_text()).get("missing_collateral")
    and json.loads((DCAP_DIR / n / "case.json").read_text())["expect"] == "fail"
}

# Negative packs where both fail for the same reason: our code, a marker of dcap-qvl's error.
SAME_REASON = {
    "intel_qvl_sample_under_intel_root": ("untrusted_root", "InvalidCrlSignatureForPublicKey"),
    "phala_sgx_after_window_qe_identity_expired": ("qe_identity_expired", "QE Identity expired"),
    "phala_sgx_before_window_tcb_info_not_yet_valid": (
        "tcb_info_not_yet_valid",
        "TCBInfo issue date is in the future",
    ),
    "phala_sgx_pretty_printed_tcb_info": (
        "tcb_info_signature",
        "Signature is invalid for tcb_info",
    ),
    "phala_sgx_qe_report_byte700_flipped": (
        "qe_report_signature",
        "Signature is invalid for qe_report",
    ),
    "phala_sgx_quote_byte200_flipped": (
        "quote_signature",
        "ISV enclave report signature is invalid",
    ),
}


def test_every_pack_is_classified() -> None:
    agree_ok = {"phala_sgx"}
    classified = set(KNOWN_DIFFERENCES) | set(VACUOUS) | set(SAME_REASON) | agree_ok
    assert classified == set(PACKS)
    assert len(VACUOUS) == 8


@pytest.mark.parametrize("name", PACKS)
def test_pack_agrees_with_dcap_qvl(name: str) -> None:
    mine, other = _both(name)
    if name in KNOWN_DIFFERENCES:
        reason, marker = KNOWN_DIFFERENCES[name]
        assert reason
        # Still exactly this difference: we verify, dcap-qvl fails for the documented reason.
        assert mine.ok, mine
        assert not other.ok, f"dcap-qvl now verifies {name}: drop it from KNOWN_DIFFERENCES"
        assert other.error is not None and marker in other.error
        return
    assert mine.ok == other.ok, (mine, other)
    if mine.ok:
        assert (mine.status, mine.advisory_ids) == (other.status, other.advisory_ids)
        assert mine.qe_status == other.qe_status
        assert mine.platform_status == other.platform_status
    elif name in VACUOUS:
        assert other.error is not None and VACUOUS[name] in other.error
    else:
        code, marker = SAME_REASON[name]
        assert mine.error == code
        assert other.error is not None and marker in other.error


# Boundary times on phala_sgx: both are inclusive at the TCB info issueDate and the QE identity
# nextUpdate (the two ends of its collateral window).
@pytest.mark.parametrize(
    ("at", "ok", "code"),
    [
        (1750330571, True, None),  # TCB info issueDate
        (1750330570, False, "tcb_info_not_yet_valid"),
        (1752919278, True, None),  # QE identity nextUpdate
        (1752919279, False, "qe_identity_expired"),
    ],
)
def test_boundaries_agree(at: int, ok: bool, code: str | None) -> None:
    mine, other = _both("phala_sgx", at)
    assert mine.ok is ok and other.ok is ok, (mine, other)
    assert mine.error == code
    if ok:
        assert mine.status == other.status == "ConfigurationAndSWHardeningNeeded"


# --- real-data combinations beyond the packs -----------------------------------------------------


def _source_collateral(vectors: Path, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((vectors / "sources" / "phala-dcap-qvl" / name).read_text())
    return data


def test_crl_issued_after_t_is_a_documented_difference(vectors: Path) -> None:
    """DOCUMENTED DIFFERENCE: a CRL whose thisUpdate lies after T.

    Built from real Intel-signed data only: the oasis quote (PCK Platform CA) and its collateral
    at its T (2022-12-20), completed with Intel's root CA CRL of 2025-03-20 and a PCK Platform CA
    CRL of 2025-06-19 (both from Phala's TDX collateral). We refuse a CRL that was not yet
    issued at T (Intel's QVL: thisUpdate <= T <= nextUpdate); dcap-qvl checks only nextUpdate
    and accepts.
    """
    quote, collateral, anchor, root_der, case = _pack("oasis_sgx")
    collateral["root_ca_crl"] = _source_collateral(vectors, "sgx_quote_collateral.json")[
        "root_ca_crl"
    ]
    collateral["pck_crl"] = _source_collateral(vectors, "tdx_quote_collateral.json")["pck_crl"]
    at = case["verify_at_epoch"]
    other = theirs(quote, collateral, root_der, at)
    assert other.ok, "dcap-qvl now checks CRL thisUpdate: this is no longer a difference"
    assert (other.status, other.advisory_ids) == (
        case["expected"]["status"],
        tuple(case["expected"]["advisory_ids"]),
    )
    with pytest.raises(VerificationError) as info:
        QuoteVerifier(anchor=anchor).verify(
            quote, QuoteCollateral.from_mapping(collateral), datetime.fromtimestamp(at, UTC)
        )
    assert info.value.code == "crl"
    assert "root CA CRL is not yet valid" in info.value.message


def test_td_qe_identity_for_sgx_quote_both_refuse(vectors: Path) -> None:
    # A real, validly signed TDX QE identity ("TD_QE") handed in for an SGX quote.
    quote, collateral, anchor, root_der, case = _pack("phala_sgx")
    tdx = _source_collateral(vectors, "tdx_quote_collateral.json")
    for key in ("qe_identity", "qe_identity_signature", "qe_identity_issuer_chain"):
        collateral[key] = tdx[key]
    mine = ours(quote, collateral, anchor, case["verify_at_epoch"])
    other = theirs(quote, collateral, root_der, case["verify_at_epoch"])
    assert mine.error == "qe_identity_mismatch"
    assert other.error is not None and "TD_QE" in other.error


def test_pck_crl_issuer_chain_is_not_consulted() -> None:
    # Neither verifier trusts the bundle's pck_crl_issuer_chain: the PCK CRL is checked against
    # the PCK CA of the (verified) PCK chain itself, so garbage there changes nothing.
    quote, collateral, anchor, root_der, case = _pack("phala_sgx")
    collateral["pck_crl_issuer_chain"] = "not a certificate"
    mine = ours(quote, collateral, anchor, case["verify_at_epoch"])
    other = theirs(quote, collateral, root_der, case["verify_at_epoch"])
    assert mine.ok and other.ok
    assert mine.status == other.status == case["expected"]["status"]


# --- synthetic cases (throw-away test PKI) ------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> Any:
    return tp.SgxTestPki()


def _synthetic(case: Any, at: int | None = None) -> tuple[Outcome, Outcome]:
    t = tp.T0_EPOCH if at is None else at
    return (
        ours(case.quote, case.collateral_map, case.pki.anchor(), t),
        theirs(case.quote, case.collateral_map, case.pki.root_der, t),
    )


PLATFORM_STATUSES = [
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
]


@pytest.mark.parametrize("qe_status", ["UpToDate", "OutOfDate", "Revoked"])
def test_status_convergence_agrees(pki: Any, qe_status: str) -> None:
    for platform in PLATFORM_STATUSES:
        case = tp.SgxCase(
            pki,
            tcb_info=tp.tcb_info_doc(
                [tp.tcb_level(tp.DEFAULT_COMPONENTS, tp.DEFAULT_PCESVN, platform, ["SA-P"])]
            ),
            qe_identity=tp.qe_identity_doc(
                [tp.qe_level(tp.DEFAULT_QE_ISVSVN, qe_status, ["SA-Q"])]
            ),
        )
        mine, other = _synthetic(case)
        assert mine.ok, mine
        if mine.status == "Revoked":
            # DOCUMENTED DIFFERENCE: a revoked TCB is a *result* for us (status Revoked, which
            # every policy we build refuses: the default and any-except-revoked), while dcap-qvl
            # raises "TCB status is invalid: Revoked". Same verdict under our policies.
            assert not other.ok and other.error is not None and "Revoked" in other.error
            continue
        assert other.ok, (platform, qe_status, other)
        assert (mine.status, mine.advisory_ids) == (other.status, other.advisory_ids)
        assert (mine.platform_status, mine.qe_status) == (other.platform_status, other.qe_status)


def test_pck_crl_issued_after_t_synthetic_difference(pki: Any) -> None:
    # Same documented difference as above, isolated: only the PCK CRL is issued after T.
    case = tp.SgxCase(pki, pck_crl_options={"this_update": tp.T0 + tp.DAY})
    mine, other = _synthetic(case)
    assert mine.error == "crl"
    assert other.ok and other.status == "UpToDate"


def test_debug_enclave_documented_difference(pki: Any) -> None:
    # DOCUMENTED DIFFERENCE: dcap-qvl 0.7.0 rejects DEBUG enclaves unconditionally; we verify
    # them (debug=True) and leave the refusal to policy (NoDebug is in the default policy).
    body = tp.report_body(attributes=tp.ATTR_INIT | tp.ATTR_DEBUG | tp.ATTR_MODE64BIT)
    case = tp.SgxCase(pki, quote_options={"body": body})
    mine, other = _synthetic(case)
    assert mine.ok and mine.status == "UpToDate"
    assert not other.ok and other.error is not None and "Debug mode" in other.error


def test_cpusvn_octets_documented_difference(pki: Any) -> None:
    # DOCUMENTED DIFFERENCE (synthetic only; Intel's PCK certificates always carry CPUSVN equal
    # to the 16 component SVNs): we select the TCB level by the component INTEGERs, as Intel's
    # QVL does; dcap-qvl 0.7.0 uses the CPUSVN octet string.
    case = tp.SgxCase(pki, leaf_options={"cpusvn": bytes(16)})
    mine, other = _synthetic(case)
    assert mine.ok and mine.status == "UpToDate"
    assert not other.ok and other.error is not None and "No matching TCB level" in other.error


@pytest.mark.parametrize(
    ("changes", "code", "marker"),
    [
        ({"pck_crl_options": {"revoked": [0x4242]}}, "cert_revoked", "CertRevoked"),
        (
            {
                "pck_crl_options": {
                    "this_update": tp.T0 - 40 * tp.DAY,
                    "next_update": tp.T0 - tp.DAY,
                }
            },
            "crl",
            "CrlExpired",
        ),
        ({"tcb_info": tp.tcb_info_doc(fmspc=bytes(6))}, "tcb_info_mismatch", "Fmspc"),
        (
            {"qe_identity": tp.qe_identity_doc(mrsigner="00" * 32)},
            "qe_identity_mismatch",
            "MRSIGNER",
        ),
        (
            {"tcb_info": tp.tcb_info_doc([tp.tcb_level([200] * 16, 200, "UpToDate")])},
            "tcb_not_supported",
            "No matching TCB level",
        ),
    ],
    ids=["revoked_leaf", "pck_crl_expired", "fmspc_mismatch", "qe_mrsigner", "no_tcb_level"],
)
def test_synthetic_negatives_agree(
    pki: Any, changes: dict[str, Any], code: str, marker: str
) -> None:
    case = tp.SgxCase(pki, leaf_options={"serial": 0x4242}, **changes)
    mine, other = _synthetic(case)
    assert mine.error == code
    assert not other.ok
    assert other.error is not None and marker.lower() in other.error.lower(), other.error


def test_tcb_type_1_documented_difference(pki: Any) -> None:
    # DOCUMENTED DIFFERENCE: Intel's QVL requires tcbType 0 (TcbInfo "4.1.2.7.4") and so do we;
    # dcap-qvl 0.7.0 does not check it.
    case = tp.SgxCase(pki, tcb_info=tp.tcb_info_doc(tcbType=1))
    mine, other = _synthetic(case)
    assert mine.error == "tcb_info_mismatch"
    assert other.ok and other.status == "UpToDate"


def test_pceid_mismatch_documented_difference(pki: Any) -> None:
    # DOCUMENTED DIFFERENCE: Intel's QVL compares the TCB info's pceId with the PCK
    # certificate's PCE-ID (4.1.2.4.10) and so do we; dcap-qvl 0.7.0 parses but ignores it.
    case = tp.SgxCase(pki, tcb_info=tp.tcb_info_doc(pceid=b"\x00\x01"))
    mine, other = _synthetic(case)
    assert mine.error == "tcb_info_mismatch"
    assert other.ok and other.status == "UpToDate"


@pytest.mark.parametrize("size", [0, 64])
def test_qe_auth_data_size_documented_difference(pki: Any, size: int) -> None:
    # DOCUMENTED DIFFERENCE: dcap-qvl 0.7.0 requires exactly 32 bytes of QE auth data; the
    # format has a length field and Intel's own QVL sample quote carries 0 bytes. We accept any
    # length: the QE report data binds whatever is there.
    case = tp.SgxCase(pki, quote_options={"qe_auth_data": bytes(size)})
    mine, other = _synthetic(case)
    assert mine.ok and mine.status == "UpToDate"
    assert not other.ok and other.error is not None and "QE auth data length" in other.error


@pytest.mark.parametrize(("miscselect", "ok"), [("01000000", True), ("00000001", False)])
def test_miscselect_byte_order_agrees(pki: Any, miscselect: str, ok: bool) -> None:
    # MISCSELECT 1 in the QE report is the bytes 01 00 00 00; both verifiers compare the JSON hex
    # as those bytes (Intel's QVL: vectorToUint32 byte-swaps the JSON value).
    case = tp.SgxCase(
        pki,
        qe_identity=tp.qe_identity_doc(miscselect=miscselect),
        quote_options={"qe_body": tp.qe_report_body(miscselect=1)},
    )
    mine, other = _synthetic(case)
    assert mine.ok is ok and other.ok is ok, (mine, other)


def test_ca_used_as_tcb_signer_both_refuse() -> None:
    # A CA certificate as the TCB signing leaf: dcap-qvl (webpki) says CaUsedAsEndEntity, we
    # check the role by BasicConstraints too.
    bad = tp.SgxTestPki()
    bad.tcb_signer = tp.make_cert(
        subject="Test SGX TCB Signing",
        key=bad.tcb_key,
        issuer=bad.root,
        issuer_key=bad.root_key,
        ca=True,
    )
    mine, other = _synthetic(tp.SgxCase(bad))
    assert other.error is not None and "CaUsedAsEndEntity" in other.error
    assert mine.error == "chain"
