"""Gramine size strings (``"512M"``, ``"1G"``, ``"256K"``): parse and format.

Sizes follow Gramine's ``parse_size_str`` (``common/src/string/atoi.c``): decimal digits with an
optional K/M/G suffix in either case, 1024-based, no sign, no spaces, at most 64 bits.
"""

from __future__ import annotations

import re
from typing import Final

from golem_graphene.gramine._syntax import U64_MAX, found_text
from golem_graphene.gramine.problems import ManifestProblem, ManifestValidationError

__all__ = ["format_size", "parse_size"]

_SIZE_RE: Final = re.compile(r"([0-9]+)([KMGkmg]?)")


def parse_size(text: str, *, key: str = "size") -> int:
    """Parse a Gramine size string (``"512M"``, ``"1G"``, ``"256K"``, ``"4096"``) into bytes.

    Follows Gramine's ``parse_size_str``: decimal digits, an optional K/M/G suffix in either case
    (powers of 1024), nothing else. Raises :class:`ManifestValidationError` naming ``key``.
    """
    match = _SIZE_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ManifestValidationError(
            [
                ManifestProblem(
                    key,
                    "must be a size: digits with an optional K, M or G suffix",
                    expected='a string such as "512M"',
                    found=found_text(text),
                )
            ]
        )
    digits, unit = match.groups()
    value = int(digits) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]
    if value > U64_MAX:
        raise ManifestValidationError(
            [ManifestProblem(key, "size overflows 64 bits", expected="< 2^64 bytes", found=text)]
        )
    return value


def format_size(size: int) -> str:
    """The shortest exact Gramine size string for ``size`` bytes (``268435456`` -> ``"256M"``)."""
    if size < 0:
        raise ManifestValidationError(
            [ManifestProblem("size", "must not be negative", found=str(size))]
        )
    for suffix, unit in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size and size % unit == 0:
            return f"{size // unit}{suffix}"
    return str(size)
