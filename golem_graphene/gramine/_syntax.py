"""The lexical pieces of the manifest format that the parser, sizes and the writer share.

Integer bounds of Gramine's fields, the hex and bare-key patterns, and how a problem writes a key
path (``fs.mounts[2].path``, ``loader.env."WITH SPACE"``) or the value it found.
"""

from __future__ import annotations

import json
import re
from typing import Final

U16_MAX: Final = 0xFFFF
U32_MAX: Final = 0xFFFF_FFFF
U64_MAX: Final = 0xFFFF_FFFF_FFFF_FFFF
HEX_RE: Final = re.compile(r"[0-9a-fA-F]+")
BARE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")


def found_text(value: object) -> str:
    """How a problem shows the value it found: short, and never the whole of a long string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if len(value) <= 80 else value[:77] + "..."
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return f"array of {len(value)}"
    if isinstance(value, dict):
        return "table"
    return f"{type(value).__name__} {str(value)[:60]}"


def type_name(value: object) -> str:
    """The TOML name of a decoded value's type (``boolean``, ``integer``, ``table``, ...)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, float):
        return "float"
    return type(value).__name__


def key_segment(name: str) -> str:
    """``name`` as one segment of a dotted key: bare when TOML allows, else quoted."""
    return name if BARE_KEY_RE.fullmatch(name) else json.dumps(name, ensure_ascii=False)


def join_key(prefix: str, name: str) -> str:
    """The dotted key of ``name`` inside the table at ``prefix`` (``""`` is the root)."""
    segment = key_segment(name)
    return f"{prefix}.{segment}" if prefix else segment
