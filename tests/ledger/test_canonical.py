"""Canonical JSON (RFC 8785) and the strict parser: RFC examples, a second implementation, refusals.

The independent reference is the `rfc8785` package (tests only): every generated JSON value
must canonicalize to the same bytes through both the fast path and the hand-written path.
"""

from __future__ import annotations

import enum
import json
import math
import struct
import sys
from collections.abc import Callable
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from flowloom.errors import InputError
from flowloom.ledger import canonical
from flowloom.ledger.canonical import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    JSONValue,
    canonicalize,
    parse_json,
)


def slow_canonicalize(value: object) -> bytes:
    """The hand-written encoder alone, without the stdlib fast path."""
    parts: list[str] = []
    canonical._encode(value, parts, "$", 0)
    return "".join(parts).encode("utf-8")


def one_line_error(call: Callable[[], object]) -> str:
    with pytest.raises(InputError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def nested_lists(depth: int) -> JSONValue:
    value: JSONValue = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --------------------------------------------------------------------------- RFC 8785


RFC_SAMPLE_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""

RFC_SAMPLE_OUTPUT = (
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
    '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
).encode()


def test_rfc8785_section_3_2_2_sample() -> None:
    assert canonicalize(parse_json(RFC_SAMPLE_INPUT)) == RFC_SAMPLE_OUTPUT


RFC_SORTING_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""


def test_rfc8785_section_3_2_3_sorting() -> None:
    output = canonicalize(parse_json(RFC_SORTING_INPUT))
    values = [value for _, value in json.loads(output, object_pairs_hook=list)]
    assert values == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    assert output.startswith(b'{"\\r":"Carriage Return","1":"One","\xc2\x80":"Control"')


def test_utf16_order_differs_from_code_point_order() -> None:
    # Astral characters are surrogate pairs (D800-DBFF) in UTF-16, so they sort before
    # U+E000..U+FFFF, although their code points are higher.
    value = {"\ufb33": 1, "\U0001f600": 2, "\ue000": 3, "\uffff": 4, "\U00010000": 5}
    assert canonicalize(value) == (
        '{"\U00010000":5,"\U0001f600":2,"\ue000":3,"\ufb33":1,"\uffff":4}'.encode()
    )
    assert canonicalize(value) == rfc8785.dumps(value)


# RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialization.
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_rfc8785_appendix_b_numbers(bits: str, expected: str) -> None:
    number = double(bits)
    assert canonicalize(number) == expected.encode()
    assert canonicalize([number]) == f"[{expected}]".encode()
    assert slow_canonicalize(number) == expected.encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_rfc8785_appendix_b_non_finite_refused(bits: str) -> None:
    message = one_line_error(lambda: canonicalize({"n": double(bits)}))
    assert "$.n" in message
    assert "NaN and infinities" in message


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (100.0, "100"),
        (-0.0, "0"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (1e-6, "0.000001"),
        (1.5e-7, "1.5e-7"),
        (0.0001, "0.0001"),
        (1e16, "10000000000000000"),
        (123456789012345680.0, "123456789012345680"),
        (4.5, "4.5"),
        (-2.5e-10, "-2.5e-10"),
        (1e300, "1e+300"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1, "1"),
        (-1, "-1"),
        (0, "0"),
        (MAX_SAFE_INTEGER, "9007199254740991"),
        (-MAX_SAFE_INTEGER, "-9007199254740991"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
    ],
)
def test_number_and_literal_forms(number: object, expected: str) -> None:
    assert canonicalize(number) == expected.encode()
    assert canonicalize({"x": number}) == f'{{"x":{expected}}}'.encode()


def jcs_string_reference(text: str) -> str:
    """RFC 8785 §3.2.2.2 transcribed: the mandatory escapes, nothing else."""
    named = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
    named["\t"] = "\\t"
    out = []
    for char in text:
        if char in named:
            out.append(named[char])
        elif ord(char) < 0x20:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def test_string_escaping_matches_jcs_for_every_code_point() -> None:
    # The fast path trusts the stdlib's escaping; check it over all of Unicode.
    every = "".join(chr(cp) for cp in range(sys.maxunicode + 1) if not 0xD800 <= cp <= 0xDFFF)
    expected = jcs_string_reference(every).encode("utf-8")
    assert canonicalize(every) == expected
    assert canonicalize([every]) == b"[" + expected + b"]"
    assert slow_canonicalize(every) == expected


def test_no_whitespace_and_nested_sorting() -> None:
    value = {"b": [{"z": 1, "a": {"y": None, "x": []}}], "a": {}, "": "empty"}
    assert canonicalize(value) == b'{"":"empty","a":{},"b":[{"a":{"x":[],"y":null},"z":1}]}'


class Colour(enum.IntEnum):
    RED = 1


class Name(str, enum.Enum):  # noqa: UP042 - str() of this gives 'Name.ADA', not the value
    ADA = "ada"


class Ratio(float):
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ((1, "a", (2,)), b'[1,"a",[2]]'),
        (MappingProxyType({"b": 1, "a": 2}), b'{"a":2,"b":1}'),
        ({"c": Colour.RED}, b'{"c":1}'),
        ({"n": Name.ADA}, b'{"n":"ada"}'),
        ({Name.ADA: 1}, b'{"ada":1}'),
        ({"r": Ratio(0.5)}, b'{"r":0.5}'),
        ({"f": 2.0, "g": 0.25}, b'{"f":2,"g":0.25}'),
    ],
)
def test_accepted_python_types(value: object, expected: bytes) -> None:
    assert canonicalize(value) == expected


# --------------------------------------------------------------------------- properties

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
# Keys mix plain text with the characters where UTF-16 and code point order disagree.
keys = st.text() | st.text(
    alphabet=st.sampled_from(["a", "\u00e9", "\ue000", "\uffff", "\U00010000", "\U0001f600"]),
    max_size=4,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(keys, children, max_size=6),
    max_leaves=40,
)


@settings(max_examples=600)
@given(json_values)
def test_matches_the_rfc8785_package(value: Any) -> None:
    expected = rfc8785.dumps(value)
    assert canonicalize(value) == expected
    assert slow_canonicalize(value) == expected


@settings(max_examples=300)
@given(json_values)
def test_parse_round_trip_is_stable(value: Any) -> None:
    data = canonicalize(value)
    parsed = parse_json(data)
    assert canonicalize(parsed) == data
    assert parse_json(data.decode()) == parsed


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_numbers_round_trip_exactly(number: float) -> None:
    text = canonicalize(number)
    assert float(text) == number
    assert float(json.loads(text)) == number


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_every_finite_double_bit_pattern(bits: int) -> None:
    number = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
    if math.isfinite(number):
        assert canonicalize(number) == rfc8785.dumps(number)
    else:
        one_line_error(lambda: canonicalize(number))


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("value", "where", "what"),
    [
        ({"a": [1, math.nan]}, "$.a[1]", "NaN"),
        ({"a": math.inf}, "$.a", "infinities"),
        ([-math.inf], "$[0]", "infinities"),
        ({"s": "ok\ud800"}, "$.s", "lone surrogate U+D800"),
        ({"k": {"x\udc00": 1}}, "$.k", "lone surrogate"),
        ({1: "one"}, "$", "keys must be strings, not int"),
        ({"o": {None: 1}}, "$.o", "keys must be strings, not NoneType"),
        ({"o": {(1, 2): 1}}, "$.o", "keys must be strings, not tuple"),
        ({"b": b"bytes"}, "$.b", "bytes"),
        ({"s": {1, 2}}, "$.s", "set"),
        ({"o": object()}, "$.o", "object"),
        ({"d": Decimal("1.5")}, "$.d", "Decimal"),
        ({"n": 2**53}, "$.n", "I-JSON"),
        ({"n": -(2**53)}, "$.n", "I-JSON"),
        ({"n": 10**400}, "$.n", "I-JSON"),
        ({"a b": [{"c": 2**60}]}, '$["a b"][0].c', "I-JSON"),
    ],
)
def test_refusals_name_the_path(value: object, where: str, what: str) -> None:
    message = one_line_error(lambda: canonicalize(value))
    assert f"at {where}" in message
    assert what in message


def test_lone_surrogate_in_top_level_string() -> None:
    assert "at $:" in one_line_error(lambda: canonicalize("\udfff"))


def test_depth_limit() -> None:
    assert canonicalize(nested_lists(MAX_DEPTH)) == b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert "nested deeper than" in one_line_error(lambda: canonicalize(nested_lists(MAX_DEPTH + 1)))
    deep: dict[str, Any] = {}
    cursor = deep
    for _ in range(MAX_DEPTH + 5):
        cursor["k"] = {}
        cursor = cursor["k"]
    assert "nested deeper than" in one_line_error(lambda: canonicalize(deep))


def test_circular_structures_are_refused() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert "contains itself" in one_line_error(lambda: canonicalize(loop))
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    assert "contains itself" in one_line_error(lambda: canonicalize(cycle))


# --------------------------------------------------------------------------- parse_json


def test_parse_accepts_json_and_keeps_values() -> None:
    text = '  {"a": [1, 2.5, -0, "x", true, false, null], "b": {"c": "\\u00e9\\ud83d\\ude00"}}\n'
    assert parse_json(text) == {
        "a": [1, 2.5, 0, "x", True, False, None],
        "b": {"c": "é\U0001f600"},
    }
    assert parse_json(text.encode()) == parse_json(text)
    assert parse_json(str(MAX_SAFE_INTEGER)) == MAX_SAFE_INTEGER
    assert parse_json(str(-MAX_SAFE_INTEGER)) == -MAX_SAFE_INTEGER
    assert parse_json("1e-400") == 0.0


@pytest.mark.parametrize(
    "literal",
    ["9007199254740992", "-9007199254740992", "295147905179352830000", "1" + "0" * 21],
)
def test_parse_big_integers_that_a_double_holds_become_floats(literal: str) -> None:
    # Exact as a double, or the RFC 8785 form of one: nothing is rounded, so accepted.
    value = parse_json(literal)
    assert type(value) is float
    assert value == float(literal)
    assert parse_json(canonicalize(value)) == value
    assert parse_json("[" * MAX_DEPTH + "]" * MAX_DEPTH) == nested_lists(MAX_DEPTH)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b'{"a": "\xff"}', "invalid JSON: not valid UTF-8 at byte offset 7"),
        (b'{"a": "\xed\xa0\x80"}', "not valid UTF-8 at byte offset 7"),  # CESU surrogate
        (b'{"a": "\xc0\xaf"}', "not valid UTF-8 at byte offset 7"),  # overlong "/"
        (b'\xef\xbb\xbf{"a": 1}', "byte order mark"),
        ("\ufeff[]", "byte order mark"),
        ('{"a": 1} x', "Extra data at line 1 column 10"),
        ('{"a": 1}{}', "Extra data at line 1 column 9"),
        ('{"a": }', "Expecting value at line 1 column 7"),
        ('{\n  "a": 1,\n}', "line 3 column 1"),
        ("", "Expecting value at line 1 column 1"),
        ("'a'", "Expecting value"),
        ('{"a": "tab\there"}', "Invalid control character"),
        ('{"a": 1, "a": 2}', 'duplicate key "a" at line 1 column 10'),
        ('{"a": 1, "\\u0061": 2}', 'duplicate key "\\u0061" at line 1 column 10'),
        ('[{"x": {"a": 1}}, {"b": 1,\n "b": 2}]', 'duplicate key "b" at line 2 column 2'),
        ('{"a": NaN}', "NaN is not a JSON number at line 1 column 7"),
        ("[1,\n Infinity]", "Infinity is not a JSON number at line 2 column 2"),
        ("[-Infinity]", "-Infinity is not a JSON number at line 1 column 2"),
        ('{"n": 9007199254740993}', "9007199254740993 is outside the I-JSON integer range"),
        ("[-9007199254740993]", "number -9007199254740993 is outside"),
        ("[1" + "0" * 308 + "]", "a double would round it; send it as a string"),
        ("[1e400]", "number 1e400 is too large for a double at line 1 column 2"),
        ("[-1.5E+309]", "too large for a double"),
        ("[" + "1" * 5000 + "]", "send it as a string at line 1 column 2"),
        ('"\\ud800"', "lone surrogate U+D800 in string at line 1 column 1"),
        ('{"k\\udc00": 1}', "lone surrogate U+DC00"),
        ('["ok", "\\ude00\\ud83d"]', "lone surrogate U+DE00 in string at line 1 column 8"),
        ("x\ud800", "lone surrogate U+D800 at line 1 column 2"),
        ("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1), "nested deeper than 128 levels"),
        ("[" * 100_000, "nested deeper than 128 levels at line 1 column 129"),
        ('{"a":' * 5000 + "1" + "}" * 5000, "nested deeper than 128 levels"),
    ],
)
def test_parse_refusals(data: bytes | str, expected: str) -> None:
    assert expected in one_line_error(lambda: parse_json(data))


def test_parse_names_the_input() -> None:
    assert one_line_error(lambda: parse_json(b"{", what="--meta")).startswith("invalid --meta: ")


def test_parse_gate_false_alarms_are_harmless() -> None:
    # Text that looks like a surrogate escape, deep nesting, or big numbers inside strings.
    text = '{"s": "\\\\ud800", "n": "12345678901234567890", "b": "' + "[{" * 200 + '"}'
    parsed = parse_json(text)
    assert isinstance(parsed, dict)
    assert parsed["n"] == "12345678901234567890"


def test_canonical_fast_path_is_taken_for_plain_envelopes() -> None:
    envelope = {"v": 1, "actor": {"type": "agent", "id": "x"}, "refs": {"n": [1, 0.5, "é"]}}
    assert canonical._is_plain(envelope, 0)
    assert not canonical._is_plain({"n": 1.0}, 0)  # integral float: repr would say 1.0
    assert not canonical._is_plain({"\U0001f600": 1}, 0)  # astral key: UTF-16 order
    assert not canonical._is_plain({1: 1}, 0)
