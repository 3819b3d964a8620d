"""The PCS/PCCS client against a real HTTP server on 127.0.0.1 serving recorded collateral.

The server (``pcs_fixture_server.py``) rebuilds PCS-shaped responses from the phala_sgx pack's
``collateral.json``; what the client assembles must be that bundle byte for byte, and must verify.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcs_fixture_server import Canned, PcsFixtureServer, signed_body, url_encode_chain

from golem_graphene._cli import main
from golem_graphene.attestation._internal.collateral_store import CollateralStore
from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.attestation.pcs import PcsClient, collateral_for_quote
from golem_graphene.attestation.quote import Quote
from golem_graphene.attestation.verifier import QuoteVerifier
from golem_graphene.errors import (
    CollateralError,
    CollateralFormatError,
    CollateralSourceError,
    Error,
)
from golem_graphene.limits import MAX_PCS_RESPONSE_BYTES

FMSPC = "00A067110000"
PACK = "dcap/phala_sgx"


@pytest.fixture(scope="module")
def pack(vectors: Path) -> Path:
    return vectors / PACK


@pytest.fixture(scope="module")
def recorded(pack: Path) -> dict[str, str]:
    data: dict[str, str] = json.loads((pack / "collateral.json").read_text())
    return data


@pytest.fixture(scope="module")
def expected_bundle(pack: Path) -> QuoteCollateral:
    return QuoteCollateral.from_json((pack / "collateral.json").read_bytes())


@pytest.fixture(scope="module")
def quote(pack: Path) -> Quote:
    return Quote.from_bytes((pack / "quote.bin").read_bytes())


@pytest.fixture(scope="module")
def at(pack: Path) -> datetime:
    case = json.loads((pack / "case.json").read_text())
    return datetime.fromtimestamp(case["verify_at_epoch"], UTC)


@pytest.fixture(scope="module")
def server(recorded: dict[str, str]) -> Iterator[PcsFixtureServer]:
    with PcsFixtureServer(recorded, FMSPC) as srv:
        yield srv


@pytest.fixture
def srv(server: PcsFixtureServer) -> PcsFixtureServer:
    """The shared server, back to well-formed answers, with no requests recorded."""
    server.reset()
    CollateralStore.clear_memory()
    return server


def _tcb_body(recorded: dict[str, str]) -> bytes:
    return signed_body("tcbInfo", recorded["tcb_info"], recorded["tcb_info_signature"])


def _rename_entries(directory: Path, *, hide: bool) -> None:
    for entry in directory.iterdir():
        name = "moved-" + entry.name if hide else entry.name.removeprefix("moved-")
        entry.rename(directory / name)


def _entries(directory: Path, prefix: str) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(prefix)]


async def _fetch(
    srv: PcsFixtureServer, cache: Path, at: datetime, quote: Quote, **kwargs: Any
) -> QuoteCollateral:
    async with PcsClient(srv.url, cache_dir=cache, **kwargs) as client:
        return await client.collateral_for_quote(quote, at=at)


# --- the happy path -------------------------------------------------------------------------


async def test_fetched_bundle_equals_the_recording_and_verifies(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    expected_bundle: QuoteCollateral,
) -> None:
    bundle = await _fetch(srv, tmp_path, at, quote)
    assert bundle == expected_bundle  # raw signed texts, chains and DER CRLs byte for byte
    assert sorted(srv.requests) == [
        "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
        "/sgx/certification/v4/qe/identity",
        "/sgx/certification/v4/rootcacrl",
        f"/sgx/certification/v4/tcb?fmspc={FMSPC}",
    ]
    result = QuoteVerifier().verify(quote, bundle, at)
    assert result.status == "ConfigurationAndSWHardeningNeeded"
    assert result.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert result.skipped_checks == ()


def test_sync_wrapper_and_base_url_with_api_path(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    expected_bundle: QuoteCollateral,
) -> None:
    url = srv.url + "/sgx/certification/v4/"
    assert collateral_for_quote(quote, url, cache_dir=tmp_path, at=at) == expected_bundle
    assert all(r.startswith("/sgx/certification/v4/") for r in srv.requests)
    assert not any("/v4/sgx/" in r for r in srv.requests)


@pytest.mark.parametrize("root_format", ["hex", "der", "pem"])
async def test_every_crl_encoding_gives_the_same_bundle(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    expected_bundle: QuoteCollateral,
    root_format: str,
) -> None:
    srv.root_crl_format = root_format
    srv.ignore_crl_encoding = root_format == "pem"  # a service that always answers PEM
    assert await _fetch(srv, tmp_path, at, quote) == expected_bundle


async def test_legacy_tcb_header_name_is_accepted(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    recorded: dict[str, str],
    expected_bundle: QuoteCollateral,
) -> None:
    chain = url_encode_chain(recorded["tcb_info_issuer_chain"])
    srv.overrides["tcb"] = Canned(
        body=_tcb_body(recorded), headers={"SGX-TCB-Info-Issuer-Chain": chain}
    )
    assert await _fetch(srv, tmp_path, at, quote) == expected_bundle


async def test_pretty_printed_response_keeps_the_exact_signed_text(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    recorded: dict[str, str],
    expected_bundle: QuoteCollateral,
) -> None:
    body = (
        '{\n  "signature": "' + recorded["tcb_info_signature"] + '",\n'
        '  "tcbInfo":   ' + recorded["tcb_info"] + "\n}\n"
    ).encode()
    chain = url_encode_chain(recorded["tcb_info_issuer_chain"])
    srv.overrides["tcb"] = Canned(body=body, headers={"TCB-Info-Issuer-Chain": chain})
    bundle = await _fetch(srv, tmp_path, at, quote)
    assert bundle == expected_bundle
    assert QuoteVerifier().verify(quote, bundle, at).status == "ConfigurationAndSWHardeningNeeded"


async def test_root_ca_crl_override_url(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    expected_bundle: QuoteCollateral,
) -> None:
    srv.overrides["rootcacrl"] = Canned(status=404)
    with pytest.raises(CollateralSourceError, match="root_ca_crl_url") as info:
        await _fetch(srv, tmp_path / "a", at, quote)
    assert "root CA CRL: GET http://127.0.0.1:" in str(info.value)
    assert "answered HTTP 404" in str(info.value)
    override = srv.url + "/IntelSGXRootCA.der"
    bundle = await _fetch(srv, tmp_path / "b", at, quote, root_ca_crl_url=override)
    assert bundle == expected_bundle
    assert srv.counts["root_der"] == 1


async def test_platform_ca_quote_asks_for_the_platform_crl(
    srv: PcsFixtureServer, tmp_path: Path, at: datetime, vectors: Path
) -> None:
    oasis = Quote.from_bytes((vectors / "dcap/oasis_sgx/quote.bin").read_bytes())
    with pytest.raises(CollateralSourceError) as info:
        await _fetch(srv, tmp_path, at, oasis)
    assert "/sgx/certification/v4/pckcrl?ca=platform&encoding=der" in srv.requests
    # The oasis FMSPC is unknown to this server; errors are reported TCB info first.
    assert "no TCB info for FMSPC 00606A000000" in str(info.value)


# --- the cache ------------------------------------------------------------------------------


async def test_cache_hits_make_no_requests(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    expected_bundle: QuoteCollateral,
) -> None:
    await _fetch(srv, tmp_path, at, quote)
    assert srv.total_requests() == 4
    # Same process: the memory layer answers even with the files gone.
    _rename_entries(tmp_path, hide=True)
    assert await _fetch(srv, tmp_path, at, quote) == expected_bundle
    assert srv.total_requests() == 4
    # A new process (empty memory) reads the disk.
    _rename_entries(tmp_path, hide=False)
    CollateralStore.clear_memory()
    assert await _fetch(srv, tmp_path, at, quote) == expected_bundle
    assert srv.total_requests() == 4


async def test_documents_past_next_update_are_refetched(
    srv: PcsFixtureServer, tmp_path: Path, at: datetime, quote: Quote
) -> None:
    await _fetch(srv, tmp_path, at, quote)
    # The QE identity's nextUpdate is 1 s after T: still fresh at exactly nextUpdate.
    await _fetch(srv, tmp_path, at + timedelta(seconds=1), quote)
    assert srv.total_requests() == 4
    CollateralStore.clear_memory()  # the disk entries must be judged the same way
    await _fetch(srv, tmp_path, at + timedelta(days=1), quote)
    # TCB info, QE identity and PCK CRL expired; the root CA CRL runs until 2026.
    assert dict(srv.counts) == {"tcb": 2, "qe_identity": 2, "pckcrl": 2, "rootcacrl": 1}


async def test_corrupt_cache_entries_are_removed_and_refetched(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    quote: Quote,
    expected_bundle: QuoteCollateral,
) -> None:
    await _fetch(srv, tmp_path, at, quote)
    tcb_entry = tmp_path / f"tcb_info-{FMSPC}.json"
    qe_entry = tmp_path / "qe_identity.json"
    tcb_entry.write_text("{ truncated")
    entry = json.loads(qe_entry.read_text())
    entry["body"] = entry["body"][:40]  # still base64, but the document is cut short
    qe_entry.write_text(json.dumps(entry))
    CollateralStore.clear_memory()
    with structlog.testing.capture_logs() as logs:
        assert await _fetch(srv, tmp_path, at, quote) == expected_bundle
    removed = sorted(
        e["path"] for e in logs if e["event"] == "collateral_cache.corrupt_entry_removed"
    )
    assert removed == [str(qe_entry), str(tcb_entry)]
    assert all(e["log_level"] == "warning" for e in logs if "corrupt" in e["event"])
    assert dict(srv.counts) == {"tcb": 2, "qe_identity": 2, "pckcrl": 1, "rootcacrl": 1}
    assert json.loads(tcb_entry.read_text())["name"] == f"tcb_info-{FMSPC}"  # rewritten


# --- what the service can get wrong ---------------------------------------------------------


async def _error_for(srv: PcsFixtureServer, tmp_path: Path, at: datetime, fmspc: str) -> Error:
    async with PcsClient(srv.url, cache_dir=tmp_path, timeout=2.0) as client:
        with pytest.raises(Error) as info:
            await client.collateral(bytes.fromhex(fmspc), "processor", at=at)
    assert isinstance(info.value, CollateralSourceError | CollateralFormatError)
    return info.value


async def test_unknown_fmspc_is_a_404_that_says_so(
    srv: PcsFixtureServer, tmp_path: Path, at: datetime
) -> None:
    error = await _error_for(srv, tmp_path, at, "00A067110001")
    assert isinstance(error, CollateralSourceError)
    message = str(error)
    assert f"GET {srv.url}/sgx/certification/v4/tcb?fmspc=00A067110001 answered HTTP 404" in message
    assert "no TCB info for FMSPC 00A067110001" in message
    assert "Request-ID fixture-0001" in message
    assert not _entries(tmp_path, "tcb_info-")  # nothing cached for it


@pytest.mark.parametrize(
    ("route", "canned", "kind", "needle"),
    [
        ("qe_identity", Canned(status=500), CollateralSourceError, "QE identity: GET .* HTTP 500"),
        (
            "tcb",
            Canned(status=429, headers={"Retry-After": "30"}),
            CollateralSourceError,
            "HTTP 429 Too Many Requests: rate limited.*Retry-After 30",
        ),
        ("pckcrl", Canned(status=503), CollateralSourceError, r"PCK CRL \(ca=processor\).*503"),
        (
            "tcb",
            Canned(body=b"x" * (MAX_PCS_RESPONSE_BYTES + 1)),
            CollateralSourceError,
            "too large \\(Content-Length 1048577\\)",
        ),
        (
            "rootcacrl",
            Canned(body=b"0" * (MAX_PCS_RESPONSE_BYTES + 2), chunked=True),
            CollateralSourceError,
            "too large \\(more bytes were sent\\)",
        ),
        ("qe_identity", Canned(body=b"{}"), CollateralFormatError, "lacks the member"),
        (
            "rootcacrl",
            Canned(body=b""),
            CollateralFormatError,
            "root CA CRL from .* not a readable",
        ),
        ("pckcrl", Canned(body=b"<html>oops</html>"), CollateralFormatError, "not a readable CRL"),
    ],
)
async def test_server_faults_are_typed_and_name_the_url(
    srv: PcsFixtureServer,
    tmp_path: Path,
    at: datetime,
    route: str,
    canned: Canned,
    kind: type[Error],
    needle: str,
) -> None:
    srv.overrides[route] = canned
    error = await _error_for(srv, tmp_path, at, FMSPC)
    assert isinstance(error, kind)
    assert error.describe() == str(error)
    import re

    assert re.search(needle, str(error)), str(error)
    assert "127.0.0.1" in str(error)


async def test_header_and_body_faults(
    srv: PcsFixtureServer, tmp_path: Path, at: datetime, recorded: dict[str, str]
) -> None:
    body = _tcb_body(recorded)
    chain = url_encode_chain(recorded["tcb_info_issuer_chain"])
    cases = [
        (Canned(body=body), "lacks the TCB-Info-Issuer-Chain header"),
        (Canned(body=body[:-25], headers={"TCB-Info-Issuer-Chain": chain}), "not valid JSON"),
        (
            Canned(body=body, headers={"TCB-Info-Issuer-Chain": chain[:100] + "%G1" + chain[100:]}),
            "not valid URL-encoding: '%' without two hex digits at offset 100",
        ),
        (
            Canned(body=body, headers={"TCB-Info-Issuer-Chain": "%E2%28%A1"}),
            "decodes to bytes that are not UTF-8",
        ),
    ]
    for canned, needle in cases:
        srv.overrides["tcb"] = canned
        error = await _error_for(srv, tmp_path, at, FMSPC)
        assert isinstance(error, CollateralFormatError)
        assert needle in str(error), str(error)


async def test_wrong_platform_answer_is_refused_and_not_cached(
    srv: PcsFixtureServer, tmp_path: Path, at: datetime
) -> None:
    srv.fmspc = "00906ED50000"  # the server answers this FMSPC with the phala TCB info
    try:
        error = await _error_for(srv, tmp_path, at, "00906ED50000")
    finally:
        srv.fmspc = FMSPC
    assert isinstance(error, CollateralSourceError)
    assert "another platform" in str(error) and "FMSPC 00A067110000" in str(error)
    assert not (tmp_path / "tcb_info-00906ED50000.json").exists()


async def test_timeouts_and_refused_connections(
    srv: PcsFixtureServer, tmp_path: Path, at: datetime, quote: Quote
) -> None:
    srv.overrides["qe_identity"] = Canned(delay=1.0)
    with pytest.raises(CollateralSourceError, match=r"QE identity: GET .* timed out after 0.2 s"):
        await _fetch(srv, tmp_path, at, quote, timeout=0.2)
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    async with PcsClient(f"http://127.0.0.1:{closed_port}", cache_dir=tmp_path) as client:
        with pytest.raises(CollateralSourceError, match="failed: ClientConnectorError"):
            await client.collateral(bytes.fromhex("00A067110002"), "processor", at=at)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    route=st.sampled_from(["tcb", "qe_identity", "pckcrl", "rootcacrl"]),
    status=st.sampled_from([200, 200, 200, 201, 204, 302, 400, 404, 500]),
    body=st.one_of(
        st.binary(max_size=300),
        st.sampled_from(
            [b"{}", b'{"tcbInfo":{},"signature":""}', b"30", b"-----BEGIN X509 CRL-----"]
        ),
    ),
    header=st.one_of(
        st.none(),
        st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x7f"),
            max_size=120,
        ),
    ),
)
def test_random_server_answers_only_raise_our_errors(
    server: PcsFixtureServer,
    quote: Quote,
    at: datetime,
    route: str,
    status: int,
    body: bytes,
    header: str | None,
) -> None:
    server.reset()
    names = {
        "tcb": "TCB-Info-Issuer-Chain",
        "qe_identity": "SGX-Enclave-Identity-Issuer-Chain",
        "pckcrl": "SGX-PCK-CRL-Issuer-Chain",
        "rootcacrl": "X-Ignored",
    }
    headers = {names[route]: header} if header is not None else {}
    if status == 302:
        headers["Location"] = "/nowhere"
    server.overrides[route] = Canned(status=status, body=body, headers=headers)
    with (
        tempfile.TemporaryDirectory() as cache,
        pytest.raises((CollateralSourceError, CollateralError)),
    ):
        collateral_for_quote(quote, server.url, cache_dir=Path(cache), at=at, timeout=5.0)


# --- the command line -----------------------------------------------------------------------


def _cli(args: list[str], env_home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(env_home), "HOME": str(env_home)}
    return subprocess.run(
        [sys.executable, "-m", "golem_graphene", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_cli_verifies_with_pcs_url_then_from_the_cache(
    srv: PcsFixtureServer, tmp_path: Path, pack: Path, at: datetime
) -> None:
    args = [
        "verify-quote",
        str(pack / "quote.bin"),
        "--pcs-url",
        srv.url,
        "--cache-dir",
        str(tmp_path / "cache"),
        "--at",
        str(int(at.timestamp())),
        "--accept-tcb",
        "ConfigurationAndSWHardeningNeeded",
        "--json",
    ]
    first = _cli(args, tmp_path)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout)
    assert out["verdict"] == "ok"
    assert out["status"] == "ConfigurationAndSWHardeningNeeded"
    assert out["fmspc"] == FMSPC
    assert srv.total_requests() == 4
    second = _cli(args, tmp_path)  # a new process: only the disk cache can answer
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == out
    assert srv.total_requests() == 4
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "pck_crl-processor.json",
        "qe_identity.json",
        "root_ca_crl.json",
        f"tcb_info-{FMSPC}.json",
    ]


def test_cli_reports_a_pcs_failure(
    srv: PcsFixtureServer, tmp_path: Path, pack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv.overrides["tcb"] = Canned(status=404)
    code = main(
        [
            "verify-quote",
            str(pack / "quote.bin"),
            "--pcs-url",
            srv.url,
            "--cache-dir",
            str(tmp_path),
            "--at",
            "2025-07-19T10:01:17Z",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "FAIL: collateral_source:" in err
    assert "no TCB info for FMSPC 00A067110000" in err
