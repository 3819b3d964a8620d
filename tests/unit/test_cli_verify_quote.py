"""``golem-graphene verify-quote``: usage errors, loud opt-ins, every policy flag, time formats.

Exit 0 ok / 1 fail / 2 usage; stderr ``OK`` or ``FAIL: <check>: ...``; ``--json`` prints one
object on stdout.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest.mock import ANY

import pytest
from cryptography.hazmat.primitives import serialization

from golem_graphene import _cli


def _load_test_pki() -> ModuleType:
    """The synthetic-PKI helper of the attestation unit tests (one module instance)."""
    if "_sgx_test_pki" in sys.modules:
        return sys.modules["_sgx_test_pki"]
    path = Path(__file__).resolve().parent / "attestation" / "_sgx_test_pki.py"
    spec = importlib.util.spec_from_file_location("_sgx_test_pki", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_sgx_test_pki"] = module
    spec.loader.exec_module(module)
    return module


tp = _load_test_pki()

PHALA_AT = "1752919277"
MRENCLAVE = "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb"
MRSIGNER = "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"


@pytest.fixture
def phala(vectors: Path) -> list[str]:
    pack = vectors / "dcap" / "phala_sgx"
    return [
        "verify-quote",
        str(pack / "quote.bin"),
        "--collateral",
        str(pack / "collateral.json"),
        "--root",
        str(pack / "root.pem"),
        "--at",
        PHALA_AT,
    ]


ACCEPT = ["--accept-tcb", "any-except-revoked"]


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    code = _cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def run_json(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> tuple[int, dict[str, Any], str]:
    code, out, err = run(capsys, [*args, "--json"])
    lines = out.splitlines()
    assert len(lines) == 1, out
    return code, json.loads(lines[0]), err


def warnings_of(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("WARNING: ")]


# --- usage errors: exit 2 -----------------------------------------------------------------------


def test_no_collateral(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    code, out, err = run(capsys, phala[:2])
    assert code == 2
    assert "exactly one of --collateral FILE or --pcs-url URL" in err
    assert out == ""


def test_collateral_and_pcs_url(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    code, _, err = run(capsys, [*phala, "--pcs-url", "https://pcs.invalid"])
    assert code == 2
    assert "exactly one of" in err


def test_no_quote_file(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    code, _, err = run(capsys, ["verify-quote", *phala[2:]])
    assert code == 2
    assert "QUOTE_FILE is required" in err


@pytest.mark.parametrize("at", ["yesterday", "2025-13-01", "", "1e400x", "inf"])
def test_bad_at(capsys: pytest.CaptureFixture[str], phala: list[str], at: str) -> None:
    code, out, err = run(capsys, [*phala[:-1], at, "--json"])
    assert code == 2
    assert err.startswith("error: --at")
    assert json.loads(out) == {"verdict": "error", "error": {"code": "usage", "message": ANY}}


@pytest.mark.parametrize("status", ["uptodate", "OK", "any", "Revoked,UpToDate"])
def test_bad_accept_tcb(capsys: pytest.CaptureFixture[str], phala: list[str], status: str) -> None:
    code, _, err = run(capsys, [*phala, "--accept-tcb", status])
    assert code == 2
    assert "--accept-tcb takes a TCB status" in err


@pytest.mark.parametrize(
    "flag",
    [
        ["--mrenclave", "zz"],
        ["--mrenclave", "00" * 31],
        ["--mrenclave", MRENCLAVE, "--mrenclave", "abc"],
        ["--mrsigner", "00" * 33],
        ["--mrsigner", "not hex"],
        ["--report-data", "0"],
        ["--report-data", "00" * 65],
        ["--report-data", "gg"],
    ],
)
def test_bad_hex(capsys: pytest.CaptureFixture[str], phala: list[str], flag: list[str]) -> None:
    code, _, err = run(capsys, [*phala, *flag])
    assert code == 2
    assert f"error: {flag[-2]}" in err  # names the flag


@pytest.mark.parametrize(
    "flag", [["--isvprodid", "x"], ["--min-isvsvn", "1.5"], ["--max-collateral-age", "soon"]]
)
def test_bad_numbers_are_argparse_errors(
    capsys: pytest.CaptureFixture[str], phala: list[str], flag: list[str]
) -> None:
    assert _cli.main([*phala, *flag]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: argument") and "invalid" in err


@pytest.mark.parametrize("age", ["inf", "1e300", "nan", "-5", "0"])
def test_a_collateral_age_that_is_no_duration_is_a_usage_error(phala: list[str], age: str) -> None:
    """``inf`` once ended in ``internal error: OverflowError`` (issue 15, item 7): the
    installed command refuses it as a usage error naming the flag, exit 2."""
    import subprocess

    cli = Path(sys.executable).parent / "golem-graphene"
    done = subprocess.run(
        [cli, *phala, "--max-collateral-age", age], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2, done.stderr
    assert "error: --max-collateral-age takes positive seconds" in done.stderr
    assert "internal error" not in done.stderr


@pytest.mark.parametrize("which", [1, 3, 5])
def test_unreadable_files(
    capsys: pytest.CaptureFixture[str], phala: list[str], tmp_path: Path, which: int
) -> None:
    args = list(phala)
    args[which] = str(tmp_path / "missing")
    code, out, err = run(capsys, [*args, "--json"])
    assert code == 2
    assert err.startswith("error: cannot read")
    assert json.loads(out)["error"]["code"] == "usage"


def test_root_file_that_is_no_certificate(
    capsys: pytest.CaptureFixture[str], phala: list[str], tmp_path: Path
) -> None:
    bad = tmp_path / "root.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    args = list(phala)
    args[5] = str(bad)
    code, _, err = run(capsys, args)
    assert code == 2
    assert "cannot read the root certificate" in err


# --- malformed evidence: exit 1 with JSON -------------------------------------------------------


def test_malformed_quote_fails_with_json(
    capsys: pytest.CaptureFixture[str], phala: list[str], tmp_path: Path
) -> None:
    bad = tmp_path / "quote.bin"
    bad.write_bytes(b"\x03\x00" + bytes(100))
    args = list(phala)
    args[1] = str(bad)
    code, out, err = run_json(capsys, args)
    assert code == 1
    assert out["verdict"] == "fail"
    assert out["error"]["code"] == "quote_format"
    assert out["mrenclave"] is None
    assert err.startswith("FAIL: quote_format: ")


def test_malformed_collateral_fails_with_json(
    capsys: pytest.CaptureFixture[str], phala: list[str], tmp_path: Path
) -> None:
    bad = tmp_path / "collateral.json"
    bad.write_text("{}")
    args = list(phala)
    args[3] = str(bad)
    code, out, _ = run_json(capsys, args)
    assert code == 1
    assert out["error"]["code"] == "collateral_format"
    assert out["mrenclave"] == MRENCLAVE  # the quote was read before the collateral failed


# --- output ------------------------------------------------------------------------------------


def test_human_output(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    code, out, err = run(capsys, [*phala, *ACCEPT])
    assert code == 0
    assert out == ""
    lines = err.splitlines()
    assert "OK" in lines
    assert "  status: ConfigurationAndSWHardeningNeeded" in lines
    assert "  advisory_ids: INTEL-SA-00289, INTEL-SA-00615" in lines
    assert f"  mrenclave: {MRENCLAVE}" in lines
    assert "  fmspc: 00A067110000" in lines
    assert "  collateral_window: 2025-06-19T10:56:11Z, 2025-07-19T10:01:18Z" in lines


def test_human_failure(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    code, out, err = run(capsys, phala)
    assert code == 1
    assert out == ""
    assert err.splitlines()[-1].startswith(
        "FAIL: policy_tcb_status: the TCB status is not accepted"
    )
    assert "found ConfigurationAndSWHardeningNeeded" in err


def test_json_field_set(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    _, ok, _ = run_json(capsys, [*phala, *ACCEPT])
    contract = {
        "verdict",
        "status",
        "platform_status",
        "qe_tcb_status",
        "advisory_ids",
        "mrenclave",
        "mrsigner",
        "isvprodid",
        "isvsvn",
        "debug",
        "report_data",
        "fmspc",
        "pceid",
    }
    assert contract <= set(ok)
    assert "error" not in ok
    _, failed, _ = run_json(capsys, phala)
    assert contract <= set(failed)
    assert set(failed["error"]) == {"code", "message"}


# --- loud opt-ins ------------------------------------------------------------------------------


def test_no_warnings_by_default(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    _, _, err = run(capsys, [*phala, "--accept-tcb", "UpToDate"])
    assert warnings_of(err) == []


@pytest.mark.parametrize(
    ("flag", "words"),
    [
        (["--allow-debug"], "debug enclaves are ACCEPTED"),
        (["--allow-missing-crl"], "missing CRLs are ACCEPTED"),
        (["--trust-simulated-root", "00" * 32], "SIMULATED root is trusted"),
        (["--accept-tcb", "SWHardeningNeeded"], "TCB statuses other than UpToDate"),
        (ACCEPT, "TCB statuses other than UpToDate are accepted: any-except-revoked"),
    ],
)
def test_each_opt_in_warns(
    capsys: pytest.CaptureFixture[str], phala: list[str], flag: list[str], words: str
) -> None:
    _, _, err = run(capsys, [*phala, *flag, "--json"])
    found = warnings_of(err)
    assert len(found) == 1, err
    assert words in found[0]


def test_all_opt_ins_warn_together(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    code, _, err = run(
        capsys,
        [
            *phala,
            *ACCEPT,
            "--allow-debug",
            "--allow-missing-crl",
            "--trust-simulated-root",
            "ab" * 32,
        ],
    )
    assert code == 0
    assert len(warnings_of(err)) == 4


# --- every policy flag, passing and failing -----------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "check"),
    [
        (["--mrenclave", MRENCLAVE], None),
        (["--mrenclave", "00" * 32, "--mrenclave", MRENCLAVE], None),  # any of
        (["--mrenclave", MRENCLAVE.upper()], None),
        (["--mrenclave", "00" * 32], "mrenclave"),
        (["--mrenclave", "00" * 32, "--mrenclave", "11" * 32], "mrenclave"),
        (["--mrsigner", MRSIGNER], None),
        (["--mrsigner", MRENCLAVE], "mrsigner"),
        (["--isvprodid", "0"], None),
        (["--isvprodid", "1"], "isvprodid"),
        (["--min-isvsvn", "0"], None),
        (["--min-isvsvn", "1"], "isvsvn"),
        (["--report-data", "48656c6c6f2c20776f726c6421"], None),  # "Hello, world!" zero-padded
        (["--report-data", "48656c6c6f2c20776f726c6421" + "00" * 51], None),
        (["--report-data", "48656c6c6f2c20776f726c64"], "report_data"),
        (["--report-data", ""], "report_data"),
        (["--max-collateral-age", "2591999"], None),  # QE identity issued 29d 23:59:59 before T
        (["--max-collateral-age", "2591998.5"], "collateral_age"),
        (["--accept-tcb", "ConfigurationAndSWHardeningNeeded"], None),
        (["--accept-tcb", "UpToDate", "--accept-tcb", "ConfigurationAndSWHardeningNeeded"], None),
        (["--accept-tcb", "SWHardeningNeeded"], "tcb_status"),
        (["--accept-tcb", "UpToDate"], "tcb_status"),
    ],
)
def test_policy_flags(
    capsys: pytest.CaptureFixture[str], phala: list[str], flags: list[str], check: str | None
) -> None:
    accept = [] if "--accept-tcb" in flags else ACCEPT
    code, out, err = run_json(capsys, [*phala, *accept, *flags])
    if check is None:
        assert (code, out["verdict"]) == (0, "ok"), out.get("error")
        assert "OK" in err.splitlines()
    else:
        assert (code, out["verdict"]) == (1, "fail")
        assert out["error"]["code"] == f"policy_{check}"
        assert f"FAIL: policy_{check}: " in err
        # A policy refusal still reports everything that verified.
        assert out["status"] == "ConfigurationAndSWHardeningNeeded"
        assert out["advisory_ids"] == ["INTEL-SA-00289", "INTEL-SA-00615"]
        assert out["mrenclave"] == MRENCLAVE
        assert out["fmspc"] == "00A067110000"


@pytest.fixture(scope="module")
def debug_pack(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A verifiable DEBUG-enclave quote, signed by the throw-away test PKI."""
    pki = tp.SgxTestPki()
    body = tp.report_body(attributes=tp.ATTR_INIT | tp.ATTR_DEBUG | tp.ATTR_MODE64BIT)
    case = tp.SgxCase(pki, quote_options={"body": body})
    folder = tmp_path_factory.mktemp("debug_pack")
    (folder / "quote.bin").write_bytes(case.quote)
    (folder / "collateral.json").write_text(case.collateral_json())
    (folder / "root.pem").write_bytes(pki.root.public_bytes(serialization.Encoding.PEM))
    return [
        "verify-quote",
        str(folder / "quote.bin"),
        "--collateral",
        str(folder / "collateral.json"),
        "--root",
        str(folder / "root.pem"),
        "--at",
        str(tp.T0_EPOCH),
    ]


def test_debug_enclave_refused_by_default(
    capsys: pytest.CaptureFixture[str], debug_pack: list[str]
) -> None:
    code, out, err = run_json(capsys, debug_pack)
    assert code == 1
    assert out["error"]["code"] == "policy_debug"
    assert out["debug"] is True
    assert out["status"] == "UpToDate"
    assert warnings_of(err) == []


def test_debug_enclave_allowed_loudly(
    capsys: pytest.CaptureFixture[str], debug_pack: list[str]
) -> None:
    code, out, err = run_json(capsys, [*debug_pack, "--allow-debug"])
    assert code == 0
    assert out["verdict"] == "ok" and out["debug"] is True
    assert len(warnings_of(err)) == 1


def test_missing_crl_needs_the_opt_in(capsys: pytest.CaptureFixture[str], vectors: Path) -> None:
    pack = vectors / "dcap" / "oasis_sgx"
    args = [
        "verify-quote",
        str(pack / "quote.bin"),
        "--collateral",
        str(pack / "collateral.json"),
        "--root",
        str(pack / "root.pem"),
        "--at",
        "1671497404",
        *ACCEPT,
    ]
    code, out, _ = run_json(capsys, args)
    assert code == 1
    assert out["error"]["code"] == "crl_missing"
    code, out, err = run_json(capsys, [*args, "--allow-missing-crl"])
    assert code == 0
    assert sorted(out["skipped_checks"]) == ["pck_crl", "root_ca_crl"]
    assert any("missing CRLs are ACCEPTED" in w for w in warnings_of(err))


def test_default_root_is_intels(capsys: pytest.CaptureFixture[str], phala: list[str]) -> None:
    # phala_sgx is under the production Intel SGX Root CA: the bundled anchor verifies it.
    without_root = phala[:4] + phala[6:]
    code, out, _ = run_json(capsys, [*without_root, *ACCEPT])
    assert code == 0
    assert out["root"] == "Intel SGX Root CA"


def test_default_root_refuses_the_test_pki(
    capsys: pytest.CaptureFixture[str], vectors: Path
) -> None:
    pack = vectors / "dcap" / "intel_qvl_sample_TEST_PKI"
    args = ["verify-quote", str(pack / "quote.bin"), "--collateral", str(pack / "collateral.json")]
    code, out, _ = run_json(capsys, [*args, "--at", "1600000000"])
    assert code == 1
    assert out["error"]["code"] == "untrusted_root"


# --- --at ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "at",
    [
        "1752919277",
        "1752919277.0",
        "2025-07-19T10:01:17Z",
        "2025-07-19T10:01:17z",
        "2025-07-19T10:01:17+00:00",
        "2025-07-19T12:01:17+02:00",
        "2025-07-19T10:01:17",  # naive means UTC
        "2025-07-19 10:01:17Z",
    ],
)
def test_at_formats_are_equivalent(
    capsys: pytest.CaptureFixture[str], phala: list[str], at: str
) -> None:
    code, out, _ = run_json(capsys, [*phala[:-1], at, *ACCEPT])
    assert code == 0
    assert out["verified_at"] == "2025-07-19T10:01:17Z"


@pytest.mark.parametrize(
    ("at", "code"),
    [
        ("2025-07-19T10:01:18Z", "ok"),  # the window's last second
        ("2025-07-19T10:01:19Z", "qe_identity_expired"),
        ("1752919279", "qe_identity_expired"),
        ("2025-06-19T10:56:10Z", "tcb_info_not_yet_valid"),
    ],
)
def test_at_moves_the_verdict(
    capsys: pytest.CaptureFixture[str], phala: list[str], at: str, code: str
) -> None:
    status, out, _ = run_json(capsys, [*phala[:-1], at, *ACCEPT])
    if code == "ok":
        assert status == 0
    else:
        assert status == 1
        assert out["error"]["code"] == code
