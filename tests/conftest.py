"""Shared fixtures. Keep this small and generic: test data is reached through ``vectors``."""

from __future__ import annotations

from pathlib import Path

import pytest

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The test-vector folder ``tests/vectors`` (read-only data, see its PROVENANCE.md)."""
    return VECTORS_DIR
