"""Lazy re-exports for package ``__init__`` modules.

A package that re-exports names from heavy submodules (pydantic models, the HTTP client) would
make every importer pay for all of them: the in-enclave agent imports one small module of
``attestation`` and must start fast. ``lazy_exports`` resolves each name on first access.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``names[attr]`` (a submodule) on first access."""

    def __getattr__(attr: str) -> object:
        module = names.get(attr)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), attr)

    return __getattr__
