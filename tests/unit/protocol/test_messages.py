"""Protocol messages: round trips, strict encodings, and only ProtocolError at the boundary."""

from __future__ import annotations

import base64
import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.errors import PolicyError, ProtocolError
from golem_graphene.limits import MAX_FILE_NAME_BYTES, MAX_MESSAGE_BYTES, MAX_QUOTE_BYTES
from golem_graphene.protocol import messages
from golem_graphene.protocol.messages import (
    CreateTaskRequest,
    CreateTaskResponse,
    ErrorBody,
    Evidence,
    Message,
    TaskEvent,
    new_capability_token,
    recipient_public_bytes,
)
from golem_graphene.protocol.names import validate_file_name
from golem_graphene.sealing.keys import X25519Identity

TASK_HEX = "000102030405060708090a0b0c0d0e0f"
KEY_HEX = "ee" * 32
SIG_KEY_HEX = "55" * 32
MESSAGES: list[type[Message]] = [
    Evidence,
    CreateTaskRequest,
    CreateTaskResponse,
    TaskEvent,
    ErrorBody,
]


@pytest.fixture(scope="module")
def recipient() -> str:
    return X25519Identity.generate().recipient().to_string()


@pytest.fixture
def evidence_obj(vectors: Path) -> dict[str, Any]:
    pack = vectors / "dcap" / "phala_sgx"
    return {
        "protocol": "golem-graphene/v1",
        "task_id": TASK_HEX,
        "quote": base64.b64encode((pack / "quote.bin").read_bytes()).decode(),
        "enclave_key": KEY_HEX,
        "signing_key": SIG_KEY_HEX,
        "collateral": json.loads((pack / "collateral.json").read_text()),
        "runner": "gramine-sgx",
        "simulated": False,
    }


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


def test_public_names() -> None:
    assert sorted(messages.__all__) == sorted(
        [
            "TERMINAL_STATES",
            "AgeRecipientText",
            "Base64Quote",
            "CollateralField",
            "CreateTaskRequest",
            "CreateTaskResponse",
            "ErrorBody",
            "Evidence",
            "FileName",
            "Hex32",
            "Hex64",
            "Message",
            "Runner",
            "TaskEvent",
            "TaskIdHex",
            "TaskState",
            "UtcTime",
            "describe_validation_error",
            "new_capability_token",
            "recipient_public_bytes",
            "validate_file_name",
        ]
    )


# --- Evidence ---------------------------------------------------------------------------------


def test_evidence_parses_and_round_trips(evidence_obj: dict[str, Any], vectors: Path) -> None:
    ev = Evidence.from_json(_dump(evidence_obj))
    pack = vectors / "dcap" / "phala_sgx"
    assert ev.quote == (pack / "quote.bin").read_bytes()
    assert ev.task_id == bytes(range(16))
    assert ev.enclave_key == b"\xee" * 32
    assert ev.collateral == QuoteCollateral.from_json((pack / "collateral.json").read_bytes())
    again = Evidence.from_json(ev.to_json())
    assert again == ev
    assert json.loads(ev.to_json())["collateral"] == evidence_obj["collateral"]


def test_evidence_collateral_may_be_null(evidence_obj: dict[str, Any]) -> None:
    evidence_obj["collateral"] = None
    assert Evidence.from_json(_dump(evidence_obj)).collateral is None


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"task_id": TASK_HEX.upper()}, "task_id"),
        ({"task_id": TASK_HEX[:-2]}, "task_id"),
        ({"enclave_key": "EE" * 32}, "enclave_key"),
        ({"enclave_key": "ee" * 31}, "enclave_key"),
        ({"signing_key": 5}, "signing_key"),
        ({"quote": "not base64!"}, "quote"),
        ({"quote": "AAB="}, "quote"),  # stray bits: not the canonical encoding of its bytes
        ({"quote": ""}, "quote"),
        ({"quote": base64.b64encode(bytes(MAX_QUOTE_BYTES + 1)).decode()}, "quote"),
        ({"runner": "docker"}, "runner"),
        ({"simulated": "false"}, "simulated"),
        ({"simulated": 0}, "simulated"),
        ({"protocol": "golem-graphene/v2"}, "protocol"),
        ({"collateral": {"tcb_info": "x"}}, "collateral"),
        ({"collateral": "{}"}, "collateral"),
        ({"extra": 1}, "extra"),
    ],
)
def test_evidence_rejects(evidence_obj: dict[str, Any], change: dict[str, Any], where: str) -> None:
    evidence_obj.update(change)
    with pytest.raises(ProtocolError, match=where):
        Evidence.from_json(_dump(evidence_obj))


@pytest.mark.parametrize(
    ("runner", "simulated", "quote", "ok"),
    [
        ("sim", True, True, True),
        ("sim", False, True, False),
        ("gramine-sgx", True, True, False),
        ("gramine-sgx", False, False, False),
        ("gramine-direct", True, False, True),
        ("gramine-direct", False, False, False),
        ("gramine-direct", True, True, False),
    ],
)
def test_evidence_runner_consistency(
    evidence_obj: dict[str, Any], runner: str, simulated: bool, quote: bool, ok: bool
) -> None:
    evidence_obj.update(runner=runner, simulated=simulated)
    if not quote:
        evidence_obj.update(quote=None, collateral=None)
    if ok:
        assert Evidence.from_json(_dump(evidence_obj)).runner == runner
    else:
        with pytest.raises(ProtocolError, match="Evidence"):
            Evidence.from_json(_dump(evidence_obj))


def test_missing_field_is_named(evidence_obj: dict[str, Any]) -> None:
    del evidence_obj["signing_key"]
    with pytest.raises(ProtocolError, match="signing_key: Field required"):
        Evidence.from_json(_dump(evidence_obj))


def test_oversized_and_invalid_json_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        Evidence.from_json(b" " * (MAX_MESSAGE_BYTES + 1))
    with pytest.raises(ProtocolError, match="invalid Evidence"):
        Evidence.from_json(b"{")
    with pytest.raises(ProtocolError, match="invalid Evidence"):
        Evidence.from_json(b"[]")
    with pytest.raises(ProtocolError, match="invalid TaskEvent"):
        TaskEvent.from_obj("not a dict")


# --- requests and responses -------------------------------------------------------------------


def test_create_task_request(recipient: str) -> None:
    body = {
        "spec_name": "hello-world_1.0",
        "spec_digest": "ab" * 32,
        "requestor_key": recipient,
        "nonce": "01" * 32,
    }
    req = CreateTaskRequest.from_json(_dump(body))
    assert req.protocol == "golem-graphene/v1"
    assert req.nonce == b"\x01" * 32
    assert recipient_public_bytes(req.requestor_key) == recipient_public_bytes(recipient)
    assert CreateTaskRequest.from_json(req.to_json()) == req
    # Bech32 may be written in upper case; we normalise to the canonical lower case.
    upper = CreateTaskRequest.from_json(_dump({**body, "requestor_key": recipient.upper()}))
    assert upper.requestor_key == recipient


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"spec_name": "../etc"}, "spec_name"),
        ({"spec_name": ""}, "spec_name"),
        ({"spec_digest": "ab" * 31}, "spec_digest"),
        ({"nonce": "01" * 16}, "nonce"),
        ({"requestor_key": "age1qqqq"}, "requestor_key"),
        ({"requestor_key": "AGE-SECRET-KEY-1QQQQ"}, "requestor_key"),
        ({"requestor_key": 7}, "requestor_key"),
    ],
)
def test_create_task_request_rejects(recipient: str, change: dict[str, Any], where: str) -> None:
    body = {
        "spec_name": "hello",
        "spec_digest": "ab" * 32,
        "requestor_key": recipient,
        "nonce": "01" * 32,
        **change,
    }
    with pytest.raises(ProtocolError, match=where):
        CreateTaskRequest.from_json(_dump(body))


def test_recipient_public_bytes_refuses_other_keys() -> None:
    with pytest.raises(ProtocolError, match="not an X25519 age recipient"):
        recipient_public_bytes("ssh-ed25519 AAAA")


def test_create_task_response_and_token() -> None:
    token = new_capability_token()
    assert token != new_capability_token()
    resp = CreateTaskResponse(task_id=bytes(16), capability_token=token)
    assert CreateTaskResponse.from_json(resp.to_json()) == resp
    with pytest.raises(ProtocolError, match="capability_token") as info:
        CreateTaskResponse.from_json(
            _dump({"task_id": TASK_HEX, "capability_token": "short-secret-value"})
        )
    # The offending value (a secret) is never echoed in the error.
    assert "short-secret-value" not in str(info.value)


# --- events and errors ------------------------------------------------------------------------


def test_task_event() -> None:
    ev = TaskEvent.from_json(
        _dump(
            {"task_id": TASK_HEX, "state": "running", "seq": 3, "bytes_done": 5, "bytes_total": 9}
        )
    )
    assert not ev.terminal
    assert TaskEvent.from_json(ev.to_json()) == ev
    done = TaskEvent(task_id=bytes(16), state="done", seq=4)
    assert done.terminal
    failed = TaskEvent.from_json(
        _dump({"task_id": TASK_HEX, "state": "failed", "seq": 5, "code": "input_sha256"})
    )
    assert failed.code == "input_sha256"


@pytest.mark.parametrize(
    "change",
    [
        {"seq": -1},
        {"seq": "1"},
        {"seq": True},
        {"seq": 1.0},
        {"state": "exploded"},
        {"bytes_done": 10, "bytes_total": 9},
        {"bytes_done": -1},
        {"message": "x" * 5000},
        {"code": "Not A Code"},
        {"code": "x" * 65},
    ],
)
def test_task_event_rejects(change: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        TaskEvent.from_json(_dump({"task_id": TASK_HEX, "state": "running", "seq": 0, **change}))


def test_error_body_from_error() -> None:
    body = ErrorBody.from_error(PolicyError("debug", "debug enclave", expected="a", found="b"))
    assert body.code == "policy_debug"
    assert "expected a, found b" in body.message
    assert ErrorBody.from_json(body.to_json()) == body
    with pytest.raises(ProtocolError, match="code"):
        ErrorBody.from_json(_dump({"code": "Bad Code", "message": "m"}))


def test_every_message_has_a_json_schema() -> None:
    for model in MESSAGES:
        schema = model.model_json_schema()
        assert schema["additionalProperties"] is False, model


# --- file names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["data.csv", "a", "x" * MAX_FILE_NAME_BYTES, "a..b", "v1.2+build", "A_b-c", "0"]
)
def test_file_names_accepted(name: str) -> None:
    assert validate_file_name(name) == name


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("", "non-empty"),
        (".", "plain file name"),
        ("..", "plain file name"),
        (".hidden", "plain file name"),
        ("-rf", "plain file name"),  # would read as an option to the workload
        ("a/b", "plain file name"),
        ("a\\b", "plain file name"),
        ("a\x00b", "plain file name"),
        ("a\nb", "plain file name"),
        ("a\x7fb", "plain file name"),
        ("with space", "plain file name"),
        ("résumé.txt", "plain file name"),  # one rule: ASCII, so no normalisation forms
        (unicodedata.normalize("NFD", "é.txt"), "plain file name"),
        ("a\u2024b", "plain file name"),  # ONE DOT LEADER looks like '.'
        ("a\uff0fb", "plain file name"),  # FULLWIDTH SOLIDUS looks like '/'
        ("x" * (MAX_FILE_NAME_BYTES + 1), "longer than"),
        ("a\ud800", "plain file name"),
    ],
)
def test_file_names_refused(name: str, rule: str) -> None:
    with pytest.raises(ValueError, match=rule):
        validate_file_name(name)


def test_file_name_errors_never_echo_the_name() -> None:
    with pytest.raises(ValueError) as info:
        validate_file_name("secret-token/../x")
    assert "secret-token" not in str(info.value)


# --- hostile input ----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=512), model=st.sampled_from(MESSAGES))
def test_random_bytes_are_refused_with_protocol_errors(data: bytes, model: type[Message]) -> None:
    with pytest.raises(ProtocolError):
        model.from_json(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    obj=st.dictionaries(
        st.sampled_from(
            ["task_id", "quote", "enclave_key", "signing_key", "collateral", "runner", "simulated"]
        ),
        json_values,
    ),
    model=st.sampled_from(MESSAGES),
)
def test_random_objects_are_refused_with_protocol_errors(
    obj: dict[str, Any], model: type[Message]
) -> None:
    # No sampled object can be valid (each message lacks a required key or a valid value).
    with pytest.raises(ProtocolError):
        model.from_json(json.dumps(obj).encode())
