"""Collateral parsing: the QuoteCollateralV3 bundle, TCB info (v2, v3) and QE identity."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from golem_graphene.attestation import QeIdentity, QuoteCollateral, TcbInfo
from golem_graphene.attestation.collateral import COLLATERAL_KEYS
from golem_graphene.attestation.tcb import QeTcbStatus, TcbStatus
from golem_graphene.errors import CollateralFormatError, TcbStatusUnknownError
from golem_graphene.limits import MAX_COLLATERAL_BYTES, MAX_TCB_LEVELS

PACKS = ["phala_sgx", "oasis_sgx", "intel_qvl_sample_TEST_PKI"]


def _text(vectors: Path, name: str) -> str:
    return (vectors / "dcap" / name / "collateral.json").read_text()


def _doc(vectors: Path, name: str) -> dict[str, str]:
    data: dict[str, str] = json.loads(_text(vectors, name))
    return data


# --- the bundle ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PACKS)
def test_bundle_fields(vectors: Path, name: str) -> None:
    doc = _doc(vectors, name)
    bundle = QuoteCollateral.from_json(_text(vectors, name))
    assert bundle.tcb_info == doc["tcb_info"]  # the signed text, byte for byte
    assert bundle.qe_identity == doc["qe_identity"]
    assert bundle.tcb_info_signature == bytes.fromhex(doc["tcb_info_signature"])
    assert bundle.qe_identity_signature == bytes.fromhex(doc["qe_identity_signature"])
    assert len(bundle.tcb_info_signature) == len(bundle.qe_identity_signature) == 64
    for key in ("root_ca_crl", "pck_crl"):
        value = getattr(bundle, key)
        assert value == (bytes.fromhex(doc[key]) if doc[key] else None)
    assert bundle.pck_certificate_chain == doc.get("pck_certificate_chain")
    assert bundle.pck_crl_issuer_chain == doc["pck_crl_issuer_chain"]


@pytest.mark.parametrize("name", PACKS)
def test_bundle_round_trip(vectors: Path, name: str) -> None:
    bundle = QuoteCollateral.from_json(_text(vectors, name))
    again = QuoteCollateral.from_json(bundle.to_json())
    assert again == bundle
    assert json.loads(bundle.to_json()) == _doc(vectors, name)
    assert QuoteCollateral.from_json(_text(vectors, name).encode()) == bundle


def test_bundle_is_hashable_and_frozen(vectors: Path) -> None:
    bundle = QuoteCollateral.from_json(_text(vectors, "phala_sgx"))
    assert hash(bundle) == hash(QuoteCollateral.from_json(_text(vectors, "phala_sgx")))
    with pytest.raises(AttributeError):
        bundle.tcb_info = "{}"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda d: "not json", "not valid JSON"),
        (lambda d: json.dumps([d]), "must be a JSON object"),
        (lambda d: json.dumps({**d, "extra": ""}), "unknown keys"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "tcb_info"}), "lacks the key"),
        (lambda d: json.dumps({**d, "pck_crl": 1}), "must be a string"),
        (lambda d: json.dumps({**d, "pck_certificate_chain": ["x"]}), "must be a string"),
        (lambda d: json.dumps({**d, "root_ca_crl": "zz"}), "not hex"),
        (lambda d: json.dumps({**d, "tcb_info_signature": "00" * 63}), "64-byte"),
        (lambda d: json.dumps({**d, "qe_identity_signature": ""}), "64-byte"),
        (lambda d: "[" * 100_000, "not valid JSON"),
        (lambda d: " " * (MAX_COLLATERAL_BYTES + 1), "too large"),
    ],
)
def test_bundle_errors(vectors: Path, mutate: Any, words: str) -> None:
    with pytest.raises(CollateralFormatError) as info:
        QuoteCollateral.from_json(mutate(_doc(vectors, "phala_sgx")))
    assert words in info.value.describe()
    assert info.value.code == "collateral_format"


def test_bundle_keys_are_dcap_qvls() -> None:
    assert set(COLLATERAL_KEYS) == {
        "pck_crl_issuer_chain",
        "root_ca_crl",
        "pck_crl",
        "tcb_info_issuer_chain",
        "tcb_info",
        "tcb_info_signature",
        "qe_identity_issuer_chain",
        "qe_identity",
        "qe_identity_signature",
    }


def test_crl_hex_whitespace_and_empty(vectors: Path) -> None:
    doc = _doc(vectors, "phala_sgx")
    bundle = QuoteCollateral.from_mapping(
        {**doc, "pck_crl": "  ", "root_ca_crl": doc["root_ca_crl"].upper()}
    )
    assert bundle.pck_crl is None
    assert bundle.root_ca_crl == bytes.fromhex(doc["root_ca_crl"])


@pytest.mark.parametrize("key", ["tcb_info", "qe_identity", "tcb_info_issuer_chain", "pck_crl"])
def test_lone_surrogates_are_a_format_error(vectors: Path, key: str) -> None:
    # JSON may escape a lone surrogate ("\\ud800"); json.loads returns a str that cannot be
    # encoded to the bytes whose signature must be checked. (Former bug: the verifier's
    # .encode() raised UnicodeEncodeError; the bundle parser now refuses such strings.)
    doc = _doc(vectors, "phala_sgx")
    doc[key] = doc[key][:10] + "\ud800" + doc[key][10:]
    text = json.dumps(doc)
    assert "\\ud800" in text
    with pytest.raises(CollateralFormatError) as info:
        QuoteCollateral.from_json(text)
    assert key in info.value.message
    assert "Unicode" in info.value.message


# --- TCB info -----------------------------------------------------------------------------------


def test_tcb_info_v3(vectors: Path) -> None:
    info = TcbInfo.from_json(_doc(vectors, "phala_sgx")["tcb_info"])
    assert info.version == 3
    assert info.fmspc == bytes.fromhex("00A067110000")
    assert info.pceid == b"\0\0"
    assert info.tcb_type == 0
    assert info.tcb_evaluation_data_number == 17
    assert info.issue_date == datetime(2025, 6, 19, 10, 56, 11, tzinfo=UTC)
    assert info.next_update == datetime(2025, 7, 19, 10, 56, 11, tzinfo=UTC)
    keys = [level.sort_key() for level in info.levels]
    assert keys == sorted(keys, reverse=True)
    assert all(len(level.components) == 16 for level in info.levels)
    assert info.levels[0].status is TcbStatus.SW_HARDENING_NEEDED or info.levels[0].status in set(
        TcbStatus
    )
    raw = json.loads(_doc(vectors, "phala_sgx")["tcb_info"])
    assert len(info.levels) == len(raw["tcbLevels"])


def test_tcb_info_v3_level_contents(vectors: Path) -> None:
    raw = json.loads(_doc(vectors, "oasis_sgx")["tcb_info"])
    info = TcbInfo.from_json(_doc(vectors, "oasis_sgx")["tcb_info"])
    by_key = {level.sort_key(): level for level in info.levels}
    for doc_level in raw["tcbLevels"]:
        comps = tuple(c["svn"] for c in doc_level["tcb"]["sgxtcbcomponents"])
        level = by_key[(comps, doc_level["tcb"]["pcesvn"])]
        assert level.status.value == doc_level["tcbStatus"]
        assert list(level.advisory_ids) == doc_level.get("advisoryIDs", [])
        assert level.tcb_date == datetime.fromisoformat(doc_level["tcbDate"])


def test_tcb_info_v2(vectors: Path) -> None:
    text = _doc(vectors, "intel_qvl_sample_TEST_PKI")["tcb_info"]
    raw = json.loads(text)
    info = TcbInfo.from_json(text)
    assert info.version == 2
    assert info.fmspc == bytes.fromhex("00707F000000")
    first = raw["tcbLevels"][0]["tcb"]
    comps = tuple(first[f"sgxtcbcomp{i:02d}svn"] for i in range(1, 17))
    assert (comps, first["pcesvn"]) in {level.sort_key() for level in info.levels}
    assert all(level.advisory_ids == () for level in info.levels)


def _tcb_doc(**changes: Any) -> dict[str, Any]:
    level = {
        "tcb": {"sgxtcbcomponents": [{"svn": 1}] * 16, "pcesvn": 1},
        "tcbDate": "2024-01-01T00:00:00Z",
        "tcbStatus": "UpToDate",
    }
    doc: dict[str, Any] = {
        "id": "SGX",
        "version": 3,
        "issueDate": "2025-01-01T00:00:00Z",
        "nextUpdate": "2025-02-01T00:00:00Z",
        "fmspc": "00906ED50000",
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
        "tcbLevels": [level],
    }
    doc.update(changes)
    return doc


def _level(comps: list[int], pcesvn: int, status: str = "UpToDate") -> dict[str, Any]:
    return {
        "tcb": {"sgxtcbcomponents": [{"svn": s} for s in comps], "pcesvn": pcesvn},
        "tcbDate": "2024-01-01T00:00:00Z",
        "tcbStatus": status,
    }


def test_tcb_levels_are_sorted_highest_first() -> None:
    levels = [
        _level([1] * 16, 1, "OutOfDate"),
        _level([2] * 16, 0, "SWHardeningNeeded"),
        _level([1] * 16, 5, "ConfigurationNeeded"),
        _level([3] + [0] * 15, 0, "UpToDate"),
    ]
    info = TcbInfo.from_json(json.dumps(_tcb_doc(tcbLevels=levels)))
    assert [lvl.status.value for lvl in info.levels] == [
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "OutOfDate",
    ]


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"tcbLevels": [_level([1] * 15, 1)]}, "sgxtcbcomponents"),
        ({"tcbLevels": [_level([1] * 17, 1)]}, "sgxtcbcomponents"),
        ({"tcbLevels": [_level([1] * 16, 1), _level([1] * 16, 1, "OutOfDate")]}, "duplicate"),
        ({"tcbLevels": []}, "tcbLevels"),
        ({"tcbLevels": [_level([1] * 16, 1)] * 0 + [_level([256] + [1] * 15, 1)]}, "svn"),
        ({"tcbLevels": [_level([1] * 16, 65536)]}, "pcesvn"),
        ({"id": None}, "v3 must have id"),
        ({"id": "TDX"}, "id"),
        ({"version": 4}, "version"),
        ({"version": 2}, "v2 has no id"),
        ({"fmspc": "00906ED500"}, "fmspc"),
        ({"pceId": "zz00"}, "pceId"),
        ({"issueDate": "2025-01-01T00:00:00"}, "issueDate"),  # no time zone
        ({"nextUpdate": "tomorrow"}, "nextUpdate"),
        ({"tdxModule": {}}, "tdxModule"),  # extra fields are refused
        ({"tcbEvaluationDataNumber": -1}, "tcbEvaluationDataNumber"),
    ],
)
def test_tcb_info_errors(changes: dict[str, Any], words: str) -> None:
    doc = _tcb_doc(**changes)
    if doc.get("id") is None and "id" in changes:
        del doc["id"]
    with pytest.raises(CollateralFormatError) as info:
        TcbInfo.from_json(json.dumps(doc))
    assert words in info.value.describe()


def test_tcb_info_v3_without_id_and_v2_levels_mixed() -> None:
    v2_level = {
        "tcb": {**{f"sgxtcbcomp{i:02d}svn": 1 for i in range(1, 17)}, "pcesvn": 1},
        "tcbDate": "2024-01-01T00:00:00Z",
        "tcbStatus": "UpToDate",
    }
    doc = _tcb_doc(tcbLevels=[v2_level])
    with pytest.raises(CollateralFormatError, match="does not match version 3"):
        TcbInfo.from_json(json.dumps(doc))
    doc = _tcb_doc(version=2, tcbLevels=[_level([1] * 16, 1)])
    del doc["id"]
    with pytest.raises(CollateralFormatError, match="does not match version 2"):
        TcbInfo.from_json(json.dumps(doc))
    doc = _tcb_doc(version=2, tcbLevels=[v2_level])
    del doc["id"]
    assert TcbInfo.from_json(json.dumps(doc)).version == 2


def test_too_many_levels() -> None:
    levels = [_level([i % 256, i // 256] + [0] * 14, 0) for i in range(MAX_TCB_LEVELS + 1)]
    with pytest.raises(CollateralFormatError, match="tcbLevels"):
        TcbInfo.from_json(json.dumps(_tcb_doc(tcbLevels=levels)))


@pytest.mark.parametrize("status", ["Unknown", "uptodate", "UpToDate ", "", "TCB_UP_TO_DATE"])
def test_unknown_tcb_status(status: str) -> None:
    doc = _tcb_doc(tcbLevels=[_level([1] * 16, 1, status)])
    with pytest.raises(TcbStatusUnknownError) as info:
        TcbInfo.from_json(json.dumps(doc))
    assert info.value.code == "unknown_tcb_status"
    assert info.value.found == status


@pytest.mark.parametrize("status", list(TcbStatus))
def test_every_known_tcb_status(status: TcbStatus) -> None:
    doc = _tcb_doc(tcbLevels=[_level([1] * 16, 1, status.value)])
    assert TcbInfo.from_json(json.dumps(doc)).levels[0].status is status


@pytest.mark.parametrize("text", ["", "{", "[]", "null", '{"version":3}', "\ud800"])
def test_tcb_info_not_a_document(text: str) -> None:
    with pytest.raises(CollateralFormatError):
        TcbInfo.from_json(text)


# --- QE identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PACKS)
def test_qe_identity(vectors: Path, name: str) -> None:
    text = _doc(vectors, name)["qe_identity"]
    raw = json.loads(text)
    ident = QeIdentity.from_json(text)
    assert ident.id == "QE"
    assert ident.version == 2
    assert ident.mrsigner == bytes.fromhex(raw["mrsigner"])
    assert ident.isvprodid == raw["isvprodid"] == 1
    assert ident.miscselect == bytes.fromhex(raw["miscselect"])
    assert ident.miscselect_mask == bytes.fromhex(raw["miscselectMask"])
    assert ident.attributes == bytes.fromhex(raw["attributes"])
    assert ident.attributes_mask == bytes.fromhex(raw["attributesMask"])
    svns = [level.isvsvn for level in ident.levels]
    assert svns == sorted((lvl["tcb"]["isvsvn"] for lvl in raw["tcbLevels"]), reverse=True)
    assert ident.issue_date == datetime.fromisoformat(raw["issueDate"])


def test_qe_identity_level_statuses(vectors: Path) -> None:
    ident = QeIdentity.from_json(_doc(vectors, "phala_sgx")["qe_identity"])
    assert ident.levels[0].isvsvn == 8 and ident.levels[0].status is QeTcbStatus.UP_TO_DATE
    assert ident.levels[1].isvsvn == 6 and ident.levels[1].status is QeTcbStatus.OUT_OF_DATE
    assert ident.levels[1].advisory_ids == ("INTEL-SA-00615",)


def _qe_doc(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "QE",
        "version": 2,
        "issueDate": "2025-01-01T00:00:00Z",
        "nextUpdate": "2025-02-01T00:00:00Z",
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": "8C4F5775D796503E96137F77C68A829A0056AC8DED70140B081B094490C57BFF",
        "isvprodid": 1,
        "tcbLevels": [
            {"tcb": {"isvsvn": 8}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": "UpToDate"}
        ],
    }
    doc.update(changes)
    return doc


@pytest.mark.parametrize("ident", ["QE", "TD_QE", "QVE"])
def test_qe_identity_ids_parse(ident: str) -> None:
    # The parser knows all three; the verifier accepts only "QE" for an SGX quote.
    assert QeIdentity.from_json(json.dumps(_qe_doc(id=ident))).id == ident


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"id": "XE"}, "id"),
        ({"version": 1}, "version"),
        ({"version": 3}, "version"),
        ({"miscselect": "000000"}, "miscselect"),
        ({"attributesMask": "FF"}, "attributesMask"),
        ({"mrsigner": "8C4F"}, "mrsigner"),
        ({"isvprodid": 65536}, "isvprodid"),
        ({"tcbLevels": []}, "tcbLevels"),
        (
            {
                "tcbLevels": [
                    {
                        "tcb": {"isvsvn": -1},
                        "tcbDate": "2024-03-13T00:00:00Z",
                        "tcbStatus": "UpToDate",
                    }
                ]
            },
            "isvsvn",
        ),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_qe_identity_errors(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(CollateralFormatError) as info:
        QeIdentity.from_json(json.dumps(_qe_doc(**changes)))
    assert words in info.value.describe()


@pytest.mark.parametrize("status", ["SWHardeningNeeded", "ConfigurationNeeded", "Bogus"])
def test_qe_identity_refuses_platform_only_statuses(status: str) -> None:
    level = {"tcb": {"isvsvn": 8}, "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": status}
    with pytest.raises(TcbStatusUnknownError) as info:
        QeIdentity.from_json(json.dumps(_qe_doc(tcbLevels=[level])))
    assert info.value.found == status
