"""The protocol version: one number, one name, used in every message and domain label.

Every signed or hashed structure of the task flow (report data, input manifest key, receipt
signature) starts with a domain label that contains :data:`PROTOCOL_NAME`, so bytes made for
one version or purpose can never be mistaken for another's.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["PROTOCOL_NAME", "PROTOCOL_VERSION", "ProtocolName"]

PROTOCOL_VERSION: Final = 1
"""The task protocol version this package speaks (DESIGN section 4)."""

PROTOCOL_NAME: Final = "golem-graphene/v1"
"""The ``protocol`` field of messages, manifests and receipts, and the prefix of domain labels."""

ProtocolName = Literal["golem-graphene/v1"]
"""The type of ``protocol`` fields: only the version this package speaks is accepted."""
