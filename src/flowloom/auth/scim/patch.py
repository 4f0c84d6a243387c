"""SCIM PATCH (RFC 7644 §3.5.2): add, replace and remove applied to a resource's JSON.

The operations work on a copy of the resource's writable attributes and return the new
object; the service then validates it as it would a PUT and stores the difference, so a
PATCH can never produce what a PUT could not. What identity providers send is accepted
as they send it (fixtures in tests/server/scim_fixtures/):

- Entra ID writes ``"op": "Replace"`` (capitalised) and booleans as strings
  (``"value": "False"``); the service's validation turns those into booleans;
- Okta and Entra send a replace without a path whose value is an object of attributes
  (``{"op": "replace", "value": {"active": false}}``), with plain or dotted names;
- Entra removes group members with ``"path": "members"`` and the members as value,
  Okta with ``"path": "members[value eq \\"…\\"]"``;
- a replace of ``emails[type eq "work"].value`` when no work email exists adds one.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from flowloom.auth.scim.filter import Filter, ScimFilterError, _Parser, attribute_path
from flowloom.errors import InputError

__all__ = ["ScimPatchError", "apply_patch"]

PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
_PATH = re.compile(r"^(?P<attr>[^\[\]]+?)(?:\[(?P<filter>.*)\])?(?:\.(?P<sub>[A-Za-z$][\w$-]*))?$")
_MAX_OPERATIONS = 1000
_EXTENSION_PREFIX = "urn:ietf:params:scim:schemas:extension:"


class ScimPatchError(InputError):
    """A PATCH the server cannot apply; `scim_type` is the RFC 7644 scimType."""

    def __init__(self, message: str, *, scim_type: str = "invalidValue", hint: str | None = None):
        super().__init__(message, hint=hint)
        self.scim_type = scim_type


def _canonical(resource: dict[str, Any], name: str, known: Mapping[str, str]) -> str:
    """The key `name` (any case) has in `resource`, else its schema spelling."""
    for key in resource:
        if key.lower() == name:
            return key
    if name not in known:
        raise ScimPatchError(f"unknown attribute {name!r}", scim_type="invalidPath")
    return known[name]


def _sub_key(item: Mapping[str, Any], name: str) -> str:
    for key in item:
        if key.lower() == name:
            return key
    return name


def _split(path: str) -> tuple[str, Filter | None, str | None, Any]:
    match = _PATH.match(path.strip())
    if match is None:
        raise ScimPatchError(f"{path!r} is not a PATCH path", scim_type="invalidPath")
    try:
        names = attribute_path(match.group("attr"))
    except ScimFilterError as exc:
        raise ScimPatchError(exc.message, scim_type="invalidPath") from None
    sub: str | None = match.group("sub")
    if len(names) == 2 and sub is None and match.group("filter") is None:
        sub = names[1]
        names = names[:1]
    if len(names) != 1:
        raise ScimPatchError(f"{path!r} is nested too deeply", scim_type="invalidPath")
    value_filter = None
    equal_to = None
    if match.group("filter") is not None:
        text = match.group("filter")
        try:
            value_filter = Filter(text, _Parser(text).parse())
        except ScimFilterError as exc:
            raise ScimPatchError(exc.message, scim_type="invalidFilter") from None
        simple = re.fullmatch(r'\s*(\w+)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', text, re.IGNORECASE)
        if simple:
            equal_to = {simple.group(1): simple.group(2)}
    return names[0], value_filter, sub.lower() if sub else None, equal_to


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _same(a: Any, b: Any) -> bool:
    """Multi-valued members are the same when their `value`s are (or they are equal)."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        va, vb = a.get("value"), b.get("value")
        if va is not None and vb is not None:
            return bool(va == vb)
    return bool(a == b)


def _apply_one(
    resource: dict[str, Any],
    op: str,
    path: str | None,
    value: Any,
    known: Mapping[str, str],
    multi: frozenset[str],
) -> None:
    if path is None or path == "":
        if op == "remove":
            raise ScimPatchError("a remove needs a path", scim_type="noTarget")
        if not isinstance(value, Mapping):
            raise ScimPatchError("an operation without a path needs an object as value")
        for key, item in value.items():
            if key.lower() in ("schemas", "id", "meta"):
                continue  # Okta repeats the id in a path-less replace; both are read-only
            _apply_one(resource, op, key, item, known, multi)
        return
    if path.lower().startswith(_EXTENSION_PREFIX):
        return  # extension attributes (enterprise User) are not kept, as on create
    name, value_filter, sub, equal_to = _split(path)
    key = _canonical(resource, name, known)
    is_multi = name in multi
    if value_filter is not None and not is_multi:
        raise ScimPatchError(f"{name!r} is not multi-valued", scim_type="invalidPath")
    if value_filter is None and sub is None:
        if op == "remove":
            if is_multi and value is not None and key in resource:
                remove = _as_list(value)
                resource[key] = [
                    v for v in _as_list(resource[key]) if not any(_same(v, r) for r in remove)
                ]
            else:
                resource.pop(key, None)
        elif op == "add" and is_multi:
            current = _as_list(resource.get(key) or [])
            for item in _as_list(value):
                if not any(_same(item, c) for c in current):
                    current.append(item)
            resource[key] = current
        elif op == "add" and isinstance(value, Mapping) and isinstance(resource.get(key), dict):
            resource[key] = {**resource[key], **value}
        else:
            resource[key] = _as_list(value) if is_multi else value
        return
    if value_filter is None:  # attr.sub on a singular complex attribute, or every value
        if is_multi:
            items = resource.get(key) or []
            for item in items:
                if isinstance(item, dict):
                    _set_sub(item, sub or "", op, value)
            return
        target = resource.get(key)
        if not isinstance(target, dict):
            if op == "remove":
                return
            target = {}
            resource[key] = target
        _set_sub(target, sub or "", op, value)
        return
    items = [i for i in _as_list(resource.get(key) or []) if i is not None]
    chosen = [i for i in items if isinstance(i, Mapping) and value_filter.matches(i)]
    if op == "remove":
        if sub is None:
            resource[key] = [i for i in items if i not in chosen]
        else:
            for item in chosen:
                item.pop(_sub_key(item, sub), None)  # type: ignore[attr-defined]
        return
    if not chosen:
        if equal_to is None:
            raise ScimPatchError(f"nothing in {name!r} matches the filter", scim_type="noTarget")
        created: dict[str, Any] = dict(equal_to)
        items.append(created)
        resource[key] = items
        chosen = [created]
    for item in chosen:
        if sub is None:
            if not isinstance(value, Mapping):
                raise ScimPatchError(f"the value for {path!r} must be an object")
            if op == "replace":
                item.clear()  # type: ignore[attr-defined]
            item.update(value)  # type: ignore[attr-defined]
        else:
            _set_sub(item, sub, op, value)  # type: ignore[arg-type]


def _set_sub(item: dict[str, Any], sub: str, op: str, value: Any) -> None:
    key = _sub_key(item, sub)
    if op == "remove":
        item.pop(key, None)
    else:
        item[key] = value


def apply_patch(
    resource: Mapping[str, Any],
    body: Any,
    *,
    known: Mapping[str, str],
    multi: frozenset[str],
) -> dict[str, Any]:
    """`resource` after the PatchOp `body`; ScimPatchError for a malformed operation.

    `known` maps each writable attribute's lower-case name to its spelling; `multi`
    names (lower-case) the multi-valued ones. The input is not modified.
    """
    if not isinstance(body, Mapping):
        raise ScimPatchError("a PATCH body must be a JSON object", scim_type="invalidSyntax")
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_SCHEMA not in schemas:
        raise ScimPatchError(
            f"a PATCH body must list the schema {PATCH_SCHEMA}", scim_type="invalidSyntax"
        )
    operations = body.get("Operations", body.get("operations"))
    if not isinstance(operations, Sequence) or isinstance(operations, str) or not operations:
        raise ScimPatchError(
            "a PATCH body needs a non-empty Operations list", scim_type="invalidSyntax"
        )
    if len(operations) > _MAX_OPERATIONS:
        raise ScimPatchError(
            f"a PATCH body holds at most {_MAX_OPERATIONS} operations", scim_type="tooMany"
        )
    result = copy.deepcopy(dict(resource))
    for operation in operations:
        if not isinstance(operation, Mapping):
            raise ScimPatchError("each operation must be an object", scim_type="invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "replace", "remove"):
            raise ScimPatchError(
                f"unknown PATCH op {operation.get('op')!r}",
                scim_type="invalidSyntax",
                hint="use add, replace or remove",
            )
        path = operation.get("path")
        if path is not None and not isinstance(path, str):
            raise ScimPatchError("a PATCH path must be a string", scim_type="invalidPath")
        if op != "remove" and "value" not in operation:
            raise ScimPatchError(f"an {op} needs a value", scim_type="invalidValue")
        _apply_one(result, op, path, operation.get("value"), known, multi)
    return result
