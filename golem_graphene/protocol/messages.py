"""Protocol v1 messages: frozen pydantic models with one parsing boundary each.

Every message is a :class:`Message`: frozen, ``extra="forbid"``, and parsed only through
:meth:`Message.from_json` (or :meth:`Message.from_obj` for an already-decoded object), which
bounds the input size and turns every validation failure into a
:class:`~golem_graphene.errors.ProtocolError` that names the field and the rule, never the
offending value (it may be a token).

Encodings on the wire (the same in manifests and receipts):

* fixed-size binary values (keys, digests, nonces, signatures): lowercase hex;
* task ids: 16 bytes as 32 lowercase hex characters;
* variable-size blobs (the quote): standard base64 with padding, canonical (re-encodes
  identically);
* age recipients: ``age1...`` Bech32, normalised to lowercase;
* times: RFC 3339 in UTC with microseconds and a ``Z`` suffix.

Parsing is strict about encodings so that every accepted document has exactly one serialised
form: what a receipt signature covers is what the verifier interprets.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from golem_graphene.attestation.collateral import QuoteCollateral
from golem_graphene.errors import CollateralFormatError, Error, ProtocolError
from golem_graphene.limits import (
    MAX_EVENT_MESSAGE_CHARS,
    MAX_FILE_NAME_BYTES,
    MAX_MESSAGE_BYTES,
    MAX_QUOTE_BYTES,
)
from golem_graphene.protocol.binding import TASK_ID_SIZE
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

Runner = Literal["sim", "gramine-sgx", "gramine-direct"]
"""The enclave runners of DESIGN section 3."""

TaskState = Literal[
    "created",
    "launching",
    "attested",
    "inputs_received",
    "running",
    "sealing",
    "done",
    "failed",
    "cancelled",
]
"""Task lifecycle states, in order; the last three are terminal."""

TERMINAL_STATES: frozenset[str] = frozenset({"done", "failed", "cancelled"})


# --- field types --------------------------------------------------------------------------------


def _hex_validator(size: int) -> Callable[[Any], bytes]:
    pattern = re.compile(f"[0-9a-f]{{{2 * size}}}")

    def validate(value: Any) -> bytes:
        if isinstance(value, bytes | bytearray):
            if len(value) != size:
                raise ValueError(f"must be {size} bytes, found {len(value)}")
            return bytes(value)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"must be {2 * size} lowercase hex characters")
        return bytes.fromhex(value)

    return validate


def _to_hex(value: bytes) -> str:
    return value.hex()


def _hex_schema(size: int) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": f"^[0-9a-f]{{{2 * size}}}$"})


Hex32 = Annotated[
    bytes,
    PlainValidator(_hex_validator(32)),
    PlainSerializer(_to_hex, return_type=str),
    _hex_schema(32),
]
"""32 bytes (a key, a SHA-256 digest, a nonce) as 64 lowercase hex characters."""

Hex64 = Annotated[
    bytes,
    PlainValidator(_hex_validator(64)),
    PlainSerializer(_to_hex, return_type=str),
    _hex_schema(64),
]
"""64 bytes (an Ed25519 signature) as 128 lowercase hex characters."""

TaskIdHex = Annotated[
    bytes,
    PlainValidator(_hex_validator(TASK_ID_SIZE)),
    PlainSerializer(_to_hex, return_type=str),
    _hex_schema(TASK_ID_SIZE),
]
"""A 16-byte task id as 32 lowercase hex characters."""


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


def _age_recipient(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an age1... recipient string")
    # Imported here: golem_graphene.sealing imports this module, so a top-level import would
    # be circular.
    from golem_graphene.sealing.keys import X25519Recipient

    try:
        return X25519Recipient.from_string(value).to_string()
    except Error as exc:
        raise ValueError(f"is not an X25519 age recipient: {exc.message}") from exc


AgeRecipientText = Annotated[
    str,
    PlainValidator(_age_recipient),
    WithJsonSchema({"type": "string", "pattern": "^age1[02-9ac-hj-np-z]{58}$"}),
]
"""An X25519 age recipient (``age1...``), normalised to its canonical lowercase form."""


def recipient_public_bytes(recipient: str) -> bytes:
    """The raw 32-byte X25519 public key of an ``age1...`` recipient.

    Raises :class:`ProtocolError` when ``recipient`` is not an X25519 age recipient.
    """
    from golem_graphene.sealing.keys import X25519Recipient

    try:
        return X25519Recipient.from_string(recipient).public_bytes()
    except Error as exc:
        raise ProtocolError(f"not an X25519 age recipient: {exc.message}") from exc


def _utc_time(value: Any) -> datetime:
    if isinstance(value, str):
        if len(value) > 64:
            raise ValueError("is not an RFC 3339 time")
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("is not an RFC 3339 time") from exc
    if not isinstance(value, datetime):
        raise ValueError("must be an RFC 3339 time string")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("must carry a time zone (use Z for UTC)")
    return value.astimezone(UTC)


def _time_text(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


UtcTime = Annotated[
    datetime,
    PlainValidator(_utc_time),
    PlainSerializer(_time_text, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
"""An aware time, normalised to UTC and written as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""


def validate_file_name(name: str) -> str:
    """Check an input or output name and return its NFC form.

    A name is one path component that is safe on every host and inside the enclave: non-empty,
    at most ``MAX_FILE_NAME_BYTES`` in UTF-8, no ``/`` or ``\\``, no NUL or other control
    characters, not starting with ``.`` (which also excludes ``.`` and ``..`` and hidden
    files), and no lone surrogates. Names are compared after NFC normalisation, so ``é`` typed
    on macOS (NFD) and on Linux (NFC) is the same name.

    Raises ``ValueError`` naming the rule (pydantic turns it into a validation error).
    """
    if not isinstance(name, str):
        raise ValueError("a name must be a string")
    nfc = unicodedata.normalize("NFC", name)
    try:
        encoded = nfc.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("a name must be valid Unicode (no lone surrogates)") from None
    if not encoded:
        raise ValueError("a name must not be empty")
    if len(encoded) > MAX_FILE_NAME_BYTES:
        raise ValueError(f"a name is at most {MAX_FILE_NAME_BYTES} UTF-8 bytes")
    if nfc.startswith("."):
        raise ValueError("a name must not start with '.'")
    if "/" in nfc or "\\" in nfc:
        raise ValueError("a name must not contain '/' or '\\'")
    if any(unicodedata.category(ch) == "Cc" for ch in nfc):
        raise ValueError("a name must not contain control characters")
    return nfc


FileName = Annotated[
    str,
    PlainValidator(validate_file_name),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME_BYTES}),
]
"""An input or output name (see :func:`validate_file_name`)."""


def new_capability_token() -> str:
    """A fresh per-task capability token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


# --- messages -----------------------------------------------------------------------------------


def describe_validation_error(exc: ValidationError, limit: int = 5) -> str:
    """``field.path: rule`` for the first ``limit`` errors, without the offending values."""
    parts = []
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err["loc"]) or "(document)"
        parts.append(f"{loc}: {err['msg']}")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


class Message(BaseModel):
    """Base of every protocol document: frozen, no unknown keys, one parsing boundary.

    Subclasses may set ``max_json_bytes`` (input bound) and ``format_error`` (the
    :class:`~golem_graphene.errors.Error` subclass raised for malformed input; default
    :class:`ProtocolError`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_json_bytes: ClassVar[int] = MAX_MESSAGE_BYTES
    format_error: ClassVar[type[Error]] = ProtocolError

    @classmethod
    def from_json(cls, data: str | bytes | bytearray) -> Self:
        """Parse a JSON document of this type.

        Raises ``format_error`` (a :class:`ProtocolError` unless the subclass says otherwise)
        for oversized input, invalid JSON, unknown or missing fields and every field rule.
        """
        if len(data) > cls.max_json_bytes:
            raise cls.format_error(
                f"{cls.__name__} document is too large",
                expected=f"<= {cls.max_json_bytes} bytes",
                found=len(data),
            )
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            raise cls.format_error(
                f"invalid {cls.__name__}: {describe_validation_error(exc)}"
            ) from None
        except (ValueError, RecursionError) as exc:  # defensive: the JSON parser's own errors
            raise cls.format_error(f"invalid {cls.__name__}: {exc}") from exc

    @classmethod
    def from_obj(cls, obj: object) -> Self:
        """Validate an already-decoded JSON value (a ``dict``); raises like :meth:`from_json`."""
        try:
            return cls.model_validate(obj)
        except ValidationError as exc:
            raise cls.format_error(
                f"invalid {cls.__name__}: {describe_validation_error(exc)}"
            ) from None

    def to_json(self) -> bytes:
        """Compact JSON bytes that :meth:`from_json` parses back to an equal message."""
        return self.model_dump_json().encode()


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
    spec_name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
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

    code: Annotated[StrictStr, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    message: Annotated[StrictStr, Field(max_length=MAX_EVENT_MESSAGE_CHARS)]

    @classmethod
    def from_error(cls, error: Error) -> ErrorBody:
        """The body for one of our errors (its code and described message, truncated)."""
        return cls(code=error.code, message=error.describe()[:MAX_EVENT_MESSAGE_CHARS])
