"""Fixtures of tests/cli (helpers in ``_cli_support.py``): ``home``, ``work`` and ``gg``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _cli_support import Cli


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def gg(work: Path, home: Path) -> Iterator[Cli]:
    yield Cli(work, home)
