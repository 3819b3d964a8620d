"""Issue 14 item 12: one convention for every command.

Usage mistakes exit 2 with ``error: ...`` on stderr (and, with ``--json``, one JSON object on
stdout); failed checks exit 1 with ``FAIL: <check>: ...``; the same mistake reads the same in
every command.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _cli_support import Cli, err

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


@pytest.mark.parametrize(
    "argv",
    [
        ["seal", "--no-such-flag"],
        ["open", "--no-such-flag"],
        ["keygen", "--no-such-flag"],
        ["build", "task_specs/csv-stats", "--no-such-flag"],
        ["verify-quote", "--no-such-flag"],
        ["provider", "serve", "--no-such-flag"],
        ["runtime", "test", "--no-such-flag"],
        ["manifest", "check", "x", "--no-such-flag"],
        ["no-such-command"],
    ],
)
def test_unknown_flag_is_the_same_usage_error_everywhere(gg: Cli, argv: list[str]) -> None:
    result = gg(*argv)
    assert result.returncode == 2, err(result)
    text = err(result)
    assert text.startswith("error: "), text
    assert "--no-such-flag" in text or "no-such-command" in text
    assert "Traceback" not in text
    assert result.stdout == b""


@pytest.mark.parametrize(
    "argv",
    [
        ["verify-quote", "--no-such-flag", "--json"],
        ["verify-quote", "missing.bin", "--collateral", "missing.json", "--json"],
        ["verify-quote", "--json"],
        ["manifest", "check", "missing.manifest", "--json"],
        ["build", "--json", "no-such-spec"],
    ],
)
def test_json_usage_errors_are_one_json_object(gg: Cli, argv: list[str]) -> None:
    result = gg(*argv)
    assert result.returncode == 2, err(result)
    obj = json.loads(result.stdout)
    assert obj["verdict"] == "error"
    assert obj["error"]["code"] == "usage"
    assert obj["error"]["message"]
    assert err(result).startswith("error: ")


def test_existing_output_is_the_same_mistake_for_seal_open_keygen_build(
    gg: Cli, work: Path
) -> None:
    (work / "taken").write_text("precious")
    gg("keygen", "-o", "me.key")
    recipient = gg("keygen", "-y", "me.key").stdout.decode().strip()
    results = {
        "keygen": gg("keygen", "-o", "taken"),
        "seal": gg("seal", "-r", recipient, "-o", "taken", input=b"x"),
        "open": gg("open", "-i", "me.key", "-o", "taken", input=b"x"),
        "build": gg(
            "build", Path(__file__).resolve().parents[2] / "task_specs/csv-stats", "-o", "taken"
        ),
    }
    for command, result in results.items():
        assert result.returncode == 2, (command, err(result))
        assert err(result).startswith("error: "), (command, err(result))
        assert "taken" in err(result) and "--force" in err(result), (command, err(result))
    assert (work / "taken").read_text() == "precious"


def test_a_failed_check_is_fail_and_exit_1(gg: Cli) -> None:
    v = VECTORS / "dcap" / "phala_sgx"
    result = gg(
        "verify-quote",
        v / "quote.bin",
        "--collateral",
        v / "collateral.json",
        "--at",
        "2025-07-19T10:00:00Z",
        "--json",
    )
    assert result.returncode == 1, err(result)
    assert err(result).startswith("FAIL: policy_tcb_status: ")
    assert json.loads(result.stdout)["verdict"] == "fail"


def test_a_bad_recipient_is_a_usage_error_naming_it(gg: Cli) -> None:
    result = gg("seal", "-r", "age1notarecipient", input=b"x")
    assert result.returncode == 2, err(result)
    assert err(result).startswith("error: ")
    assert "age1notarecipient" in err(result)


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--at", "yesterday", "--at takes epoch seconds or an ISO 8601 time: found yesterday"),
        ("--mrenclave", "zz", "--mrenclave takes 64 hex digits"),
        ("--accept-tcb", "Bogus", "found 'Bogus'"),
        ("--max-collateral-age", "-5", "--max-collateral-age takes positive seconds"),
        ("--report-data", "zz", "--report-data takes hex digits"),
        ("--root", "me.key", "cannot read the root certificate 'me.key': not an X.509"),
    ],
)
def test_verify_quote_mistakes_read_plainly(
    gg: Cli, work: Path, flag: str, value: str, needle: str
) -> None:
    gg("keygen", "-o", "me.key")
    v = VECTORS / "dcap" / "phala_sgx"
    result = gg("verify-quote", v / "quote.bin", "--collateral", v / "collateral.json", flag, value)
    assert result.returncode == 2, err(result)
    text = err(result)
    assert text.startswith("error: ") and needle in text
    for internals in ("expected None", "ParseError", "fromhex", "('", "Traceback"):
        assert internals not in text, text
