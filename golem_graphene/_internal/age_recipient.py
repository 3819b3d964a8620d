"""The text form of an age X25519 recipient (``age1...``): the one decoder and encoder.

A leaf module, so that both the protocol's field types (receipts and API messages carry
``requestor_key``) and the sealing keys read recipients by the same rules. Other recipient kinds
age knows (post-quantum ``age1pq1...``, tagged ``age1tag1...``, plugins, SSH keys) are refused
with :class:`~golem_graphene.errors.UnsupportedRecipientError`, never misread as X25519.
"""

from __future__ import annotations

from typing import Final

from golem_graphene._internal import bech32
from golem_graphene.errors import AgeFormatError, UnsupportedRecipientError

__all__ = ["KEY_SIZE", "decode_recipient", "encode_recipient"]

RECIPIENT_HRP: Final = "age"
KEY_SIZE: Final = 32


def _unsupported(text: str) -> str | None:
    if text.startswith(("ssh-ed25519 ", "ssh-rsa ", "sk-ssh-", "ecdsa-sha2-")):
        return "SSH recipients are not supported; use an X25519 recipient (age1...)"
    lower = text.lower()
    if lower.startswith("age1pq1"):
        return "post-quantum (mlkem768x25519) recipients are not supported; use age1..."
    if lower.startswith(("age1tag1", "age1tagpq1")):
        return "tagged (hardware) recipients are not supported; use an X25519 recipient"
    return None


def decode_recipient(text: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1...`` recipient (surrounding space ignored).

    Raises :class:`UnsupportedRecipientError` for recipient kinds age knows but we do not
    implement, and :class:`AgeFormatError` for anything that is not a valid recipient (bad
    checksum, wrong length), so that a typo never seals to the wrong key.
    """
    text = text.strip()
    reason = _unsupported(text)
    if reason:
        raise UnsupportedRecipientError(reason)
    hrp, data = bech32.decode(text)
    if hrp != RECIPIENT_HRP:
        if hrp.startswith("age1"):
            raise UnsupportedRecipientError(
                "age plugin recipients are not supported; use an X25519 recipient (age1...)",
                found=hrp[:24],
            )
        raise AgeFormatError("not an age recipient", expected="age1...")
    if len(data) != KEY_SIZE:
        raise AgeFormatError(
            "X25519 recipient has the wrong length", expected=KEY_SIZE, found=len(data)
        )
    return data


def encode_recipient(public: bytes) -> str:
    """The ``age1...`` text of a 32-byte X25519 public key, as ``age-keygen`` prints it."""
    if len(public) != KEY_SIZE:
        raise AgeFormatError(
            "X25519 public key has the wrong length", expected=KEY_SIZE, found=len(public)
        )
    return bech32.encode(RECIPIENT_HRP, public)
