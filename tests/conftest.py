"""Shared fixtures. Keep this small and generic: test data is reached through ``vectors``."""

from __future__ import annotations

from pathlib import Path

import pytest

VECTORS_DIR = Path(__file__).resolve().parent / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """The test-vector folder ``tests/vectors`` (read-only data, see its PROVENANCE.md)."""
    return VECTORS_DIR


@pytest.fixture(scope="session", autouse=True)
def _private_image_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Images flattened by builds and measurements (the user's ``$XDG_CACHE_HOME`` store) go to
    a folder of this session, in this process and in the CLI processes it starts."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
