"""PCS/PCCS response parsing, URL handling and the collateral cache, without a network.

The client against a real HTTP server on loopback: ``tests/integration/test_pcs_server.py``.
"""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import structlog
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_graphene.attestation import pcs
from golem_graphene.attestation._internal import pki
from golem_graphene.attestation._internal.collateral_store import (
    CachedResponse,
    CollateralStore,
    default_cache_dir,
)
from golem_graphene.attestation._internal.pcs_documents import (
    decode_issuer_chain,
    json_members,
    parse_crl_response,
    parse_qe_identity_response,
    parse_tcb_info_response,
)
from golem_graphene.attestation.pcs import INTEL_ROOT_CA_CRL_URL, PcsClient, collateral_for_quote
from golem_graphene.attestation.quote import Quote
from golem_graphene.errors import (
    CollateralError,
    CollateralFormatError,
    CollateralSourceError,
    UsageError,
)

FMSPC = "00A067110000"
TCB_HEADER = "TCB-Info-Issuer-Chain"
SOURCE = "http://pcs.test/sgx/certification/v4/tcb"


@pytest.fixture(scope="module")
def phala(vectors: Path) -> dict[str, str]:
    """The recorded collateral of the phala_sgx pack (raw signed texts as strings)."""
    data: dict[str, str] = json.loads((vectors / "dcap/phala_sgx/collateral.json").read_text())
    return data


@pytest.fixture(autouse=True)
def _fresh_memory() -> None:
    CollateralStore.clear_memory()


def _signature_verifies(collateral: dict[str, str], raw: str) -> bool:
    signer = pki.load_pem_chain(collateral["tcb_info_issuer_chain"], "chain", 2)[0]
    return pki.verify_raw_ecdsa(
        signer.public_key(), bytes.fromhex(collateral["tcb_info_signature"]), raw.encode()
    )


def _tcb(body: str | bytes, collateral: dict[str, str]) -> Any:
    data = body.encode() if isinstance(body, str) else body
    header = quote(collateral["tcb_info_issuer_chain"], safe="")
    return parse_tcb_info_response(data, header, TCB_HEADER, SOURCE, fmspc=FMSPC)


# --- the signed text is sliced out, never re-serialised -------------------------------------


def test_compact_body_yields_the_recorded_signed_text(phala: dict[str, str]) -> None:
    body = '{"tcbInfo":' + phala["tcb_info"] + ',"signature":"' + phala["tcb_info_signature"] + '"}'
    doc = _tcb(body, phala)
    assert doc.raw == phala["tcb_info"]
    assert doc.signature.hex() == phala["tcb_info_signature"]
    assert doc.issuer_chain == phala["tcb_info_issuer_chain"]
    assert doc.next_update == datetime(2025, 7, 19, 10, 56, 11, tzinfo=UTC)


def test_pretty_printed_body_still_yields_the_exact_inner_text(phala: dict[str, str]) -> None:
    body = (
        '\n{\r\n\t"signature" :   "'
        + phala["tcb_info_signature"]
        + '"  ,\n    "tcbInfo"\t:\n        '
        + phala["tcb_info"]
        + "\n\n}\n  "
    )
    doc = _tcb(body, phala)
    assert doc.raw == phala["tcb_info"]
    assert _signature_verifies(phala, doc.raw)


def test_pretty_printed_inner_object_is_kept_as_served_not_recompacted(
    phala: dict[str, str],
) -> None:
    inner = json.dumps(json.loads(phala["tcb_info"]), indent=3)
    body = '{ "tcbInfo": ' + inner + ', "signature": "' + phala["tcb_info_signature"] + '" }'
    doc = _tcb(body, phala)
    assert doc.raw == inner
    assert doc.raw != phala["tcb_info"]
    # The text as served does not verify; the verifier must see that, not a "repaired" copy.
    assert not _signature_verifies(phala, doc.raw)


def test_json_members_positions_cover_exact_value_text() -> None:
    text = '{ "a" : {"x": "\\u00e9\\n", "y":[1, 2 ,3]} ,"b":"s\\"q" , "c" : null }'
    members = json_members(text, "doc")
    assert text[slice(*members["a"])] == '{"x": "\\u00e9\\n", "y":[1, 2 ,3]}'
    assert text[slice(*members["b"])] == '"s\\"q"'
    assert text[slice(*members["c"])] == "null"
    assert json_members("{}", "doc") == {}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"a":1,"a":2}', "the member 'a' twice"),
        ('{"a":1} x', "trailing data"),
        ('{"a":{"b":[1,2', "not valid JSON"),
        ('{"a":NaN}', "not valid JSON"),
        ("[1]", "not a JSON object"),
        ('{"a" 1}', "expected ':'"),
        ('{"a":1 "b":2}', "expected ',' or '}'"),
        ("{a:1}", "expected a member name"),
        ("", "not a JSON object"),
    ],
)
def test_json_members_refuses_malformed_objects(text: str, needle: str) -> None:
    with pytest.raises(CollateralFormatError, match=needle):
        json_members(text, "doc")


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
            max_leaves=8,
        ),
        max_size=5,
    ),
    st.lists(st.sampled_from(["", " ", "\n", "\t", "\r\n", "  "]), min_size=4, max_size=4),
    st.integers(min_value=0, max_value=4),
)
def test_json_members_slices_match_what_was_written(
    obj: dict[str, Any], ws: list[str], indent: int
) -> None:
    pieces = {
        k: json.dumps(v, indent=indent or None, ensure_ascii=bool(indent % 2))
        for k, v in obj.items()
    }
    text = ws[0] + "{" + ws[1]
    text += ("," + ws[2]).join(f"{json.dumps(k)}{ws[3]}:{ws[1]}{v}" for k, v in pieces.items())
    text += ws[2] + "}" + ws[3]
    members = json_members(text, "doc")
    assert set(members) == set(obj)
    for key, (start, end) in members.items():
        assert text[start:end] == pieces[key]
        assert json.loads(text[start:end]) == obj[key]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda b: b[:-40], "not valid JSON"),
        (lambda b: b"\xff" + b, "not UTF-8"),
        (lambda b: b.replace(b'"signature"', b'"sig"'), "unknown members"),
        (lambda b: b.replace(b',"signature":', b',"tcbInfo2":'), "unknown members"),
        (lambda b: b[: b.index(b',"signature"')] + b"}", "lacks the member 'signature'"),
        (
            lambda b: b.replace(b'"tcbInfo":{', b'"tcbInfo":[{', 1).replace(
                b',"signature"', b'],"signature"', 1
            ),
            "must be a JSON object",
        ),
        (lambda b: b[:-4] + b'"}', "64-byte"),
        (lambda b: b[:-3] + b'zz"}', "not hex"),
        (lambda b: b.replace(b'"fmspc":"00A067110000"', b'"fmspc":"00A06711"'), "fmspc"),
    ],
)
def test_malformed_tcb_info_bodies_are_format_errors(
    phala: dict[str, str], mutate: Any, needle: str
) -> None:
    body = (
        '{"tcbInfo":' + phala["tcb_info"] + ',"signature":"' + phala["tcb_info_signature"] + '"}'
    ).encode()
    with pytest.raises(CollateralFormatError, match=needle) as info:
        _tcb(mutate(body), phala)
    assert SOURCE in str(info.value) or "TCB info" in str(info.value)


def test_tcb_info_for_another_fmspc_is_a_source_error(phala: dict[str, str]) -> None:
    body = (
        '{"tcbInfo":' + phala["tcb_info"] + ',"signature":"' + phala["tcb_info_signature"] + '"}'
    ).encode()
    header = quote(phala["tcb_info_issuer_chain"], safe="")
    with pytest.raises(CollateralSourceError, match="another platform") as info:
        parse_tcb_info_response(body, header, TCB_HEADER, SOURCE, fmspc="00906ED50000")
    assert info.value.found == "FMSPC 00A067110000"


def test_qe_identity_must_be_the_sgx_qe(phala: dict[str, str]) -> None:
    raw = phala["qe_identity"]
    header = quote(phala["qe_identity_issuer_chain"], safe="")
    sig = phala["qe_identity_signature"]
    body = '{"enclaveIdentity":' + raw + ',"signature":"' + sig + '"}'
    doc = parse_qe_identity_response(body.encode(), header, "H", SOURCE)
    assert doc.raw == raw
    other = body.replace('"id":"QE"', '"id":"TD_QE"', 1)
    with pytest.raises(CollateralSourceError, match="another enclave"):
        parse_qe_identity_response(other.encode(), header, "H", SOURCE)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_random_bodies_only_raise_our_format_errors(body: bytes) -> None:
    with pytest.raises((CollateralError, CollateralSourceError)):
        parse_tcb_info_response(body, None, TCB_HEADER, SOURCE, fmspc=FMSPC)
    with pytest.raises(CollateralFormatError):
        parse_crl_response(body, None, None, SOURCE, "root CA CRL")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_real_bodies_only_raise_our_errors(
    phala: dict[str, str], data: st.DataObject
) -> None:
    body = bytearray(
        (
            '{"tcbInfo":'
            + phala["tcb_info"]
            + ',"signature":"'
            + phala["tcb_info_signature"]
            + '"}'
        ).encode()
    )
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(body) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            body[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del body[pos:]
            if not body:
                break
        else:
            body[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
    header = quote(phala["tcb_info_issuer_chain"], safe="")
    try:
        doc = parse_tcb_info_response(bytes(body), header, TCB_HEADER, SOURCE, fmspc=FMSPC)
    except (CollateralError, CollateralSourceError):
        # CollateralError: malformed (CollateralFormatError) or, e.g., an unknown TCB status
        # string in a mutated level (TcbStatusUnknownError).
        return
    # A mutation that still parses (e.g. in a string or whitespace) must come back verbatim.
    assert doc.raw in bytes(body).decode()


# --- issuer-chain headers -------------------------------------------------------------------


def test_issuer_chain_round_trips_exactly(phala: dict[str, str]) -> None:
    chain = phala["pck_crl_issuer_chain"]
    assert decode_issuer_chain(quote(chain, safe=""), "H", SOURCE) == chain
    # '+' and '/' left unescaped (as some encoders do) mean themselves, not a space.
    assert decode_issuer_chain(quote(chain, safe="/+="), "H", SOURCE) == chain


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (None, "lacks the H header"),
        ("-----BEGIN%20CERTIFICATE%2", "'%' without two hex digits at offset 24"),
        ("%ZZ-----BEGIN", "'%' without two hex digits at offset 0"),
        ("caf\u00e9", "non-ASCII or control"),
        ("a\tb", "non-ASCII or control"),
        ("%FF%FE", "not UTF-8"),
        ("hello%20world", "holds no PEM certificate"),
        ("-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----%0A", "not a readable"),
    ],
)
def test_bad_issuer_chain_headers_are_format_errors(value: str | None, needle: str) -> None:
    with pytest.raises(CollateralFormatError, match=needle):
        decode_issuer_chain(value, "H", SOURCE)


# --- CRLs: DER, PEM or hex text, always DER out ---------------------------------------------


def _pem(der: bytes) -> bytes:
    import base64

    b64 = base64.b64encode(der).decode()
    body = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return f"-----BEGIN X509 CRL-----\n{body}\n-----END X509 CRL-----\n".encode()


@pytest.mark.parametrize("encoding", ["der", "pem", "hex", "hex-newline", "pem-crlf"])
def test_crl_encodings_all_give_the_same_der(phala: dict[str, str], encoding: str) -> None:
    der = bytes.fromhex(phala["pck_crl"])
    body = {
        "der": der,
        "pem": _pem(der),
        "hex": der.hex().encode(),
        "hex-newline": der.hex().upper().encode() + b"\n",
        "pem-crlf": _pem(der).replace(b"\n", b"\r\n"),
    }[encoding]
    header = quote(phala["pck_crl_issuer_chain"], safe="")
    doc = parse_crl_response(body, header, "SGX-PCK-CRL-Issuer-Chain", SOURCE, "PCK CRL")
    assert doc.der == der
    assert doc.issuer_chain == phala["pck_crl_issuer_chain"]
    assert doc.next_update == x509.load_der_x509_crl(der).next_update_utc


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"", "not a readable CRL"),
        (b"abc", "odd length"),
        (b"-----BEGIN X509 CRL-----\n!!!!\n-----END X509 CRL-----", "not one X509 CRL block"),
        (b"-----BEGIN X509 CRL-----\nAAA\n-----END X509 CRL-----", "bad base64"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "not one X509 CRL"),
        (b"\x30\x03\x02\x01\x00", "not a readable CRL"),
    ],
)
def test_bad_crls_are_format_errors(body: bytes, needle: str) -> None:
    with pytest.raises(CollateralFormatError, match=needle):
        parse_crl_response(body, None, None, SOURCE, "root CA CRL")


def test_crl_with_trailing_bytes_is_refused(phala: dict[str, str]) -> None:
    der = bytes.fromhex(phala["root_ca_crl"])
    with pytest.raises(CollateralFormatError):
        parse_crl_response(der + b"\x00", None, None, SOURCE, "root CA CRL")


def test_pck_crl_needs_its_issuer_chain_header(phala: dict[str, str]) -> None:
    der = bytes.fromhex(phala["pck_crl"])
    with pytest.raises(CollateralFormatError, match="lacks the SGX-PCK-CRL-Issuer-Chain header"):
        parse_crl_response(der, None, "SGX-PCK-CRL-Issuer-Chain", SOURCE, "PCK CRL")


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "api"),
    [
        ("https://api.trustedservices.intel.com", "https://api.trustedservices.intel.com"),
        ("https://pccs.example:8081/", "https://pccs.example:8081"),
        ("https://pccs.example:8081/sgx/certification/v4", "https://pccs.example:8081"),
        ("https://pccs.example:8081/sgx/certification/v4/", "https://pccs.example:8081"),
        ("http://127.0.0.1:9/prefix", "http://127.0.0.1:9/prefix"),
    ],
)
def test_api_url_appends_the_v4_path_once(base: str, api: str) -> None:
    assert PcsClient(base, cache_dir=Path("unused")).api_url == api + "/sgx/certification/v4"


@pytest.mark.parametrize(
    "base", ["ftp://pcs.example", "pcs.example", "https://", "https://h/?x=1", "http://h:99999"]
)
def test_malformed_service_urls_are_usage_errors(base: str) -> None:
    with pytest.raises(UsageError):
        PcsClient(base)


def test_root_ca_crl_location() -> None:
    intel = PcsClient("https://api.trustedservices.intel.com/", cache_dir=Path("unused"))
    assert intel.root_ca_crl_url == INTEL_ROOT_CA_CRL_URL
    pccs = PcsClient("https://pccs.example:8081", cache_dir=Path("unused"))
    assert pccs.root_ca_crl_url == "https://pccs.example:8081/sgx/certification/v4/rootcacrl"
    override = PcsClient("https://pccs.example", root_ca_crl_url="https://crl.example/r.der")
    assert override.root_ca_crl_url == "https://crl.example/r.der"
    with pytest.raises(UsageError, match="root_ca_crl_url"):
        PcsClient("https://pccs.example", root_ca_crl_url="file:///etc/passwd")


def test_credentials_never_appear_in_display_urls() -> None:
    shown = pcs._display("https://user:secret@pccs.example:8081/sgx/certification/v4/tcb?fmspc=1")
    assert "secret" not in shown and "user" not in shown
    assert shown == "https://pccs.example:8081/sgx/certification/v4/tcb?fmspc=1"


# --- client usage errors --------------------------------------------------------------------


async def test_client_must_be_entered_and_cannot_be_reopened(tmp_path: Path) -> None:
    client = PcsClient("http://127.0.0.1:9", cache_dir=tmp_path)
    at = datetime.now(UTC)
    with pytest.raises(RuntimeError, match="async with"):
        await client.collateral(bytes(6), "processor", at=at)
    async with client:
        with pytest.raises(UsageError, match="6 bytes"):
            await client.collateral(bytes(5), "processor", at=at)
        with pytest.raises(UsageError, match="processor"):
            await client.collateral(bytes(6), "other", at=at)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="timezone"):
            await client.collateral(bytes(6), "processor", at=datetime(2025, 1, 1))
    with pytest.raises(RuntimeError, match="reopened"):
        async with client:
            pass


async def test_sync_wrapper_refuses_a_running_loop(vectors: Path) -> None:
    quote_ = Quote.from_bytes((vectors / "dcap/phala_sgx/quote.bin").read_bytes())
    with pytest.raises(UsageError, match="own event loop"):
        collateral_for_quote(quote_, "http://127.0.0.1:9", cache_dir=Path("unused"))


# --- the cache ------------------------------------------------------------------------------


def test_default_cache_dir_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "golem-graphene" / "collateral"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "golem-graphene" / "collateral"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "golem-graphene" / "collateral"


def test_store_writes_atomically_with_private_permissions(tmp_path: Path) -> None:
    store = CollateralStore(tmp_path / "a" / "cache")
    response = CachedResponse(url="http://x/tcb", body=b"\x00\xffbody", issuer_chain_header="h%20")
    store.write("tcb_info-00A067110000", response, datetime.now(UTC))
    assert store.read("tcb_info-00A067110000") == response
    assert sorted(os.listdir(store.directory)) == ["tcb_info-00A067110000.json"]  # no temp files
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path("tcb_info-00A067110000").stat().st_mode) == 0o600
    assert store.read("qe_identity") is None


def test_store_tightens_a_loose_directory(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    CollateralStore(tmp_path).write("x", CachedResponse("u", b"", None), datetime.now(UTC))
    assert stat.S_IMODE(tmp_path.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        json.dumps({"format": "other", "name": "e", "url": "u", "body": ""}).encode(),
        json.dumps(
            {"format": "golem-graphene/pcs-response/1", "name": "f", "url": "u", "body": ""}
        ).encode(),
        json.dumps(
            {"format": "golem-graphene/pcs-response/1", "name": "e", "url": "u", "body": "%%"}
        ).encode(),
        json.dumps(
            {"format": "golem-graphene/pcs-response/1", "name": "e", "url": 1, "body": ""}
        ).encode(),
        json.dumps(
            {
                "format": "golem-graphene/pcs-response/1",
                "name": "e",
                "url": "u",
                "body": "",
                "issuer_chain_header": 5,
            }
        ).encode(),
        b" " * (3 * 1024 * 1024),
    ],
)
def test_corrupt_cache_files_are_removed_with_a_warning(tmp_path: Path, content: bytes) -> None:
    store = CollateralStore(tmp_path)
    store.path("e").write_bytes(content)
    with structlog.testing.capture_logs() as logs:
        assert store.read("e") is None
    assert not store.path("e").exists()
    assert [e["event"] for e in logs] == ["collateral_cache.corrupt_entry_removed"]
    assert logs[0]["log_level"] == "warning" and logs[0]["path"] == str(store.path("e"))


def test_unusable_cache_directory_is_a_source_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = CollateralStore(blocker / "cache")
    with pytest.raises(CollateralSourceError, match="cache directory"):
        store.write("e", CachedResponse("u", b"", None), datetime.now(UTC))


def test_memory_layer_honours_next_update_and_directory(tmp_path: Path) -> None:
    now = datetime(2025, 7, 1, tzinfo=UTC)
    a, b = CollateralStore(tmp_path / "a"), CollateralStore(tmp_path / "b")
    a.remember("qe_identity", now, "doc")
    assert a.recall("qe_identity", now) == "doc"  # inclusive: fresh while at <= nextUpdate
    assert a.recall("qe_identity", now + timedelta(seconds=1)) is None
    assert b.recall("qe_identity", now) is None
    CollateralStore.clear_memory()
    assert a.recall("qe_identity", now) is None
