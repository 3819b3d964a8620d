"""Issue 14 item 8: SIGTERM and SIGHUP clean up like SIGINT, in every command.

A ``seal``/``open`` to a file in progress, interrupted by any of the three, leaves neither the
output nor its temporary file, says so on stderr, and exits 128 + the signal number.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from _cli_support import Cli


def _wait_for_temp_file(folder: Path, proc: subprocess.Popen[bytes]) -> Path:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        temps = [p for p in folder.rglob("*.tmp")]  # in the private staging folder
        if temps and temps[0].stat().st_size > 1 << 20:
            return temps[0]
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else b""
        time.sleep(0.02)
    raise AssertionError("the temporary output never grew")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("command", ["seal", "open"])
def test_signal_during_write_leaves_nothing(
    gg: Cli, work: Path, sig: signal.Signals, command: str
) -> None:
    assert gg("keygen", "-o", "me.key").returncode == 0
    recipient = gg("keygen", "-y", "me.key").stdout.decode().strip()
    out = work / "out"
    out.mkdir()
    if command == "seal":
        argv = ["seal", "-r", recipient, "-o", out / "result"]
        feed = b"\0" * (4 << 20)
    else:
        sealed = gg("seal", "-r", recipient, input=b"\0" * (8 << 20))
        argv = ["open", "-i", "me.key", "-o", out / "result"]
        feed = sealed.stdout[: 4 << 20]  # the rest never comes: the command waits for it
    proc = gg.popen(*argv, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(feed)
    proc.stdin.flush()
    _wait_for_temp_file(out, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, stderr
    assert list(out.iterdir()) == [], "a temporary file or the output was left behind"
    assert f"interrupted ({sig.name})" in stderr.decode()


def test_nohup_keeps_sighup_ignored(gg: Cli, work: Path) -> None:
    assert gg("keygen", "-o", "me.key").returncode == 0
    recipient = gg("keygen", "-y", "me.key").stdout.decode().strip()
    proc = gg.popen(
        "seal",
        "-r",
        recipient,
        "-o",
        work / "x.age",
        stdin=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
    )
    assert proc.stdin is not None
    proc.stdin.write(b"\0" * (2 << 20))
    proc.stdin.flush()
    _wait_for_temp_file(work, proc)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert proc.poll() is None, "SIGHUP ended a command started under nohup"
    _, stderr = proc.communicate(timeout=30)  # closes stdin: the input ends
    assert proc.returncode == 0, stderr
    assert (work / "x.age").stat().st_size > 2 << 20
