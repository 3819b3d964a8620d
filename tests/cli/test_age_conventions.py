"""Issue 14 items 7 and 14: seal/open/keygen follow the age CLI users know.

``-e``/``-d``, ``-a``, ``-R``, several ``-i``, ``-`` for stdin and stdout, ``keygen -y`` from
stdin, ``-o`` everywhere, silent on success unless ``-v``; ``--force`` replaces regular files
only, while ``/dev/null``, ``/dev/stdout`` and FIFOs are written as age writes them.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest
from _cli_support import Cli, err


@pytest.fixture
def keys(gg: Cli, work: Path) -> tuple[Path, str]:
    result = gg("keygen", "-o", "me.key")
    assert result.returncode == 0, err(result)
    recipient = gg("keygen", "-y", "me.key").stdout.decode().strip()
    assert recipient.startswith("age1")
    return work / "me.key", recipient


def test_round_trip_with_age_flags_and_silence(gg: Cli, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    sealed = gg("seal", "-e", "-a", "-r", recipient, "-", input=b"hello")
    assert sealed.returncode == 0 and sealed.stderr == b"", err(sealed)
    assert sealed.stdout.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----")
    opened = gg("open", "-d", "-i", key, "-o", "-", "-", input=sealed.stdout)
    assert (opened.returncode, opened.stdout, opened.stderr) == (0, b"hello", b"")


def test_age_opens_ours_and_we_open_ages(gg: Cli, work: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    sealed = gg("seal", "-r", recipient, input=b"to age")
    age = subprocess.run(["age", "-d", "-i", key], input=sealed.stdout, capture_output=True)
    assert age.stdout == b"to age", age.stderr
    by_age = subprocess.run(["age", "-r", recipient], input=b"from age", capture_output=True)
    assert gg("open", "-i", key, input=by_age.stdout).stdout == b"from age"


def test_several_identities_and_recipient_files(gg: Cli, work: Path) -> None:
    for name in ("a.key", "b.key"):
        assert gg("keygen", "-o", name).returncode == 0
    (work / "team.txt").write_text("# team\n" + gg("keygen", "-y", "b.key").stdout.decode())
    sealed = gg("seal", "-R", "team.txt", input=b"for b")
    assert sealed.returncode == 0, err(sealed)
    opened = gg("open", "-i", "a.key", "-i", "b.key", input=sealed.stdout)
    assert opened.stdout == b"for b", err(opened)
    # seal -i IDENTITY seals to that identity's own public key, as age -e -i does
    own = gg("seal", "-i", "a.key", input=b"for a")
    assert gg("open", "-i", "a.key", input=own.stdout).stdout == b"for a"


def test_keygen_y_reads_stdin_and_writes_o(gg: Cli, work: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    from_stdin = gg("keygen", "-y", input=key.read_bytes())
    assert from_stdin.stdout.decode() == recipient + "\n", err(from_stdin)
    assert gg("keygen", "-y", "-o", "me.pub", "-", input=key.read_bytes()).returncode == 0
    assert (work / "me.pub").read_text() == recipient + "\n"


def test_keygen_prints_the_public_key_when_not_to_a_terminal(gg: Cli) -> None:
    result = gg("keygen")
    assert result.stdout.startswith(b"# created: ")
    assert result.stderr.startswith(b"Public key: age1")


def test_verbose_says_what_was_written(gg: Cli, keys: tuple[Path, str]) -> None:
    _, recipient = keys
    result = gg("seal", "-v", "-r", recipient, "-o", "x.age", input=b"12345")
    assert result.returncode == 0
    assert err(result) == "sealed 5 B to x.age for 1 recipient\n"


def test_wrong_mode_flag_names_the_right_command(gg: Cli, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    result = gg("seal", "-d", "-i", key, input=b"x")
    assert result.returncode == 2
    assert "golem-graphene open" in err(result)
    result = gg("open", "-e", "-r", recipient, input=b"x")
    assert result.returncode == 2


def test_dev_null_and_dev_stdout_are_written_as_age_writes_them(
    gg: Cli, keys: tuple[Path, str]
) -> None:
    key, recipient = keys
    assert gg("seal", "-r", recipient, "-o", "/dev/null", input=b"x").returncode == 0
    to_stdout = gg("seal", "-a", "-r", recipient, "-o", "/dev/stdout", input=b"y")
    assert to_stdout.returncode == 0, err(to_stdout)
    assert to_stdout.stdout.startswith(b"-----BEGIN AGE")
    opened = gg("open", "-i", key, "-o", "/dev/stdout", input=to_stdout.stdout)
    assert opened.stdout == b"y", err(opened)
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_fifo_is_written_in_place(gg: Cli, work: Path, keys: tuple[Path, str]) -> None:
    _, recipient = keys
    fifo = work / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    result = gg("seal", "-a", "-r", recipient, "-o", fifo, input=b"z")
    reader.join(10)
    assert result.returncode == 0, err(result)
    assert got and got[0].startswith(b"-----BEGIN AGE")
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_force_never_replaces_a_device(gg: Cli, work: Path, keys: tuple[Path, str]) -> None:
    _, recipient = keys
    device = work / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the null device
    result = gg("seal", "-r", recipient, "-o", device, "--force", input=b"x")
    assert result.returncode == 0, err(result)
    assert stat.S_ISCHR(device.lstat().st_mode), "the device node was replaced"


def test_force_never_follows_or_replaces_a_symlink(
    gg: Cli, work: Path, keys: tuple[Path, str]
) -> None:
    _, recipient = keys
    target = work / "precious"
    target.write_text("keep me")
    link = work / "link"
    link.symlink_to(target)
    result = gg("seal", "-r", recipient, "-o", link, "--force", input=b"x")
    assert result.returncode == 2, err(result)
    assert err(result).startswith("error: output ") and "symbolic link" in err(result)
    assert link.is_symlink() and target.read_text() == "keep me"
    assert sorted(p.name for p in work.iterdir()) == ["link", "me.key", "precious"]


def test_force_replaces_a_regular_file(gg: Cli, work: Path, keys: tuple[Path, str]) -> None:
    key, recipient = keys
    (work / "out.age").write_text("old")
    assert gg("seal", "-r", recipient, "-o", "out.age", input=b"new").returncode == 2
    assert (work / "out.age").read_text() == "old"
    assert gg("seal", "-r", recipient, "-o", "out.age", "--force", input=b"new").returncode == 0
    assert gg("open", "-i", key, "out.age").stdout == b"new"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["open", "-i", "me.pub", "x.age"], "-i 'me.pub'"),
        (["open", "-i", "missing.key", "x.age"], "missing.key"),
        (["seal", "-R", "me.key"], "-R 'me.key'"),
        (["seal", "-r", "age1bogus"], "-r 'age1bogus'"),
        (["seal", "-r", "AGE-SECRET-KEY-1XYZ"], "not a secret key"),
    ],
)
def test_bad_keys_are_usage_errors_naming_the_value(
    gg: Cli, work: Path, keys: tuple[Path, str], argv: list[str], needle: str
) -> None:
    (work / "me.pub").write_text(keys[1] + "\n")
    (work / "x.age").write_bytes(b"")
    result = gg(*argv, input=b"")
    assert result.returncode == 2, err(result)
    assert err(result).startswith("error: ") and needle in err(result)
    assert "AGE-SECRET-KEY" not in err(result)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an age file: the input is empty"),
        (b"hello\n", "not an age file"),
    ],
)
def test_not_an_age_file(gg: Cli, keys: tuple[Path, str], data: bytes, message: str) -> None:
    key, _ = keys
    result = gg("open", "-i", key, input=data)
    assert result.returncode == 1
    assert err(result).startswith("FAIL: age_header: " + message)
    assert "expected None" not in err(result) and "found 0" not in err(result)


def test_no_matching_identity_reads_plainly(gg: Cli, keys: tuple[Path, str]) -> None:
    _, recipient = keys
    sealed = gg("seal", "-r", recipient, input=b"x").stdout
    gg("keygen", "-o", "other.key")
    result = gg("open", "-i", "other.key", input=sealed)
    assert result.returncode == 1
    text = err(result)
    assert text.startswith("FAIL: age_no_match: none of the 1 identity given opens the file")
    assert "expected one of" not in text
