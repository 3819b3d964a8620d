"""Conformance: every archived IAS report in ``tests/vectors/ias`` through the library and CLI.

Each case is verified at its ``verify_at_epoch`` with the default (bundled) trust anchor, and
every field of its ``expected`` block is asserted. All these reports are debug enclaves, so
each case's ``policy_negatives`` (a no-debug policy must refuse them) is asserted as well.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from golem_graphene._cli import main
from golem_graphene.attestation.ias import VerifiedIasReport, verify_ias_report
from golem_graphene.attestation.policy import (
    AllOf,
    AllowedTcbStatus,
    NoDebug,
    build_policy,
    default_policy,
)
from golem_graphene.attestation.tcb import TcbStatus
from golem_graphene.errors import PolicyError

IAS_DIR = Path(__file__).resolve().parents[1] / "vectors" / "ias"
CASES = sorted(p.name for p in IAS_DIR.iterdir() if (p / "case.json").is_file())
DEBUG_POLICY_NEGATIVE = "reject debug enclaves (production default)"


@dataclass(frozen=True)
class IasCase:
    name: str
    folder: Path
    spec: dict[str, Any]

    def path(self, role: str) -> Path:
        return self.folder / str(self.spec["files"][role])

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.spec["verify_at_epoch"], UTC)

    @property
    def expected(self) -> dict[str, Any]:
        expected: dict[str, Any] = self.spec["expected"]
        return expected

    def verify(self) -> VerifiedIasReport:
        return verify_ias_report(
            self.path("body").read_bytes(),
            self.path("signature_b64").read_bytes(),
            self.path("cert_chain_urlencoded").read_bytes(),
            at=self.at,
        )

    def cli_args(self, *extra: str) -> list[str]:
        return [
            "verify-quote",
            "--ias-report",
            str(self.path("body")),
            "--ias-signature",
            str(self.path("signature_b64")),
            "--ias-certs",
            str(self.path("cert_chain_urlencoded")),
            "--at",
            str(self.spec["verify_at_epoch"]),
            *extra,
            "--json",
        ]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest, vectors: Path) -> IasCase:
    folder = vectors / "ias" / request.param
    spec = json.loads((folder / "case.json").read_text())
    assert spec["kind"] == "ias_avr" and spec["expect"] == "ok"
    return IasCase(request.param, folder, spec)


def test_the_pack_is_complete() -> None:
    assert {"oasis_avr_v4", "oasis_avr_v5"} <= set(CASES)


def _expected_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_library_verifies_every_expected_field(case: IasCase) -> None:
    result = case.verify()
    expected = case.expected
    body = result.report_body
    assert result.status == expected["isvEnclaveQuoteStatus"]
    assert list(result.advisory_ids) == expected["advisoryIDs"]
    assert result.timestamp == _expected_timestamp(expected["timestamp"])
    assert result.nonce == expected.get("nonce")  # absent from the expectation = no nonce
    assert body.mrenclave.hex() == expected["mrenclave"]
    assert body.mrsigner.hex() == expected["mrsigner"]
    assert body.debug is expected["debug"]
    assert result.epid_sign_type == expected["sign_type"]
    assert result.version == expected["version"]
    recheck = case.spec["recheck"]
    assert (body.isvprodid, body.isvsvn) == (recheck["isvprodid"], recheck["isvsvn"])
    assert body.report_data.hex() == recheck["report_data"]
    assert len(result.quote_body) == recheck["quote_body_len"]
    assert result.legacy is True
    assert result.verified_at == case.at
    assert result.collateral_issued_at == result.timestamp


def test_policy_negatives(case: IasCase) -> None:
    result = case.verify()
    negatives = case.spec["policy_negatives"]
    assert [n["policy"] for n in negatives] == [DEBUG_POLICY_NEGATIVE]
    assert all(n["expect"] == "fail" for n in negatives)
    # A no-debug policy that accepts the report's status refuses it for being a debug enclave.
    with pytest.raises(PolicyError) as info:
        AllOf(AllowedTcbStatus([result.tcb_status]), NoDebug()).check(result)
    assert info.value.code == "policy_debug"
    with pytest.raises(PolicyError) as info:
        build_policy(accept_tcb=[TcbStatus.SW_HARDENING_NEEDED]).check(result)
    assert info.value.code == "policy_debug"
    # The strict default refuses it too (its status check comes first).
    with pytest.raises(PolicyError):
        default_policy().check(result)
    # Only an explicit opt-in accepts it.
    build_policy(accept_tcb=[TcbStatus.SW_HARDENING_NEEDED], allow_debug=True).check(result)


def _assert_cli_fields(case: IasCase, out: dict[str, Any]) -> None:
    expected = case.expected
    assert out["status"] == expected["isvEnclaveQuoteStatus"]
    assert out["platform_status"] == "SWHardeningNeeded"
    assert out["qe_tcb_status"] is None
    assert out["advisory_ids"] == expected["advisoryIDs"]
    assert out["mrenclave"] == expected["mrenclave"]
    assert out["mrsigner"] == expected["mrsigner"]
    assert out["debug"] is expected["debug"]
    assert out["report_data"] == case.spec["recheck"]["report_data"]
    assert (out["fmspc"], out["pceid"]) == (None, None)
    assert out["legacy"] is True and out["attestation"] == "epid-ias"
    assert out["ias_version"] == expected["version"]
    assert out["ias_timestamp"] == expected["timestamp"] + "Z"
    assert out["nonce"] == expected.get("nonce")
    assert out["epid_sign_type"] == expected["sign_type"]


def test_cli_accepts_with_explicit_opt_ins(
    case: IasCase, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(case.cli_args("--accept-tcb", "SWHardeningNeeded", "--allow-debug"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert out["verdict"] == "ok" and "error" not in out
    _assert_cli_fields(case, out)
    assert "OK" in captured.err.splitlines()


def test_cli_refuses_debug_by_default(case: IasCase, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(case.cli_args("--accept-tcb", "SWHardeningNeeded"))
    captured = capsys.readouterr()
    assert code == 1
    out = json.loads(captured.out)
    assert out["verdict"] == "fail"
    assert out["error"]["code"] == "policy_debug"
    _assert_cli_fields(case, out)  # the identity is still reported with the refusal
    assert "FAIL: policy_debug" in captured.err


def test_cli_after_the_signing_leaf_expired(
    case: IasCase, capsys: pytest.CaptureFixture[str]
) -> None:
    args = case.cli_args("--accept-tcb", "SWHardeningNeeded", "--allow-debug")
    args[args.index("--at") + 1] = "2026-11-20T09:36:59Z"
    code = main(args)
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["error"]["code"] == "cert_expired"
    assert out["mrenclave"] is None  # nothing from an unauthenticated body
