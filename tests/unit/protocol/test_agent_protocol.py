"""The host <-> agent frames (docs/agent-protocol.md section 2) and messages (section 4)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from golem_graphene.limits import MAX_AGENT_FRAME_BYTES
from golem_graphene.protocol.agent import (
    AGENT_FAILURE_CODES,
    AgentProtocolError,
    Attest,
    EvidenceReady,
    Failed,
    InputsOpened,
    OutputsSealed,
    Progress,
    Ready,
    Run,
    Running,
    Sealing,
    decode_frame,
    encode,
    encode_frame,
    parse_command,
    parse_event,
)
from golem_graphene.sealing.keys import X25519Identity

KEY = X25519Identity.generate().recipient().to_string()
EVENTS = [
    Ready(agent="golem-graphene-agent/1"),
    EvidenceReady(
        runner="sim",
        simulated=True,
        quote=b"\x03" * 10,
        enclave_key=b"e" * 32,
        signing_key=b"s" * 32,
    ),
    EvidenceReady(
        runner="gramine-direct",
        simulated=True,
        quote=None,
        enclave_key=b"e" * 32,
        signing_key=b"s" * 32,
    ),
    Progress(phase="inputs", name="data.csv", bytes_done=1, bytes_total=2),
    InputsOpened(inputs=1, bytes=2),
    Running(),
    Sealing(exit_status=-9, termination="signaled"),
    OutputsSealed(exit_status=0, termination="exited", outputs=3, receipt_sha256=b"r" * 32),
    Failed(code="output_symlink", message='output "x" is a symbolic link'),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.event)
def test_every_event_round_trips(event: object) -> None:
    frame = encode(event)  # type: ignore[arg-type]
    assert frame.endswith(b"\n") and frame.count(b"\n") == 1
    assert frame.startswith(b'{"event":')  # the name first, for people reading logs
    assert parse_event(frame) == event


def test_commands_round_trip() -> None:
    attest = Attest(task_id=b"\x01" * 16, nonce=b"\x02" * 32, requestor_key=KEY)
    assert parse_command(encode(attest)) == attest
    assert parse_command(encode(Run())) == Run()
    assert encode(Run()) == b'{"cmd":"run"}\n'


def test_non_ascii_text_is_escaped_on_the_way_out() -> None:
    frame = encode(Failed(code="internal", message="caf\u00e9 \u2028 \x1b[2J"))
    assert frame.isascii() and b"\x1b" not in frame
    assert parse_event(frame) == Failed(code="internal", message="caf\u00e9 \u2028 \x1b[2J")


@pytest.mark.parametrize(
    ("frame", "rule"),
    [
        (b"[1]\n", "not a JSON object"),
        (b"{\n", "not valid JSON"),
        (b'{"event":"running"} {}\n', "not valid JSON"),
        (b'{"event":"running","event":"running"}\n', "repeats a key"),
        (b'{"event":"progress","x":{"y":1}}\n', "nested"),
        (b'{"event":"progress","x":[1]}\n', "nested"),
        (b'{"event":"sealing","exit_status":1.0,"termination":"exited"}\n', "not an integer"),
        (b'{"event":"sealing","exit_status":1e2,"termination":"exited"}\n', "not an integer"),
        (b'{"event":"x","n":NaN}\n', "not an integer"),
        (b'{"event":"x","n":9007199254740992}\n', "safe range"),
        (b'{"event":"failed","code":"internal","message":"\\ud800"}\n', "lone surrogate"),
        (b'{"event":"running"}\r\n', "printable ASCII"),
        ('{"event":"failed","code":"internal","message":"é"}\n'.encode(), "printable ASCII"),
        (b'{"event":"running","extra":1}\n', "Extra inputs"),
        (
            b'{"event":"progress","phase":"inputs","name":"a","bytes_done":3,"bytes_total":2}\n',
            "exceeds",
        ),
        (
            b'{"event":"progress","phase":"inputs","name":"../x","bytes_done":0,"bytes_total":0}\n',
            "name",
        ),
        (b'{"event":"failed","code":"nope","message":"x"}\n', "stable failure codes"),
        (b'{"event":"failed","code":"internal","message":""}\n', "message"),
        (b'{"event":"ready","protocol":2,"agent":"x"}\n', "protocol"),
        (
            b'{"event":"evidence","runner":"sim","simulated":false,"quote":"00",'
            b'"enclave_key":"' + b"00" * 32 + b'","signing_key":"' + b"00" * 32 + b'"}\n',
            "simulated is false exactly for the gramine-sgx runner",
        ),
        (
            b'{"event":"evidence","runner":"sim","simulated":true,"quote":"0A",'
            b'"enclave_key":"' + b"00" * 32 + b'","signing_key":"' + b"00" * 32 + b'"}\n',
            "lowercase hex",
        ),
    ],
)
def test_frames_breaking_a_rule_are_refused_naming_it(frame: bytes, rule: str) -> None:
    with pytest.raises(AgentProtocolError, match=rule) as caught:
        parse_event(frame)
    assert caught.value.code == "agent_protocol"


def test_an_unknown_message_name_is_never_echoed() -> None:
    with pytest.raises(AgentProtocolError, match="names no known message") as caught:
        parse_event(b'{"event":"\\u001b]0;owned\\u0007"}\n')
    assert "owned" not in str(caught.value)
    with pytest.raises(AgentProtocolError, match="names no known message"):
        parse_command(b'{"cmd":"rm -rf"}\n')
    with pytest.raises(AgentProtocolError, match="names no known message"):
        parse_event(b'{"cmd":"run"}\n')  # a command where an event belongs


def test_the_frame_size_bound() -> None:
    empty = len(encode_frame({"event": "x", "m": ""}))
    assert len(encode_frame({"event": "x", "m": "a" * (MAX_AGENT_FRAME_BYTES - empty)})) == (
        MAX_AGENT_FRAME_BYTES
    )
    with pytest.raises(AgentProtocolError, match="too long"):
        encode_frame({"event": "x", "m": "a" * (MAX_AGENT_FRAME_BYTES - empty + 1)})
    with pytest.raises(AgentProtocolError, match="too long"):
        decode_frame(b'{"x":"' + b"a" * MAX_AGENT_FRAME_BYTES + b'"}\n')


def test_every_stable_code_is_accepted() -> None:
    for code in AGENT_FAILURE_CODES:
        assert parse_event(encode(Failed(code=code, message="m"))).code == code  # type: ignore[union-attr]


@given(st.binary(max_size=600))
def test_any_bytes_parse_or_fail_as_a_protocol_error(data: bytes) -> None:
    for parse in (parse_event, parse_command):
        with contextlib.suppress(AgentProtocolError):
            parse(data)


@given(
    st.dictionaries(
        st.sampled_from(["event", "cmd", "code", "message", "name", "phase", "bytes_done"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20)),
        max_size=6,
    )
)
def test_any_flat_object_parses_or_fails_as_a_protocol_error(obj: dict[str, object]) -> None:
    frame = encode_frame(obj)  # type: ignore[arg-type]
    for parse in (parse_event, parse_command):
        with contextlib.suppress(AgentProtocolError):
            parse(frame)
