"""Verification policies: each one passing and failing, composition, and the strict default."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from _sgx_test_pki import ATTR_DEBUG, ATTR_INIT, ATTR_MODE64BIT, T0, SgxCase, SgxTestPki
from _sgx_test_pki import report_body as make_body

from golem_graphene.attestation import (
    AllOf,
    AllowedTcbStatus,
    AnyOf,
    IsvProdId,
    MaxCollateralAge,
    MinIsvSvn,
    MrEnclave,
    MrSigner,
    NoDebug,
    QuoteCollateral,
    QuoteVerifier,
    ReportDataEquals,
    TcbStatus,
    TrustAnchor,
    build_policy,
    default_policy,
)
from golem_graphene.attestation.policy import ANY_EXCEPT_REVOKED, Attested, Policy
from golem_graphene.attestation.quote import EnclaveReportBody
from golem_graphene.errors import PolicyError

MRENCLAVE = bytes(range(0x40, 0x60))
MRSIGNER = bytes(range(0x80, 0xA0))
ISSUED = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Fake:
    """A stand-in for a verified attestation (what the Attested protocol needs)."""

    report_body: EnclaveReportBody
    tcb_status: TcbStatus = TcbStatus.UP_TO_DATE
    collateral_issued_at: datetime = ISSUED
    verified_at: datetime = ISSUED + timedelta(days=10)


def fake(*, debug: bool = False, **body: object) -> Fake:
    attributes = ATTR_INIT | ATTR_MODE64BIT | (ATTR_DEBUG if debug else 0)
    values: dict[str, object] = {
        "mrenclave": MRENCLAVE,
        "mrsigner": MRSIGNER,
        "isvprodid": 3,
        "isvsvn": 4,
    }
    values.update(body)
    return Fake(EnclaveReportBody.from_bytes(make_body(attributes=attributes, **values)))  # type: ignore[arg-type]


def refused(policy: Policy, result: Attested, check: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        policy.check(result)
    assert info.value.check == check
    assert info.value.code == f"policy_{check}"
    return info.value


def test_mrenclave_any_of() -> None:
    other = bytes(32)
    MrEnclave(MRENCLAVE).check(fake())
    MrEnclave(other, MRENCLAVE).check(fake())  # any of the allowed values
    MrEnclave(MRENCLAVE.hex().upper()).check(fake())
    error = refused(MrEnclave(other, b"\1" * 32), fake(), "mrenclave")
    assert error.found == MRENCLAVE.hex()
    assert other.hex() in str(error.expected)


@pytest.mark.parametrize("bad", [b"\0" * 31, "00" * 33, "xyz"])
def test_mrenclave_values_are_checked(bad: bytes | str) -> None:
    with pytest.raises(ValueError):
        MrEnclave(bad)


def test_mrenclave_needs_a_value() -> None:
    with pytest.raises(ValueError):
        MrEnclave()


def test_mrsigner() -> None:
    MrSigner(MRSIGNER).check(fake())
    MrSigner(MRSIGNER.hex()).check(fake())
    assert refused(MrSigner(MRENCLAVE), fake(), "mrsigner").found == MRSIGNER.hex()
    with pytest.raises(ValueError):
        MrSigner(b"short")


def test_isvprodid_and_min_isvsvn() -> None:
    IsvProdId(3).check(fake())
    assert refused(IsvProdId(4), fake(), "isvprodid").found == 3
    MinIsvSvn(4).check(fake())
    MinIsvSvn(0).check(fake())
    error = refused(MinIsvSvn(5), fake(), "isvsvn")
    assert (error.expected, error.found) == (">= 5", 4)


def test_allowed_tcb_status() -> None:
    up = fake()
    hardening = replace(up, tcb_status=TcbStatus.SW_HARDENING_NEEDED)
    revoked = replace(up, tcb_status=TcbStatus.REVOKED)
    AllowedTcbStatus().check(up)  # default: UpToDate only
    refused(AllowedTcbStatus(), hardening, "tcb_status")
    AllowedTcbStatus(["SWHardeningNeeded"]).check(hardening)
    AllowedTcbStatus([TcbStatus.SW_HARDENING_NEEDED]).check(hardening)
    refused(AllowedTcbStatus(["SWHardeningNeeded"]), up, "tcb_status")
    lax = AllowedTcbStatus([ANY_EXCEPT_REVOKED])
    for status in TcbStatus:
        if status is TcbStatus.REVOKED:
            assert refused(lax, revoked, "tcb_status").found == "Revoked"
        else:
            lax.check(replace(up, tcb_status=status))
    assert lax.accepted == frozenset(TcbStatus) - {TcbStatus.REVOKED}


@pytest.mark.parametrize(
    "accepted", [[], ["NotAStatus"], ["uptodate"], ["Revoked"], ["UpToDate", "Revoked"]]
)
def test_allowed_tcb_status_values(accepted: list[str]) -> None:
    with pytest.raises(ValueError):
        AllowedTcbStatus(accepted)


def test_no_debug() -> None:
    NoDebug().check(fake())
    error = refused(NoDebug(), fake(debug=True), "debug")
    assert error.found == "DEBUG"


def test_report_data_equals_zero_pads() -> None:
    data = b"hello"
    result = fake(report_data=data.ljust(64, b"\0"))
    ReportDataEquals(data).check(result)
    ReportDataEquals(data.hex()).check(result)
    ReportDataEquals(data.ljust(64, b"\0")).check(result)
    refused(ReportDataEquals(b"hellO"), result, "report_data")
    # A shorter expectation does not match a longer report data: zero padding, not prefixing.
    refused(ReportDataEquals(b"hell"), result, "report_data")
    with pytest.raises(ValueError):
        ReportDataEquals(bytes(65))


def test_max_collateral_age_is_inclusive() -> None:
    result = fake()  # verified 10 days after the collateral was issued
    MaxCollateralAge(timedelta(days=10)).check(result)
    error = refused(
        MaxCollateralAge(timedelta(days=10) - timedelta(seconds=1)), result, "collateral_age"
    )
    assert error.found == str(timedelta(days=10))


def test_all_of_reports_the_first_failure() -> None:
    policy = AllOf(MrSigner(MRSIGNER), IsvProdId(9), MinIsvSvn(99))
    assert refused(policy, fake(), "isvprodid").expected == 9
    AllOf(MrSigner(MRSIGNER), IsvProdId(3)).check(fake())
    with pytest.raises(ValueError):
        AllOf()


def test_any_of() -> None:
    AnyOf(IsvProdId(9), IsvProdId(3)).check(fake())
    error = refused(AnyOf(IsvProdId(9), MinIsvSvn(99)), fake(), "any_of")
    assert "product id" in str(error.found) and "security version" in str(error.found)
    with pytest.raises(ValueError):
        AnyOf()


def test_default_policy_is_strict() -> None:
    default_policy().check(fake())
    refused(default_policy(), fake(debug=True), "debug")
    refused(default_policy(), replace(fake(), tcb_status=TcbStatus.OUT_OF_DATE), "tcb_status")


def test_build_policy_defaults_match_default_policy() -> None:
    built = build_policy()
    assert built == default_policy()


def test_build_policy_options() -> None:
    policy = build_policy(
        mrenclaves=[bytes(32), MRENCLAVE.hex()],
        mrsigner=MRSIGNER,
        isvprodid=3,
        min_isvsvn=4,
        accept_tcb=["SWHardeningNeeded"],
        allow_debug=True,
        report_data=b"golem-graphene test",
        max_collateral_age=timedelta(days=30),
    )
    policy.check(replace(fake(debug=True), tcb_status=TcbStatus.SW_HARDENING_NEEDED))
    kinds = [type(p).__name__ for p in policy.policies]
    assert kinds == [
        "AllowedTcbStatus",
        "MrEnclave",
        "MrSigner",
        "IsvProdId",
        "MinIsvSvn",
        "ReportDataEquals",
        "MaxCollateralAge",
    ]
    refused(policy, fake(debug=True), "tcb_status")  # UpToDate is no longer accepted
    with pytest.raises(ValueError):
        build_policy(mrsigner="00")


# --- on real verification results ---------------------------------------------------------------


def test_policies_on_the_phala_quote(vectors: Path) -> None:
    pack = vectors / "dcap" / "phala_sgx"
    result = QuoteVerifier(anchor=TrustAnchor.from_pem((pack / "root.pem").read_bytes())).verify(
        (pack / "quote.bin").read_bytes(),
        QuoteCollateral.from_json((pack / "collateral.json").read_text()),
        datetime.fromtimestamp(1752919277, UTC),
    )
    refused(default_policy(), result, "tcb_status")
    build_policy(
        accept_tcb=["ConfigurationAndSWHardeningNeeded"],
        mrenclaves=["33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"],
        mrsigner="815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6",
        isvprodid=0,
        min_isvsvn=0,
        report_data=b"Hello, world!",
        max_collateral_age=timedelta(seconds=2591999),
    ).check(result)
    # Collateral issued at the QE identity's issueDate 2025-06-19T10:01:18Z, T one second before
    # 30 days later.
    assert result.verified_at - result.collateral_issued_at == timedelta(seconds=2591999)
    refused(MaxCollateralAge(timedelta(seconds=2591998)), result, "collateral_age")


def test_no_debug_on_a_verified_debug_enclave() -> None:
    pki = SgxTestPki()
    body = make_body(attributes=ATTR_INIT | ATTR_DEBUG | ATTR_MODE64BIT)
    case = SgxCase(pki, quote_options={"body": body})
    result = QuoteVerifier(anchor=pki.anchor()).verify(case.quote, case.collateral(), T0)
    assert result.debug is True and result.status is TcbStatus.UP_TO_DATE
    refused(default_policy(), result, "debug")
    build_policy(allow_debug=True).check(result)
