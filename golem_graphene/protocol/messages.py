"""Protocol v1 messages: frozen pydantic models with one parsing boundary each.

Every message is a :class:`Message`: frozen, ``extra="forbid"``, and parsed only through
:meth:`Message.from_json` (or :meth:`Message.from_obj` for an already-decoded object), which
bounds the input size and turns every validation failure into a
:class:`~golem_graphene.errors.ProtocolError` that names the field and the rule, never the
offending value (it may be a token).

The field types and the :class:`Message` base are in :mod:`golem_graphene.protocol.fields`
(with the encodings on the wire) and re-exported here; this module adds the quote (canonical
standard base64) and the collateral fields, and the provider API's messages.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from typing import Annotated, Any, Self

from pydantic import (
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.errors import CollateralFormatError, Error
from golem_graphene.limits import (
    MAX_EVENT_MESSAGE_CHARS,
    MAX_QUOTE_BYTES,
)
from golem_graphene.protocol.fields import (
    AgeRecipientText,
    FileName,
    Hex32,
    Hex64,
    Message,
    Runner,
    TaskIdHex,
    UtcTime,
    describe_validation_error,
    recipient_public_bytes,
)
from golem_graphene.protocol.names import (
    ERROR_CODE_PATTERN,
    FILE_NAME_PATTERN,
    TERMINAL_STATES,
    TaskState,
    validate_file_name,
)
from golem_graphene.protocol.version import PROTOCOL_NAME, ProtocolName

__all__ = [
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

# --- field types --------------------------------------------------------------------------------


def _quote_b64(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str):
        if len(value) > 4 * (MAX_QUOTE_BYTES // 3 + 1):
            raise ValueError(f"is longer than a {MAX_QUOTE_BYTES}-byte quote")
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("must be standard base64 with padding") from exc
        if base64.b64encode(raw).decode() != value:
            raise ValueError("must be canonical base64 (no stray bits)")
    else:
        raise ValueError("must be a base64 string")
    if not raw or len(raw) > MAX_QUOTE_BYTES:
        raise ValueError(f"must decode to 1..{MAX_QUOTE_BYTES} bytes, found {len(raw)}")
    return raw


def _to_b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


Base64Quote = Annotated[
    bytes,
    PlainValidator(_quote_b64),
    PlainSerializer(_to_b64, return_type=str),
    WithJsonSchema({"type": "string", "contentEncoding": "base64"}),
]
"""Quote bytes as canonical standard base64 (at most ``MAX_QUOTE_BYTES`` decoded)."""


def _collateral(value: Any) -> QuoteCollateral:
    if isinstance(value, QuoteCollateral):
        return value
    if not isinstance(value, dict):
        raise ValueError("must be a collateral JSON object")
    try:
        return QuoteCollateral.from_mapping(value)
    except CollateralFormatError as exc:
        raise ValueError(exc.describe()) from exc


def _collateral_obj(value: QuoteCollateral) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pck_crl_issuer_chain": value.pck_crl_issuer_chain,
        "root_ca_crl": (value.root_ca_crl or b"").hex(),
        "pck_crl": (value.pck_crl or b"").hex(),
        "tcb_info_issuer_chain": value.tcb_info_issuer_chain,
        "tcb_info": value.tcb_info,
        "tcb_info_signature": value.tcb_info_signature.hex(),
        "qe_identity_issuer_chain": value.qe_identity_issuer_chain,
        "qe_identity": value.qe_identity,
        "qe_identity_signature": value.qe_identity_signature.hex(),
    }
    if value.pck_certificate_chain is not None:
        out["pck_certificate_chain"] = value.pck_certificate_chain
    return out


CollateralField = Annotated[
    QuoteCollateral,
    PlainValidator(_collateral),
    PlainSerializer(_collateral_obj, return_type=dict),
    WithJsonSchema({"type": "object", "description": "dcap-qvl QuoteCollateralV3 JSON"}),
]
"""A :class:`QuoteCollateral` as its JSON object (the same keys as the collateral file)."""


def new_capability_token() -> str:
    """A fresh per-task capability token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


# --- messages -----------------------------------------------------------------------------------


class Evidence(Message):
    """What the provider publishes after launch (DESIGN section 4, step 2).

    ``quote`` is ``None`` only for the unattested ``gramine-direct`` runner. ``simulated`` is
    true whenever the run has no real SGX protection (``sim`` and ``gramine-direct``); the
    verifier decides for itself from its trust anchor and the receipt check compares the two.
    ``collateral`` may be ``None`` when the requestor fetches its own.
    """

    protocol: ProtocolName = PROTOCOL_NAME
    task_id: TaskIdHex
    quote: Base64Quote | None
    enclave_key: Hex32
    signing_key: Hex32
    collateral: CollateralField | None = None
    runner: Runner
    simulated: StrictBool

    @model_validator(mode="after")
    def _runner_consistent(self) -> Self:
        if self.runner == "gramine-direct":
            if self.quote is not None or self.collateral is not None:
                raise ValueError("gramine-direct is unattested: quote and collateral are null")
            if not self.simulated:
                raise ValueError("gramine-direct has no SGX protection: simulated must be true")
        else:
            if self.quote is None:
                raise ValueError(f"runner {self.runner} must publish a quote")
            if self.simulated != (self.runner == "sim"):
                raise ValueError(
                    f"simulated must be {str(self.runner == 'sim').lower()} for {self.runner}"
                )
        return self


class CreateTaskRequest(Message):
    """Step 1: the requestor names a task spec (and its SHA-256), its nonce and ``R.pub``."""

    protocol: ProtocolName = PROTOCOL_NAME
    spec_name: Annotated[StrictStr, Field(pattern=FILE_NAME_PATTERN)]
    spec_digest: Hex32
    requestor_key: AgeRecipientText
    nonce: Hex32


class CreateTaskResponse(Message):
    """Step 1: the provider's answer: the task id and the per-task capability token."""

    protocol: ProtocolName = PROTOCOL_NAME
    task_id: TaskIdHex
    capability_token: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_-]{32,256}$")]


class TaskEvent(Message):
    """One state change or progress report; ``seq`` increases by one per event of a task."""

    task_id: TaskIdHex
    state: TaskState
    seq: Annotated[StrictInt, Field(ge=0)]
    bytes_done: Annotated[StrictInt, Field(ge=0)] | None = None
    bytes_total: Annotated[StrictInt, Field(ge=0)] | None = None
    message: Annotated[StrictStr, Field(max_length=MAX_EVENT_MESSAGE_CHARS)] | None = None
    code: Annotated[StrictStr, Field(pattern=ERROR_CODE_PATTERN)] | None = None
    """Only on ``failed``: the failure's stable code (e.g. ``input_sha256``, ``task_timeout``)."""

    @model_validator(mode="after")
    def _progress_consistent(self) -> Self:
        if (
            self.bytes_done is not None
            and self.bytes_total is not None
            and self.bytes_done > self.bytes_total
        ):
            raise ValueError("bytes_done exceeds bytes_total")
        return self

    @property
    def terminal(self) -> bool:
        """True for ``done``, ``failed`` and ``cancelled``: no event follows."""
        return self.state in TERMINAL_STATES


class ErrorBody(Message):
    """Every error response: a stable ``code`` and a message that names what failed."""

    code: Annotated[StrictStr, Field(pattern=ERROR_CODE_PATTERN)]
    message: Annotated[StrictStr, Field(max_length=MAX_EVENT_MESSAGE_CHARS)]

    @classmethod
    def from_error(cls, error: Error) -> ErrorBody:
        """The body for one of our errors (its code and described message, truncated)."""
        return cls(code=error.code, message=error.describe()[:MAX_EVENT_MESSAGE_CHARS])
