"""RFC 8785 canonical JSON for our subset: the RFC's vectors, the escaping rules, refusals.

The examples of RFC 8785 sections 3.2.2 and 3.2.3 are copied here as facts (their number
members are left out: we refuse floats). The ``rfc8785`` package (Trail of Bits, a test-only
dependency) is an independent implementation we compare against on random values.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golem_graphene import canonical_json as cj
from golem_graphene.canonical_json import (
    MAX_SAFE_INTEGER,
    CanonicalJsonError,
    canonical_json,
    parse_json,
)
from golem_graphene.errors import ProtocolError
from golem_graphene.limits import MAX_JSON_DEPTH

# --- RFC 8785 examples ------------------------------------------------------------------------


def test_rfc8785_section_3_2_2_without_numbers() -> None:
    # Input text from the RFC (the "numbers" member dropped); the expected output is the RFC's.
    text = r"""{
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"""
    expected = '{"literals":[null,true,false],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    assert canonical_json(parse_json(text)) == expected.encode()


def test_rfc8785_section_3_2_3_sorting() -> None:
    text = r"""{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"""
    out = canonical_json(parse_json(text)).decode()
    keys = list(json.loads(out))
    # The RFC's order: by UTF-16 code units, so U+1F600 (D83D DE00) sorts before U+FB33.
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]
    assert out.startswith('{"\\r":"Carriage Return","1":"One","\u0080":"Control"')


def test_utf16_order_differs_from_code_point_order() -> None:
    value = {"\U0001f600": 1, "\uffff": 2}
    # Code point order would put U+FFFF first; UTF-16 order puts the surrogate pair first.
    assert canonical_json(value) == '{"\U0001f600":1,"\uffff":2}'.encode()


# --- strings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("char", "escaped"),
    [
        ("\b", "\\b"),
        ("\t", "\\t"),
        ("\n", "\\n"),
        ("\f", "\\f"),
        ("\r", "\\r"),
        ('"', '\\"'),
        ("\\", "\\\\"),
        ("\x00", "\\u0000"),
        ("\x0b", "\\u000b"),
        ("\x1f", "\\u001f"),
        ("\x7f", "\x7f"),
        ("/", "/"),
        ("\u2028", "\u2028"),
        ("é", "é"),
        ("\U0001f600", "\U0001f600"),
    ],
)
def test_string_escaping(char: str, escaped: str) -> None:
    assert canonical_json(char) == f'"{escaped}"'.encode()


def test_lone_surrogates_are_refused() -> None:
    with pytest.raises(CanonicalJsonError, match="surrogate"):
        canonical_json("a\ud800")
    with pytest.raises(CanonicalJsonError, match="surrogate"):
        canonical_json({"\udc00": 1})
    with pytest.raises(CanonicalJsonError, match="surrogate"):
        parse_json('"\\ud800"')


# --- numbers and other types --------------------------------------------------------------------


def test_integers_in_the_safe_range() -> None:
    assert canonical_json(0) == b"0"
    assert canonical_json(-0) == b"0"
    assert canonical_json(MAX_SAFE_INTEGER) == b"9007199254740991"
    assert canonical_json(-MAX_SAFE_INTEGER) == b"-9007199254740991"
    for bad in (MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, 10**30):
        with pytest.raises(CanonicalJsonError, match="safe range"):
            canonical_json(bad)


def test_booleans_are_not_integers() -> None:
    assert canonical_json([True, False, None, 1, 0]) == b"[true,false,null,1,0]"


@pytest.mark.parametrize("value", [1.0, 0.5, float("nan"), float("inf"), [1.5], {"a": 2.0}])
def test_floats_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalJsonError, match="float"):
        canonical_json(value)


@pytest.mark.parametrize("value", [b"bytes", {1: "a"}, {None: 1}, object(), {1, 2}])
def test_non_json_values_are_refused(value: Any) -> None:
    with pytest.raises(CanonicalJsonError):
        canonical_json(value)


def test_tuples_are_arrays_and_nesting_is_bounded() -> None:
    assert canonical_json(("a", (1,))) == b'["a",[1]]'
    deep: Any = []
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    with pytest.raises(CanonicalJsonError, match="deeply"):
        canonical_json(deep)


def test_errors_are_protocol_errors() -> None:
    assert issubclass(CanonicalJsonError, ProtocolError)
    assert CanonicalJsonError("x").code == "canonical_json"


def test_public_names() -> None:
    assert sorted(cj.__all__) == sorted(
        ["MAX_SAFE_INTEGER", "CanonicalJsonError", "JsonValue", "canonical_json", "parse_json"]
    )


# --- strict parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (b'{"a":1,"a":2}', "duplicate"),
        (b"1.5", "float"),
        (b"1e3", "float"),
        (b"NaN", "NaN"),
        (b"-Infinity", "NaN"),
        (b"\xff", "UTF-8"),
        (b"{", "invalid JSON"),
        (b"", "invalid JSON"),
        (b"[1] x", "invalid JSON"),
        (b"9007199254740992", "safe range"),
        (b"[" * 100_000, "deeply"),
        (b"[" * (MAX_JSON_DEPTH + 2) + b"]" * (MAX_JSON_DEPTH + 2), "deeply"),
    ],
)
def test_parse_json_refuses(text: bytes, rule: str) -> None:
    with pytest.raises(CanonicalJsonError, match=rule):
        parse_json(text)


def test_parse_json_accepts_text_and_bytes() -> None:
    assert parse_json('{"b":[1,true,null],"a":"x"}') == {"b": [1, True, None], "a": "x"}
    assert parse_json(b'"\\u00e9"') == "é"


# --- properties ---------------------------------------------------------------------------------

keys = st.text(max_size=8)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.text(max_size=16)
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_canonical_form_is_a_fixed_point(value: Any) -> None:
    once = canonical_json(value)
    assert canonical_json(parse_json(once)) == once
    # It is also plain JSON that any parser reads back to the same value.
    assert json.loads(once) == value


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(keys, values, min_size=2, max_size=8), st.randoms(use_true_random=False))
def test_key_order_does_not_matter(value: dict[str, Any], rnd: random.Random) -> None:
    items = list(value.items())
    rnd.shuffle(items)
    assert canonical_json(dict(items)) == canonical_json(value)


@settings(max_examples=300, deadline=None)
@given(values)
def test_agrees_with_the_rfc8785_package(value: Any) -> None:
    rfc8785 = pytest.importorskip("rfc8785")
    assert canonical_json(value) == rfc8785.dumps(value)
