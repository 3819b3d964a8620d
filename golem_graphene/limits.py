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

# --- Gramine manifests ----------------------------------------------------------------------------
MAX_MANIFEST_BYTES: Final = 16 * 1024 * 1024
"""A rendered manifest with every trusted file of a Python install expanded is a few MiB."""

MAX_MANIFEST_TEMPLATE_BYTES: Final = 1024 * 1024
"""Real templates are a few KiB; the rendered output is bounded by MAX_MANIFEST_BYTES."""

MAX_MANIFEST_NESTING: Final = 32
"""Depth of nested TOML tables/arrays we walk; real manifests nest at most four levels."""

MAX_TRUSTED_FILES: Final = 200_000
"""Entries after directory expansion; a full Python + glibc tree is about 10,000 files."""

MAX_TEMPLATE_REPEAT: Final = 1024 * 1024
"""Largest string or list a template may build with ``*`` (and bound on ``**`` results)."""

TEMPLATE_SUBPROCESS_TIMEOUT_S: Final = 30.0
"""Timeout of the helper processes a template may start (``python.get_sys_path``, ``ldd``)."""
