"""The ``gramine-sgx`` Golem ExeUnit runtime: golem-graphene's provider on the Golem network.

yagna's ExeUnit supervisor runs it as a plugin (``ya-runtime-gramine-sgx.json``): ``test``,
``offer-template``, ``deploy`` (task package to enclave image), ``start`` (the blocking-mode
protobuf server that holds the enclave for the activity) and ``run --entrypoint`` (one protocol
step per process). The protocol steps are ExeScript ``run`` entry points and file transfers
through the ``/golem/io`` volume; see :mod:`golem_graphene.runtime.session` and ``docs/golem.md``.
It reuses the provider's image builder, runners and in-enclave agent unchanged.
"""

from __future__ import annotations

from golem_graphene.runtime.settings import (
    COUNTER_ENCLAVE_SECONDS,
    ENTRYPOINTS,
    RUNTIME_NAME,
    RUNTIME_VERSION,
    SERVICE_PROTOCOL_VERSION,
    VOLUME_NAME,
    VOLUME_PATH,
    RuntimeSettings,
)

__all__ = [
    "COUNTER_ENCLAVE_SECONDS",
    "ENTRYPOINTS",
    "RUNTIME_NAME",
    "RUNTIME_VERSION",
    "SERVICE_PROTOCOL_VERSION",
    "VOLUME_NAME",
    "VOLUME_PATH",
    "RuntimeSettings",
]
