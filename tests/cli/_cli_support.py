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
import shutil
import subprocess
import sys
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
