"""How the task protocol rides on Golem: the names both sides of an activity agree on.

The requestor's Golem channel (``requestor/golem``) and the ``gramine-sgx`` ExeUnit runtime
(``runtime/``) meet only through ExeScript commands and file transfers; these are the names they
share, so neither front end imports the other:

- the runtime name ``gramine-sgx`` (``golem.runtime.name`` in offers; Golem's own SGX runtimes
  used ``sgx``, ``sgx-js``, ``sgx-wasm``, ``sgx-wasi``, so this name does not collide);
- the volume files travel through, container path ``/golem/io``;
- the ExeScript ``run`` entry points that carry the protocol's steps.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ENTRYPOINTS", "RUNTIME_NAME", "VOLUME_PATH"]

RUNTIME_NAME: Final = "gramine-sgx"
"""``golem.runtime.name`` of offers made with this runtime (the descriptor's ``name``)."""

VOLUME_PATH: Final = "/golem/io"
"""The volume's container path: what the requestor names in file transfers."""

ENTRYPOINTS: Final = ("attest", "receive-inputs", "execute", "collect-outputs", "abort")
"""ExeScript ``run`` entry points, in protocol order (``abort`` at any time)."""
