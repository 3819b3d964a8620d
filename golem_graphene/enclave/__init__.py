"""The in-enclave agent: attests, opens inputs, runs the workload, seals outputs, signs a receipt.

It runs as the enclave's entrypoint under ``gramine-sgx`` or the ``sim`` runner
(``python -m golem_graphene.enclave WORKLOAD_JSON IO_DIR WORKSPACE_DIR``), has no network, and
talks to the provider only through its control channel (stdin/stdout, ``docs/agent-protocol.md``)
and the task's untrusted folder.
"""

__all__: list[str] = []
