"""TCB statuses and how Intel's QVL combines the platform's with the quoting enclave's.

Unknown status strings are errors (Intel's QVL: ``STATUS_TCB_UNRECOGNIZED_STATUS``), so a
collateral document from a future format can never be mistaken for a good one.
"""

from __future__ import annotations

from enum import StrEnum

from golem_graphene.errors import TcbStatusUnknownError

__all__ = [
    "QeTcbStatus",
    "TcbStatus",
    "converge_tcb_status",
    "parse_qe_tcb_status",
    "parse_tcb_status",
]


class TcbStatus(StrEnum):
    """Platform TCB statuses (Intel's ``VALID_TCB_INFO_STATUSES``), worst last."""

    UP_TO_DATE = "UpToDate"
    SW_HARDENING_NEEDED = "SWHardeningNeeded"
    CONFIGURATION_NEEDED = "ConfigurationNeeded"
    CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
    OUT_OF_DATE = "OutOfDate"
    OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
    REVOKED = "Revoked"


class QeTcbStatus(StrEnum):
    """Statuses a QE identity TCB level may carry."""

    UP_TO_DATE = "UpToDate"
    OUT_OF_DATE = "OutOfDate"
    REVOKED = "Revoked"


def parse_tcb_status(value: object, where: str) -> TcbStatus:
    """Parse a platform status string; unknown strings raise :class:`TcbStatusUnknownError`."""
    try:
        return TcbStatus(str(value))
    except ValueError:
        raise TcbStatusUnknownError(
            f"unknown TCB status in {where}", expected="one of " + ", ".join(TcbStatus), found=value
        ) from None


def parse_qe_tcb_status(value: object, where: str) -> QeTcbStatus:
    """Parse a QE identity status string; unknown strings raise :class:`TcbStatusUnknownError`."""
    try:
        return QeTcbStatus(str(value))
    except ValueError:
        raise TcbStatusUnknownError(
            f"unknown QE TCB status in {where}",
            expected="one of " + ", ".join(QeTcbStatus),
            found=value,
        ) from None


def converge_tcb_status(platform: TcbStatus, qe: QeTcbStatus) -> TcbStatus:
    """Combine platform and QE statuses exactly as Intel's QVL does.

    QVL ``convergeTcbStatusWithQeTcbStatus``: a revoked QE revokes the quote; an out-of-date QE
    makes an up-to-date or SW-hardening platform ``OutOfDate`` and a configuration-needing one
    ``OutOfDateConfigurationNeeded``; otherwise the platform status stands. (dcap-qvl takes the
    worse of the two by severity instead, which differs for ConfigurationAndSWHardeningNeeded.)
    """
    if qe is QeTcbStatus.REVOKED:
        return TcbStatus.REVOKED
    if qe is QeTcbStatus.OUT_OF_DATE:
        if platform in (TcbStatus.UP_TO_DATE, TcbStatus.SW_HARDENING_NEEDED):
            return TcbStatus.OUT_OF_DATE
        if platform in (
            TcbStatus.CONFIGURATION_NEEDED,
            TcbStatus.CONFIGURATION_AND_SW_HARDENING_NEEDED,
        ):
            return TcbStatus.OUT_OF_DATE_CONFIGURATION_NEEDED
    return platform
