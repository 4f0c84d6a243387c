"""SCIM filters (RFC 7644 §3.4.2.2): parsed once into a tree, evaluated on resources.

Grammar supported: ``attrPath op value``, ``attrPath pr``, ``and``, ``or``, ``not (…)``,
parentheses and value paths ``emails[type eq "work" and value co "@x"]``; operators
eq ne co sw ew gt lt ge le pr. Attribute names and operators are case-insensitive, and so
are string comparisons except on caseExact attributes (id, externalId) — what identity
providers rely on when they look a user up by ``userName eq "…"`` before creating one.
Resources are the JSON objects the service returns; a multi-valued attribute matches
when any of its values does, a complex one compares its ``value`` sub-attribute.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from flowloom.errors import InputError

__all__ = [
    "CASE_EXACT",
    "Filter",
    "ScimFilterError",
    "attribute_path",
    "lookup",
    "parse_filter",
]

CASE_EXACT = frozenset({"id", "externalid", "meta.version"})
"""Attributes compared case-sensitively (lower-case, dotted); the rest ignore case."""

_OPERATORS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le"})
_TOKEN = re.compile(
    r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<punct>[()\[\]])|(?P<word>[^\s()\[\]"]+))'
)
_SCHEMA_PREFIX = re.compile(r"^(urn:[^\s]+):(?=[^:]+$)", re.IGNORECASE)
_MAX_LENGTH = 4096
_MAX_DEPTH = 32


class ScimFilterError(InputError):
    """A filter the server cannot parse (SCIM scimType "invalidFilter")."""


@dataclass(frozen=True)
class Filter:
    """A parsed filter: `matches(resource)` says whether the resource passes it."""

    text: str
    test: Callable[[Mapping[str, Any]], bool]

    def matches(self, resource: Mapping[str, Any]) -> bool:
        return self.test(resource)


def attribute_path(raw: str) -> tuple[str, ...]:
    """`raw` ("urn:…:User:name.givenName", "emails.value") as lower-case names."""
    without = _SCHEMA_PREFIX.sub("", raw)
    parts = tuple(p.lower() for p in without.split("."))
    if not all(re.fullmatch(r"\$?[a-z][a-z0-9_$-]*", p) for p in parts):
        raise ScimFilterError(f"{raw!r} is not an attribute path")
    return parts


def _child(value: Any, name: str) -> Any:
    if not isinstance(value, Mapping):
        return None
    for key, item in value.items():
        if key.lower() == name:
            return item
    return None


def lookup(resource: Mapping[str, Any], path: tuple[str, ...]) -> list[Any]:
    """Every value at `path` in `resource`, multi-valued attributes flattened."""
    current: list[Any] = [resource]
    for name in path:
        found: list[Any] = []
        for item in current:
            value = _child(item, name)
            if isinstance(value, list):
                found.extend(value)
            elif value is not None:
                found.append(value)
        current = found
    return current


def _scalar(value: Any) -> Any:
    """A complex value compares by its `value` sub-attribute (RFC 7644 §3.4.2.2)."""
    if isinstance(value, Mapping):
        return _child(value, "value")
    return value


def _compare(op: str, actual: Any, wanted: Any, case_exact: bool) -> bool:
    actual = _scalar(actual)
    if actual is None:
        return False
    if isinstance(actual, str) and isinstance(wanted, str):
        if not case_exact:
            actual, wanted = actual.lower(), wanted.lower()
        tests: dict[str, Callable[[str, str], bool]] = {
            "eq": lambda a, w: a == w,
            "ne": lambda a, w: a != w,
            "co": lambda a, w: w in a,
            "sw": lambda a, w: a.startswith(w),
            "ew": lambda a, w: a.endswith(w),
            "gt": lambda a, w: a > w,
            "lt": lambda a, w: a < w,
            "ge": lambda a, w: a >= w,
            "le": lambda a, w: a <= w,
        }
        return tests[op](actual, wanted)
    if op == "eq":
        return bool(actual == wanted and type(actual) is type(wanted))
    if op == "ne":
        return not (actual == wanted and type(actual) is type(wanted))
    if op in ("gt", "lt", "ge", "le"):
        numbers = (int, float)
        if isinstance(actual, bool) or isinstance(wanted, bool):
            raise ScimFilterError(f"{op} cannot compare booleans")
        if not (isinstance(actual, numbers) and isinstance(wanted, numbers)):
            return False
        return {
            "gt": actual > wanted,
            "lt": actual < wanted,
            "ge": actual >= wanted,
            "le": actual <= wanted,
        }[op]
    return False  # co/sw/ew on a non-string never matches


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None or match.end() == position:
                if text[position:].strip() == "":
                    break
                raise ScimFilterError(f"cannot read the filter at {text[position:][:20]!r}")
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.at = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ScimFilterError("the filter ends too early")
        self.at += 1
        return token

    def word_is(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token[0] == "word" and token[1].lower() in words

    def expect(self, punct: str) -> None:
        token = self.take()
        if token != ("punct", punct):
            raise ScimFilterError(f"expected {punct!r}, found {token[1]!r}")

    def parse(self) -> Callable[[Mapping[str, Any]], bool]:
        test = self.disjunction(())
        if self.peek() is not None:
            raise ScimFilterError(f"unexpected {self.peek()[1]!r} in the filter")  # type: ignore[index]
        return test

    def disjunction(self, base: tuple[str, ...]) -> Callable[[Mapping[str, Any]], bool]:
        parts = [self.conjunction(base)]
        while self.word_is("or"):
            self.take()
            parts.append(self.conjunction(base))
        if len(parts) == 1:
            return parts[0]
        return lambda r: any(p(r) for p in parts)

    def conjunction(self, base: tuple[str, ...]) -> Callable[[Mapping[str, Any]], bool]:
        parts = [self.unary(base)]
        while self.word_is("and"):
            self.take()
            parts.append(self.unary(base))
        if len(parts) == 1:
            return parts[0]
        return lambda r: all(p(r) for p in parts)

    def unary(self, base: tuple[str, ...]) -> Callable[[Mapping[str, Any]], bool]:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ScimFilterError("the filter nests too deeply")
        try:
            if self.word_is("not"):
                self.take()
                self.expect("(")
                inner = self.disjunction(base)
                self.expect(")")
                return lambda r: not inner(r)
            if self.peek() == ("punct", "("):
                self.take()
                inner = self.disjunction(base)
                self.expect(")")
                return inner
            return self.comparison(base)
        finally:
            self.depth -= 1

    def comparison(self, base: tuple[str, ...]) -> Callable[[Mapping[str, Any]], bool]:
        kind, raw = self.take()
        if kind != "word":
            raise ScimFilterError(f"expected an attribute, found {raw!r}")
        path = base + attribute_path(raw)
        if self.peek() == ("punct", "["):
            if base:
                raise ScimFilterError("value paths cannot nest")
            self.take()
            inner = self.disjunction(())
            self.expect("]")
            return lambda r: any(isinstance(v, Mapping) and inner(v) for v in lookup(r, path))
        op_kind, op = self.take()
        op = op.lower()
        dotted = ".".join(path)
        case_exact = dotted in CASE_EXACT
        if op_kind == "word" and op == "pr":
            return lambda r: any(v not in (None, "", [], {}) for v in lookup(r, path))
        if op_kind != "word" or op not in _OPERATORS:
            raise ScimFilterError(
                f"unknown operator {op!r}", hint="use eq, ne, co, sw, ew, gt, lt, ge, le or pr"
            )
        wanted = self.value()
        if wanted is None:
            if op == "eq":
                return lambda r: not lookup(r, path)
            if op == "ne":
                return lambda r: bool(lookup(r, path))
            raise ScimFilterError(f"{op} cannot compare with null")
        return lambda r: any(_compare(op, v, wanted, case_exact) for v in lookup(r, path))

    def value(self) -> Any:
        kind, raw = self.take()
        if kind == "string":
            try:
                return json.loads(raw)
            except json.JSONDecodeError:
                raise ScimFilterError(f"{raw} is not a valid string") from None
        if kind == "word":
            lowered = raw.lower()
            if lowered in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[lowered]
            try:
                number = json.loads(raw)
            except json.JSONDecodeError:
                number = None
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                return number
        raise ScimFilterError(
            f"{raw!r} is not a value", hint='quote strings: userName eq "ada@example.org"'
        )


def parse_filter(text: str) -> Filter:
    """The Filter `text` describes; ScimFilterError (400 invalidFilter) if it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise ScimFilterError("the filter is empty")
    if len(text) > _MAX_LENGTH:
        raise ScimFilterError(f"the filter is longer than {_MAX_LENGTH} characters")
    return Filter(text=text, test=_Parser(text).parse())
