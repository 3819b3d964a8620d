"""One strict JSON parser for every document from outside (issue 15, item 4).

Duplicate keys, text that is not UTF-8, lone surrogates, NaN/Infinity, numbers beyond the safe
range and over-deep nesting are refused with a typed error, by every parsing boundary: the
protocol messages (events, evidence, receipts, error bodies, input manifests), collateral and
the PCS documents, policy files and the legacy IAS reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.errors import (
    CollateralFormatError,
    ConfigError,
    Error,
    ProtocolError,
)
from golem_graphene.limits import MAX_JSON_DEPTH
from golem_graphene.protocol.messages import ErrorBody, Evidence, TaskEvent
from golem_graphene.requestor.policy import load_policy
from golem_graphene.sealing.input_manifest import InputManifest, InputManifestFormatError

TASK = "0123456789abcdef0123456789abcdef"
EVENT = f'{{"task_id":"{TASK}","state":"running","seq":3}}'

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "dcap" / "phala_sgx"


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (f'{{"task_id":"{TASK}","state":"failed","seq":3,"state":"done"}}', "duplicate object key"),
        (EVENT[:-1] + ',"bytes_done":NaN}', "NaN and Infinity"),
        (EVENT[:-1] + ',"bytes_done":Infinity}', "NaN and Infinity"),
        (EVENT.replace('"seq":3', '"seq":9007199254740993'), "safe range"),
        (EVENT.replace('"seq":3', '"seq":1e400'), "float"),
        (EVENT[:-1] + ',"message":"\\udc00"}', "lone surrogate (not valid Unicode) at message"),
        (EVENT[:-1] + ',"\\ud800":1}', "lone surrogate (not valid Unicode) in a key"),
        (
            EVENT[:-1]
            + ',"message":'
            + "[" * (MAX_JSON_DEPTH + 2)
            + "]" * (MAX_JSON_DEPTH + 2)
            + "}",
            "deeply",
        ),
    ],
    ids=[
        "duplicate",
        "nan",
        "infinity",
        "beyond-safe-range",
        "huge-float",
        "surrogate",
        "key",
        "deep",
    ],
)
def test_task_events_are_parsed_strictly(text: str, rule: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        TaskEvent.from_json(text)
    assert rule in str(caught.value)


def test_text_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(ProtocolError, match="not UTF-8"):
        TaskEvent.from_json(EVENT.encode().replace(b"running", b"runn\xffng"))
    with pytest.raises(ProtocolError, match="BOM"):
        TaskEvent.from_json(b"\xef\xbb\xbf" + EVENT.encode())  # a byte order mark


def test_the_same_document_without_duplicates_parses() -> None:
    assert TaskEvent.from_json(EVENT).seq == 3


def test_a_duplicated_key_is_named_escaped() -> None:
    text = '{"code":"a","message":"b","\\u001b[2Kcode":1,"\\u001b[2Kcode":2}'
    with pytest.raises(ProtocolError) as caught:
        ErrorBody.from_json(text)
    assert "\x1b" not in str(caught.value)
    assert '"\\x1b[2Kcode"' in str(caught.value)


def test_evidence_with_duplicated_keys_is_refused() -> None:
    with pytest.raises(ProtocolError, match="duplicate object key"):
        Evidence.from_json('{"runner":"gramine-sgx","runner":"sim"}')


def test_input_manifests_are_parsed_strictly() -> None:
    text = f'{{"task_id":"{TASK}","args":["a"],"args":["b"]}}'
    with pytest.raises(InputManifestFormatError, match="duplicate object key"):
        InputManifest.from_json(text)


def test_collateral_is_parsed_strictly() -> None:
    doc = json.loads((VECTORS / "collateral.json").read_text())
    good = json.dumps(doc)
    QuoteCollateral.from_json(good)
    first = next(iter(doc))
    # The same key again, first with a bogus value: the last would win without the check.
    twice = good.replace("{", f'{{"{first}": "bogus", ', 1)
    with pytest.raises(CollateralFormatError, match="duplicate object key"):
        QuoteCollateral.from_json(twice)


def test_signed_collateral_documents_are_parsed_strictly() -> None:
    """The TCB info inside the collateral is signed text: a duplicate key there is refused
    before its fields are read (the signature would cover both copies)."""
    doc = json.loads((VECTORS / "collateral.json").read_text())
    from golem_graphene.attestation.collateral import TcbInfo

    TcbInfo.from_json(doc["tcb_info"])
    with pytest.raises(CollateralFormatError, match="duplicate object key"):
        TcbInfo.from_json(doc["tcb_info"].replace("{", '{"version":2,', 1))


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ('{"allowDebug": false, "allowDebug": true}', "duplicate object key"),
        ('{"maxEvidenceAge": NaN}', "NaN and Infinity"),
        ('{"maxEvidenceAge": 1e999}', "too large to be finite"),
    ],
)
def test_policy_files_are_parsed_strictly(tmp_path: Path, text: str, rule: str) -> None:
    path = tmp_path / "sgx.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rule):
        load_policy(path)


def test_policy_files_may_hold_finite_floats(tmp_path: Path) -> None:
    path = tmp_path / "sgx.json"
    path.write_text('{"maxEvidenceAge": 86400.5}')
    age = load_policy(path).max_collateral_age
    assert age is not None and age.total_seconds() == 86400.5


def test_every_refusal_is_one_of_our_errors() -> None:
    for text in ("", "{", "[1,]", '{"a":1}x', "\x00"):
        with pytest.raises(Error):
            TaskEvent.from_json(text)
