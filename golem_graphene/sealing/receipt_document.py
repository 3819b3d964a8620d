"""The receipt document the enclave signs (DESIGN section 4, step 6), and its signature.

The enclave agent signs, with its attested Ed25519 key ``S``, a :class:`Receipt`: the task, the
nonce, the measurement, the input manifest digest, how the workload ended, and the size and
SHA-256 (plaintext and ciphertext) of every output including ``stdout`` and ``stderr``.

Signature: Ed25519 over ``b"golem-graphene/v1/receipt\\n" || canonical_json(receipt)``, where
``canonical_json`` is RFC 8785 over the receipt's JSON form. The domain prefix keeps a receipt
signature from ever being valid as any other message ``S`` might sign. The verifier checks the
signature over what it *parsed* (it re-serialises the model), so the signature covers exactly
what it interprets; the encodings are strict, so an honest receipt re-serialises identically.

This module is what the in-enclave agent needs (the model and signing); the bundle with the
evidence and every verification step, the signature's included, are in
:mod:`golem_graphene.sealing.receipt`, which re-exports everything here.
"""

from __future__ import annotations

import hmac
from typing import Annotated, ClassVar, Final, Self

import nacl.signing
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from golem_graphene.canonical_json import canonical_json
from golem_graphene.errors import Error, ReceiptError
from golem_graphene.limits import MAX_RECEIPT_BUNDLE_BYTES, MAX_TASK_FILES
from golem_graphene.protocol.binding import Transcript
from golem_graphene.protocol.fields import (
    AgeRecipientText,
    FileName,
    Hex32,
    Hex64,
    Message,
    Runner,
    TaskIdHex,
    UtcTime,
    recipient_public_bytes,
)
from golem_graphene.protocol.names import Termination
from golem_graphene.protocol.version import PROTOCOL_NAME, ProtocolName

__all__ = [
    "RECEIPT_SIGNATURE_DOMAIN",
    "STD_STREAMS",
    "Measurement",
    "OutputEntry",
    "Receipt",
    "ReceiptBindingError",
    "ReceiptCheckError",
    "ReceiptEvidenceError",
    "ReceiptFormatError",
    "ReceiptMeasurementError",
    "ReceiptOutputError",
    "ReceiptSignatureError",
    "SignedReceipt",
    "Termination",
    "Timings",
    "sign_receipt",
]

RECEIPT_SIGNATURE_DOMAIN: Final = f"{PROTOCOL_NAME}/receipt\n".encode()
"""Prefix of the signed message: ``b"golem-graphene/v1/receipt\\n"``."""

STD_STREAMS: Final = ("stdout", "stderr")
"""Outputs every receipt lists: the workload's captured standard streams."""

# --- errors -------------------------------------------------------------------------------------


class ReceiptFormatError(ReceiptError):
    """A receipt or receipt bundle is malformed (JSON, fields, encodings, invariants)."""

    code = "receipt_format"


class ReceiptCheckError(ReceiptError):
    """A well-formed receipt failed a check; ``check`` names it, ``output`` the output if any.

    ``code`` is ``receipt_<check>``, e.g. ``receipt_signature``, ``receipt_output_sha256``.
    """

    code = "receipt_check"

    def __init__(
        self,
        check: str,
        message: str,
        *,
        output: str | None = None,
        expected: object = None,
        found: object = None,
    ) -> None:
        self.check = check
        self.output = output
        self.code = f"receipt_{check}"
        super().__init__(message, expected=expected, found=found)


class ReceiptEvidenceError(ReceiptCheckError):
    """The bundle's evidence cannot be verified (no quote: ``gramine-direct``; no collateral)."""


class ReceiptBindingError(ReceiptCheckError):
    """The receipt, its evidence and the quote disagree on the task, the keys or the quote.

    Checks: ``task_id``, ``nonce``, ``enclave_key``, ``signing_key``, ``runner``, ``quote``,
    ``report_data``, ``input_manifest``.
    """


class ReceiptSignatureError(ReceiptCheckError):
    """The Ed25519 signature over the canonical receipt does not verify under ``S.pub``."""


class ReceiptMeasurementError(ReceiptCheckError):
    """The receipt's measurement is not the quote's (``mrenclave``) or misstates ``simulated``."""


class ReceiptOutputError(ReceiptCheckError):
    """An output file does not match the receipt.

    Checks: ``identity`` (the identity is not the receipt's requestor key),
    ``output_missing``, ``output_extra``, ``output_not_regular``, ``output_read``,
    ``output_size``, ``output_sha256`` (ciphertext), ``output_decrypt``, ``plaintext_size``,
    ``plaintext_sha256``.
    """


# --- the model ----------------------------------------------------------------------------------


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_Size = Annotated[StrictInt, Field(ge=0, le=2**53 - 1)]


class Measurement(_Part):
    """What ran: the enclave's MRENCLAVE, the runner, and whether SGX protection was absent."""

    mrenclave: Hex32
    runner: Runner
    simulated: StrictBool


class OutputEntry(_Part):
    """One sealed output: plaintext size and SHA-256, age ciphertext size and SHA-256."""

    name: FileName
    size: _Size
    plaintext_sha256: Hex32
    ciphertext_size: _Size
    ciphertext_sha256: Hex32


class Timings(_Part):
    """Wall-clock start and end of the workload (UTC) and its duration (monotonic clock)."""

    started_at: UtcTime
    finished_at: UtcTime
    duration_ms: _Size

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.finished_at < self.started_at:
            raise ValueError("finished_at lies before started_at")
        return self


class Receipt(Message):
    """What the enclave attests it did; signed with ``S`` (see the module docstring).

    ``exit_status``: for ``exited`` the exit code (0..255); for ``signaled`` minus the signal
    number (-64..-1, as Python's ``subprocess`` reports it); for ``timeout`` and
    ``resource_limit`` the status the workload ended with once stopped (-64..255). Output
    names are unique and include ``stdout`` and ``stderr``.
    """

    max_json_bytes: ClassVar[int] = MAX_RECEIPT_BUNDLE_BYTES
    format_error: ClassVar[type[Error]] = ReceiptFormatError

    protocol: ProtocolName = PROTOCOL_NAME
    task_id: TaskIdHex
    nonce: Hex32
    measurement: Measurement
    input_manifest_sha256: Hex32
    exit_status: StrictInt = Field(ge=-64, le=255)
    termination: Termination
    outputs: tuple[OutputEntry, ...] = Field(max_length=MAX_TASK_FILES + len(STD_STREAMS))
    timings: Timings
    requestor_key: AgeRecipientText
    enclave_key: Hex32
    signing_key: Hex32

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.termination == "exited" and self.exit_status < 0:
            raise ValueError("an exited workload has an exit status of 0..255")
        if self.termination == "signaled" and self.exit_status >= 0:
            raise ValueError("a signaled workload has minus the signal number as exit status")
        names = [o.name for o in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError("output names must be unique")
        missing = [s for s in STD_STREAMS if s not in names]
        if missing:
            raise ValueError(f"outputs must include {' and '.join(missing)}")
        return self

    def canonical_bytes(self) -> bytes:
        """The RFC 8785 canonical JSON of the receipt."""
        return canonical_json(self.model_dump(mode="json"))

    def signed_message(self) -> bytes:
        """The exact bytes ``S`` signs: the domain prefix and :meth:`canonical_bytes`."""
        return RECEIPT_SIGNATURE_DOMAIN + self.canonical_bytes()

    def transcript(self) -> Transcript:
        """The task transcript the receipt claims (its report data must be in the quote)."""
        return Transcript(
            task_id=self.task_id,
            nonce=self.nonce,
            enclave_key=self.enclave_key,
            signing_key=self.signing_key,
            requestor_key=recipient_public_bytes(self.requestor_key),
        )

    def output(self, name: str) -> OutputEntry:
        """The output called ``name``; raises ``KeyError`` when there is none."""
        for entry in self.outputs:
            if entry.name == name:
                return entry
        raise KeyError(name)


class SignedReceipt(Message):
    """A receipt with its Ed25519 signature and ``S.pub``."""

    max_json_bytes: ClassVar[int] = MAX_RECEIPT_BUNDLE_BYTES
    format_error: ClassVar[type[Error]] = ReceiptFormatError

    receipt: Receipt
    signature: Hex64
    signing_key: Hex32


# --- signing ------------------------------------------------------------------------------------


def _private_key(key: Ed25519PrivateKey | nacl.signing.SigningKey) -> Ed25519PrivateKey:
    if isinstance(key, Ed25519PrivateKey):
        return key
    if isinstance(key, nacl.signing.SigningKey):
        return Ed25519PrivateKey.from_private_bytes(bytes(key))
    raise ReceiptError(
        "unsupported signing key type",
        expected="Ed25519PrivateKey or nacl.signing.SigningKey",
        found=type(key).__name__,
    )


def sign_receipt(
    receipt: Receipt, signing_key: Ed25519PrivateKey | nacl.signing.SigningKey
) -> SignedReceipt:
    """Sign ``receipt`` with ``S`` (the enclave side).

    Raises :class:`ReceiptError` when ``signing_key`` is not the key the receipt names as
    ``signing_key`` (a signature no verifier would accept), or is of an unsupported type.
    """
    private = _private_key(signing_key)
    public = private.public_key().public_bytes_raw()
    if not hmac.compare_digest(public, receipt.signing_key):
        raise ReceiptError(
            "the signing key is not the receipt's signing_key",
            expected=receipt.signing_key.hex(),
            found=public.hex(),
        )
    signature = private.sign(receipt.signed_message())
    return SignedReceipt(receipt=receipt, signature=signature, signing_key=public)
