"""X25519 identities and recipients in age's encodings, and age's identity/recipient files.

An identity (``AGE-SECRET-KEY-1...``) is a 32-byte X25519 private key; its recipient
(``age1...``) is the public key. Both are Bech32 as the C2SP age spec defines them, so keys made
here work with ``age -r``/``age -d -i`` and the other way round. Other recipient kinds age knows
(post-quantum ``age1pq1...``, tagged ``age1tag1...``, plugins, SSH keys, passphrases) are refused
with :class:`~golem_graphene.errors.UnsupportedRecipientError`, never misread as X25519.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from golem_graphene import limits
from golem_graphene._internal import bech32
from golem_graphene._internal.age_recipient import decode_recipient, encode_recipient
from golem_graphene.errors import AgeFormatError, UnsupportedRecipientError, UsageError
from golem_graphene.sealing._internal import x25519 as _x25519

__all__ = [
    "X25519Identity",
    "X25519Recipient",
    "load_identities",
    "load_recipients",
    "parse_identities",
    "parse_recipients",
]

_IDENTITY_HRP = "age-secret-key-"
_KEY_SIZE = 32


def _unsupported_identity(text: str) -> str | None:
    upper = text.upper()
    if upper.startswith("AGE-SECRET-KEY-PQ-1"):
        return "post-quantum (mlkem768x25519) identities are not supported; use an X25519 identity"
    if upper.startswith("AGE-PLUGIN-"):
        return "age plugin identities are not supported; use an X25519 identity"
    if text.startswith("-----BEGIN") and "PRIVATE KEY" in text:
        return "SSH identities are not supported; use an X25519 identity (AGE-SECRET-KEY-1...)"
    return None


class _Frozen:
    """Immutable instances (plain classes, not dataclasses: importing dataclasses costs the
    seal/open/keygen commands a noticeable share of their start-up)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


class X25519Recipient(_Frozen):
    """An age X25519 recipient: the public key that files are sealed to.

    Build one with :meth:`from_string` or :meth:`from_public_bytes`; instances are immutable and
    compare by key.
    """

    __slots__ = ("_key", "_raw")
    _raw: bytes
    _key: X25519PublicKey

    def __init__(self, raw: bytes, key: X25519PublicKey) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_public_bytes(cls, raw: bytes) -> X25519Recipient:
        """A recipient from the raw 32-byte X25519 public key.

        Raises AgeFormatError if ``raw`` is not 32 bytes.
        """
        if len(raw) != _KEY_SIZE:
            raise AgeFormatError(
                "X25519 public key has the wrong length", expected=32, found=len(raw)
            )
        return cls(bytes(raw), _x25519.public_from_bytes(bytes(raw)))

    @classmethod
    def from_string(cls, s: str) -> X25519Recipient:
        """Parse an ``age1...`` recipient as printed by ``age-keygen``.

        Raises UnsupportedRecipientError for recipient kinds age knows but we do not implement
        (``age1pq1``, ``age1tag1``, plugins such as ``age1yubikey1``, SSH keys), and AgeFormatError
        for anything that is not a valid recipient (bad checksum, wrong length), so that a typo
        never seals to the wrong key.
        """
        return cls.from_public_bytes(decode_recipient(s))

    def public_bytes(self) -> bytes:
        """The raw 32-byte X25519 public key."""
        return self._raw

    def to_string(self) -> str:
        """The ``age1...`` encoding, as ``age-keygen`` prints it."""
        return encode_recipient(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X25519Recipient) and self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"X25519Recipient({self.to_string()!r})"

    def __str__(self) -> str:
        return self.to_string()


class X25519Identity(_Frozen):
    """An age X25519 identity: the private key that opens files sealed to its recipient.

    The private key never appears in ``repr``; use :meth:`to_string` to export it on purpose.
    """

    __slots__ = ("_key", "_raw")
    _raw: bytes
    _key: X25519PrivateKey

    def __init__(self, raw: bytes, key: X25519PrivateKey) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_key", key)

    @classmethod
    def generate(cls) -> X25519Identity:
        """A fresh identity from the operating system's CSPRNG."""
        return cls.from_private_bytes(os.urandom(_KEY_SIZE))

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> X25519Identity:
        """An identity from the raw 32-byte X25519 private key (the scalar, as age stores it).

        Raises AgeFormatError if ``raw`` is not 32 bytes.
        """
        if len(raw) != _KEY_SIZE:
            raise AgeFormatError(
                "X25519 private key has the wrong length", expected=32, found=len(raw)
            )
        return cls(bytes(raw), _x25519.private_from_bytes(bytes(raw)))

    @classmethod
    def from_string(cls, s: str) -> X25519Identity:
        """Parse an ``AGE-SECRET-KEY-1...`` identity as written by ``age-keygen``.

        Raises UnsupportedRecipientError for identity kinds age knows but we do not implement
        (post-quantum, plugins, SSH keys) and AgeFormatError for anything else that is not a valid
        X25519 identity. The message never contains the key.
        """
        text = s.strip()
        reason = _unsupported_identity(text)
        if reason:
            raise UnsupportedRecipientError(reason)
        try:
            hrp, data = bech32.decode(text)
        except AgeFormatError as exc:
            raise AgeFormatError(f"not a valid age identity ({exc.message})") from None
        if hrp != _IDENTITY_HRP:
            raise AgeFormatError("not an age identity", expected="AGE-SECRET-KEY-1...")
        if len(data) != _KEY_SIZE:
            raise AgeFormatError(
                "X25519 identity has the wrong length", expected=32, found=len(data)
            )
        return cls.from_private_bytes(data)

    def private_bytes(self) -> bytes:
        """The raw 32-byte private key. Handle with care: it opens every file sealed to it."""
        return self._raw

    def to_string(self) -> str:
        """The ``AGE-SECRET-KEY-1...`` encoding, as ``age-keygen`` writes it."""
        return bech32.encode(_IDENTITY_HRP.upper(), self._raw)

    def recipient(self) -> X25519Recipient:
        """The recipient (public key) that files for this identity are sealed to."""
        return X25519Recipient.from_public_bytes(self._key.public_key().public_bytes_raw())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, X25519Identity):
            return False
        import hmac  # here: keygen, seal and open never compare identities (start-up)

        return hmac.compare_digest(self._raw, other._raw)

    def __hash__(self) -> int:
        return hash(self.recipient().public_bytes())

    def __repr__(self) -> str:
        return f"X25519Identity(recipient={self.recipient().to_string()!r})"


def _key_lines(text: str, what: str) -> list[tuple[int, str]]:
    """The non-comment, non-blank lines of an age key file, with their line numbers."""
    if text.startswith("age-encryption.org/") or text.lstrip().startswith(
        "-----BEGIN AGE ENCRYPTED FILE-----"
    ):
        raise UnsupportedRecipientError(
            f"the {what} file is itself age-encrypted (passphrase-protected); decrypt it first"
        )
    lines = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            lines.append((lineno, stripped))
    return lines


def parse_identities(text: str, *, source: str = "<string>") -> list[X25519Identity]:
    """Parse the text of an identity file the way ``age -i`` reads it.

    One identity per line; lines starting with ``#`` and blank lines are ignored. Raises
    AgeFormatError (naming the line, never echoing key material) for an invalid line or a file
    without identities, UnsupportedRecipientError for identity kinds we do not implement.
    """
    if text.lstrip().startswith("-----BEGIN") and "PRIVATE KEY" in text:
        raise UnsupportedRecipientError(
            f"{source}: SSH identities are not supported; use an X25519 identity"
        )
    identities = []
    for lineno, line in _key_lines(text, "identity"):
        try:
            identities.append(X25519Identity.from_string(line))
        except UnsupportedRecipientError as exc:
            raise UnsupportedRecipientError(f"{source}:{lineno}: {exc.message}") from None
        except AgeFormatError as exc:
            raise AgeFormatError(f"{source}:{lineno}: {exc.message}") from None
    if not identities:
        raise AgeFormatError(f"{source}: no identities found")
    return identities


def parse_recipients(text: str, *, source: str = "<string>") -> list[X25519Recipient]:
    """Parse the text of a recipients file the way ``age -R`` reads it.

    One recipient per line; ``#`` comments and blank lines are ignored. Raises AgeFormatError for
    an invalid line or an empty file, UnsupportedRecipientError for kinds we do not implement.
    """
    recipients = []
    for lineno, line in _key_lines(text, "recipients"):
        try:
            recipients.append(X25519Recipient.from_string(line))
        except UnsupportedRecipientError as exc:
            raise UnsupportedRecipientError(f"{source}:{lineno}: {exc.message}") from None
        except AgeFormatError as exc:
            raise AgeFormatError(f"{source}:{lineno}: {exc.describe()}") from None
    if not recipients:
        raise AgeFormatError(f"{source}: no recipients found")
    return recipients


def _read_key_file(path: str | os.PathLike[str], what: str) -> str:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(limits.MAX_AGE_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {str(p)!r}: {exc.strerror or exc}") from exc
    if len(data) > limits.MAX_AGE_KEY_FILE_BYTES:
        raise AgeFormatError(
            f"{what} file {str(p)!r} is too large", expected=limits.MAX_AGE_KEY_FILE_BYTES
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if data.startswith(b"age-encryption.org/"):
            raise UnsupportedRecipientError(
                f"the {what} file {str(p)!r} is itself age-encrypted (passphrase-protected)"
            ) from exc
        raise AgeFormatError(f"{what} file {str(p)!r} is not UTF-8 text") from exc


def load_identities(path: str | os.PathLike[str]) -> list[X25519Identity]:
    """Read an identity file as ``age -i`` does (see :func:`parse_identities`).

    Raises UsageError if the file cannot be read, AgeFormatError if it is not a valid identity
    file, UnsupportedRecipientError for identity kinds we do not implement.
    """
    return parse_identities(_read_key_file(path, "identity"), source=str(path))


def load_recipients(path: str | os.PathLike[str]) -> list[X25519Recipient]:
    """Read a recipients file as ``age -R`` does (see :func:`parse_recipients`).

    Raises UsageError if the file cannot be read, AgeFormatError or UnsupportedRecipientError for
    invalid or unsupported lines.
    """
    return parse_recipients(_read_key_file(path, "recipients"), source=str(path))
