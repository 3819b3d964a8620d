"""Helpers of tests/cli: the ``golem-graphene`` command as users meet it, the installed console
script run as a child process with a fresh ``HOME`` (and XDG folders) per test, in a working
folder of its own.

Fixtures:

- ``gg``: ``gg("seal", "-r", ..., input=b"...")`` runs the command and returns the
  ``CompletedProcess`` (bytes); ``gg.popen(...)`` starts it for signal and server tests.
- ``home``: the fresh ``HOME`` of the test; ``work``: its working folder (the cwd).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def console_script() -> Path:
    """The installed ``golem-graphene`` beside this interpreter (the venv's console script)."""
    found = shutil.which("golem-graphene", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("golem-graphene is not installed beside this Python (run make setup)")
    return Path(found)


class Cli:
    """Runs the console script with one environment and working folder."""

    def __init__(self, work: Path, home: Path) -> None:
        self.exe = console_script()
        self.work = work
        self.home = home
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GOLEM_GRAPHENE", "XDG_"))}
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            XDG_CACHE_HOME=str(home / ".cache"),
        )
        self.env = env

    def __call__(
        self,
        *args: str | Path,
        input: bytes | None = None,
        timeout: float = 120,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(self.exe), *map(str, args)],
            input=input if input is not None else b"",
            capture_output=True,
            timeout=timeout,
            cwd=cwd or self.work,
            env={**self.env, **(env or {})},
            check=False,
        )

    def popen(self, *args: str | Path, **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("cwd", self.work)
        kwargs.setdefault("env", self.env)
        return subprocess.Popen([str(self.exe), *map(str, args)], **kwargs)


def err(result: subprocess.CompletedProcess[bytes]) -> str:
    """The command's stderr as text (with the exit status, for assertion messages)."""
    return result.stderr.decode("utf-8", "replace")


class ServedProvider:
    """``golem-graphene provider serve`` as a child process, its stderr in a log file."""

    LISTENING = re.compile(rb"provider listening on (http://[0-9.]+:[0-9]+)")

    def __init__(self, cli: Cli, log: Path, *args: str | Path) -> None:
        self.log = log
        with log.open("wb") as sink:
            self.proc = cli.popen(
                "provider", "serve", *args, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        self.url = ""

    def wait_listening(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = self.LISTENING.search(self.log.read_bytes())
            if match:
                self.url = match.group(1).decode()
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"the provider did not start:\n{self.log.read_text()[-3000:]}")

    def wait_for(self, pattern: bytes, timeout: float = 60) -> re.Match[bytes]:
        """The first match of ``pattern`` in the log, once it appears."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log.read_bytes())
            if match:
                return match
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{pattern!r} never logged:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode

    def text(self) -> str:
        return self.log.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path below ``folder`` with its size and modification time (nanoseconds)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(folder))] = (st.st_size, st.st_mtime_ns)
    return out
