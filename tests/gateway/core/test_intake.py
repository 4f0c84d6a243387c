"""Intake: the nesting guard on bytes, strict JSON, and the field types each format has."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowloom.gateway.wire.intake import (
    MAX_DEPTH,
    MalformedRequestError,
    check_fields,
    parse_json,
    parse_request,
    too_deep,
)


def nested(depth: int) -> bytes:
    """`depth` levels, alternating arrays and objects, with siblings at every level."""
    text = "1"
    for level in range(depth):
        text = f'[0,{text},"]"]' if level % 2 else f'{{"k":{text},"s":"[[{{"}}'
    return text.encode()


@pytest.mark.parametrize("limit", [1, 2, 5, 64, MAX_DEPTH])
def test_the_guard_counts_nesting_exactly(limit: int) -> None:
    assert not too_deep(nested(limit), limit)
    assert too_deep(nested(limit + 1), limit)
    assert json.loads(nested(limit))  # the samples are real JSON


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


_TRICKY = st.text(alphabet='[]{}"\\ab\n', max_size=6)
_VALUES = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(value=_VALUES, ascii_only=st.booleans())
def test_the_guard_agrees_with_the_real_depth(value: Any, ascii_only: bool) -> None:
    """Brackets, quotes and backslashes inside keys and strings never fool it."""
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    depth = depth_of(value)
    for limit in range(8):
        assert too_deep(body, limit) == (depth > limit)


def test_brackets_inside_strings_do_not_count() -> None:
    prompt = json.dumps({"messages": [{"content": "[" * 10_000 + '\\"{' * 500}]}).encode()
    assert not too_deep(prompt, 8)
    assert parse_request(prompt)["messages"][0]["content"].startswith("[[[")
    many = json.dumps({"tools": [{"a": [1, {"b": 2}]}] * 5_000}).encode()  # wide, shallow
    assert not too_deep(many, 8)


def test_deep_bodies_never_reach_the_parser() -> None:
    for body in (
        b"[" * 100_000 + b"]" * 100_000,
        b"[" * 100_000,  # unbalanced: still refused for its depth
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b'{"x": ' + b"[{}," * 50_000 + b"]" * 50_000 + b"}",
    ):
        with pytest.raises(MalformedRequestError, match=f"more than {MAX_DEPTH} deep"):
            parse_request(body)
    # Unbalanced closers do not nest: the parser refuses them as not JSON.
    with pytest.raises(MalformedRequestError, match="not valid JSON"):
        parse_request(b'{"a": 1' + b"]" * 100_000)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"[1]", "must be a JSON object, not an array"),
        (b"null", "must be a JSON object, not null"),
        (b'{"a": "\xff"}', "not UTF-8 \\(byte 0xff at 7\\)"),
        (b'{"a": NaN}', "NaN is not a JSON number"),
        (b'{"a": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"a": 1e400}', "too large"),
        (b'{"a": 1' + b"0" * 5000 + b"}", "not valid JSON"),
        (b'{"a": "\\ud800"}', "unpaired UTF-16 surrogate"),
        (b'{"a": "x\\udc00\\ud83d"}', "unpaired UTF-16 surrogate"),
        (b'\xef\xbb\xbf{"a": 1}', "not valid JSON"),
    ],
)
def test_what_is_not_strict_json_is_refused(body: bytes, message: str) -> None:
    with pytest.raises(MalformedRequestError, match=message):
        parse_request(body)


def test_paired_surrogates_and_escaped_backslashes_are_fine() -> None:
    assert parse_request(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
    assert parse_request(b'{"a": "\\\\ud800"}') == {"a": "\\ud800"}  # text, not an escape
    assert parse_json(b"[1, 2.5]") == [1, 2.5]


@pytest.mark.parametrize(
    ("fmt", "body", "message"),
    [
        ("anthropic", {"messages": "hi"}, "messages must be an array, not a string"),
        ("anthropic", {"messages": [5]}, r"messages\[0\] must be an object, not an integer"),
        (
            "anthropic",
            {"messages": [{"role": "user", "content": [{"type": 5}]}]},
            r"messages\[0\].content\[0\].type must be a string, not an integer",
        ),
        ("anthropic", {"max_tokens": 1.5}, "max_tokens must be an integer, not a number"),
        ("anthropic", {"stream": 1}, "stream must be true or false, not an integer"),
        ("anthropic", {"model": 5}, "model must be a string, not an integer"),
        ("anthropic", {"model": "m" * 257}, "257 characters long; at most 256"),
        ("openai", {"tools": "x"}, "tools must be an array, not a string"),
        ("openai", {"stop": 5}, "stop must be a string or an array, not an integer"),
        ("openai", {"messages": [{"role": "user", "content": {}}]}, "content must be a string"),
        ("responses", {"input": 5}, "input must be a string or an array, not an integer"),
        ("responses", {"input": [None]}, r"input\[0\] must be an object, not null"),
        ("gemini", {"contents": "hi"}, "contents must be an array, not a string"),
        ("gemini", {"contents": [{"parts": "hi"}]}, r"contents\[0\].parts must be an array"),
        (
            "gemini",
            {"generation_config": {"max_output_tokens": "5"}},
            "generation_config.max_output_tokens must be an integer, not a string",
        ),
    ],
)
def test_known_fields_of_the_wrong_type_are_named(
    fmt: str, body: dict[str, object], message: str
) -> None:
    with pytest.raises(MalformedRequestError, match=message):
        check_fields(fmt, body)


def test_null_and_unknown_fields_pass() -> None:
    check_fields("anthropic", {"model": "m", "temperature": None, "x-unknown": {"any": [1]}})
    check_fields("openai", {"messages": [{"role": "assistant", "content": None}], "n": 1})
    check_fields("responses", {"input": "hi", "temperature": 1})  # an integer is a number
    check_fields("gemini", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
