"""The provider side: Gramine manifests, enclave runners and the provider service.

Public names live in the submodules (``golem_graphene.provider.manifest``,
``golem_graphene.provider.manifest_template``); this package re-exports nothing yet.
"""

from __future__ import annotations

__all__: list[str] = []
