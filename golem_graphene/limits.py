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

# --- age files (sealing) --------------------------------------------------------------------------
MAX_AGE_HEADER_BYTES: Final = 1024 * 1024
"""An age header is ~200 B per X25519 stanza and ~1.6 KiB per post-quantum stanza; reading stops
here so that a file without a MAC line cannot make us buffer its whole payload."""

MAX_AGE_HEADER_LINE: Final = 4096
"""Longest header line: the longest native stanza argument line (``mlkem768p256tag``) is ~1.6 KiB;
body lines are 64 columns."""

MAX_AGE_STANZAS: Final = 4096
"""Recipient stanzas per header (and recipients per file we seal); each costs one X25519 per
identity to try."""

MAX_AGE_SCRYPT_WORK_FACTOR: Final = 22
"""log2(N) above which age itself refuses an scrypt stanza as malformed; we mirror its verdict
(we do not open scrypt files, but a malformed stanza is a header failure, not a missing feature)."""

MAX_AGE_ARMOR_WHITESPACE: Final = 1024
"""Whitespace tolerated before and after an ASCII-armored age file (the same bound as age)."""

MAX_AGE_KEY_FILE_BYTES: Final = 1024 * 1024
"""Identity and recipient files (``-i``, ``-R``): one ~75-byte line per key."""

# --- protocol messages, input manifests and receipts ------------------------------------------
MAX_MESSAGE_BYTES: Final = MAX_COLLATERAL_BYTES + 256 * 1024
"""A protocol message as JSON; the largest, evidence, carries collateral and a base64 quote."""

MAX_JSON_DEPTH: Final = 64
"""Nesting of JSON values we canonicalise or parse strictly; our documents nest four levels."""

MAX_FILE_NAME_BYTES: Final = 128
"""An input, output or spec name (ASCII); on disk it gains ``.age``, well under NAME_MAX."""

MAX_TASK_FILES: Final = 4096
"""Inputs per manifest and outputs per receipt (each is one file to hash and decrypt)."""

MAX_TASK_ARGS: Final = 4096
"""Workload arguments in an input manifest."""

MAX_TASK_ENV: Final = 1024
"""Workload environment variables in an input manifest."""

MAX_TASK_ARGV_ENV_BYTES: Final = 1024 * 1024
"""Total UTF-8 size of a manifest's args, env names and env values (Linux ARG_MAX is 2 MiB)."""

MAX_INPUT_MANIFEST_BYTES: Final = 4 * 1024 * 1024
"""A sealed input manifest: names, digests, args and env well under the bounds above."""

MAX_RECEIPT_BUNDLE_BYTES: Final = MAX_MESSAGE_BYTES + 2 * 1024 * 1024
"""A receipt bundle: evidence plus a receipt with up to MAX_TASK_FILES output entries."""

MAX_AGENT_FRAME_BYTES: Final = 256 * 1024
"""One frame of the host <-> agent control channel, line feed included (docs/agent-protocol.md):
the largest, ``evidence``, carries a quote of at most MAX_QUOTE_BYTES in hex."""

MAX_AGENT_MESSAGE_CHARS: Final = 1024
"""The free-text ``message`` of an agent's ``failed`` event."""

MAX_EVENT_MESSAGE_CHARS: Final = 4096
"""The free-text ``message`` of a task event."""

HASH_CHUNK_BYTES: Final = 1024 * 1024
"""Read size when hashing files: memory stays bounded whatever the file size."""

# --- collateral fetching (Intel PCS / PCCS client) --------------------------------------------
MAX_PCS_RESPONSE_BYTES: Final = 1024 * 1024
"""One PCS/PCCS response (TCB info, QE identity or a CRL); real ones are 1-30 KiB."""

PCS_TIMEOUT_S: Final = 30.0
"""Total time for one PCS/PCCS request: connecting, headers and the whole body."""

MAX_CACHED_COLLATERAL_DOCUMENTS: Final = 1024
"""Parsed collateral documents kept in memory per process (one per FMSPC and CA kind, plus the
QE identity and the root CA CRL, per cache directory)."""

# --- container images -------------------------------------------------------------------------
MAX_IMAGE_DOCUMENT_BYTES: Final = 4 * 1024 * 1024
"""An image index, manifest, config or ``manifest.json``; real ones are a few KiB (a config with
a long history tens of KiB)."""

MAX_IMAGE_LAYERS: Final = 256
"""Layers of one image; Docker refuses more than 127."""

MAX_IMAGE_ARCHIVE_MEMBERS: Final = 100_000
"""Members of an ``oci-archive``/``docker-archive`` tar: a few per layer plus the documents."""

MAX_IMAGE_INDEX_DEPTH: Final = 4
"""Nested image indexes followed from ``index.json`` to a manifest (real layouts: one or two)."""

MAX_IMAGE_ENTRIES: Final = 1_000_000
"""Tar entries over all layers of an image; a Debian image with Python has about 10,000."""

MAX_IMAGE_FILE_BYTES: Final = 4 * 1024 * 1024 * 1024
"""One regular file of a layer."""

MAX_IMAGE_UNPACKED_BYTES: Final = 16 * 1024 * 1024 * 1024
"""Uncompressed tar bytes over all layers of an image (a decompression-bomb bound)."""

MAX_IMAGE_COMPRESSION_RATIO: Final = 200
"""Uncompressed over compressed bytes of one layer, checked once a layer passed
IMAGE_RATIO_FLOOR_BYTES: text compresses 3-10x and sparse binaries rarely beyond 50x, while
gzip and zstd bombs reach 1,000x and more."""

IMAGE_RATIO_FLOOR_BYTES: Final = 64 * 1024 * 1024
"""Uncompressed bytes of a layer below which its compression ratio is not checked (a small
layer of zeros is harmless)."""

MAX_IMAGE_PATH_BYTES: Final = 4096
"""A layer entry's name or link target (Linux PATH_MAX)."""

MAX_IMAGE_PATH_DEPTH: Final = 128
"""Components of a layer entry's name."""

MAX_IMAGE_STORE_ROOTS: Final = 16
"""Flattened roots kept by an image store before the least recently used go."""

MAX_IMAGE_STORE_BYTES: Final = 32 * 1024 * 1024 * 1024
"""Bytes of flattened roots kept by an image store before the least recently used go."""
