"""The input manifest of protocol v1 (DESIGN section 4, step 4): model, sealing, checking.

The manifest tells the enclave what to run (``args``, ``env``) on which inputs (each input's
name, plaintext size, ciphertext size and ciphertext SHA-256). The provider relays it, so it is
authenticated *and* encrypted with a key only the requestor and the attested enclave can
derive; the provider can neither forge arguments nor swap, drop or replay inputs.

Key schedule::

    th   = SHA-256(b"golem-graphene/v1/input-manifest"
                   || task_id || nonce || E.pub || S.pub || R.pub)       (transcript hash)
    ikm  = X25519(R.priv, E.pub)  (requestor)  ==  X25519(E.priv, R.pub)  (enclave)
    key  = HKDF-SHA256(ikm, salt=th, info=b"golem-graphene/v1/input-manifest-key", L=32)
    ct   = ChaCha20-Poly1305(key).encrypt(nonce12, canonical_json(manifest), aad=th)

Sealed form: the RFC 8785 canonical JSON object ``{"ciphertext": b64, "nonce": b64, "v": 1}``
(standard base64 with padding; ``nonce`` is 12 random bytes). JSON, not a compact binary,
because it travels in HTTP bodies and ExeScript transfers next to other JSON and is small.

A fresh random nonce per seal is safe: the key is unique per (R, E, transcript) and a
requestor seals one manifest per task. The transcript hash as associated data makes a sealed
manifest useless for any other task, nonce or key set, even if two of them shared ``R`` and
``E``.

On disk, each input's ciphertext is the file ``<name>.age`` (see :func:`ciphertext_name`);
:func:`check_inputs` verifies a directory of them against the manifest.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    model_validator,
)

from golem_graphene.canonical_json import CanonicalJsonError, canonical_json, parse_json
from golem_graphene.errors import Error, ProtocolError, SealingError
from golem_graphene.limits import (
    HASH_CHUNK_BYTES,
    MAX_INPUT_MANIFEST_BYTES,
    MAX_TASK_ARGS,
    MAX_TASK_ARGV_ENV_BYTES,
    MAX_TASK_ENV,
    MAX_TASK_FILES,
)
from golem_graphene.protocol.binding import KEY_SIZE, Transcript
from golem_graphene.protocol.fields import FileName, Hex32, Message, TaskIdHex
from golem_graphene.protocol.version import PROTOCOL_NAME, ProtocolName
from golem_graphene.sealing.keys import X25519Identity

__all__ = [
    "CIPHERTEXT_SUFFIX",
    "INPUT_MANIFEST_KEY_INFO",
    "INPUT_MANIFEST_LABEL",
    "SEALED_MANIFEST_VERSION",
    "FileCheckError",
    "FileDigest",
    "InputEntry",
    "InputFileError",
    "InputManifest",
    "InputManifestAuthError",
    "InputManifestFormatError",
    "check_file",
    "check_inputs",
    "ciphertext_name",
    "hash_file",
    "manifest_transcript_hash",
    "open_manifest",
    "seal_manifest",
]

INPUT_MANIFEST_LABEL: Final = f"{PROTOCOL_NAME}/input-manifest".encode()
"""Domain label of the transcript hash (HKDF salt and AEAD associated data)."""

INPUT_MANIFEST_KEY_INFO: Final = f"{PROTOCOL_NAME}/input-manifest-key".encode()
"""HKDF ``info`` of the manifest key."""

SEALED_MANIFEST_VERSION: Final = 1
CIPHERTEXT_SUFFIX: Final = ".age"
_AEAD_NONCE_SIZE: Final = 12
_SEALED_KEYS: Final = frozenset({"v", "nonce", "ciphertext"})


# --- errors -------------------------------------------------------------------------------------


class InputManifestFormatError(ProtocolError):
    """A sealed or opened input manifest is malformed, or names another task."""

    code = "input_manifest_format"


class InputManifestAuthError(SealingError):
    """A sealed input manifest does not authenticate under this transcript and these keys.

    Someone other than the requestor wrote it, it was altered, or it belongs to another task,
    nonce or key set. It is refused whole; nothing of it is used.
    """

    code = "input_manifest_auth"


class FileCheckError(SealingError):
    """A file failed a check; ``check`` says which and ``name`` which file.

    Checks: ``missing``, ``extra``, ``not_regular`` (a symlink, directory, device or FIFO),
    ``read`` (an I/O error), ``size`` and ``sha256``.
    """

    code = "file_check"
    prefix: ClassVar[str] = "file"

    def __init__(
        self, check: str, name: str, message: str, *, expected: object = None, found: object = None
    ) -> None:
        self.check = check
        self.name = name
        self.code = f"{self.prefix}_{check}"
        super().__init__(message, expected=expected, found=found)


class InputFileError(FileCheckError):
    """An input ciphertext in the workspace does not match the input manifest."""

    code = "input_file"
    prefix = "input"


# --- the model ----------------------------------------------------------------------------------


def _text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


def _env_name(value: str) -> str:
    _text(value)
    if not value or "=" in value:
        raise ValueError("an environment name is non-empty and has no '='")
    return value


_Arg = Annotated[StrictStr, AfterValidator(_text)]
_EnvName = Annotated[StrictStr, AfterValidator(_env_name)]
_Size = Annotated[StrictInt, Field(ge=0, le=2**53 - 1)]


class InputEntry(BaseModel):
    """One input: its name, plaintext size, and the size and SHA-256 of its age ciphertext."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: FileName
    size: _Size
    ciphertext_size: _Size
    ciphertext_sha256: Hex32


class InputManifest(Message):
    """What the enclave runs and on which inputs; sealed by the requestor to the enclave.

    Names are unique after NFC normalisation (see
    :func:`~golem_graphene.protocol.messages.validate_file_name`); ``args`` and ``env`` are
    passed to the workload as given (no NUL; env names without ``=``), bounded by
    ``MAX_TASK_ARGS``, ``MAX_TASK_ENV`` and ``MAX_TASK_ARGV_ENV_BYTES``.
    """

    max_json_bytes: ClassVar[int] = MAX_INPUT_MANIFEST_BYTES
    format_error: ClassVar[type[Error]] = InputManifestFormatError

    protocol: ProtocolName = PROTOCOL_NAME
    task_id: TaskIdHex
    args: tuple[_Arg, ...] = Field(default=(), max_length=MAX_TASK_ARGS)
    env: dict[_EnvName, _Arg] = Field(default_factory=dict, max_length=MAX_TASK_ENV)
    inputs: tuple[InputEntry, ...] = Field(default=(), max_length=MAX_TASK_FILES)

    @model_validator(mode="after")
    def _check(self) -> Self:
        seen: set[str] = set()
        for entry in self.inputs:
            if entry.name in seen:
                raise ValueError(f"input name {entry.name!r} appears twice")
            seen.add(entry.name)
        total = sum(len(a.encode()) + 1 for a in self.args) + sum(
            len(k.encode()) + len(v.encode()) + 2 for k, v in self.env.items()
        )
        if total > MAX_TASK_ARGV_ENV_BYTES:
            raise ValueError(f"args and env exceed {MAX_TASK_ARGV_ENV_BYTES} bytes")
        return self

    def canonical_bytes(self) -> bytes:
        """The RFC 8785 canonical JSON of the manifest: what is sealed and hashed."""
        return canonical_json(self.model_dump(mode="json"))

    def digest(self) -> bytes:
        """SHA-256 of :meth:`canonical_bytes`; receipts carry it as ``input_manifest_sha256``."""
        return hashlib.sha256(self.canonical_bytes()).digest()

    def entry(self, name: str) -> InputEntry:
        """The entry called ``name``; raises ``KeyError`` when there is none."""
        for item in self.inputs:
            if item.name == name:
                return item
        raise KeyError(name)


# --- sealing ------------------------------------------------------------------------------------


def manifest_transcript_hash(transcript: Transcript) -> bytes:
    """``SHA-256(INPUT_MANIFEST_LABEL || transcript)``: the HKDF salt and the associated data."""
    return transcript.digest(INPUT_MANIFEST_LABEL)


def _manifest_key(private: X25519PrivateKey, peer_public: bytes, th: bytes) -> bytes:
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # cryptography refuses low-order points (all-zero shared secret)
        raise ProtocolError("the peer's X25519 key is a low-order point") from exc
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=th, info=INPUT_MANIFEST_KEY_INFO)
    return hkdf.derive(shared)


def _same_key(given: bytes, bound: bytes, what: str) -> None:
    if len(given) != KEY_SIZE or not hmac.compare_digest(given, bound):
        raise ProtocolError(
            f"the {what} is not the one bound in the transcript",
            expected=bound.hex(),
            found=bytes(given).hex(),
        )


def seal_manifest(
    manifest: InputManifest,
    requestor_identity: X25519Identity,
    enclave_pub: bytes,
    transcript: Transcript,
) -> bytes:
    """Seal ``manifest`` for the enclave whose ``E.pub`` is ``enclave_pub``.

    Call only after the quote verified and bound ``transcript`` (DESIGN step 3). Returns the
    sealed JSON bytes. Raises :class:`ProtocolError` when the manifest's task id, the identity's
    public key or ``enclave_pub`` disagree with ``transcript`` (the enclave could not open it),
    or when ``enclave_pub`` is a low-order point.
    """
    if manifest.task_id != transcript.task_id:
        raise ProtocolError(
            "the manifest names another task than the transcript",
            expected=transcript.task_id.hex(),
            found=manifest.task_id.hex(),
        )
    _same_key(bytes(enclave_pub), transcript.enclave_key, "enclave key")
    _same_key(
        requestor_identity.recipient().public_bytes(), transcript.requestor_key, "requestor key"
    )
    th = manifest_transcript_hash(transcript)
    private = X25519PrivateKey.from_private_bytes(requestor_identity.private_bytes())
    key = _manifest_key(private, transcript.enclave_key, th)
    nonce = os.urandom(_AEAD_NONCE_SIZE)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, manifest.canonical_bytes(), th)
    return canonical_json(
        {
            "v": SEALED_MANIFEST_VERSION,
            "nonce": base64.b64encode(nonce).decode(),
            "ciphertext": base64.b64encode(ciphertext).decode(),
        }
    )


def _b64_field(obj: dict[str, Any], key: str) -> bytes:
    value = obj[key]
    if not isinstance(value, str):
        raise InputManifestFormatError(f"sealed manifest {key!r} must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputManifestFormatError(f"sealed manifest {key!r} is not base64") from exc
    # Canonical only: stray bits in the last character would give one sealed manifest many
    # encodings that all open.
    if base64.b64encode(raw).decode() != value:
        raise InputManifestFormatError(f"sealed manifest {key!r} is not canonical base64")
    return raw


def _parse_sealed(sealed: bytes) -> tuple[bytes, bytes]:
    if len(sealed) > MAX_INPUT_MANIFEST_BYTES:
        raise InputManifestFormatError(
            "sealed manifest is too large",
            expected=f"<= {MAX_INPUT_MANIFEST_BYTES} bytes",
            found=len(sealed),
        )
    try:
        obj = parse_json(bytes(sealed))
    except CanonicalJsonError as exc:
        raise InputManifestFormatError(f"sealed manifest is not JSON: {exc.message}") from exc
    if not isinstance(obj, dict) or set(obj) != _SEALED_KEYS:
        raise InputManifestFormatError(
            "sealed manifest must be an object with exactly the keys v, nonce, ciphertext",
            found=sorted(obj) if isinstance(obj, dict) else type(obj).__name__,
        )
    if obj["v"] != SEALED_MANIFEST_VERSION or isinstance(obj["v"], bool):
        raise InputManifestFormatError(
            "unsupported sealed manifest version", expected=SEALED_MANIFEST_VERSION, found=obj["v"]
        )
    nonce = _b64_field(obj, "nonce")
    if len(nonce) != _AEAD_NONCE_SIZE:
        raise InputManifestFormatError(
            "sealed manifest nonce has the wrong length",
            expected=_AEAD_NONCE_SIZE,
            found=len(nonce),
        )
    return nonce, _b64_field(obj, "ciphertext")


def open_manifest(
    sealed: bytes,
    enclave_priv: X25519PrivateKey | X25519Identity,
    requestor_pub: bytes,
    transcript: Transcript,
) -> InputManifest:
    """Authenticate, decrypt and parse a sealed manifest (the enclave side).

    Raises :class:`InputManifestFormatError` (a :class:`ProtocolError`) when the sealed form or
    the manifest inside is malformed or names another task, :class:`InputManifestAuthError`
    when it does not authenticate (tampered, another transcript, not from ``R``), and
    :class:`ProtocolError` when ``enclave_priv`` or ``requestor_pub`` disagree with
    ``transcript``.
    """
    private = (
        X25519PrivateKey.from_private_bytes(enclave_priv.private_bytes())
        if isinstance(enclave_priv, X25519Identity)
        else enclave_priv
    )
    _same_key(private.public_key().public_bytes_raw(), transcript.enclave_key, "enclave key")
    _same_key(bytes(requestor_pub), transcript.requestor_key, "requestor key")
    nonce, ciphertext = _parse_sealed(sealed)
    th = manifest_transcript_hash(transcript)
    key = _manifest_key(private, transcript.requestor_key, th)
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(nonce, ciphertext, th)
    except InvalidTag as exc:
        raise InputManifestAuthError(
            "the input manifest does not authenticate: altered, for another task, or not "
            "written by the requestor"
        ) from exc
    manifest = InputManifest.from_json(plaintext)
    if manifest.task_id != transcript.task_id:
        raise InputManifestFormatError(
            "the input manifest names another task",
            expected=transcript.task_id.hex(),
            found=manifest.task_id.hex(),
        )
    return manifest


# --- files --------------------------------------------------------------------------------------


def ciphertext_name(name: str) -> str:
    """The on-disk file name of an input or output's age ciphertext: ``<name>.age``."""
    return name + CIPHERTEXT_SUFFIX


@dataclass(frozen=True, slots=True)
class FileDigest:
    """The size in bytes and SHA-256 of a file's content."""

    size: int
    sha256: bytes


def open_regular(path: Path, name: str | None = None) -> int:
    """Open a regular file for reading without following a symlink or blocking on a FIFO.

    Returns a blocking file descriptor (the caller closes it), so a hostile workspace cannot
    redirect or stall a reader. Raises :class:`FileCheckError` with check ``missing``,
    ``not_regular`` or ``read``; ``name`` (default: the file name) identifies the file.
    """
    label = path.name if name is None else name
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileCheckError("missing", label, f"{label}: the file is missing") from None
    except OSError as exc:
        if not path.is_symlink():
            raise FileCheckError(
                "read", label, f"{label}: cannot open: {exc.strerror or exc}"
            ) from exc
        raise FileCheckError(
            "not_regular", label, f"{label}: a symlink, not a regular file"
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise FileCheckError("not_regular", label, f"{label}: not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def hash_file(path: Path, name: str | None = None) -> FileDigest:
    """Hash a regular file in ``HASH_CHUNK_BYTES`` reads (memory stays bounded).

    Opened with :func:`open_regular`. Raises :class:`FileCheckError` with check ``missing``,
    ``not_regular``, ``read`` or ``size`` (the file changed while it was read); ``name``
    (default: the file name) identifies the file in the error.
    """
    label = path.name if name is None else name
    fd = open_regular(path, name)
    try:
        size = os.fstat(fd).st_size
        digest = hashlib.sha256()
        buffer = bytearray(HASH_CHUNK_BYTES)
        view = memoryview(buffer)
        total = 0
        with os.fdopen(fd, "rb", buffering=0, closefd=False) as stream:
            while n := stream.readinto(view):
                digest.update(view[:n])
                total += n
        if total != size:
            raise FileCheckError(
                "size",
                label,
                f"{label}: the file changed while it was read",
                expected=size,
                found=total,
            )
        return FileDigest(size=total, sha256=digest.digest())
    except OSError as exc:
        raise FileCheckError("read", label, f"{label}: cannot read: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def check_inputs(manifest: InputManifest, directory: Path) -> dict[str, Path]:
    """Check a directory of input ciphertexts against the manifest; return name -> path.

    The directory must hold exactly one regular file ``<name>.age`` per input and nothing
    else, each with the manifest's ciphertext size and SHA-256 (hashed while streaming, size
    checked first so a wrong file costs nothing to refuse). Raises :class:`InputFileError`
    (check ``missing``, ``extra``, ``not_regular``, ``read``, ``size`` or ``sha256``, naming
    the input) for the first mismatch in name order.
    """
    directory = Path(directory)
    expected = {ciphertext_name(e.name): e for e in manifest.inputs}
    try:
        with os.scandir(directory) as entries:
            present = sorted(entry.name for entry in entries)
    except OSError as exc:
        raise InputFileError(
            "read", str(directory), f"cannot list the input directory: {exc.strerror or exc}"
        ) from exc
    for file_name in present:
        if file_name not in expected:
            raise InputFileError(
                "extra", file_name, f"{file_name}: not an input the manifest declares"
            )
    paths: dict[str, Path] = {}
    for file_name in sorted(expected):
        entry = expected[file_name]
        path = directory / file_name
        try:
            check_file(
                path, name=entry.name, size=entry.ciphertext_size, sha256=entry.ciphertext_sha256
            )
        except FileCheckError as exc:
            raise InputFileError(
                exc.check, entry.name, exc.message, expected=exc.expected, found=exc.found
            ) from exc
        paths[entry.name] = path
    return paths


def check_file(path: Path, *, name: str, size: int, sha256: bytes) -> None:
    """Check that ``path`` is a regular file with exactly ``size`` bytes and this SHA-256.

    The size is compared before hashing, so a wrong file costs nothing to refuse. Raises
    :class:`FileCheckError` (check ``missing``, ``not_regular``, ``read``, ``size`` or
    ``sha256``) naming ``name`` with the expected and found values.
    """
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise FileCheckError("missing", name, f"{name}: the file is missing") from None
    except OSError as exc:
        raise FileCheckError("read", name, f"{name}: cannot stat: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise FileCheckError("not_regular", name, f"{name}: not a regular file")
    if st.st_size != size:
        raise FileCheckError(
            "size", name, f"{name}: the file size differs", expected=size, found=st.st_size
        )
    found = hash_file(path, name)
    if found.size != size:
        raise FileCheckError(
            "size", name, f"{name}: the file size differs", expected=size, found=found.size
        )
    if not hmac.compare_digest(found.sha256, sha256):
        raise FileCheckError(
            "sha256",
            name,
            f"{name}: the SHA-256 differs",
            expected=sha256.hex(),
            found=found.sha256.hex(),
        )
