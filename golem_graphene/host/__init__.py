"""Enclave hosting on a provider: runners, sandbox, the sim platform, images, standby pool.

The one :class:`~golem_graphene.host.session.EnclaveSession` drives a launched enclave's whole
conversation with its agent (``docs/agent-protocol.md``); both front ends (the HTTP provider
and the Golem runtime) use it. Public names live in the submodules.
"""

from __future__ import annotations

__all__: list[str] = []
