"""The ``sim`` runner's simulated SGX platform: PKI, collateral, quotes and ``/dev/attestation``.

Nothing here gives real protection: the simulation root is labelled as such in its certificate
and verifiers refuse it unless the caller trusts it by name.
"""
