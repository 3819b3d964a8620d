"""age v1 file encryption (C2SP age) to X25519 recipients: streaming, bounded memory, strict.

Files sealed here open with ``age -d -i``; files from ``age -r`` (binary or ``-a`` armored) open
here. Memory does not grow with the file: the payload streams through a few 1 MiB buffers.

Decryption checks, in order, and raises (all :class:`~golem_graphene.errors.SealingError`):

1. armor, if the input is armored: :class:`AgeArmorError`;
2. the header grammar and native stanza shapes: :class:`AgeHeaderError`;
3. unwrapping the file key: :class:`AgeNoMatchError`, or :class:`UnsupportedRecipientError`
   when the file is (also) sealed to a passphrase, post-quantum or hardware recipient;
4. the header MAC: :class:`AgeHmacError`;
5. every payload chunk, its position and the final flag at EOF: :class:`AgePayloadError`.

**Streams vs files.** :func:`decrypt_stream` writes each chunk as soon as it verifies, like
``age -d`` to stdout: if a later chunk fails (truncation, tampering) the caller has already seen
a verified prefix and must discard it. :func:`decrypt_file` is all-or-nothing: it writes a
temporary file and moves it to the destination only after the final chunk verified at EOF.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import BinaryIO, Final, Protocol, TypeVar, cast

from golem_graphene import limits
from golem_graphene.errors import AgeHeaderError, AgePayloadError, SealingError, UsageError
from golem_graphene.sealing._internal import header as _header
from golem_graphene.sealing._internal import stream as _stream
from golem_graphene.sealing._internal.armor import ArmorWriter
from golem_graphene.sealing._internal.atomic import AtomicOutput, check_output_path
from golem_graphene.sealing._internal.pipeline import WriteBehind, write_all
from golem_graphene.sealing._internal.source import AsyncSource, SyncSource, short_nonce_error
from golem_graphene.sealing._internal.stanzas import unwrap_file_key, wrap_x25519
from golem_graphene.sealing.digests import HashingReader, HashingSink, SealDigests
from golem_graphene.sealing.keys import X25519Identity, X25519Recipient

__all__ = [
    "AsyncReadable",
    "AsyncWrite",
    "ProgressCallback",
    "SealDigests",
    "decrypt_async",
    "decrypt_file",
    "decrypt_stream",
    "encrypt_async",
    "encrypt_file",
    "encrypt_stream",
    "max_ciphertext_size",
    "plaintext_size",
    "retarget_header",
]


ProgressCallback = Callable[[int], None]
"""Called with the number of plaintext bytes processed so far (after each block and at the end)."""

AsyncWrite = Callable[[bytes], Awaitable[None]]
"""An async sink, e.g. aiohttp's ``StreamResponse.write``."""

_T = TypeVar("_T")


class AsyncReadable(Protocol):
    """An async byte stream with ``read(n)``, e.g. ``asyncio.StreamReader``; ``b""`` means EOF."""

    async def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes; ``b""`` at end of stream."""
        ...


async def _to_thread(func: Callable[..., _T], /, *args: object) -> _T:
    # asyncio is imported on first async use: the in-enclave agent only seals files, and
    # importing asyncio would add to every enclave's start.
    import asyncio

    return await asyncio.to_thread(func, *args)


BLOCK_CHUNKS: Final = 16
"""Chunks per I/O block: 1 MiB reads and writes, a few of them in flight, whatever the file size."""
_PLAIN_BLOCK: Final = BLOCK_CHUNKS * _stream.CHUNK_SIZE
_SEALED_BLOCK: Final = BLOCK_CHUNKS * _stream.SEALED_CHUNK_SIZE


def _check_recipients(recipients: Sequence[X25519Recipient]) -> list[X25519Recipient]:
    """The recipients as a list; raises UsageError if empty, too many or of the wrong type."""
    checked = list(recipients)
    if not checked:
        raise UsageError("at least one recipient is required")
    if len(checked) > limits.MAX_AGE_STANZAS:
        raise UsageError("too many recipients", expected=f"<= {limits.MAX_AGE_STANZAS}")
    for r in checked:
        if not isinstance(r, X25519Recipient):
            raise UsageError(f"not an X25519Recipient: {type(r).__name__}")
    return checked


def _check_identities(identities: Sequence[X25519Identity]) -> list[X25519Identity]:
    """The identities as a list; raises UsageError for anything but X25519Identity."""
    checked = list(identities)
    for i in checked:
        if not isinstance(i, X25519Identity):
            raise UsageError(f"not an X25519Identity: {type(i).__name__}")
    return checked


def _new_file(recipients: Sequence[X25519Recipient]) -> tuple[bytes, _stream.StreamSealer]:
    """A fresh file key: the header plus payload nonce to write first, and the payload sealer."""
    recipients = _check_recipients(recipients)
    file_key = os.urandom(_header.FILE_KEY_SIZE)
    stanzas = [wrap_x25519(file_key, r) for r in recipients]
    nonce = os.urandom(_stream.NONCE_SIZE)
    prefix = _header.encode_header(stanzas, file_key) + nonce
    return prefix, _stream.StreamSealer(_stream.payload_key(file_key, nonce))


def _fill(src: BinaryIO, view: memoryview) -> int:
    """Read into ``view`` until it is full or the input ends."""
    readinto = getattr(src, "readinto", None)
    filled = 0
    size = len(view)
    try:
        while filled < size:
            if readinto is not None:
                n = readinto(view[filled:])
            else:
                data = src.read(size - filled)
                n = len(data) if data is not None else None
                if n:
                    view[filled : filled + n] = data
            if n is None:
                raise SealingError("the input is a non-blocking stream with no data ready")
            if n == 0:
                break
            filled += n
    except OSError as exc:
        raise SealingError(f"cannot read the input: {exc}") from exc
    return filled


def _sink(dst: BinaryIO) -> Callable[[memoryview], int]:
    """A write function that writes all of its argument to ``dst`` (raw files write partially)."""

    def write(view: memoryview) -> int:
        write_all(dst.write, view)
        return len(view)

    return write


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    recipients: Sequence[X25519Recipient],
    *,
    armor: bool = False,
    progress: ProgressCallback | None = None,
) -> int:
    """Seal everything ``src`` yields to ``recipients`` and write the age file to ``dst``.

    Returns the number of plaintext bytes. With ``armor`` the output is ASCII-armored (``age
    -a``). ``dst`` is not flushed or closed. Raises UsageError for an empty or invalid recipient
    list, AgeFormatError for a low-order recipient key, SealingError if reading or writing fails.
    """
    prefix, sealer = _new_file(recipients)
    armorer = ArmorWriter(_sink(dst)) if armor else None
    sink = armorer.write if armorer is not None else _sink(dst)
    _call_write(lambda: sink(memoryview(prefix)))
    total = 0
    current = bytearray(_PLAIN_BLOCK)
    ahead = bytearray(_PLAIN_BLOCK)
    with WriteBehind(sink, _SEALED_BLOCK) as writer:
        n = _fill(src, memoryview(current))
        while True:
            m = _fill(src, memoryview(ahead)) if n == _PLAIN_BLOCK else 0
            final = m == 0
            out = writer.acquire()
            written = sealer.seal(memoryview(current)[:n], memoryview(out), final=final)
            writer.submit(out, written)
            total += n
            if progress is not None:
                progress(total)
            if final:
                break
            current, ahead, n = ahead, current, m
    if armorer is not None:
        _call_write(armorer.close)
    return total


def _call_write(fn: Callable[[], object]) -> None:
    try:
        fn()
    except OSError as exc:
        raise SealingError(f"cannot write the output: {exc}") from exc


def _open_header(
    source: SyncSource, identities: Sequence[X25519Identity]
) -> tuple[_header.Header, bytes]:
    identities = _check_identities(identities)
    source.sniff_armor()
    collector = _header.HeaderCollector()
    while not collector.add(source.readline(collector.line_limit)):
        pass
    hdr = collector.header()
    file_key = unwrap_file_key(hdr.stanzas, identities)
    _header.verify_mac(hdr, file_key)
    return hdr, file_key


def decrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    identities: Sequence[X25519Identity],
    *,
    progress: ProgressCallback | None = None,
) -> int:
    """Open the age file in ``src`` (binary or armored) with ``identities``; plaintext to ``dst``.

    Returns the number of plaintext bytes. **Writes unverified-at-EOF output:** each chunk is
    written as soon as it authenticates, so when AgePayloadError is raised (truncation,
    tampering, trailing data) ``dst`` already holds a verified prefix that the caller must
    discard; use :func:`decrypt_file` for all-or-nothing output. Raises the errors listed in the
    module docstring, and SealingError if reading or writing fails.
    """
    source = SyncSource(src)
    _, file_key = _open_header(source, identities)
    nonce = source.read_exact(_stream.NONCE_SIZE)
    if len(nonce) != _stream.NONCE_SIZE:
        raise short_nonce_error(len(nonce))
    opener = _stream.StreamOpener(_stream.payload_key(file_key, nonce))
    total = 0
    current = bytearray(_SEALED_BLOCK)
    ahead = bytearray(_SEALED_BLOCK)
    with WriteBehind(_sink(dst), _PLAIN_BLOCK) as writer:
        n = source.readinto(memoryview(current))
        while True:
            m = source.readinto(memoryview(ahead)) if n == _SEALED_BLOCK else 0
            final = m == 0
            out = writer.acquire()
            try:
                opened = opener.open(memoryview(current)[:n], memoryview(out), final=final)
            except AgePayloadError:
                writer.submit(out, opener.verified)
                raise
            writer.submit(out, opened)
            total += opened
            if progress is not None:
                progress(total)
            if final:
                return total
            current, ahead, n = ahead, current, m


def _open_input(path: str | os.PathLike[str]) -> BinaryIO:
    try:
        return open(path, "rb", buffering=0)
    except OSError as exc:
        raise UsageError(f"cannot open input {os.fspath(path)!r}: {exc.strerror or exc}") from exc


def encrypt_file(
    src: str | os.PathLike[str] | BinaryIO,
    dst: str | os.PathLike[str],
    recipients: Sequence[X25519Recipient],
    *,
    overwrite: bool = False,
    armor: bool = False,
    progress: ProgressCallback | None = None,
    digests: SealDigests | None = None,
) -> int:
    """Seal the file ``src`` to ``recipients`` as the age file ``dst``; returns plaintext bytes.

    ``src`` is a path, or a binary file already open for reading (read to its end, not
    closed). The output is written to a temporary file in ``dst``'s directory (mode 0600),
    fsynced, and renamed into place; on any failure it is removed and ``dst`` is untouched.
    With ``digests``, the SHA-256 and size of the plaintext read and of the age file written
    are taken in the same pass. Raises UsageError if ``dst`` exists and ``overwrite`` is
    false, if ``src`` cannot be opened or the recipient list is invalid; SealingError for I/O
    failures.
    """
    recipients = _check_recipients(recipients)
    check_output_path(dst, overwrite=overwrite)
    opened = _open_input(src) if isinstance(src, str | os.PathLike) else contextlib.nullcontext(src)
    with opened as f, AtomicOutput(dst, overwrite=overwrite) as out:
        if digests is None:
            total = encrypt_stream(f, out.file, recipients, armor=armor, progress=progress)
        else:
            reader, sink = HashingReader(f), HashingSink(out.file)
            total = encrypt_stream(
                cast(BinaryIO, reader),
                cast(BinaryIO, sink),
                recipients,
                armor=armor,
                progress=progress,
            )
            digests.record(reader, sink)
        out.commit()
    return total


def decrypt_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    identities: Sequence[X25519Identity],
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> int:
    """Open the age file ``src`` with ``identities`` into ``dst``, all or nothing.

    Plaintext goes to a temporary file in ``dst``'s directory (mode 0600), which is moved into
    place only after the final chunk verified and the input ended; on every failure it is
    removed and ``dst`` is untouched. Returns the plaintext size. Raises UsageError if ``dst``
    exists and ``overwrite`` is false or ``src`` cannot be opened; otherwise the errors of
    :func:`decrypt_stream`.
    """
    identities = _check_identities(identities)
    check_output_path(dst, overwrite=overwrite)
    with _open_input(src) as f, AtomicOutput(dst, overwrite=overwrite) as out:
        total = decrypt_stream(f, out.file, identities, progress=progress)
        out.commit()
    return total


def retarget_header(
    src: BinaryIO,
    dst: BinaryIO,
    identity: X25519Identity,
    new_recipients: Sequence[X25519Recipient],
) -> None:
    """Re-address an age file: a new header for ``new_recipients``, the payload copied as is.

    ``identity`` must open the current header (the file key is unwrapped, the MAC verified) and
    the same file key is wrapped for the new recipients under a new MAC; the payload nonce and
    chunks are copied byte for byte, so the payload is neither decrypted nor re-encrypted (and
    not verified: the new recipients do that when they open it). Armored input yields binary
    output. Raises the header-phase errors of :func:`decrypt_stream` (AgeHeaderError,
    AgeNoMatchError, AgeHmacError, ...), UsageError for an empty recipient list, SealingError
    if reading or writing fails.
    """
    new_recipients = _check_recipients(new_recipients)
    source = SyncSource(src)
    _, file_key = _open_header(source, [identity])
    nonce = source.read_exact(_stream.NONCE_SIZE)
    if len(nonce) != _stream.NONCE_SIZE:
        raise short_nonce_error(len(nonce))
    stanzas = [wrap_x25519(file_key, r) for r in new_recipients]
    write = _sink(dst)
    buf = bytearray(_SEALED_BLOCK)
    try:
        write(memoryview(_header.encode_header(stanzas, file_key) + nonce))
        while n := source.readinto(memoryview(buf)):
            write(memoryview(buf)[:n])
    except OSError as exc:
        raise SealingError(f"cannot write the output: {exc}") from exc


# --- async ---------------------------------------------------------------------------------------


async def encrypt_async(
    source: AsyncReadable | AsyncIterable[bytes],
    write: AsyncWrite,
    recipients: Sequence[X25519Recipient],
    *,
    progress: ProgressCallback | None = None,
) -> int:
    """Seal an async byte stream to ``recipients``, sending the age file to ``write``.

    ``source`` is an object with an async ``read(n)`` (``asyncio.StreamReader``, aiohttp's
    ``StreamReader``: preferred when present) or an async iterable of ``bytes`` pieces (keep
    pieces to a few MiB: a piece is held whole). Plaintext is sealed in 1 MiB batches on a
    worker thread (``asyncio.to_thread``) so the event loop stays responsive; ``write`` is
    awaited once per batch, which gives back-pressure. Returns the plaintext size. Raises
    UsageError for an invalid recipient list, SealingError if the source misbehaves.
    """
    prefix, sealer = _new_file(recipients)
    src = AsyncSource(source)
    await write(prefix)
    total = 0
    while True:
        block, final = await src.read_block(_PLAIN_BLOCK)
        sealed = await _to_thread(_seal_bytes, sealer, block, final)
        await write(sealed)
        total += len(block)
        if progress is not None:
            progress(total)
        if final:
            return total


def _seal_bytes(sealer: _stream.StreamSealer, block: bytes, final: bool) -> bytes:
    out = bytearray(_stream.sealed_size(len(block)))
    n = sealer.seal(memoryview(block), memoryview(out), final=final)
    return bytes(memoryview(out)[:n])


def _open_bytes(
    opener: _stream.StreamOpener, block: bytes, final: bool
) -> tuple[bytes, AgePayloadError | None]:
    out = bytearray(len(block))
    try:
        n = opener.open(memoryview(block), memoryview(out), final=final)
    except AgePayloadError as exc:
        return bytes(memoryview(out)[: opener.verified]), exc
    return bytes(memoryview(out)[:n]), None


async def decrypt_async(
    source: AsyncReadable | AsyncIterable[bytes],
    write: AsyncWrite,
    identities: Sequence[X25519Identity],
    *,
    progress: ProgressCallback | None = None,
) -> int:
    """Open an age file (binary or armored) from an async byte stream, plaintext to ``write``.

    ``source`` as for :func:`encrypt_async`. Chunks are opened in 1 MiB batches on a worker
    thread and each verified batch is awaited into ``write``; like :func:`decrypt_stream`, when
    AgePayloadError is raised the sink already received a verified prefix that the caller must
    discard (stream into a temporary file and commit only on success). Returns the plaintext
    size; raises the errors listed in the module docstring.
    """
    identities = _check_identities(identities)
    src = AsyncSource(source)
    await src.sniff_armor()
    collector = _header.HeaderCollector()
    while not collector.add(await src.readline(collector.line_limit)):
        pass
    hdr = collector.header()
    file_key = unwrap_file_key(hdr.stanzas, identities)
    _header.verify_mac(hdr, file_key)
    nonce, _ = await src.read_block(_stream.NONCE_SIZE)
    if len(nonce) != _stream.NONCE_SIZE:
        raise short_nonce_error(len(nonce))
    opener = _stream.StreamOpener(_stream.payload_key(file_key, nonce))
    total = 0
    while True:
        block, final = await src.read_block(_SEALED_BLOCK)
        plain, error = await _to_thread(_open_bytes, opener, block, final)
        if plain:
            await write(plain)
        total += len(plain)
        if progress is not None:
            progress(total)
        if error is not None:
            raise error
        if final:
            return total


# --- sizes ---------------------------------------------------------------------------------------

MAX_HEADER_ALLOWANCE: Final = 4096
"""Header bytes allowed on top of the payload when bounding an upload: an age header to a few
X25519 recipients is about 200 bytes each (our inputs have one, to the enclave's ``E``)."""

_NONCE_SIZE: Final = 16


def max_ciphertext_size(plaintext_size: int) -> int:
    """The largest age file that holds ``plaintext_size`` bytes, with a header of at most
    :data:`MAX_HEADER_ALLOWANCE` bytes: the bound a provider puts on an upload."""
    return MAX_HEADER_ALLOWANCE + _NONCE_SIZE + _stream.sealed_size(plaintext_size)


def plaintext_size(path: str | os.PathLike[str]) -> int:
    """The plaintext size of the binary age file at ``path``, from its header length and file
    size, without decrypting. Raises :class:`AgeHeaderError` when no header ends within
    ``MAX_AGE_HEADER_BYTES`` or the size fits no payload, ``OSError`` when it cannot be read."""
    with open(path, "rb") as f:
        head = f.read(limits.MAX_AGE_HEADER_BYTES)
        size = os.fstat(f.fileno()).st_size
    mac_line = head.find(b"\n---")
    end = head.find(b"\n", mac_line + 1) if mac_line >= 0 else -1
    if end < 0:
        raise AgeHeaderError("not a binary age file: no header ends in the first bytes")
    payload = size - (end + 1) - _NONCE_SIZE
    chunks = max(1, -(-payload // _stream.SEALED_CHUNK_SIZE))
    plain = payload - chunks * _stream.TAG_SIZE
    if plain < 0 or _stream.sealed_size(plain) != payload:
        raise AgeHeaderError("the file size fits no age payload", found=size)
    return plain
