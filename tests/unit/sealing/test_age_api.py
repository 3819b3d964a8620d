"""The public age API: round trips, tampering, all-or-nothing files, retargeting, async."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, BinaryIO, cast

import pytest
from _age_helpers import BLOCK, CHUNK, SEALED_CHUNK, Layout, seal, unseal

from golem_graphene.errors import (
    AgeHeaderError,
    AgeHmacError,
    AgeNoMatchError,
    AgePayloadError,
    Error,
    SealingError,
    UnsupportedRecipientError,
    UsageError,
)
from golem_graphene.sealing import (
    SealDigests,
    X25519Identity,
    decrypt_async,
    decrypt_file,
    decrypt_stream,
    encrypt_async,
    encrypt_file,
    encrypt_stream,
    retarget_header,
)
from golem_graphene.sealing._internal import stream as stream_module

SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, BLOCK - 1, BLOCK, BLOCK + 1, 2 * BLOCK + CHUNK]


class TestRoundTrip:
    @pytest.mark.parametrize("size", SIZES)
    def test_sizes(self, size: int, alice: X25519Identity) -> None:
        data = os.urandom(size)
        sealed = seal(data, alice.recipient())
        layout = Layout.of(sealed)
        chunks = max(1, -(-size // CHUNK))
        assert len(layout.chunks) == chunks
        assert len(sealed) == len(layout.header) + 16 + size + 16 * chunks
        assert unseal(sealed, [alice]) == data

    def test_header_layout(self, alice: X25519Identity, bob: X25519Identity) -> None:
        header = Layout.of(seal(b"x", alice.recipient(), bob.recipient())).header
        lines = header.split(b"\n")
        assert lines[0] == b"age-encryption.org/v1"
        assert lines[1].startswith(b"-> X25519 ") and len(lines[1]) == 10 + 43
        assert len(lines[2]) == 43  # 32-byte body: one short line
        assert lines[3].startswith(b"-> X25519 ")
        assert lines[5].startswith(b"--- ") and len(lines[5]) == 47

    def test_every_recipient_opens(self, alice: X25519Identity, bob: X25519Identity) -> None:
        sealed = seal(b"shared", alice.recipient(), bob.recipient())
        assert unseal(sealed, [bob]) == b"shared"
        assert unseal(sealed, [X25519Identity.generate(), alice]) == b"shared"

    def test_fresh_file_key_and_nonce_each_time(self, alice: X25519Identity) -> None:
        a, b = seal(b"same", alice.recipient()), seal(b"same", alice.recipient())
        assert Layout.of(a).nonce != Layout.of(b).nonce
        assert Layout.of(a).chunks != Layout.of(b).chunks

    @pytest.mark.parametrize("size", [0, 1, 100, CHUNK + 3])
    def test_armor(self, size: int, alice: X25519Identity) -> None:
        data = os.urandom(size)
        sealed = seal(data, alice.recipient(), armor=True)
        assert sealed.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
        assert sealed.endswith(b"-----END AGE ENCRYPTED FILE-----\n")
        assert unseal(sealed, [alice]) == data

    def test_progress_reports_plaintext_bytes(self, alice: X25519Identity) -> None:
        data = os.urandom(2 * BLOCK + 5)
        seen: list[int] = []
        out = io.BytesIO()
        encrypt_stream(io.BytesIO(data), out, [alice.recipient()], progress=seen.append)
        assert seen == [BLOCK, 2 * BLOCK, 2 * BLOCK + 5]
        seen.clear()
        decrypt_stream(io.BytesIO(out.getvalue()), io.BytesIO(), [alice], progress=seen.append)
        assert seen == [BLOCK, 2 * BLOCK, 2 * BLOCK + 5]

    def test_short_reads_from_pipes(self, alice: X25519Identity) -> None:
        class Trickle(io.RawIOBase):
            """A pipe-like raw stream that returns at most 1000 bytes per read."""

            def __init__(self, data: bytes) -> None:
                self._data = io.BytesIO(data)

            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                chunk = self._data.read(min(len(b), 1000))
                b[: len(chunk)] = chunk
                return len(chunk)

        data = os.urandom(BLOCK + CHUNK + 9)
        out = io.BytesIO()
        encrypt_stream(cast(BinaryIO, Trickle(data)), out, [alice.recipient()])
        plain = io.BytesIO()
        decrypt_stream(cast(BinaryIO, Trickle(out.getvalue())), plain, [alice])
        assert plain.getvalue() == data


def _tamper_cases(
    alice: X25519Identity, bob: X25519Identity
) -> dict[str, tuple[bytes, list[X25519Identity], type[Error]]]:
    data = os.urandom(3 * CHUNK + 100)
    sealed = seal(data, alice.recipient())
    layout = Layout.of(sealed)
    cases: dict[str, tuple[bytes, list[X25519Identity], type[Error]]] = {}

    cut = Layout(layout.header, layout.nonce, layout.chunks[:2])
    cases["truncated at a chunk boundary"] = (cut.join(), [alice], AgePayloadError)
    swapped = Layout(
        layout.header, layout.nonce, [layout.chunks[1], layout.chunks[0], *layout.chunks[2:]]
    )
    cases["two chunks swapped"] = (swapped.join(), [alice], AgePayloadError)
    dropped = Layout(layout.header, layout.nonce, layout.chunks[:-1])
    cases["final chunk dropped"] = (dropped.join(), [alice], AgePayloadError)
    cases["trailing data after the final chunk"] = (sealed + b"\x00", [alice], AgePayloadError)
    cases["truncated inside a chunk"] = (sealed[:-50], [alice], AgePayloadError)
    flipped = bytearray(sealed)
    flipped[len(layout.header) + 16 + SEALED_CHUNK + 10] ^= 0x80
    cases["payload byte flipped"] = (bytes(flipped), [alice], AgePayloadError)

    # Header: flip the version line; flip a MAC character to another canonical one.
    cases["version byte flipped"] = (b"b" + sealed[1:], [alice], AgeHeaderError)
    mac_at = layout.header.rindex(b"--- ") + 4
    mac_flipped = bytearray(sealed)
    mac_flipped[mac_at] = ord("A") if mac_flipped[mac_at] != ord("A") else ord("B")
    cases["MAC flipped"] = (bytes(mac_flipped), [alice], AgeHmacError)
    body_at = layout.header.index(b"\n", layout.header.index(b"-> X25519")) + 1
    body_flipped = bytearray(sealed)
    body_flipped[body_at] = ord("A") if body_flipped[body_at] != ord("A") else ord("B")
    cases["wrapped key flipped"] = (bytes(body_flipped), [alice], AgeNoMatchError)

    # A stanza from another file to the same identity unwraps, but to another file key.
    other = Layout.of(seal(b"other", alice.recipient())).header
    start = other.index(b"-> ")
    stanza = other[start : other.index(b"---")]
    spliced = layout.header[: layout.header.index(b"-> ")] + stanza
    spliced += layout.header[layout.header.index(b"---") :]
    cases["stanza from another file"] = (
        spliced + layout.nonce + b"".join(layout.chunks),
        [alice],
        AgeHmacError,
    )
    cases["wrong identity"] = (sealed, [bob], AgeNoMatchError)
    cases["no identity"] = (sealed, [], AgeNoMatchError)
    cases["nonce missing"] = (layout.header + layout.nonce[:7], [alice], AgeHeaderError)
    return cases


CASE_NAMES = [
    "truncated at a chunk boundary",
    "two chunks swapped",
    "final chunk dropped",
    "trailing data after the final chunk",
    "truncated inside a chunk",
    "payload byte flipped",
    "version byte flipped",
    "MAC flipped",
    "wrapped key flipped",
    "stanza from another file",
    "wrong identity",
    "no identity",
    "nonce missing",
]


class TestTampering:
    def test_case_list_is_complete(self, alice: X25519Identity, bob: X25519Identity) -> None:
        assert sorted(_tamper_cases(alice, bob)) == sorted(CASE_NAMES)

    @pytest.mark.parametrize("case", CASE_NAMES)
    def test_stream_raises_the_typed_error(
        self, case: str, alice: X25519Identity, bob: X25519Identity
    ) -> None:
        sealed, identities, error = _tamper_cases(alice, bob)[case]
        with pytest.raises(Error) as info:
            decrypt_stream(io.BytesIO(sealed), io.BytesIO(), identities)
        assert type(info.value) is error

    @pytest.mark.parametrize("case", CASE_NAMES)
    def test_file_leaves_nothing_behind(
        self, case: str, alice: X25519Identity, bob: X25519Identity, tmp_path: Path
    ) -> None:
        sealed, identities, error = _tamper_cases(alice, bob)[case]
        src = tmp_path / "in.age"
        src.write_bytes(sealed)
        with pytest.raises(error):
            decrypt_file(src, tmp_path / "out.bin", identities)
        assert [p.name for p in tmp_path.iterdir()] == ["in.age"]

    def test_stream_releases_only_the_verified_prefix(self, alice: X25519Identity) -> None:
        data = os.urandom(3 * CHUNK + 100)
        layout = Layout.of(seal(data, alice.recipient()))
        layout.chunks[2] = bytes([layout.chunks[2][0] ^ 1]) + layout.chunks[2][1:]
        out = io.BytesIO()
        with pytest.raises(AgePayloadError, match="chunk 2"):
            decrypt_stream(io.BytesIO(layout.join()), out, [alice])
        assert out.getvalue() == data[: 2 * CHUNK]


class TestFiles:
    def test_round_trip(self, alice: X25519Identity, tmp_path: Path) -> None:
        data = os.urandom(BLOCK + 3)
        (tmp_path / "plain").write_bytes(data)
        assert encrypt_file(tmp_path / "plain", tmp_path / "sealed", [alice.recipient()]) == len(
            data
        )
        assert decrypt_file(str(tmp_path / "sealed"), str(tmp_path / "out"), [alice]) == len(data)
        assert (tmp_path / "out").read_bytes() == data
        assert (tmp_path / "out").stat().st_mode & 0o777 == 0o600
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plain", "sealed"]

    def test_armored_file(self, alice: X25519Identity, tmp_path: Path) -> None:
        (tmp_path / "plain").write_bytes(b"text")
        encrypt_file(tmp_path / "plain", tmp_path / "s.age", [alice.recipient()], armor=True)
        assert (tmp_path / "s.age").read_bytes().startswith(b"-----BEGIN AGE")
        decrypt_file(tmp_path / "s.age", tmp_path / "out", [alice])
        assert (tmp_path / "out").read_bytes() == b"text"

    def test_existing_output_is_kept_without_overwrite(
        self, alice: X25519Identity, tmp_path: Path
    ) -> None:
        (tmp_path / "plain").write_bytes(b"new")
        (tmp_path / "sealed").write_bytes(b"old")
        with pytest.raises(UsageError, match="already exists"):
            encrypt_file(tmp_path / "plain", tmp_path / "sealed", [alice.recipient()])
        assert (tmp_path / "sealed").read_bytes() == b"old"
        encrypt_file(tmp_path / "plain", tmp_path / "sealed", [alice.recipient()], overwrite=True)
        (tmp_path / "out").write_bytes(b"old")
        with pytest.raises(UsageError, match="already exists"):
            decrypt_file(tmp_path / "sealed", tmp_path / "out", [alice])
        assert (tmp_path / "out").read_bytes() == b"old"
        decrypt_file(tmp_path / "sealed", tmp_path / "out", [alice], overwrite=True)
        assert (tmp_path / "out").read_bytes() == b"new"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plain", "sealed"]

    def test_missing_input(self, alice: X25519Identity, tmp_path: Path) -> None:
        with pytest.raises(UsageError, match="cannot open input"):
            encrypt_file(tmp_path / "absent", tmp_path / "out", [alice.recipient()])
        with pytest.raises(UsageError, match="cannot open input"):
            decrypt_file(tmp_path / "absent", tmp_path / "out", [alice])
        assert list(tmp_path.iterdir()) == []

    def test_output_directory_missing(self, alice: X25519Identity, tmp_path: Path) -> None:
        (tmp_path / "plain").write_bytes(b"x")
        with pytest.raises(UsageError, match="temporary file"):
            encrypt_file(tmp_path / "plain", tmp_path / "no" / "out", [alice.recipient()])

    def test_no_recipients(self, tmp_path: Path) -> None:
        (tmp_path / "plain").write_bytes(b"x")
        with pytest.raises(UsageError, match="recipient"):
            encrypt_file(tmp_path / "plain", tmp_path / "out", [])
        assert [p.name for p in tmp_path.iterdir()] == ["plain"]

    def test_failure_after_output_started_removes_the_temp_file(
        self, alice: X25519Identity, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        data = os.urandom(3 * BLOCK)
        (tmp_path / "plain").write_bytes(data)
        encrypt_file(tmp_path / "plain", tmp_path / "sealed", [alice.recipient()])
        calls = []
        real = stream_module.StreamOpener.open

        def fail_late(self: Any, sealed: memoryview, out: memoryview, *, final: bool) -> int:
            calls.append(final)
            if len(calls) == 3:
                raise AgePayloadError("injected")
            return int(real(self, sealed, out, final=final))

        monkeypatch.setattr(stream_module.StreamOpener, "open", fail_late)
        with pytest.raises(AgePayloadError, match="injected"):
            decrypt_file(tmp_path / "sealed", tmp_path / "out", [alice])
        assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "sealed"]


class TestRetarget:
    def test_new_recipient_opens_and_payload_is_untouched(
        self, alice: X25519Identity, bob: X25519Identity
    ) -> None:
        data = os.urandom(2 * CHUNK + 1)
        sealed = seal(data, alice.recipient())
        out = io.BytesIO()
        retarget_header(io.BytesIO(sealed), out, alice, [bob.recipient()])
        before, after = Layout.of(sealed), Layout.of(out.getvalue())
        assert after.nonce == before.nonce and after.chunks == before.chunks
        assert after.header != before.header
        assert unseal(out.getvalue(), [bob]) == data
        with pytest.raises(AgeNoMatchError):
            unseal(out.getvalue(), [alice])

    def test_armored_input_gives_binary_output(
        self, alice: X25519Identity, bob: X25519Identity
    ) -> None:
        out = io.BytesIO()
        retarget_header(
            io.BytesIO(seal(b"hi", alice.recipient(), armor=True)), out, alice, [bob.recipient()]
        )
        assert out.getvalue().startswith(b"age-encryption.org/v1\n")
        assert unseal(out.getvalue(), [bob]) == b"hi"

    def test_needs_an_identity_that_opens_the_header(
        self, alice: X25519Identity, bob: X25519Identity
    ) -> None:
        with pytest.raises(AgeNoMatchError):
            retarget_header(
                io.BytesIO(seal(b"x", alice.recipient())), io.BytesIO(), bob, [bob.recipient()]
            )

    def test_tampered_header_is_refused(self, alice: X25519Identity, bob: X25519Identity) -> None:
        sealed, _, error = _tamper_cases(alice, bob)["stanza from another file"]
        out = io.BytesIO()
        with pytest.raises(error):
            retarget_header(io.BytesIO(sealed), out, alice, [bob.recipient()])
        assert out.getvalue() == b""

    def test_needs_recipients(self, alice: X25519Identity) -> None:
        with pytest.raises(UsageError):
            retarget_header(io.BytesIO(seal(b"x", alice.recipient())), io.BytesIO(), alice, [])


class TestUnsupported:
    def test_passphrase_file(self, alice: X25519Identity) -> None:
        sealed = (
            b"age-encryption.org/v1\n-> scrypt rF0/NwblUHHTpgQgRpe5CQ 10\n"
            b"gUjEymFKMVXQEKdMMHL24oYexjE3TIC0O0zGSqJ2aUY\n"
            b"--- IOXiQYStkoT1mvZW2tFOqZdhRVvj58egABx/sWfZQbc\n" + bytes(40)
        )
        with pytest.raises(UnsupportedRecipientError, match="passphrase"):
            unseal(sealed, [alice])


class TestIOErrors:
    def test_read_error_is_wrapped(self, alice: X25519Identity) -> None:
        class Broken(io.RawIOBase):
            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                raise OSError(5, "Input/output error")

        with pytest.raises(SealingError, match="cannot read"):
            encrypt_stream(cast(BinaryIO, Broken()), io.BytesIO(), [alice.recipient()])
        with pytest.raises(SealingError, match="cannot read"):
            decrypt_stream(cast(BinaryIO, Broken()), io.BytesIO(), [alice])

    def test_write_error_is_wrapped(self, alice: X25519Identity) -> None:
        class Full(io.RawIOBase):
            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                raise OSError(28, "No space left on device")

        with pytest.raises(SealingError, match="No space left"):
            encrypt_stream(
                io.BytesIO(os.urandom(3 * BLOCK)), cast(BinaryIO, Full()), [alice.recipient()]
            )
        with pytest.raises(SealingError, match="No space left"):
            decrypt_stream(
                io.BytesIO(seal(b"x" * BLOCK * 3, alice.recipient())),
                cast(BinaryIO, Full()),
                [alice],
            )

    def test_partial_writes_are_completed(self, alice: X25519Identity) -> None:
        class Slow(io.RawIOBase):
            def __init__(self) -> None:
                self.data = bytearray()

            def writable(self) -> bool:
                return True

            def write(self, b: Any) -> int:
                n = min(len(b), 777)
                self.data += bytes(b[:n])
                return n

        out = Slow()
        encrypt_stream(
            io.BytesIO(b"p" * (BLOCK + 1)), cast(BinaryIO, out), [alice.recipient()], armor=True
        )
        assert unseal(bytes(out.data), [alice]) == b"p" * (BLOCK + 1)


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]
        await asyncio.sleep(0)


class TestAsync:
    @pytest.mark.parametrize("size", [0, 1, CHUNK, BLOCK, BLOCK + 1, 2 * BLOCK + 7])
    async def test_round_trip_with_async_iterators(self, size: int, alice: X25519Identity) -> None:
        data = os.urandom(size)
        sealed: list[bytes] = []

        async def collect(part: bytes) -> None:
            sealed.append(part)

        assert await encrypt_async(_pieces(data, 10_000), collect, [alice.recipient()]) == size
        blob = b"".join(sealed)
        assert unseal(blob, [alice]) == data  # interoperable with the sync reader
        plain: list[bytes] = []

        async def collect_plain(part: bytes) -> None:
            plain.append(part)

        assert await decrypt_async(_pieces(blob, 4099), collect_plain, [alice]) == size
        assert b"".join(plain) == data

    async def test_stream_reader_source(self, alice: X25519Identity) -> None:
        data = os.urandom(BLOCK + 5)
        reader = asyncio.StreamReader()
        reader.feed_data(seal(data, alice.recipient(), armor=True))
        reader.feed_eof()
        plain = bytearray()

        async def sink(part: bytes) -> None:
            plain.extend(part)

        await decrypt_async(reader, sink, [alice])
        assert plain == data

    async def test_crypto_runs_off_the_event_loop(
        self, alice: X25519Identity, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        batches: list[str] = []
        real_to_thread = asyncio.to_thread

        async def spy(func: Callable[..., Any], /, *args: Any) -> Any:
            batches.append(func.__name__)
            return await real_to_thread(func, *args)

        monkeypatch.setattr(asyncio, "to_thread", spy)
        data = os.urandom(3 * BLOCK)
        sealed = bytearray()

        async def sink(part: bytes) -> None:
            sealed.extend(part)

        await encrypt_async(_pieces(data, BLOCK // 3), sink, [alice.recipient()])
        await decrypt_async(_pieces(bytes(sealed), BLOCK), sink, [alice])
        assert batches == ["_seal_bytes"] * 3 + ["_open_bytes"] * 3

    async def test_payload_failure_after_verified_prefix(self, alice: X25519Identity) -> None:
        data = os.urandom(BLOCK + CHUNK)
        sealed = seal(data, alice.recipient())[:-100]
        plain = bytearray()

        async def sink(part: bytes) -> None:
            plain.extend(part)

        with pytest.raises(AgePayloadError):
            await decrypt_async(_pieces(sealed, 65_000), sink, [alice])
        assert plain == data[:BLOCK]

    async def test_header_errors(self, alice: X25519Identity, bob: X25519Identity) -> None:
        async def sink(part: bytes) -> None:
            raise AssertionError("nothing may be released")

        with pytest.raises(AgeNoMatchError):
            await decrypt_async(_pieces(seal(b"x", alice.recipient()), 5), sink, [bob])
        with pytest.raises(AgeHeaderError):
            await decrypt_async(_pieces(b"garbage\n" * 100, 7), sink, [bob])

    async def test_non_bytes_source(self, alice: X25519Identity) -> None:
        async def numbers() -> AsyncIterator[Any]:
            yield 42

        async def sink(part: bytes) -> None:
            pass

        with pytest.raises(SealingError, match="other than bytes"):
            await encrypt_async(numbers(), sink, [alice.recipient()])

    async def test_empty_pieces_are_skipped(self, alice: X25519Identity) -> None:
        sealed = seal(b"payload", alice.recipient())

        async def sparse() -> AsyncIterator[bytes]:
            for byte in sealed:
                for _ in range(3):
                    yield b""
                yield bytes([byte])

        plain = bytearray()

        async def sink(part: bytes) -> None:
            plain.extend(part)

        assert await decrypt_async(sparse(), sink, [alice]) == len(b"payload")
        assert plain == b"payload"

    async def test_source_of_the_wrong_type(self, alice: X25519Identity) -> None:
        async def sink(part: bytes) -> None:
            pass

        with pytest.raises(UsageError, match="async read"):
            await encrypt_async(b"not a stream", sink, [alice.recipient()])  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, CHUNK, BLOCK + 1, 2 * BLOCK + CHUNK])
@pytest.mark.parametrize("open_first", [False, True], ids=["path", "open-file"])
def test_encrypt_file_digests_both_sides_in_one_pass(
    tmp_path: Path, size: int, open_first: bool
) -> None:
    identity = X25519Identity.generate()
    plain = os.urandom(size)
    src, dst = tmp_path / "plain", tmp_path / "sealed.age"
    src.write_bytes(plain)
    digests = SealDigests()
    if open_first:
        with open(src, "rb", buffering=0) as f:
            n = encrypt_file(f, dst, [identity.recipient()], digests=digests)
            assert not f.closed  # the caller's file stays the caller's
    else:
        n = encrypt_file(src, dst, [identity.recipient()], digests=digests)
    sealed = dst.read_bytes()
    assert n == digests.plaintext_size == size
    assert digests.plaintext.digest() == hashlib.sha256(plain).digest()
    assert digests.ciphertext_size == len(sealed)
    assert digests.ciphertext.digest() == hashlib.sha256(sealed).digest()
    assert decrypt_stream(io.BytesIO(sealed), out := io.BytesIO(), [identity]) == size
    assert out.getvalue() == plain
