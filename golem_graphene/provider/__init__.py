"""Front end 1: the HTTP provider service (API, OpenAPI, config, server, task engine, lifecycle).

Public names live in the submodules; this package re-exports nothing.
"""

from __future__ import annotations

__all__: list[str] = []
