"""Byte compatibility with the real ``age`` CLI, both directions, binary and armored.

Needs ``age`` and ``age-keygen`` on PATH (Debian package ``age``); skipped with the reason
otherwise.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from golem_graphene.errors import AgePayloadError
from golem_graphene.sealing import (
    X25519Identity,
    X25519Recipient,
    decrypt_file,
    encrypt_file,
    load_identities,
    retarget_header,
)

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        AGE is None or AGE_KEYGEN is None,
        reason="the age CLI is not installed (Debian package 'age'); interop tests need it",
    ),
]

MIB = 1024 * 1024
SIZES = [0, 1, 65535, 65536, 65537]


def age(*args: str | Path, data: bytes | None = None) -> bytes:
    assert AGE is not None
    result = subprocess.run([AGE, *map(str, args)], input=data, capture_output=True)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def age_decrypt(key_file: Path, src: Path, dst: Path) -> None:
    """``age -d`` into ``dst`` through stdout (``age -o`` creates no file for empty output)."""
    assert AGE is not None
    with dst.open("wb") as out:
        result = subprocess.run(
            [AGE, "-d", "-i", str(key_file), str(src)], stdout=out, stderr=subprocess.PIPE
        )
    assert result.returncode == 0, result.stderr.decode(errors="replace")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[X25519Identity, Path]:
    """An identity made by ``age-keygen`` and its file (so both tools read the same key)."""
    assert AGE_KEYGEN is not None
    path = tmp_path / "age-key.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(path)], check=True, capture_output=True)
    return load_identities(path)[0], path


def random_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 8 * MIB))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest()


def test_keys_agree(keys: tuple[X25519Identity, Path], tmp_path: Path) -> None:
    identity, path = keys
    assert AGE_KEYGEN is not None
    theirs = subprocess.run(
        [AGE_KEYGEN, "-y", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert identity.recipient().to_string() == theirs
    ours = X25519Identity.generate()
    (tmp_path / "ours.txt").write_text(ours.to_string() + "\n")
    converted = subprocess.run(
        [AGE_KEYGEN, "-y", str(tmp_path / "ours.txt")], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert converted == ours.recipient().to_string()


def _round_trips(keys: tuple[X25519Identity, Path], tmp_path: Path, size: int) -> None:
    identity, key_file = keys
    plain = tmp_path / "plain"
    digest = random_file(plain, size)

    # ours -> age
    encrypt_file(plain, tmp_path / "ours.age", [identity.recipient()])
    age_decrypt(key_file, tmp_path / "ours.age", tmp_path / "by-age")
    assert sha256_file(tmp_path / "by-age") == digest

    # age -> ours
    age("-r", identity.recipient().to_string(), "-o", tmp_path / "theirs.age", plain)
    decrypt_file(tmp_path / "theirs.age", tmp_path / "by-us", [identity])
    assert sha256_file(tmp_path / "by-us") == digest


@pytest.mark.parametrize("size", SIZES)
def test_round_trips(keys: tuple[X25519Identity, Path], tmp_path: Path, size: int) -> None:
    _round_trips(keys, tmp_path, size)


@pytest.mark.slow
def test_round_trips_100_mib(keys: tuple[X25519Identity, Path], tmp_path: Path) -> None:
    _round_trips(keys, tmp_path, 100 * MIB)


@pytest.mark.parametrize("size", [0, 1, 47, 48, 65537])
def test_armored(keys: tuple[X25519Identity, Path], tmp_path: Path, size: int) -> None:
    identity, key_file = keys
    plain = tmp_path / "plain"
    digest = random_file(plain, size)
    age("-a", "-r", identity.recipient().to_string(), "-o", tmp_path / "theirs.age", plain)
    assert (tmp_path / "theirs.age").read_bytes().startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    decrypt_file(tmp_path / "theirs.age", tmp_path / "by-us", [identity])
    assert sha256_file(tmp_path / "by-us") == digest
    encrypt_file(plain, tmp_path / "ours.age", [identity.recipient()], armor=True)
    age_decrypt(key_file, tmp_path / "ours.age", tmp_path / "by-age")
    assert sha256_file(tmp_path / "by-age") == digest


def test_several_recipients(keys: tuple[X25519Identity, Path], tmp_path: Path) -> None:
    identity, key_file = keys
    others = [X25519Identity.generate().recipient() for _ in range(3)]
    (tmp_path / "plain").write_bytes(b"to many")
    encrypt_file(tmp_path / "plain", tmp_path / "ours.age", [*others, identity.recipient()])
    assert age("-d", "-i", key_file, tmp_path / "ours.age") == b"to many"
    recipients = [r.to_string() for r in others] + [identity.recipient().to_string()]
    args = [a for r in recipients for a in ("-r", r)]
    sealed = age(*args, data=b"from age")
    (tmp_path / "theirs.age").write_bytes(sealed)
    decrypt_file(tmp_path / "theirs.age", tmp_path / "out", [identity])
    assert (tmp_path / "out").read_bytes() == b"from age"


def test_retargeted_file_opens_with_age(keys: tuple[X25519Identity, Path], tmp_path: Path) -> None:
    b_identity, b_file = keys
    a_identity = X25519Identity.generate()
    plain = tmp_path / "plain"
    digest = random_file(plain, 3 * 65536 + 17)
    encrypt_file(plain, tmp_path / "to-a.age", [a_identity.recipient()])
    with (tmp_path / "to-a.age").open("rb") as src, (tmp_path / "to-b.age").open("wb") as dst:
        retarget_header(src, dst, a_identity, [b_identity.recipient()])
    age_decrypt(b_file, tmp_path / "to-b.age", tmp_path / "by-age")
    assert sha256_file(tmp_path / "by-age") == digest
    to_a, to_b = (tmp_path / "to-a.age").read_bytes(), (tmp_path / "to-b.age").read_bytes()
    # The payload (nonce and chunks) is byte-identical; only the header changed.
    a_end = to_a.index(b"\n", to_a.index(b"\n---") + 1) + 1
    b_end = to_b.index(b"\n", to_b.index(b"\n---") + 1) + 1
    assert to_a[a_end:] == to_b[b_end:]
    assert to_a[:a_end] != to_b[:b_end]


def test_tampered_file_is_refused_by_both(
    keys: tuple[X25519Identity, Path], tmp_path: Path
) -> None:
    identity, key_file = keys
    (tmp_path / "plain").write_bytes(os.urandom(3 * 65536))
    encrypt_file(tmp_path / "plain", tmp_path / "ours.age", [identity.recipient()])
    sealed = (tmp_path / "ours.age").read_bytes()
    (tmp_path / "cut.age").write_bytes(sealed[: len(sealed) - 65536 - 16])
    assert AGE is not None
    refused = subprocess.run(
        [AGE, "-d", "-i", str(key_file), str(tmp_path / "cut.age")], capture_output=True
    )
    assert refused.returncode != 0
    with pytest.raises(AgePayloadError):
        decrypt_file(tmp_path / "cut.age", tmp_path / "out", [identity])
    assert not (tmp_path / "out").exists()


def test_cli_against_age(keys: tuple[X25519Identity, Path], tmp_path: Path) -> None:
    identity, key_file = keys
    exe = Path(sys.executable).with_name("golem-graphene")
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    data = os.urandom(200_000)
    sealed = subprocess.run(
        [exe, "seal", "-a", "-r", identity.recipient().to_string()],
        input=data,
        check=True,
        capture_output=True,
    ).stdout
    assert age("-d", "-i", key_file, data=sealed) == data
    theirs = age(
        "-r", X25519Recipient.from_string(identity.recipient().to_string()).to_string(), data=data
    )
    opened = subprocess.run(
        [exe, "open", "-i", key_file], input=theirs, check=True, capture_output=True
    )
    assert opened.stdout == data
