"""golem-graphene: confidential computations on Golem providers, inside SGX enclaves under Gramine.

The requestor verifies the enclave's quote before it releases any key; inputs and outputs cross the
provider only as age files; the enclave signs a receipt that anyone can check offline.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
