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
``NaN``/``Infinity``, lone surrogates and excessive nesting. It is also the one parser of every
JSON document that comes from outside (with ``floats=True`` where a document may hold finite
floats, such as a policy file).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from golem_graphene._internal.text import escape, quoted
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

_MAX_INT_CHARS: Final = len(str(-MAX_SAFE_INTEGER))

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


def _valid_string(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CanonicalJsonError("a string contains a lone surrogate (not valid Unicode)") from None


def _string(value: str, out: list[str]) -> None:
    _valid_string(value)
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
            raise CanonicalJsonError("duplicate object key", found=quoted(key, 80))
        obj[key] = item
    return obj


def _no_float(text: str) -> Any:
    raise CanonicalJsonError("floats are not part of the canonical subset", found=quoted(text, 40))


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 reads as inf
        raise CanonicalJsonError("a number is too large to be finite", found=quoted(text, 40))
    return value


def _safe_int(text: str) -> int:
    # Bounded before int() reads it: a megabyte of digits is refused without being converted.
    value = int(text) if len(text) <= _MAX_INT_CHARS else MAX_SAFE_INTEGER + 1
    if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        raise CanonicalJsonError(
            "integer outside the I-JSON safe range",
            expected=f"|n| <= {MAX_SAFE_INTEGER}",
            found=quoted(text, 40),
        )
    return value


def _no_constant(text: str) -> Any:
    raise CanonicalJsonError("NaN and Infinity are not JSON", found=text)


def _check(value: object, path: str = "", depth: int = 0) -> None:
    """Depth and strings (keys included): what the parser's hooks cannot see. ``path`` names
    the place (``outputs[2].name``) in the error."""
    if depth > MAX_JSON_DEPTH:
        raise CanonicalJsonError(
            f"JSON value nests too deeply at {path or '(top)'}", expected=f"<= {MAX_JSON_DEPTH}"
        )
    if isinstance(value, str):
        try:
            _valid_string(value)
        except CanonicalJsonError as exc:
            raise CanonicalJsonError(f"{exc.message} at {path or '(top)'}") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{escape(key, 80)}" if path else escape(key, 80)
            try:
                _valid_string(key)
            except CanonicalJsonError as exc:
                raise CanonicalJsonError(f"{exc.message} in a key at {path or '(top)'}") from None
            _check(item, name, depth + 1)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)


def parse_json(data: str | bytes | bytearray | memoryview, *, floats: bool = False) -> JsonValue:
    """Parse JSON text from outside strictly: the one JSON parser of golem-graphene.

    Refuses, with :class:`CanonicalJsonError`: text that is not UTF-8 (or starts with a byte
    order mark), invalid JSON, duplicate object keys (another reader might keep the other
    value), ``NaN``/``Infinity``, integers outside the I-JSON safe range ``|n| <= 2**53 - 1``,
    lone surrogates in strings or keys, and nesting deeper than ``MAX_JSON_DEPTH``. Floats are
    refused too (the canonical subset) unless ``floats`` is true; then they must be finite.
    Every document from a provider, a file or a service goes through here before a model
    interprets it.
    """
    try:
        text = bytes(data).decode("utf-8") if not isinstance(data, str) else data
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicates,
            parse_float=_finite_float if floats else _no_float,
            parse_int=_safe_int,
            parse_constant=_no_constant,
        )
    except UnicodeDecodeError as exc:
        raise CanonicalJsonError(f"JSON text is not UTF-8: {exc.reason}") from exc
    except RecursionError as exc:
        raise CanonicalJsonError("JSON value nests too deeply") from exc
    except ValueError as exc:  # json.JSONDecodeError, with a position and no content
        raise CanonicalJsonError(f"invalid JSON: {exc}") from exc
    _check(value)
    result: JsonValue = value
    return result
