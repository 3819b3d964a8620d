"""Every size and count bound in one place, so that a reviewer can audit them together."""

from __future__ import annotations

from typing import Final

# --- attestation --------------------------------------------------------------------------------
MAX_QUOTE_BYTES: Final = 64 * 1024
"""A v3 quote with a PEM chain is about 4.7 KiB; 64 KiB leaves room for large QE auth data."""

MAX_COLLATERAL_BYTES: Final = 1024 * 1024
"""A collateral bundle (TCB info, QE identity, chains, CRLs) is tens of KiB."""

MAX_CHAIN_CERTS: Final = 8
MAX_TCB_LEVELS: Final = 256
MAX_IAS_REPORT_BYTES: Final = 64 * 1024
