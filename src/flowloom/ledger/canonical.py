"""Canonical JSON: the RFC 8785 JSON Canonicalization Scheme (JCS), and a strict parser.

The canonical bytes of an event envelope are what the Merkle tree hashes, so this module
is part of the ledger format: `canonicalize` must produce exactly the RFC 8785 bytes.

- Object members are sorted by the UTF-16 code units of their names; no whitespace.
- Strings carry only the mandatory escapes (``\\"`` ``\\\\`` ``\\b`` ``\\f`` ``\\n``
  ``\\r`` ``\\t``; other control characters as lowercase ``\\u00xx``); everything else
  is literal UTF-8.
- Numbers are written the way ECMAScript's Number-to-String writes them (``1e+21``,
  ``1e-7``, ``100`` rather than ``100.0``, ``-0`` as ``0``).

Values outside I-JSON (RFC 7493) are refused with an `InputError` naming the JSON path:
NaN and infinities, lone surrogates, integers beyond ±(2**53 - 1), non-string keys,
types that are not JSON, and nesting deeper than `MAX_DEPTH`.

Speed matters (every ledger append canonicalizes its envelope), so the common case goes
through the stdlib's C encoder, whose string escaping is exactly the JCS escaping
(checked for every code point in the tests): plain dicts, lists and tuples of strings,
safe integers, booleans, None and the floats Python already writes the ECMAScript way,
with no astral-plane character in any key (there UTF-16 order and code point order
differ). Anything else takes the hand-written encoder, which also finds and names what
is wrong.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeAlias

from flowloom.errors import InputError

__all__ = [
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "JSONValue",
    "canonicalize",
    "parse_json",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
"""A JSON value as `parse_json` returns it (tuples and other mappings are accepted too)."""

MAX_SAFE_INTEGER = 2**53 - 1
"""The largest integer I-JSON allows: every integer up to it is exact in an IEEE double."""

MAX_DEPTH = 128
"""The deepest nesting of arrays and objects accepted (a top-level scalar is depth 0)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+|\s+', re.DOTALL)
_NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})

_encode_string = json.encoder.encode_basestring  # JCS escaping, verified in the tests
_make_c_encoder: Callable[..., Callable[[object, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None
)
if _make_c_encoder is not None:
    # One reusable C encoder (no circular-reference markers: _is_plain bounds the depth)
    # saves the per-call set-up that JSONEncoder.encode does.
    _c_encoder = _make_c_encoder(None, None, _encode_string, None, ":", ",", True, False, False)

    def _fast_dumps(value: object) -> str:
        return "".join(_c_encoder(value, 0))

else:  # pragma: no cover - CPython always has the C accelerator
    _py_encoder = json.JSONEncoder(
        ensure_ascii=False,
        check_circular=False,
        allow_nan=False,
        sort_keys=True,
        separators=(",", ":"),
    )

    def _fast_dumps(value: object) -> str:
        return _py_encoder.encode(value)


# --------------------------------------------------------------------------- encoder


def canonicalize(value: object) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of a JSON value.

    Accepts `None`, `bool`, `int`, `float`, `str`, lists and tuples, and mappings with
    string keys. Raises `InputError` (with the JSON path) for anything I-JSON refuses.
    """
    if _is_plain(value, 0):
        try:
            return _fast_dumps(value).encode("utf-8")
        except UnicodeEncodeError:
            pass  # a lone surrogate somewhere: let the full encoder say where
    parts: list[str] = []
    _encode(value, parts, "$", 0)
    return "".join(parts).encode("utf-8")


def _is_plain(value: object, depth: int) -> bool:
    """Whether the stdlib encoder writes `value` exactly as JCS does.

    True for exact dicts, lists, tuples, strings, bools, None, safe ints and the floats
    whose repr is already the ECMAScript form, with keys that are plain strings inside
    the BMP (where code point order equals UTF-16 order), nested no deeper than
    MAX_DEPTH.
    """
    if type(value) is str or type(value) is bool or value is None:
        return True
    if type(value) is int:
        return -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if type(value) is float:
        # Where Python's repr and ECMAScript both write plain decimals, they agree.
        return 1e-4 <= abs(value) < 1e16 and not value.is_integer()
    if depth >= MAX_DEPTH:
        return False
    if type(value) is dict:
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > "\uffff"):
                return False
            if type(item) is not str and not _is_plain(item, depth + 1):
                return False
        return True
    if type(value) is list or type(value) is tuple:
        for item in value:  # noqa: SIM110 - a plain loop is faster than all() here
            if type(item) is not str and not _is_plain(item, depth + 1):
                return False
        return True
    return False


def _encode(value: object, out: list[str], path: str, depth: int) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_encode_str(value, path))
    elif isinstance(value, int):
        number = int(value)
        if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            raise InputError(
                f"cannot canonicalize integer {_abbrev(str(number))} at {path}: "
                "outside the I-JSON range ±(2**53 - 1); send it as a string"
            )
        out.append(str(number))
    elif isinstance(value, float):
        out.append(_format_number(float(value), path))
    elif isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            raise _too_deep(path)
        members: list[tuple[bytes, str, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise InputError(
                    f"cannot canonicalize object key {_abbrev(repr(key))} at {path}: "
                    f"keys must be strings, not {type(key).__name__}"
                )
            if _SURROGATE.search(key):
                raise InputError(
                    f"cannot canonicalize object key {_abbrev(repr(key))} at {path}: "
                    "it contains a lone surrogate, which is not Unicode text"
                )
            encoded_key = _encode_string(key)
            members.append((key.encode("utf-16-be"), encoded_key, item))
        members.sort(key=lambda member: member[0])
        out.append("{")
        for index, (_, encoded_key, item) in enumerate(members):
            if index:
                out.append(",")
            out.append(encoded_key)
            out.append(":")
            _encode(item, out, _child_path(path, encoded_key), depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            raise _too_deep(path)
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out, f"{path}[{index}]", depth + 1)
        out.append("]")
    else:
        raise InputError(
            f"cannot canonicalize {type(value).__name__} at {path}: not a JSON type "
            "(use dict, list, str, int, float, bool or None)"
        )


def _encode_str(text: str, path: str) -> str:
    match = _SURROGATE.search(text)
    if match is not None:
        raise InputError(
            f"cannot canonicalize string at {path}: lone surrogate "
            f"U+{ord(match.group()):04X} at character {match.start()} is not Unicode text"
        )
    return _encode_string(text)


def _format_number(number: float, path: str) -> str:
    """ECMAScript Number::toString (ECMA-262 §6.1.6.1.20) for a finite double."""
    if not math.isfinite(number):
        raise InputError(
            f"cannot canonicalize number {number!r} at {path}: NaN and infinities are not JSON"
        )
    if number == 0:
        return "0"  # also for -0.0
    sign = "-" if number < 0 else ""
    # repr gives the shortest digits that round-trip, the digits ECMAScript chooses too.
    text = repr(abs(number))
    mantissa, _, exponent = text.partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # value = 0.<digits> * 10**point
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    count = len(digits)
    if count <= point <= 21:
        return sign + digits + "0" * (point - count)
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    power = point - 1
    exponent_text = f"e+{power}" if power >= 0 else f"e-{-power}"
    if count == 1:
        return sign + digits + exponent_text
    return sign + digits[0] + "." + digits[1:] + exponent_text


def _child_path(path: str, encoded_key: str) -> str:
    name = encoded_key[1:-1]
    if name.isidentifier():
        return f"{path}.{name}"
    return f"{path}[{encoded_key}]"


def _too_deep(path: str) -> InputError:
    return InputError(
        f"cannot canonicalize value at {path}: nested deeper than {MAX_DEPTH} levels "
        "(or a container that contains itself)"
    )


def _abbrev(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- parser


class _Rejected(Exception):
    """Raised inside json.loads hooks; the located message is worked out afterwards."""


def _reject_constant(name: str) -> object:
    raise _Rejected(name)


def _object_without_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Rejected("duplicate key")
    return result


def _safe_int(literal: str) -> int | float:
    if len(literal) <= 15:  # 15 digits or fewer: always within ±(2**53 - 1)
        return int(literal)
    number = _read_big_integer(literal)
    if number is None:
        raise _Rejected(literal)
    return number


def _read_big_integer(literal: str) -> int | float | None:
    """Read an integer literal that may lie outside ±(2**53 - 1); None if it must be refused.

    Beyond the safe range an integer is kept only as the double it denotes, and only when
    that loses nothing: the double equals it exactly, or the literal is the way RFC 8785
    writes that double (295147905179352830000, for instance). Then canonical output of
    any float parses back, and nothing is rounded silently.
    """
    if len(literal) > 330:  # beyond any finite double; int() would be slow
        return None
    exact = int(literal)
    if -MAX_SAFE_INTEGER <= exact <= MAX_SAFE_INTEGER:
        return exact
    try:
        number = float(exact)
    except OverflowError:
        return None
    if int(number) == exact or _format_number(number, "$") == literal:
        return number
    return None


def _finite_float(literal: str) -> float:
    number = float(literal)
    if number - number == 0.0:  # false for infinities (and NaN)
        return number
    raise _Rejected(literal)


_strict_loads = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates,
    parse_constant=_reject_constant,
    parse_int=_safe_int,
    parse_float=_finite_float,
).decode


def parse_json(data: bytes | str, *, what: str = "JSON") -> JSONValue:
    """Parse one JSON text strictly (RFC 8259 plus I-JSON), or raise a one-line InputError.

    Refused, with the line and column (or byte offset) in the message: invalid UTF-8, a
    byte order mark, syntax errors and trailing data, duplicate object keys, NaN and
    Infinity, numbers outside I-JSON (overflowing floats; integers beyond
    ±(2**53 - 1) that a double would round), lone surrogates, nesting deeper than
    `MAX_DEPTH`. Integers beyond ±(2**53 - 1) that a double holds without loss are
    returned as floats, so whatever `canonicalize` writes parses back. `what` names the
    input in messages ("event", "request body", ...).
    """
    if isinstance(data, str):
        text = data
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise InputError(
                    f"invalid {what}: lone surrogate U+{ord(text[error.start]):04X} "
                    f"at {_line_column(text, error.start)}"
                ) from None
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as error:
            raise InputError(
                f"invalid {what}: not valid UTF-8 at byte offset {error.start}"
            ) from None
    if text.startswith("\ufeff"):
        raise InputError(f"invalid {what}: starts with a byte order mark; remove it")
    try:
        value: JSONValue = _strict_loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"invalid {what}: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except (_Rejected, RecursionError):
        raise _locate_problem(text, what) or InputError(f"invalid {what}") from None
    # Cheap scans of the text decide whether the parsed value needs a closer look.
    if (
        (text.count("[") + text.count("{") > MAX_DEPTH) or _SURROGATE_ESCAPE.search(text)
    ) and _violates_i_json(value, 0):
        raise _locate_problem(text, what) or InputError(f"invalid {what}")
    return value


def _violates_i_json(value: object, depth: int) -> bool:
    """Whether a parsed value is too deep, has a lone surrogate or an unsafe number."""
    if type(value) is str:
        return _SURROGATE.search(value) is not None
    if type(value) is int:
        return not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER
    if type(value) is float:
        return not math.isfinite(value)
    if type(value) is dict:
        return depth >= MAX_DEPTH or any(
            _SURROGATE.search(key) or _violates_i_json(item, depth + 1)
            for key, item in value.items()
        )
    if type(value) is list:
        return depth >= MAX_DEPTH or any(_violates_i_json(item, depth + 1) for item in value)
    return False


def _locate_problem(text: str, what: str) -> InputError | None:
    """Find, with its line and column, the first I-JSON violation in a JSON text.

    The slow path behind `parse_json`: it runs only once something has been refused,
    and it tokenizes the text itself so that it knows where each token is.
    """
    stack: list[set[str] | None] = []  # the keys seen so far per object, None per array
    expect_key = False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        first = token[0]
        if first.isspace():
            continue
        where = match.start()
        if first in "{[":
            stack.append(set() if first == "{" else None)
            if len(stack) > MAX_DEPTH:
                return InputError(
                    f"invalid {what}: nested deeper than {MAX_DEPTH} levels "
                    f"at {_line_column(text, where)}"
                )
            expect_key = first == "{"
            continue
        is_key = expect_key
        expect_key = first == "," and bool(stack) and stack[-1] is not None
        if first in "}]":
            if stack:
                stack.pop()
        elif first == '"':
            try:
                string = json.loads(token)
            except ValueError:
                return None  # malformed: json.loads reports that itself
            surrogate = _SURROGATE.search(string)
            if surrogate is not None:
                return InputError(
                    f"invalid {what}: lone surrogate U+{ord(surrogate.group()):04X} "
                    f"in string at {_line_column(text, where)}"
                )
            keys = stack[-1] if stack else None
            if is_key and keys is not None:
                if string in keys:
                    return InputError(
                        f"invalid {what}: duplicate key {_abbrev(token)} "
                        f"at {_line_column(text, where)}"
                    )
                keys.add(string)
        elif token in _NON_FINITE:
            return InputError(
                f"invalid {what}: {token} is not a JSON number at {_line_column(text, where)}"
            )
        elif first not in ":,":
            reason = _number_problem(token)
            if reason is not None:
                return InputError(
                    f"invalid {what}: number {_abbrev(token)} {reason} "
                    f"at {_line_column(text, where)}"
                )
    return None


def _number_problem(token: str) -> str | None:
    try:
        if any(mark in token for mark in ".eE"):
            if not math.isfinite(float(token)):
                return "is too large for a double"
        elif _read_big_integer(token) is None:
            return (
                "is outside the I-JSON integer range ±(2**53 - 1) and a double would "
                "round it; send it as a string"
            )
    except ValueError:
        pass  # true, false, null
    return None


def _line_column(text: str, offset: int) -> str:
    line = text.count("\n", 0, offset) + 1
    column = offset - text.rfind("\n", 0, offset)
    return f"line {line} column {column}"
