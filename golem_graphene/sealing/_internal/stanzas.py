"""Recipient stanzas: wrapping the file key for X25519 recipients and unwrapping it again.

Unwrapping follows the C2SP age spec's rules for identity implementations:

* an X25519 stanza has exactly two arguments, the second the canonical base64 of a 32-byte share,
  and a 32-byte body (checked before any decryption, against partitioning oracles);
* an all-zero X25519 shared secret (a low-order share) aborts;
* an scrypt stanza must be the only stanza;
* stanzas of unknown types are ignored.

We implement only X25519. When no X25519 stanza opens, the other native types (scrypt, the
post-quantum and tagged ones) are checked for the shape the spec requires (and a post-quantum
share whose X25519 half is a low-order point, which no identity may use), so that a malformed
file is reported as malformed; a well-formed one is refused with
:class:`UnsupportedRecipientError`, since the caller may hold a key we cannot use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from golem_graphene import limits
from golem_graphene.errors import (
    AgeFormatError,
    AgeHeaderError,
    AgeNoMatchError,
    UnsupportedRecipientError,
)
from golem_graphene.sealing._internal import b64
from golem_graphene.sealing._internal import x25519 as _x25519
from golem_graphene.sealing._internal.header import FILE_KEY_SIZE, Stanza
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

X25519_TYPE: Final = "X25519"
SCRYPT_TYPE: Final = "scrypt"
_X25519_INFO = b"age-encryption.org/v1/X25519"
_ZERO_NONCE = bytes(12)
_WRAPPED_KEY_SIZE = FILE_KEY_SIZE + 16
_WORK_FACTOR = re.compile(r"[1-9][0-9]*")
_HYBRID_TYPE: Final = "mlkem768x25519"
# A clamped scalar is a multiple of 8, so X25519 with any scalar kills exactly the low-order
# points: one fixed probe key tells them apart (cryptography refuses the all-zero result).
_PROBE = _x25519.generate_private()

# Argument shapes of the native types other than X25519 (C2SP age, "Native recipient types"):
# the byte length of each base64 argument after the type, or None for scrypt's work factor.
_FOREIGN_NATIVE_SHAPES: Final[dict[str, tuple[int | None, ...]]] = {
    _HYBRID_TYPE: (1120,),
    SCRYPT_TYPE: (16, None),
    "p256tag": (4, 65),
    "mlkem768p256tag": (4, 1153),
}
_FOREIGN_NAMES: Final = {
    _HYBRID_TYPE: "post-quantum mlkem768x25519",
    SCRYPT_TYPE: "passphrase (scrypt)",
    "p256tag": "hardware-key p256tag",
    "mlkem768p256tag": "hardware-key mlkem768p256tag",
}


def _wrap_key(shared_secret: bytes, share: bytes, recipient: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=share + recipient, info=_X25519_INFO)
    return hkdf.derive(shared_secret)


def wrap_x25519(file_key: bytes, recipient: X25519Recipient) -> Stanza:
    """The X25519 stanza that wraps ``file_key`` for ``recipient`` (fresh ephemeral key).

    Raises AgeFormatError if the recipient is a low-order point (no shared secret exists).
    """
    ephemeral = _x25519.generate_private()
    share = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(_x25519.public_from_bytes(recipient.public_bytes()))
    except ValueError as exc:
        raise AgeFormatError("recipient is a low-order X25519 point", found=str(recipient)) from exc
    key = _wrap_key(shared, share, recipient.public_bytes())
    body = ChaCha20Poly1305(key).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza((X25519_TYPE, b64.encode(share).decode("ascii")), body)


def _check_x25519_shape(stanza: Stanza, index: int) -> bytes:
    if len(stanza.args) != 2:
        raise AgeHeaderError(
            f"stanza {index}: X25519 stanza must have one argument after its type",
            found=len(stanza.args) - 1,
        )
    share = b64.decode(stanza.args[1].encode("ascii"))
    if share is None or len(share) != 32:
        raise AgeHeaderError(
            f"stanza {index}: X25519 share is not the canonical base64 of 32 bytes"
        )
    if len(stanza.body) != _WRAPPED_KEY_SIZE:
        raise AgeHeaderError(
            f"stanza {index}: X25519 body has the wrong length",
            expected=_WRAPPED_KEY_SIZE,
            found=len(stanza.body),
        )
    return share


def _check_foreign_shape(stanza: Stanza, index: int) -> None:
    shape = _FOREIGN_NATIVE_SHAPES[stanza.type]
    if len(stanza.args) != 1 + len(shape):
        raise AgeHeaderError(
            f"stanza {index}: {stanza.type} stanza has the wrong number of arguments",
            expected=len(shape),
            found=len(stanza.args) - 1,
        )
    decoded: list[bytes] = []
    for arg, size in zip(stanza.args[1:], shape, strict=True):
        if size is None:
            if not _WORK_FACTOR.fullmatch(arg) or int(arg) > limits.MAX_AGE_SCRYPT_WORK_FACTOR:
                raise AgeHeaderError(
                    f"stanza {index}: scrypt work factor is not a decimal in 1.."
                    f"{limits.MAX_AGE_SCRYPT_WORK_FACTOR}",
                    found=arg[:24],
                )
            continue
        value = b64.decode(arg.encode("ascii"))
        if value is None or len(value) != size:
            raise AgeHeaderError(
                f"stanza {index}: {stanza.type} argument is not the canonical base64 of "
                f"{size} bytes"
            )
        decoded.append(value)
    if len(stanza.body) != _WRAPPED_KEY_SIZE:
        raise AgeHeaderError(
            f"stanza {index}: {stanza.type} body has the wrong length",
            expected=_WRAPPED_KEY_SIZE,
            found=len(stanza.body),
        )
    if stanza.type == _HYBRID_TYPE and _is_low_order(decoded[0][-32:]):
        # Every identity must abort on the all-zero X25519 secret such a share gives, so no key
        # can open this stanza: the file is malformed whoever holds the post-quantum key.
        raise AgeHeaderError(
            f"stanza {index}: the X25519 part of the mlkem768x25519 share is a low-order point"
        )


def _is_low_order(share: bytes) -> bool:
    """True if X25519 with ``share`` gives the all-zero secret (for any clamped scalar)."""
    try:
        _PROBE.exchange(_x25519.public_from_bytes(share))
    except ValueError:
        return True
    return False


def _unwrap_one(identity: X25519Identity, share: bytes, body: bytes, index: int) -> bytes | None:
    private = _x25519.private_from_bytes(identity.private_bytes())
    try:
        shared = private.exchange(_x25519.public_from_bytes(share))
    except ValueError as exc:
        # cryptography refuses the all-zero shared secret that a low-order share produces.
        raise AgeHeaderError(
            f"stanza {index}: X25519 share is a low-order point (all-zero shared secret)"
        ) from exc
    key = _wrap_key(shared, share, identity.recipient().public_bytes())
    try:
        return ChaCha20Poly1305(key).decrypt(_ZERO_NONCE, body, None)
    except InvalidTag:
        return None


def unwrap_file_key(stanzas: Sequence[Stanza], identities: Sequence[X25519Identity]) -> bytes:
    """The file key from the first X25519 stanza one of ``identities`` opens.

    Raises AgeHeaderError for a malformed native stanza (or scrypt mixed with other stanzas),
    UnsupportedRecipientError when no identity matched and the file is also sealed to a native
    type we do not implement (passphrase, post-quantum, hardware), AgeNoMatchError otherwise.
    """
    if any(s.type == SCRYPT_TYPE for s in stanzas) and len(stanzas) != 1:
        raise AgeHeaderError("an scrypt stanza must be the only stanza in the header")
    x25519 = [
        (i, _check_x25519_shape(s, i), s.body)
        for i, s in enumerate(stanzas, start=1)
        if s.type == X25519_TYPE
    ]
    for identity in identities:
        for index, share, body in x25519:
            file_key = _unwrap_one(identity, share, body, index)
            if file_key is not None:
                return file_key
    foreign = []
    for i, s in enumerate(stanzas, start=1):
        if s.type in _FOREIGN_NATIVE_SHAPES:
            _check_foreign_shape(s, i)
            foreign.append(_FOREIGN_NAMES[s.type])
    if foreign:
        kinds = ", ".join(sorted(set(foreign)))
        matched = "no X25519 identity matched and the" if x25519 else "the"
        raise UnsupportedRecipientError(
            f"{matched} file is sealed to {kinds} recipients, which golem-graphene does not "
            "support (use the age CLI for such files)"
        )
    n, m = len(identities), len(x25519)
    raise AgeNoMatchError(
        f"none of the {n} identit{'y' if n == 1 else 'ies'} given opens the file (it is sealed "
        f"to {m} X25519 recipient{'' if m == 1 else 's'}, none of them yours)"
        if identities
        else "no identities were given to open the file"
    )
