"""Every DCAP test pack in tests/vectors/dcap, through the library and through the CLI.

Positive packs must verify with exactly the expected status, advisories and identity fields;
negative packs must fail at the check named by their independent strict re-check
(``case.json`` ``recheck.failed``) with that exact error code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from golem_graphene import _cli
from golem_graphene.attestation import QuoteCollateral, QuoteVerifier, TrustAnchor, VerifyOptions
from golem_graphene.errors import VerificationError

DCAP_DIR = Path(__file__).resolve().parents[1] / "vectors" / "dcap"
PACKS = sorted(p.name for p in DCAP_DIR.iterdir() if (p / "case.json").is_file())


def _case(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DCAP_DIR / name / "case.json").read_text())
    return data


POSITIVE = [n for n in PACKS if _case(n)["expect"] == "ok"]
NEGATIVE = [n for n in PACKS if _case(n)["expect"] == "fail"]

# The error code each negative pack must produce: the check its strict re-check names.
EXPECTED_CODES = {
    "intel_qvl_sample_under_intel_root": "untrusted_root",
    "oasis_eppid_cert_type3": "cert_data",
    "oasis_sgx_T1670238720_pck_not_yet_valid": "cert_not_yet_valid",
    # QE identity not yet valid either, but the TCB info is checked first (Intel's order).
    "oasis_sgx_T1671194735_qe_identity_not_yet_valid": "tcb_info_not_yet_valid",
    "oasis_sgx_T1673786737_qe_identity_expired": "qe_identity_expired",
    "oasis_sgx_T1891163522_pck_expired": "cert_expired",
    "oasis_sgx_bad_tcb_info_chain": "chain",
    "oasis_sgx_tampered_qe_identity_byte22": "qe_identity_signature",
    "oasis_sgx_tampered_tcb_info_byte16": "tcb_info_signature",
    "phala_sgx_after_window_qe_identity_expired": "qe_identity_expired",
    "phala_sgx_before_window_tcb_info_not_yet_valid": "tcb_info_not_yet_valid",
    "phala_sgx_pretty_printed_tcb_info": "tcb_info_signature",
    "phala_sgx_qe_report_byte700_flipped": "qe_report_signature",
    "phala_sgx_quote_byte200_flipped": "quote_signature",
}

# What the verifier has established when each negative pack fails (reported by --json), beyond
# the identity fields read from the quote itself.
ESTABLISHED = {
    "phala_sgx_quote_byte200_flipped": {
        "fmspc": "00A067110000",
        "pceid": "0000",
        "qe_tcb_status": "UpToDate",
    },
    "phala_sgx_qe_report_byte700_flipped": {"fmspc": "00A067110000", "pceid": "0000"},
    "phala_sgx_after_window_qe_identity_expired": {"fmspc": "00A067110000", "pceid": "0000"},
    "oasis_sgx_tampered_tcb_info_byte16": {"fmspc": "00606A000000", "pceid": "0000"},
}

# Without the CRL waiver, packs without CRLs fail on the missing CRL -- unless a check of the
# PCK chain itself (which runs before the CRLs are looked at) fails first.
CODE_WITHOUT_CRL_WAIVER = {
    "oasis_eppid_cert_type3": "cert_data",
    "oasis_sgx_T1670238720_pck_not_yet_valid": "cert_not_yet_valid",
    "oasis_sgx_T1891163522_pck_expired": "cert_expired",
}


def _at(case: dict[str, Any]) -> datetime:
    return datetime.fromtimestamp(case["verify_at_epoch"], UTC)


def _verify(name: str, *, waive: frozenset[str] | None = None) -> Any:
    pack = DCAP_DIR / name
    case = _case(name)
    allowed = frozenset(case.get("missing_collateral", [])) if waive is None else waive
    verifier = QuoteVerifier(
        anchor=TrustAnchor.from_pem((pack / "root.pem").read_bytes()),
        options=VerifyOptions(allow_missing_crls=allowed),
    )
    collateral = QuoteCollateral.from_json((pack / "collateral.json").read_text())
    return verifier.verify((pack / "quote.bin").read_bytes(), collateral, _at(case))


def _identity_from_raw(quote: bytes) -> dict[str, Any]:
    """Identity fields read straight from the quote bytes (independent of the parser)."""
    return {
        "mrenclave": quote[112:144].hex(),
        "mrsigner": quote[176:208].hex(),
        "isvprodid": int.from_bytes(quote[304:306], "little"),
        "isvsvn": int.from_bytes(quote[306:308], "little"),
        "debug": bool(quote[96] & 0x02),
        "report_data": quote[368:432].hex(),
    }


def test_pack_inventory_is_complete() -> None:
    # Every pack is either a positive or mapped to its expected code, and the map cannot rot.
    assert len(PACKS) >= 17
    assert set(NEGATIVE) == set(EXPECTED_CODES)
    assert {"phala_sgx", "oasis_sgx", "intel_qvl_sample_TEST_PKI"} <= set(POSITIVE)
    for name in NEGATIVE:
        assert _case(name)["recheck"]["failed"] == EXPECTED_CODES[name], name


# --- library ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", POSITIVE)
def test_positive_pack_library(name: str) -> None:
    case = _case(name)
    expected, details = case["expected"], case["details"]
    result = _verify(name)
    assert result.status.value == expected["status"]
    assert list(result.advisory_ids) == expected["advisory_ids"]
    assert result.qe_tcb_status.value == expected["qe_tcb_status"]
    body = result.report_body
    assert body.mrenclave.hex() == expected["mrenclave"]
    assert body.mrsigner.hex() == expected["mrsigner"]
    assert body.isvprodid == expected["isvprodid"]
    assert body.isvsvn == expected["isvsvn"]
    assert result.debug is expected["debug"]
    assert body.report_data.hex() == expected["report_data"]
    assert result.fmspc.hex().upper() == expected["fmspc"]
    assert result.platform_status.value == details["platform_status"]
    assert result.pceid.hex().upper() == details["pceid"]
    assert result.pck_ca == details["pck_ca"]
    assert result.tcb_date == datetime.fromisoformat(details["tcb_date"])
    # The README's window is the intersection of every validity period (certificates, CRLs,
    # TCB info and QE identity), inclusive; the verifier reports the same intersection.
    lo, hi = details["collateral_window_epoch"]
    assert result.collateral_window == (
        datetime.fromtimestamp(lo, UTC),
        datetime.fromtimestamp(hi, UTC),
    )
    assert result.verified_at == _at(case)
    assert set(result.skipped_checks) == set(case.get("missing_collateral", []))
    assert result.simulated is False


@pytest.mark.parametrize("name", POSITIVE)
def test_positive_pack_verifies_at_both_window_ends(name: str) -> None:
    lo, hi = _case(name)["details"]["collateral_window_epoch"]
    pack = DCAP_DIR / name
    case = _case(name)
    verifier = QuoteVerifier(
        anchor=TrustAnchor.from_pem((pack / "root.pem").read_bytes()),
        options=VerifyOptions(allow_missing_crls=frozenset(case.get("missing_collateral", []))),
    )
    quote = (pack / "quote.bin").read_bytes()
    collateral = QuoteCollateral.from_json((pack / "collateral.json").read_text())
    for edge in (lo, hi):  # bounds are inclusive
        verifier.verify(quote, collateral, datetime.fromtimestamp(edge, UTC))
    for outside in (lo - 1, hi + 1):
        with pytest.raises(VerificationError):
            QuoteVerifier(anchor=verifier.anchor, options=verifier.options).verify(
                quote, collateral, datetime.fromtimestamp(outside, UTC)
            )


@pytest.mark.parametrize("name", NEGATIVE)
def test_negative_pack_library(name: str) -> None:
    with pytest.raises(VerificationError) as info:
        _verify(name)
    assert info.value.code == EXPECTED_CODES[name]
    raw = (DCAP_DIR / name / "quote.bin").read_bytes()
    established = info.value.established
    assert {k: established[k] for k in _identity_from_raw(raw)} == _identity_from_raw(raw)
    for key, value in ESTABLISHED.get(name, {}).items():
        assert established[key] == value


@pytest.mark.parametrize("name", [n for n in PACKS if _case(n).get("missing_collateral")], ids=str)
def test_missing_crls_are_refused_unless_waived(name: str) -> None:
    with pytest.raises(VerificationError) as info:
        _verify(name, waive=frozenset())
    assert info.value.code == CODE_WITHOUT_CRL_WAIVER.get(name, "crl_missing")


@pytest.mark.parametrize("waived", ["root_ca_crl", "pck_crl"])
def test_waiving_one_crl_does_not_waive_the_other(waived: str) -> None:
    with pytest.raises(VerificationError) as info:
        _verify("oasis_sgx", waive=frozenset({waived}))
    assert info.value.code == "crl_missing"
    other = ({"root_ca_crl", "pck_crl"} - {waived}).pop().replace("_", " ")
    assert other in info.value.message


# --- CLI --------------------------------------------------------------------------------------


def _cli_args(name: str, *, accept: bool = True) -> list[str]:
    pack = DCAP_DIR / name
    case = _case(name)
    args = [
        "verify-quote",
        str(pack / "quote.bin"),
        "--collateral",
        str(pack / "collateral.json"),
        "--root",
        str(pack / "root.pem"),
        "--at",
        str(case["verify_at_epoch"]),
        "--json",
    ]
    if case.get("missing_collateral"):
        args.append("--allow-missing-crl")
    if accept and case["expect"] == "ok":
        args += ["--accept-tcb", "any-except-revoked"]
    return args


def _run_cli(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> tuple[int, dict[str, Any], str]:
    code = _cli.main(args)
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert len(lines) == 1, captured.out  # exactly one JSON object on stdout
    return code, json.loads(lines[0]), captured.err


def _assert_positive_json(out: dict[str, Any], case: dict[str, Any]) -> None:
    expected, details = case["expected"], case["details"]
    assert out["verdict"] == "ok"
    assert "error" not in out
    for key, value in expected.items():
        assert out[key] == value, key
    assert out["platform_status"] == details["platform_status"]
    assert out["pceid"] == details["pceid"]
    assert out["tcb_date"] == details["tcb_date"]
    assert out["pck_ca"] == details["pck_ca"]
    assert out["collateral_window"] == details["collateral_window"]
    assert out["verified_at"] == case["verify_at"]
    assert set(out["skipped_checks"]) == set(case.get("missing_collateral", []))


@pytest.mark.parametrize("name", POSITIVE)
def test_positive_pack_cli_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_cli(capsys, _cli_args(name))
    assert code == 0, err
    assert "OK" in err.splitlines()
    _assert_positive_json(out, _case(name))


@pytest.mark.parametrize("name", NEGATIVE)
def test_negative_pack_cli_json(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run_cli(capsys, _cli_args(name))
    assert code == 1
    assert out["verdict"] == "fail"
    assert out["error"]["code"] == EXPECTED_CODES[name]
    assert out["error"]["message"]
    assert f"FAIL: {EXPECTED_CODES[name]}: " in err
    raw = (DCAP_DIR / name / "quote.bin").read_bytes()
    for key, value in _identity_from_raw(raw).items():
        assert out[key] == value, key
    for key, value in ESTABLISHED.get(name, {}).items():
        assert out[key] == value, key


@pytest.mark.parametrize("name", POSITIVE)
def test_default_policy_accepts_only_up_to_date(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    case = _case(name)
    code, out, err = _run_cli(capsys, _cli_args(name, accept=False))
    assert out["status"] == case["expected"]["status"]
    assert out["advisory_ids"] == case["expected"]["advisory_ids"]
    assert out["mrenclave"] == case["expected"]["mrenclave"]
    if case["expected"]["status"] == "UpToDate":
        assert code == 0
        assert out["verdict"] == "ok"
    else:
        # A TCB-status refusal still reports what was verified.
        assert code == 1
        assert out["verdict"] == "fail"
        assert out["error"]["code"] == "policy_tcb_status"
        assert "FAIL: policy_tcb_status: " in err
        assert out["platform_status"] == case["details"]["platform_status"]
        assert out["qe_tcb_status"] == case["expected"]["qe_tcb_status"]
        assert out["fmspc"] == case["expected"]["fmspc"]


def test_real_entry_point_subprocess(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("golem-graphene")
    assert exe.is_file(), f"console script missing: {exe}"
    proc = subprocess.run(
        [str(exe), *_cli_args("phala_sgx")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stderr.splitlines()
    _assert_positive_json(json.loads(proc.stdout), _case("phala_sgx"))
    refused = subprocess.run(
        [str(exe), *_cli_args("phala_sgx", accept=False)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["error"]["code"] == "policy_tcb_status"
