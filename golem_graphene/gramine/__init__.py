"""The Gramine manifest format: model, parser, TOML writer, template rendering, SIGSTRUCT.

Everything a provider or a requestor needs to read, write, render or measure a Gramine
manifest, and to recognise a Gramine install, without launching anything. Public names live in
the submodules (``manifest``, ``template``, ``sigstruct``, ``install``).
"""

from __future__ import annotations

__all__: list[str] = []
