"""The ``keygen``, ``seal`` and ``open`` commands, in process and through the console script."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from golem_graphene import _cli
from golem_graphene.sealing import X25519Identity, load_identities
from golem_graphene.sealing._internal.cli_support import ProgressMeter, human_bytes

MY_COMMANDS = (
    "golem_graphene._commands.keygen",
    "golem_graphene._commands.seal",
    "golem_graphene._commands.open",
)


@pytest.fixture(autouse=True)
def only_sealing_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    # These tests are about our three commands; keep them independent of the others' imports.
    assert set(MY_COMMANDS) <= set(_cli.COMMAND_MODULES)
    monkeypatch.setattr(_cli, "COMMAND_MODULES", MY_COMMANDS)


@pytest.fixture
def stdin_bytes(monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes], None]:
    def feed(data: bytes) -> None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    return feed


def run(*args: str) -> int:
    return _cli.main(list(args))


@pytest.fixture
def identity_file(tmp_path: Path) -> tuple[Path, X25519Identity]:
    path = tmp_path / "key.txt"
    assert run("keygen", "-o", str(path)) == 0
    return path, load_identities(path)[0]


class TestKeygen:
    def test_file(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "key.txt"
        assert run("keygen", "-o", str(path)) == 0
        assert path.stat().st_mode & 0o777 == 0o600
        lines = path.read_text().splitlines()
        identity = X25519Identity.from_string(lines[2])
        recipient = identity.recipient().to_string()
        assert re.fullmatch(r"# created: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", lines[0])
        assert lines[1] == f"# public key: {recipient}"
        captured = capsys.readouterr()
        assert captured.err == f"Public key: {recipient}\n"
        assert captured.out == ""
        assert [p.name for p in tmp_path.iterdir()] == ["key.txt"]

    def test_refuses_to_overwrite(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "key.txt"
        path.write_text("precious\n")
        assert run("keygen", "-o", str(path)) == 2
        assert "already exists" in capsys.readouterr().err
        assert path.read_text() == "precious\n"
        assert run("keygen", "-o", str(path), "--force") == 0
        assert load_identities(path)

    def test_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert run("keygen") == 0
        out, err = capsys.readouterr()
        lines = out.splitlines()
        assert lines[0].startswith("# created: ")
        identity = X25519Identity.from_string(lines[2])
        assert lines[1] == f"# public key: {identity.recipient()}"
        assert err == f"Public key: {identity.recipient()}\n"

    def test_convert(
        self, identity_file: tuple[Path, X25519Identity], capsys: pytest.CaptureFixture[str]
    ) -> None:
        path, identity = identity_file
        capsys.readouterr()
        assert run("keygen", "-y", str(path)) == 0
        assert capsys.readouterr().out == f"{identity.recipient()}\n"


class TestSealOpen:
    def test_files(
        self,
        tmp_path: Path,
        identity_file: tuple[Path, X25519Identity],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        key, identity = identity_file
        plain = tmp_path / "plain"
        plain.write_bytes(os.urandom(100_000))
        assert (
            run("seal", "-r", str(identity.recipient()), "-o", str(tmp_path / "s"), str(plain)) == 0
        )
        assert capsys.readouterr().err == ""  # silent on success, as age is
        out = str(tmp_path / "out")
        assert run("open", "-v", "-i", str(key), "-o", out, str(tmp_path / "s")) == 0
        assert capsys.readouterr().err == f"opened 97.7 KiB to {out}\n"
        assert (tmp_path / "out").read_bytes() == plain.read_bytes()

    def test_stdin_to_stdout_armored_and_recipients_file(
        self,
        tmp_path: Path,
        identity_file: tuple[Path, X25519Identity],
        capsysbinary: pytest.CaptureFixture[bytes],
        stdin_bytes: Callable[[bytes], None],
    ) -> None:
        key, identity = identity_file
        other = X25519Identity.generate()
        recipients = tmp_path / "recipients.txt"
        recipients.write_text(f"# team\n{identity.recipient()}\n{other.recipient()}\n")
        stdin_bytes(b"hello armor")
        assert run("seal", "-R", str(recipients), "--armor") == 0
        sealed = capsysbinary.readouterr().out
        assert sealed.startswith(b"-----BEGIN AGE ENCRYPTED FILE-----\n")
        assert sealed.count(b"-> X25519 ") == 0  # armored: the header is inside the base64
        stdin_bytes(sealed)
        assert run("open", "-i", str(key)) == 0
        assert capsysbinary.readouterr().out == b"hello armor"

    def test_existing_outputs_are_kept(
        self,
        tmp_path: Path,
        identity_file: tuple[Path, X25519Identity],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        key, identity = identity_file
        (tmp_path / "plain").write_bytes(b"data")
        (tmp_path / "s").write_bytes(b"old sealed")
        r = str(identity.recipient())
        assert run("seal", "-r", r, "-o", str(tmp_path / "s"), str(tmp_path / "plain")) == 2
        assert (tmp_path / "s").read_bytes() == b"old sealed"
        assert (
            run("seal", "-r", r, "-o", str(tmp_path / "s"), "--force", str(tmp_path / "plain")) == 0
        )
        (tmp_path / "out").write_bytes(b"old")
        assert run("open", "-i", str(key), "-o", str(tmp_path / "out"), str(tmp_path / "s")) == 2
        assert (tmp_path / "out").read_bytes() == b"old"
        assert "already exists" in capsys.readouterr().err

    def test_failure_is_exit_1_and_leaves_no_output(
        self,
        tmp_path: Path,
        identity_file: tuple[Path, X25519Identity],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        key, identity = identity_file
        (tmp_path / "plain").write_bytes(os.urandom(200_000))
        r = str(identity.recipient())
        assert run("seal", "-r", r, "-o", str(tmp_path / "s"), str(tmp_path / "plain")) == 0
        sealed = (tmp_path / "s").read_bytes()
        (tmp_path / "t").write_bytes(sealed[: len(sealed) - 70_000])
        capsys.readouterr()
        assert run("open", "-i", str(key), "-o", str(tmp_path / "out"), str(tmp_path / "t")) == 1
        assert capsys.readouterr().err.startswith("FAIL: age_payload: ")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["key.txt", "plain", "s", "t"]

    def test_wrong_identity(
        self,
        tmp_path: Path,
        identity_file: tuple[Path, X25519Identity],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        key, _ = identity_file
        other = X25519Identity.generate()
        (tmp_path / "plain").write_bytes(b"x")
        assert (
            run(
                "seal",
                "-r",
                str(other.recipient()),
                "-o",
                str(tmp_path / "s"),
                str(tmp_path / "plain"),
            )
            == 0
        )
        capsys.readouterr()
        assert run("open", "-i", str(key), "-o", str(tmp_path / "out"), str(tmp_path / "s")) == 1
        assert capsys.readouterr().err.startswith("FAIL: age_no_match: ")

    @pytest.mark.parametrize(
        ("args", "code", "message"),
        [
            (("seal",), 2, "no recipients"),
            (("open",), 2, "no identities"),
            (("seal", "-r", "age1pq1" + "q" * 70), 2, "error: -r 'age1pq1qqq"),
            (("seal", "-r", "age1notakey"), 2, "error: -r 'age1notakey' is not an age X25519"),
            (("open", "-i", "/nonexistent/key.txt"), 2, "cannot read identity file"),
            (
                (
                    "seal",
                    "-r",
                    "age1zvkyg2lqzraa2lnjvqej32nkuu0ues2s82hzrye869xeexvn73equnujwj",
                    "/nonexistent",
                ),
                2,
                "cannot open input",
            ),
        ],
    )
    def test_usage_and_errors(
        self, args: tuple[str, ...], code: int, message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert run(*args) == code
        assert message in capsys.readouterr().err

    def test_refuses_binary_to_a_terminal(
        self,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        stdin_bytes: Callable[[bytes], None],
    ) -> None:
        stdin_bytes(b"x")
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
        recipient = str(X25519Identity.generate().recipient())
        assert run("seal", "-r", recipient) == 2
        assert "terminal" in capsys.readouterr().err


class TestProgress:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    def test_draws_on_a_terminal(self) -> None:
        stream = self.Tty()
        meter = ProgressMeter(stream, "sealing", total=2 << 20)
        meter(1 << 20)
        meter.finish()
        text = stream.getvalue()
        assert text.startswith("\rsealing 1.0 MiB / 2.0 MiB (50%)")
        assert "/s" in text and text.endswith("\n")

    def test_silent_when_piped(self) -> None:
        stream = io.StringIO()
        meter = ProgressMeter(stream, "sealing", total=10)
        meter(5)
        meter.finish()
        assert stream.getvalue() == ""

    def test_human_bytes(self) -> None:
        assert human_bytes(0) == "0 B"
        assert human_bytes(1536) == "1.5 KiB"
        assert human_bytes(3 << 30) == "3.0 GiB"


def test_console_script_round_trip(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("golem-graphene")
    if not exe.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    key = tmp_path / "key.txt"
    subprocess.run([exe, "keygen", "-o", key], check=True, capture_output=True)
    recipient = subprocess.run(
        [exe, "keygen", "-y", key], check=True, capture_output=True, text=True
    ).stdout.strip()
    data = os.urandom(70_000)
    sealed = subprocess.run(
        [exe, "seal", "-r", recipient], input=data, check=True, capture_output=True
    ).stdout
    opened = subprocess.run([exe, "open", "-i", key], input=sealed, check=True, capture_output=True)
    assert opened.stdout == data
    assert opened.stderr == b""
    bad = subprocess.run([exe, "open", "-i", key], input=sealed[:-1], capture_output=True)
    assert bad.returncode == 1
    assert bad.stderr.startswith(b"FAIL: age_payload: ")
