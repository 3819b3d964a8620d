"""Verification policies: small composable judges of a verified attestation.

A verifier establishes *what* the evidence proves (an enclave identity, a TCB status, how fresh
the collateral is); a policy decides whether that is acceptable. Policies raise
:class:`~golem_graphene.errors.PolicyError` naming the check, the expectation and the finding.
The default is strict: only ``UpToDate`` platforms, no debug enclaves.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from golem_graphene.attestation.quote import EnclaveReportBody
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.errors import PolicyError

__all__ = [
    "ANY_EXCEPT_REVOKED",
    "AllOf",
    "AllowedTcbStatus",
    "AnyOf",
    "Attested",
    "IsvProdId",
    "MaxCollateralAge",
    "MinIsvSvn",
    "MrEnclave",
    "MrSigner",
    "NoDebug",
    "Policy",
    "ReportDataEquals",
    "build_policy",
    "default_policy",
]

ANY_EXCEPT_REVOKED = "any-except-revoked"


class Attested(Protocol):
    """What a policy can judge: a verified DCAP quote or a verified legacy IAS report."""

    @property
    def report_body(self) -> EnclaveReportBody: ...

    @property
    def tcb_status(self) -> TcbStatus: ...

    @property
    def collateral_issued_at(self) -> datetime: ...

    @property
    def verified_at(self) -> datetime: ...


class Policy(Protocol):
    """A check over a verified attestation; raises :class:`PolicyError` when it does not hold."""

    def check(self, result: Attested) -> None: ...


def _hex32(value: bytes | str, what: str) -> bytes:
    raw = bytes.fromhex(value) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes, found {len(raw)}")
    return raw


@dataclass(frozen=True, init=False)
class MrEnclave:
    """The enclave measurement is one of the allowed values."""

    allowed: tuple[bytes, ...]

    def __init__(self, *allowed: bytes | str) -> None:
        if not allowed:
            raise ValueError("MrEnclave needs at least one allowed measurement")
        object.__setattr__(self, "allowed", tuple(_hex32(v, "MRENCLAVE") for v in allowed))

    def check(self, result: Attested) -> None:
        found = result.report_body.mrenclave
        if not any(hmac.compare_digest(found, v) for v in self.allowed):
            raise PolicyError(
                "mrenclave",
                "the enclave measurement is not allowed",
                expected=" or ".join(v.hex() for v in self.allowed),
                found=found.hex(),
            )


@dataclass(frozen=True, init=False)
class MrSigner:
    """The enclave was signed by this key (SHA-256 of the signer's modulus)."""

    expected: bytes

    def __init__(self, expected: bytes | str) -> None:
        object.__setattr__(self, "expected", _hex32(expected, "MRSIGNER"))

    def check(self, result: Attested) -> None:
        found = result.report_body.mrsigner
        if not hmac.compare_digest(found, self.expected):
            raise PolicyError(
                "mrsigner",
                "the enclave signer is not the expected one",
                expected=self.expected.hex(),
                found=found.hex(),
            )


@dataclass(frozen=True)
class IsvProdId:
    """The enclave's product id equals this value."""

    expected: int

    def check(self, result: Attested) -> None:
        found = result.report_body.isvprodid
        if found != self.expected:
            raise PolicyError(
                "isvprodid", "the enclave product id differs", expected=self.expected, found=found
            )


@dataclass(frozen=True)
class MinIsvSvn:
    """The enclave's security version is at least this value."""

    minimum: int

    def check(self, result: Attested) -> None:
        found = result.report_body.isvsvn
        if found < self.minimum:
            raise PolicyError(
                "isvsvn",
                "the enclave security version is too old",
                expected=f">= {self.minimum}",
                found=found,
            )


@dataclass(frozen=True, init=False)
class AllowedTcbStatus:
    """The combined TCB status is one of the accepted ones (default: ``UpToDate`` only)."""

    accepted: frozenset[TcbStatus]

    def __init__(self, accepted: Iterable[TcbStatus | str] = (TcbStatus.UP_TO_DATE,)) -> None:
        statuses: set[TcbStatus] = set()
        for item in accepted:
            if item == ANY_EXCEPT_REVOKED:
                statuses.update(s for s in TcbStatus if s is not TcbStatus.REVOKED)
            else:
                statuses.add(TcbStatus(item))
        if TcbStatus.REVOKED in statuses:
            # Intel's QVL treats a revoked TCB as terminal: no policy may accept it.
            raise ValueError("a Revoked TCB is never acceptable")
        if not statuses:
            raise ValueError("AllowedTcbStatus needs at least one status")
        object.__setattr__(self, "accepted", frozenset(statuses))

    def check(self, result: Attested) -> None:
        found = result.tcb_status
        if found not in self.accepted:
            raise PolicyError(
                "tcb_status",
                "the TCB status is not accepted",
                expected=" or ".join(sorted(self.accepted)),
                found=found.value,
            )


@dataclass(frozen=True)
class NoDebug:
    """The enclave is not a debug enclave (whose memory the host can read)."""

    def check(self, result: Attested) -> None:
        if result.report_body.debug:
            raise PolicyError(
                "debug",
                "the enclave is a debug enclave, refused without --allow-debug",
                expected="production enclave",
                found="DEBUG",
            )


@dataclass(frozen=True, init=False)
class ReportDataEquals:
    """The 64-byte report data equals this value (shorter values are zero-padded, as SGX does)."""

    expected: bytes

    def __init__(self, expected: bytes | str) -> None:
        raw = bytes.fromhex(expected) if isinstance(expected, str) else bytes(expected)
        if len(raw) > 64:
            raise ValueError(f"report data is at most 64 bytes, found {len(raw)}")
        object.__setattr__(self, "expected", raw.ljust(64, b"\0"))

    def check(self, result: Attested) -> None:
        found = result.report_body.report_data
        if not hmac.compare_digest(found, self.expected):
            raise PolicyError(
                "report_data",
                "the report data differs",
                expected=self.expected.hex(),
                found=found.hex(),
            )


@dataclass(frozen=True)
class MaxCollateralAge:
    """The oldest collateral document was issued at most ``max_age`` before verification."""

    max_age: timedelta

    def check(self, result: Attested) -> None:
        age = result.verified_at - result.collateral_issued_at
        if age > self.max_age:
            raise PolicyError(
                "collateral_age",
                "the collateral is too old",
                expected=f"<= {self.max_age}",
                found=str(age),
            )


@dataclass(frozen=True, init=False)
class AllOf:
    """Every policy holds; the first that fails is reported. Empty is an error."""

    policies: tuple[Policy, ...]

    def __init__(self, *policies: Policy) -> None:
        if not policies:
            raise ValueError("AllOf needs at least one policy")
        object.__setattr__(self, "policies", policies)

    def check(self, result: Attested) -> None:
        for policy in self.policies:
            policy.check(result)


@dataclass(frozen=True, init=False)
class AnyOf:
    """At least one policy holds; otherwise every failure is reported. Empty is an error."""

    policies: tuple[Policy, ...]

    def __init__(self, *policies: Policy) -> None:
        if not policies:
            raise ValueError("AnyOf needs at least one policy")
        object.__setattr__(self, "policies", policies)

    def check(self, result: Attested) -> None:
        failures: list[PolicyError] = []
        for policy in self.policies:
            try:
                policy.check(result)
            except PolicyError as exc:
                failures.append(exc)
            else:
                return
        raise PolicyError(
            "any_of", "no alternative policy holds", found="; ".join(f.describe() for f in failures)
        )


def default_policy() -> AllOf:
    """The strict default: only ``UpToDate`` and no debug enclaves."""
    return AllOf(AllowedTcbStatus(), NoDebug())


def build_policy(
    *,
    mrenclaves: Iterable[bytes | str] = (),
    mrsigner: bytes | str | None = None,
    isvprodid: int | None = None,
    min_isvsvn: int | None = None,
    accept_tcb: Iterable[TcbStatus | str] = (),
    allow_debug: bool = False,
    report_data: bytes | str | None = None,
    max_collateral_age: timedelta | None = None,
) -> AllOf:
    """The policy the CLI flags describe; unset options keep the strict defaults.

    Raises ``ValueError`` for malformed values (wrong lengths, unknown statuses).
    """
    accepted = list(accept_tcb) or [TcbStatus.UP_TO_DATE]
    policies: list[Policy] = [AllowedTcbStatus(accepted)]
    if not allow_debug:
        policies.append(NoDebug())
    mrenclave_list = list(mrenclaves)
    if mrenclave_list:
        policies.append(MrEnclave(*mrenclave_list))
    if mrsigner is not None:
        policies.append(MrSigner(mrsigner))
    if isvprodid is not None:
        policies.append(IsvProdId(isvprodid))
    if min_isvsvn is not None:
        policies.append(MinIsvSvn(min_isvsvn))
    if report_data is not None:
        policies.append(ReportDataEquals(report_data))
    if max_collateral_age is not None:
        policies.append(MaxCollateralAge(max_collateral_age))
    return AllOf(*policies)
