"""RFC 8785 JSON Canonicalization Scheme (JCS) for the JSON subset golem-graphene emits.

Receipts are signed and input manifests are hashed over their canonical JSON, so two
implementations that agree on the *value* agree on the *bytes*. The subset:

* objects with string keys, members sorted by the UTF-16 code units of their keys (RFC 8785
  section 3.2.3); duplicate keys cannot occur (Python dicts);
* arrays (``list`` or ``tuple``);
* strings, UTF-8 encoded, escaped as ECMAScript ``JSON.stringify`` does (section 3.2.2.2):
  ``\\"`` and ``\\\\``, the short forms ``\\b \\t \\n \\f \\r``, ``\\u00xx`` (lowercase hex)
  for other controls below U+0020, every other character literally;
* integers in the I-JSON safe range ``-(2**53 - 1) .. 2**53 - 1`` (RFC 7493), written in
  decimal: inside that range ECMAScript's number serialisation gives exactly these digits;
* ``true``, ``false``, ``null``.

**Floats are refused**, not serialised: nothing we sign or hash holds one, and ECMAScript's
shortest round-trip number formatting is the part of JCS most often implemented wrongly. A
value outside the subset raises :class:`CanonicalJsonError` instead of producing bytes that
another JCS implementation would render differently.

:func:`parse_json` is the strict inverse for this subset: it refuses duplicate keys, floats,
``NaN``/``Infinity``, lone surrogates and excessive nesting.
"""

from __future__ import annotations

import json
from typing import Any, Final

from golem_graphene.errors import ProtocolError
from golem_graphene.limits import MAX_JSON_DEPTH

__all__ = [
    "MAX_SAFE_INTEGER",
    "CanonicalJsonError",
    "JsonValue",
    "canonical_json",
    "parse_json",
]

JsonValue = None | bool | int | str | list["JsonValue"] | tuple["JsonValue", ...] | dict[str, Any]
"""What :func:`canonical_json` accepts (dict values are themselves ``JsonValue``)."""

MAX_SAFE_INTEGER: Final = 2**53 - 1
"""ECMAScript's ``Number.MAX_SAFE_INTEGER``: the largest integer every JSON peer reads exactly."""

_SHORT_ESCAPES: Final = {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}
_ESCAPES: Final = {cp: _SHORT_ESCAPES.get(cp, f"\\u{cp:04x}") for cp in (*range(0x20), 0x22, 0x5C)}
_TRANSLATION: Final = str.maketrans(_ESCAPES)


class CanonicalJsonError(ProtocolError):
    """A value is outside the canonicalisable subset, or JSON text is not in it."""

    code = "canonical_json"


def _utf16_key(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly like the sequence of UTF-16 code units.
    return key.encode("utf-16-be", "surrogatepass")


def _string(value: str, out: list[str]) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJsonError("a string contains a lone surrogate (not valid Unicode)") from None
    out.append('"')
    out.append(value.translate(_TRANSLATION))
    out.append('"')


def _emit(value: object, out: list[str], depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise CanonicalJsonError("JSON value nests too deeply", expected=f"<= {MAX_JSON_DEPTH}")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise CanonicalJsonError(
                "integer outside the I-JSON safe range",
                expected=f"|n| <= {MAX_SAFE_INTEGER}",
                found=value,
            )
        out.append(str(int(value)))
    elif isinstance(value, str):
        _string(value, out)
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalJsonError("object keys must be strings", found=type(key).__name__)
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_key)):
            if i:
                out.append(",")
            _string(key, out)
            out.append(":")
            _emit(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _emit(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, float):
        raise CanonicalJsonError("floats are not canonicalised (use integers)", found=repr(value))
    else:
        raise CanonicalJsonError("value is not JSON", found=type(value).__name__)


def canonical_json(value: JsonValue) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value``.

    Raises :class:`CanonicalJsonError` for floats, integers outside the safe range, non-string
    keys, lone surrogates, nesting deeper than ``MAX_JSON_DEPTH`` and non-JSON types.
    """
    out: list[str] = []
    _emit(value, out, 0)
    return "".join(out).encode("utf-8")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, item in pairs:
        if key in obj:
            raise CanonicalJsonError("duplicate object key", found=key[:80])
        obj[key] = item
    return obj


def _no_float(text: str) -> Any:
    raise CanonicalJsonError("floats are not part of the canonical subset", found=text[:40])


def _no_constant(text: str) -> Any:
    raise CanonicalJsonError("NaN and Infinity are not JSON", found=text)


def _depth(value: object, depth: int = 0) -> None:
    if depth > MAX_JSON_DEPTH:
        raise CanonicalJsonError("JSON value nests too deeply", expected=f"<= {MAX_JSON_DEPTH}")
    if isinstance(value, dict):
        for item in value.values():
            _depth(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _depth(item, depth + 1)


def parse_json(data: str | bytes) -> JsonValue:
    """Parse JSON text strictly into a value :func:`canonical_json` accepts.

    Raises :class:`CanonicalJsonError` for invalid JSON or UTF-8, duplicate keys, floats,
    ``NaN``/``Infinity``, integers or strings outside the subset, and excessive nesting.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_no_float,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError as exc:
        raise CanonicalJsonError(f"JSON text is not UTF-8: {exc.reason}") from exc
    except RecursionError as exc:
        raise CanonicalJsonError("JSON value nests too deeply") from exc
    except ValueError as exc:  # json.JSONDecodeError
        raise CanonicalJsonError(f"invalid JSON: {exc}") from exc
    _depth(value)
    # Re-emitting checks the remaining rules (integer range, lone surrogates from \\ud800).
    canonical_json(value)
    result: JsonValue = value
    return result
