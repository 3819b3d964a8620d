"""Where golem-graphene finds a user's files: the spec file of a spec folder, and the signing key
and image store by the XDG base directory rules.

Kept apart from the image code so that commands which only need a path (a cached build, the
key check before any work) do not import the signing and rendering machinery.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_image_store_folder", "default_signing_key_path", "spec_file_of"]


def spec_file_of(spec_path: Path) -> Path:
    """``task.toml`` of a spec folder, or the file itself."""
    return spec_path / "task.toml" if spec_path.is_dir() else spec_path


def default_signing_key_path() -> Path:
    """``$XDG_CONFIG_HOME/golem-graphene/enclave-key.pem`` (like Gramine's default key path)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "golem-graphene" / "enclave-key.pem"


def default_image_store_folder() -> Path:
    """The user's store of flattened image roots: ``$XDG_CACHE_HOME/golem-graphene/images``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "golem-graphene" / "images"
