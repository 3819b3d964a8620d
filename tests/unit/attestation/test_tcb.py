"""TCB statuses and their convergence with the QE status (Intel QVL table), unit and end to end."""

from __future__ import annotations

import pytest
from _sgx_test_pki import (
    DEFAULT_COMPONENTS,
    DEFAULT_PCESVN,
    DEFAULT_QE_ISVSVN,
    T0,
    SgxCase,
    SgxTestPki,
    qe_identity_doc,
    qe_level,
    tcb_info_doc,
    tcb_level,
)

from golem_graphene.attestation import QuoteVerifier
from golem_graphene.attestation.tcb import (
    QeTcbStatus,
    TcbStatus,
    converge_tcb_status,
    parse_qe_tcb_status,
    parse_tcb_status,
)
from golem_graphene.errors import TcbStatusUnknownError

# Intel QVL convergeTcbStatusWithQeTcbStatus, written out: (platform, QE) -> final status.
QVL_TABLE = {
    ("UpToDate", "UpToDate"): "UpToDate",
    ("SWHardeningNeeded", "UpToDate"): "SWHardeningNeeded",
    ("ConfigurationNeeded", "UpToDate"): "ConfigurationNeeded",
    ("ConfigurationAndSWHardeningNeeded", "UpToDate"): "ConfigurationAndSWHardeningNeeded",
    ("OutOfDate", "UpToDate"): "OutOfDate",
    ("OutOfDateConfigurationNeeded", "UpToDate"): "OutOfDateConfigurationNeeded",
    ("Revoked", "UpToDate"): "Revoked",
    ("UpToDate", "OutOfDate"): "OutOfDate",
    ("SWHardeningNeeded", "OutOfDate"): "OutOfDate",
    ("ConfigurationNeeded", "OutOfDate"): "OutOfDateConfigurationNeeded",
    ("ConfigurationAndSWHardeningNeeded", "OutOfDate"): "OutOfDateConfigurationNeeded",
    ("OutOfDate", "OutOfDate"): "OutOfDate",
    ("OutOfDateConfigurationNeeded", "OutOfDate"): "OutOfDateConfigurationNeeded",
    ("Revoked", "OutOfDate"): "Revoked",
    ("UpToDate", "Revoked"): "Revoked",
    ("SWHardeningNeeded", "Revoked"): "Revoked",
    ("ConfigurationNeeded", "Revoked"): "Revoked",
    ("ConfigurationAndSWHardeningNeeded", "Revoked"): "Revoked",
    ("OutOfDate", "Revoked"): "Revoked",
    ("OutOfDateConfigurationNeeded", "Revoked"): "Revoked",
    ("Revoked", "Revoked"): "Revoked",
}


def test_table_is_complete() -> None:
    assert set(QVL_TABLE) == {(p.value, q.value) for p in TcbStatus for q in QeTcbStatus}
    assert len(QVL_TABLE) == 21


@pytest.mark.parametrize(("platform", "qe"), sorted(QVL_TABLE))
def test_converge(platform: str, qe: str) -> None:
    result = converge_tcb_status(TcbStatus(platform), QeTcbStatus(qe))
    assert result is TcbStatus(QVL_TABLE[(platform, qe)])


def test_status_values_are_intels_strings() -> None:
    assert [s.value for s in TcbStatus] == [
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    ]
    assert [s.value for s in QeTcbStatus] == ["UpToDate", "OutOfDate", "Revoked"]


def test_parse_status() -> None:
    assert parse_tcb_status("ConfigurationNeeded", "x") is TcbStatus.CONFIGURATION_NEEDED
    assert parse_qe_tcb_status("Revoked", "x") is QeTcbStatus.REVOKED
    with pytest.raises(TcbStatusUnknownError) as info:
        parse_tcb_status("TCB_OUT_OF_DATE", "level 3")
    assert "level 3" in info.value.message
    assert info.value.found == "TCB_OUT_OF_DATE"
    with pytest.raises(TcbStatusUnknownError):
        parse_qe_tcb_status("SWHardeningNeeded", "QE level 0")
    with pytest.raises(TcbStatusUnknownError):
        parse_tcb_status(None, "level 0")


# --- end to end: signed TCB info and QE identity, all 7 x 3 combinations -------------------------


@pytest.fixture(scope="module")
def pki() -> SgxTestPki:
    return SgxTestPki()


@pytest.mark.parametrize("qe", [s.value for s in QeTcbStatus])
def test_converged_status_end_to_end(pki: SgxTestPki, qe: str) -> None:
    for platform in TcbStatus:
        case = SgxCase(
            pki,
            tcb_info=tcb_info_doc(
                [tcb_level(DEFAULT_COMPONENTS, DEFAULT_PCESVN, platform.value, ["SA-P1", "SA-X"])]
            ),
            qe_identity=qe_identity_doc([qe_level(DEFAULT_QE_ISVSVN, qe, ["SA-Q", "SA-X"])]),
        )
        result = QuoteVerifier(anchor=pki.anchor()).verify(case.quote, case.collateral(), T0)
        assert result.status.value == QVL_TABLE[(platform.value, qe)], (platform, qe)
        assert result.platform_status is platform
        assert result.qe_tcb_status.value == qe
        # Advisories of the platform level, then the QE level's, without duplicates.
        assert result.advisory_ids == ("SA-P1", "SA-X", "SA-Q")
        assert result.tcb_status is result.status
