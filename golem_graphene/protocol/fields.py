"""Field types and the base of every protocol document (manifests, receipts, API messages).

Kept apart from :mod:`golem_graphene.protocol.messages` (the provider API's messages, which
bring the attestation model in) so that the in-enclave agent, which only seals, signs and
parses manifests, imports no more than it needs.

Encodings on the wire (the same in manifests and receipts):

* fixed-size binary values (keys, digests, nonces, signatures): lowercase hex;
* task ids: 16 bytes as 32 lowercase hex characters;
* age recipients: ``age1...`` Bech32, normalised to lowercase;
* times: RFC 3339 in UTC with microseconds and a ``Z`` suffix.

Parsing is strict about encodings so that every accepted document has exactly one serialised
form: what a receipt signature covers is what the verifier interprets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    WithJsonSchema,
)

from golem_graphene._internal.age_recipient import decode_recipient, encode_recipient
from golem_graphene.canonical_json import CanonicalJsonError, parse_json
from golem_graphene.errors import Error, ProtocolError
from golem_graphene.limits import MAX_MESSAGE_BYTES
from golem_graphene.protocol.binding import TASK_ID_SIZE
from golem_graphene.protocol.names import FILE_NAME_PATTERN, RunnerName, validate_file_name

__all__ = [
    "AgeRecipientText",
    "FileName",
    "Hex32",
    "Hex64",
    "Message",
    "Runner",
    "TaskIdHex",
    "UtcTime",
    "describe_validation_error",
    "recipient_public_bytes",
]

Runner = RunnerName
"""The enclave runners (:data:`~golem_graphene.protocol.names.RUNNER_NAMES`)."""


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


def _age_recipient(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be an age1... recipient string")
    try:
        return encode_recipient(decode_recipient(value))
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
    try:
        return decode_recipient(recipient)
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


FileName = Annotated[
    str,
    PlainValidator(validate_file_name),
    WithJsonSchema({"type": "string", "pattern": FILE_NAME_PATTERN}),
]
"""An input or output name (:func:`~golem_graphene.protocol.names.validate_file_name`)."""


# --- the base of every document -------------------------------------------------------------------


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

        The text goes through the one strict parser
        (:func:`~golem_graphene.canonical_json.parse_json`) before the model reads it: another
        reader must not be able to see a different document in the same bytes. Raises
        ``format_error`` (a :class:`ProtocolError` unless the subclass says otherwise) for
        oversized input, text that is not UTF-8, invalid JSON, duplicate keys, floats,
        ``NaN``/``Infinity``, integers beyond the safe range, lone surrogates, over-deep
        nesting, unknown or missing fields and every field rule.
        """
        if len(data) > cls.max_json_bytes:
            raise cls.format_error(
                f"{cls.__name__} document is too large",
                expected=f"<= {cls.max_json_bytes} bytes",
                found=len(data),
            )
        try:
            obj = parse_json(data)
        except CanonicalJsonError as exc:
            raise cls.format_error(f"invalid {cls.__name__}: {exc.describe()}") from None
        return cls.from_obj(obj)

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
