"""The report-data binding of protocol v1 and the task transcript it is computed from.

The enclave writes ``report_data`` into its SGX report, so the quote proves that the attested
enclave holds the private halves of ``E`` (input recipient) and ``S`` (receipt signing key) and
serves *this* task for *this* requestor::

    report_data = SHA-512(b"golem-graphene/v1/report-data"
                          || task_id (16) || nonce (32) || E.pub (32) || S.pub (32) || R.pub (32))

Every field has a fixed length, so plain concatenation is unambiguous; a wrong length is a
:class:`~golem_graphene.errors.ProtocolError`, never a silently different digest. The same five
fields (a :class:`Transcript`) also salt the input-manifest key and are its associated data.

Task ids are 16 random bytes, written as 32 lowercase hex characters.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from golem_graphene.errors import ProtocolError, VerificationError
from golem_graphene.protocol.version import PROTOCOL_NAME

if TYPE_CHECKING:  # the in-enclave agent imports this module, and never a quote parser
    from golem_graphene.attestation.quote import EnclaveReportBody

__all__ = [
    "KEY_SIZE",
    "NONCE_SIZE",
    "REPORT_DATA_LABEL",
    "REPORT_DATA_SIZE",
    "TASK_ID_SIZE",
    "BindingError",
    "Transcript",
    "check_report_data",
    "format_task_id",
    "new_nonce",
    "new_task_id",
    "parse_task_id",
    "report_data",
]

TASK_ID_SIZE: Final = 16
NONCE_SIZE: Final = 32
KEY_SIZE: Final = 32
REPORT_DATA_SIZE: Final = 64

REPORT_DATA_LABEL: Final = f"{PROTOCOL_NAME}/report-data".encode()
"""Domain label hashed before the transcript fields in ``report_data``."""

_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class BindingError(VerificationError):
    """The quote's report data does not bind the task, nonce and keys the caller expects.

    Either the evidence belongs to another task or requestor, or a relay substituted a key.
    ``expected`` is the recomputed report data, ``found`` the quote's (both hex).
    """

    code = "report_data_binding"


def _require(value: bytes, size: int, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ProtocolError(f"{what} must be bytes", expected="bytes", found=type(value).__name__)
    raw = bytes(value)
    if len(raw) != size:
        raise ProtocolError(f"{what} has the wrong length", expected=size, found=len(raw))
    return raw


@dataclass(frozen=True, slots=True)
class Transcript:
    """The five fixed-length values one task is bound to.

    ``task_id`` (16 bytes), ``nonce`` (32, chosen by the requestor), ``enclave_key`` (``E.pub``,
    X25519), ``signing_key`` (``S.pub``, Ed25519) and ``requestor_key`` (``R.pub``, X25519), all
    raw bytes. Construction raises :class:`ProtocolError` for any wrong length, so a transcript
    that exists is always well formed.
    """

    task_id: bytes
    nonce: bytes
    enclave_key: bytes
    signing_key: bytes
    requestor_key: bytes

    def __post_init__(self) -> None:
        for name, size in (
            ("task_id", TASK_ID_SIZE),
            ("nonce", NONCE_SIZE),
            ("enclave_key", KEY_SIZE),
            ("signing_key", KEY_SIZE),
            ("requestor_key", KEY_SIZE),
        ):
            object.__setattr__(self, name, _require(getattr(self, name), size, name))

    def encode(self) -> bytes:
        """The 144-byte concatenation ``task_id || nonce || E.pub || S.pub || R.pub``."""
        return self.task_id + self.nonce + self.enclave_key + self.signing_key + self.requestor_key

    def report_data(self) -> bytes:
        """The 64-byte report data the enclave must put in its quote for this transcript."""
        return hashlib.sha512(REPORT_DATA_LABEL + self.encode()).digest()

    def digest(self, label: bytes) -> bytes:
        """SHA-256 of ``label || encode()``: a transcript hash for one purpose (its label)."""
        return hashlib.sha256(bytes(label) + self.encode()).digest()


def report_data(
    task_id: bytes, nonce: bytes, enclave_key: bytes, signing_key: bytes, requestor_key: bytes
) -> bytes:
    """SHA-512 of the report-data label and the five transcript fields (64 bytes).

    Raises :class:`ProtocolError` when a field has the wrong length.
    """
    return Transcript(task_id, nonce, enclave_key, signing_key, requestor_key).report_data()


def check_report_data(body: EnclaveReportBody, transcript: Transcript) -> None:
    """Check that the quote's report body binds ``transcript``.

    Raises :class:`BindingError` (a :class:`VerificationError`) with the expected and found
    report data in hex. Call it after the quote verified and before anything is sealed to
    ``E.pub`` or a receipt signed by ``S`` is trusted.
    """
    expected = transcript.report_data()
    if not hmac.compare_digest(expected, body.report_data):
        raise BindingError(
            "the quote's report data does not bind this task's id, nonce and keys",
            expected=expected.hex(),
            found=body.report_data.hex(),
        )


def new_task_id() -> bytes:
    """16 fresh random bytes from the OS CSPRNG: a task id no one can predict or collide with."""
    return secrets.token_bytes(TASK_ID_SIZE)


def new_nonce() -> bytes:
    """32 fresh random bytes: the requestor's per-task nonce."""
    return secrets.token_bytes(NONCE_SIZE)


def format_task_id(task_id: bytes) -> str:
    """The canonical text form: 32 lowercase hex characters.

    Raises :class:`ProtocolError` unless ``task_id`` is 16 bytes.
    """
    return _require(task_id, TASK_ID_SIZE, "task_id").hex()


def parse_task_id(text: str) -> bytes:
    """Parse a task id given as 32 hex characters (any case) or a hyphenated UUID.

    Raises :class:`ProtocolError` for anything else, naming what was found.
    """
    if not isinstance(text, str):
        raise ProtocolError("a task id must be text", expected="str", found=type(text).__name__)
    candidate = text.strip()
    if _HEX32.fullmatch(candidate):
        return bytes.fromhex(candidate)
    if _UUID.fullmatch(candidate):
        return bytes.fromhex(candidate.replace("-", ""))
    raise ProtocolError(
        "a task id is 32 hex characters (or a UUID)", expected="32 hex characters", found=text[:80]
    )
