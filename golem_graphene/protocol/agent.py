"""The host <-> agent control protocol, version 1: frames and every command and event.

The whole contract, for a second implementation to follow byte for byte, is
``docs/agent-protocol.md``; this module is its Python form. The host (provider side) and the
agent (inside the enclave) exchange *frames*: one flat JSON object per line, ASCII only, at most
:data:`~golem_graphene.limits.MAX_AGENT_FRAME_BYTES` with the line feed, unique keys, values that
are strings, safe integers, booleans or null. Commands carry ``"cmd"``, events ``"event"``.

:func:`parse_event` and :func:`parse_command` are the only ways in: they check the framing, then
the message's model (frozen, no unknown keys, strict types), and raise
:class:`AgentProtocolError` naming the rule, never the offending bytes (the peer is untrusted and
the message may end up in a log or on a terminal). :func:`encode` is the only way out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal, Self, TypeAlias, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from golem_graphene.canonical_json import MAX_SAFE_INTEGER
from golem_graphene.errors import ProtocolError
from golem_graphene.limits import MAX_AGENT_FRAME_BYTES, MAX_AGENT_MESSAGE_CHARS, MAX_QUOTE_BYTES
from golem_graphene.protocol.fields import (
    AgeRecipientText,
    FileName,
    Hex32,
    Runner,
    TaskIdHex,
    describe_validation_error,
)
from golem_graphene.protocol.names import Termination

__all__ = [
    "AGENT_FAILURE_CODES",
    "AGENT_PROTOCOL_VERSION",
    "AgentCommand",
    "AgentEvent",
    "AgentFailureCode",
    "AgentProtocolError",
    "Attest",
    "EvidenceReady",
    "Failed",
    "FrameValue",
    "InputsOpened",
    "OutputsSealed",
    "Progress",
    "Ready",
    "Run",
    "Running",
    "Sealing",
    "decode_frame",
    "encode",
    "encode_frame",
    "parse_command",
    "parse_event",
]

AGENT_PROTOCOL_VERSION: Final = 1
"""The version the ``ready`` event announces; the host refuses any other."""

FrameValue: TypeAlias = str | int | bool | None
"""A value a frame may hold: frames are flat."""

AgentFailureCode = Literal[
    "workload_format",
    "control_message",
    "control_closed",
    "attestation",
    "input_manifest_format",
    "input_manifest_auth",
    "input_undeclared",
    "input_too_large",
    "input_required",
    "input_missing",
    "input_extra",
    "input_not_regular",
    "input_read",
    "input_size",
    "input_sha256",
    "age_header",
    "age_hmac",
    "age_no_match",
    "age_payload",
    "workload_start",
    "output_symlink",
    "output_not_regular",
    "output_hard_link",
    "output_reserved",
    "output_too_large",
    "too_many_outputs",
    "output_read",
    "sealing",
    "internal",
]
"""The stable codes of a ``failed`` event (their meanings: ``docs/agent-protocol.md``)."""

AGENT_FAILURE_CODES: Final[tuple[str, ...]] = get_args(AgentFailureCode)


_PRINTABLE_ASCII: Final = re.compile(rb"[\x20-\x7e]*")


class AgentProtocolError(ProtocolError):
    """A frame or message broke the host <-> agent protocol; the message names the rule."""

    code = "agent_protocol"


# --- frames -------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise AgentProtocolError("a frame repeats a key")
        obj[key] = value
    return obj


def _refuse_number(_text: str) -> Any:
    raise AgentProtocolError("a frame holds a number that is not an integer")


def decode_frame(line: bytes) -> dict[str, FrameValue]:
    """The flat object of one frame (``line`` with or without its line feed).

    Raises :class:`AgentProtocolError` when the frame is too long, holds a byte outside printable
    ASCII, is not one JSON object, repeats a key, nests, holds a non-integer number, an integer
    outside the safe range or a lone surrogate.
    """
    if len(line) > MAX_AGENT_FRAME_BYTES:
        raise AgentProtocolError(
            "a frame is too long", expected=f"<= {MAX_AGENT_FRAME_BYTES} bytes", found=len(line)
        )
    body = line[:-1] if line.endswith(b"\n") else line
    if _PRINTABLE_ASCII.fullmatch(body) is None:
        raise AgentProtocolError("a frame holds a byte outside printable ASCII")
    try:
        obj = json.loads(
            body,
            object_pairs_hook=_no_duplicates,
            parse_float=_refuse_number,
            parse_constant=_refuse_number,
        )
    except AgentProtocolError:
        raise
    except (ValueError, RecursionError):
        raise AgentProtocolError("a frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise AgentProtocolError("a frame is not a JSON object")
    for value in obj.values():
        if isinstance(value, dict | list):
            raise AgentProtocolError("a frame holds a nested value (frames are flat)")
        if isinstance(value, int) and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise AgentProtocolError("a frame holds an integer outside the safe range")
        if isinstance(value, str) and not _valid_unicode(value):
            raise AgentProtocolError("a frame holds a lone surrogate")
    for key in obj:
        if not _valid_unicode(key):
            raise AgentProtocolError("a frame holds a lone surrogate")
    return obj


def _valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_frame(obj: Mapping[str, FrameValue]) -> bytes:
    """One frame: ``obj`` as ASCII JSON (non-ASCII escaped), the message name first, ``\\n``."""
    first = [key for key in ("cmd", "event") if key in obj]
    ordered = {**{key: obj[key] for key in first}, **obj}
    data = json.dumps(ordered, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    frame = data.encode("ascii") + b"\n"
    if len(frame) > MAX_AGENT_FRAME_BYTES:
        raise AgentProtocolError(
            "a frame would be too long", expected=f"<= {MAX_AGENT_FRAME_BYTES} bytes"
        )
    return frame


# --- message models -------------------------------------------------------------------------------


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


_Count = Annotated[StrictInt, Field(ge=0, le=MAX_SAFE_INTEGER)]
_ExitStatus = Annotated[StrictInt, Field(ge=-64, le=255)]


def _quote_hex(value: Any) -> bytes:
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str) and len(value) % 2 == 0 and len(value) <= 2 * MAX_QUOTE_BYTES:
        if value != value.lower():
            raise ValueError("must be lowercase hex")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise ValueError("must be lowercase hex") from None
    else:
        raise ValueError(f"must be the hex of 1..{MAX_QUOTE_BYTES} bytes")
    if not 0 < len(raw) <= MAX_QUOTE_BYTES:
        raise ValueError(f"must be the hex of 1..{MAX_QUOTE_BYTES} bytes")
    return raw


_QuoteHex = Annotated[
    bytes, PlainValidator(_quote_hex), PlainSerializer(lambda raw: raw.hex(), return_type=str)
]


def _printable(limit: int) -> Any:
    return Field(min_length=1, max_length=limit, pattern=r"^[\x20-\x7e]+$")


class Attest(_Frame):
    """Host -> agent: the task this enclave serves (untrusted; enters the report data only)."""

    cmd: Literal["attest"] = "attest"
    task_id: TaskIdHex
    nonce: Hex32
    requestor_key: AgeRecipientText


class Run(_Frame):
    """Host -> agent: the inputs and the sealed manifest are in place; run to the end."""

    cmd: Literal["run"] = "run"


class Ready(_Frame):
    """Agent -> host: loaded, no keys made yet, waiting for :class:`Attest`."""

    event: Literal["ready"] = "ready"
    protocol: Literal[1] = AGENT_PROTOCOL_VERSION
    agent: Annotated[StrictStr, _printable(64)]


class EvidenceReady(_Frame):
    """Agent -> host (``evidence``): the enclave's keys and its quote over the report data."""

    event: Literal["evidence"] = "evidence"
    runner: Runner
    simulated: StrictBool
    quote: _QuoteHex | None
    enclave_key: Hex32
    signing_key: Hex32

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.quote is None) != (self.runner == "gramine-direct"):
            raise ValueError("quote is null exactly for the gramine-direct runner")
        if self.simulated != (self.runner != "gramine-sgx"):
            raise ValueError("simulated is false exactly for the gramine-sgx runner")
        return self


class Progress(_Frame):
    """Agent -> host: bytes of one input opened or one output sealed."""

    event: Literal["progress"] = "progress"
    phase: Literal["inputs", "sealing"]
    name: FileName
    bytes_done: _Count
    bytes_total: _Count

    @model_validator(mode="after")
    def _bounded(self) -> Self:
        if self.bytes_done > self.bytes_total:
            raise ValueError("bytes_done exceeds bytes_total")
        return self


class InputsOpened(_Frame):
    """Agent -> host: every input checked against the manifest and decrypted."""

    event: Literal["inputs_opened"] = "inputs_opened"
    inputs: _Count
    bytes: _Count


class Running(_Frame):
    """Agent -> host: the workload started."""

    event: Literal["running"] = "running"


class Sealing(_Frame):
    """Agent -> host: the workload ended; its outputs are being sealed."""

    event: Literal["sealing"] = "sealing"
    exit_status: _ExitStatus
    termination: Termination


class OutputsSealed(_Frame):
    """Agent -> host (terminal): every output sealed, the signed receipt written."""

    event: Literal["outputs_sealed"] = "outputs_sealed"
    exit_status: _ExitStatus
    termination: Termination
    outputs: _Count
    receipt_sha256: Hex32


def _failure_code(value: Any) -> str:
    if value not in AGENT_FAILURE_CODES:
        raise ValueError("is not one of the stable failure codes (docs/agent-protocol.md)")
    code: str = value
    return code


class Failed(_Frame):
    """Agent -> host (terminal): the agent refuses or cannot go on."""

    event: Literal["failed"] = "failed"
    code: Annotated[AgentFailureCode, PlainValidator(_failure_code)]
    message: Annotated[StrictStr, Field(min_length=1, max_length=MAX_AGENT_MESSAGE_CHARS)]


AgentCommand = Attest | Run
AgentEvent = (
    Ready | EvidenceReady | Progress | InputsOpened | Running | Sealing | OutputsSealed | Failed
)

_COMMANDS: Final = TypeAdapter(Annotated[AgentCommand, Field(discriminator="cmd")])
_EVENTS: Final = TypeAdapter(Annotated[AgentEvent, Field(discriminator="event")])
_COMMAND_NAMES: Final = frozenset(
    get_args(m.model_fields["cmd"].annotation)[0] for m in (Attest, Run)
)
_EVENT_NAMES: Final = frozenset(
    get_args(m.model_fields["event"].annotation)[0] for m in get_args(AgentEvent)
)


def _parse(
    adapter: TypeAdapter[Any], names: frozenset[str], line: bytes, kind: str, key: str
) -> Any:
    obj = decode_frame(line)
    if obj.get(key) not in names:
        # Checked here so that pydantic's message, which quotes the unknown tag, is never used.
        raise AgentProtocolError(
            f"a frame from the {kind} names no known message",
            expected=f"{key!r} one of {', '.join(sorted(names))}",
        )
    try:
        return adapter.validate_python(obj)
    except ValidationError as exc:
        raise AgentProtocolError(
            f"invalid frame from the {kind}: {describe_validation_error(exc)}"
        ) from None


def parse_event(line: bytes) -> AgentEvent:
    """One event frame from the agent; raises :class:`AgentProtocolError`."""
    event: AgentEvent = _parse(_EVENTS, _EVENT_NAMES, line, "agent", "event")
    return event


def parse_command(line: bytes) -> AgentCommand:
    """One command frame from the host; raises :class:`AgentProtocolError`."""
    command: AgentCommand = _parse(_COMMANDS, _COMMAND_NAMES, line, "host", "cmd")
    return command


def encode(message: AgentCommand | AgentEvent) -> bytes:
    """The frame of ``message`` (see :func:`encode_frame`)."""
    obj: dict[str, FrameValue] = message.model_dump(mode="json")
    return encode_frame(obj)
