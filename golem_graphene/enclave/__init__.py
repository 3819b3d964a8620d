"""The in-enclave agent: attests, opens inputs, runs the workload, seals outputs, signs a receipt.

It runs as the enclave's entrypoint under ``gramine-sgx`` or the ``sim`` runner
(``python -m golem_graphene.enclave /untrusted``), has no network, and talks to the provider
only through its control pipe (stdin/stdout, JSON lines) and the task's untrusted folder.
"""

__all__: list[str] = []
