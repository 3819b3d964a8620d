"""Shared by the fake ``gramine-*`` executables in this folder (they are tests' stand-ins for a
Gramine install on a host without SGX).

Each call appends one JSON line to the call log: ``$FAKE_GRAMINE_LOG``, or ``calls.jsonl`` beside
the executable (the provider's runners start Gramine with nothing but ``PATH`` in the
environment, so tests copy the fakes into a folder of their own). The behaviour comes from
``$FAKE_GRAMINE_MODE``, or ``{"mode": ...}`` in ``fake-gramine.json`` beside the executable; every
failure mode prints what real Gramine prints (``recorded.json``, with its sources).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(os.path.abspath(sys.argv[0])).parent
RECORDED = json.loads((Path(__file__).resolve().parent / "recorded.json").read_text())


def config() -> dict[str, Any]:
    """The behaviour asked for: ``mode`` (default ``ok``) and optional extras."""
    found: dict[str, Any] = {}
    path = HERE / "fake-gramine.json"
    if path.is_file():
        found = json.loads(path.read_text())
    if os.environ.get("FAKE_GRAMINE_MODE"):
        found["mode"] = os.environ["FAKE_GRAMINE_MODE"]
    found.setdefault("mode", "ok")
    return found


def record(tool: str, **extra: Any) -> None:
    """Append this call (tool, argv, cwd and ``extra``) to the call log."""
    log = Path(os.environ.get("FAKE_GRAMINE_LOG") or HERE / "calls.jsonl")
    entry = {"tool": tool, "argv": sys.argv[1:], "cwd": os.getcwd(), **extra}
    with open(log, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def fail_as_recorded(mode: str) -> None:
    """Print what Gramine prints in ``mode`` on stderr and exit with its status."""
    recorded = RECORDED["modes"][mode]
    sys.stderr.write(recorded["stderr"])
    sys.stderr.flush()
    sys.exit(recorded["exit"])


def print_version(cfg: dict[str, Any]) -> None:
    """``--version``: Gramine's answer, or the old loader's refusal in mode ``no-version``."""
    if cfg["mode"] == "no-version":
        sys.stderr.write(RECORDED["no-version"]["stderr"])
        sys.exit(RECORDED["no-version"]["exit"])
    sys.stdout.write(RECORDED["version"]["stdout"])
    sys.exit(0)
