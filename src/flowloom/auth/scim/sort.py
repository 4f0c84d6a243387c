"""SCIM sorting (RFC 7644 §3.4.2.3): `sortBy` an attribute path, `sortOrder` either way.

A multi-valued attribute sorts by its primary value, else its first; strings compare
case-insensitively unless the attribute is case-exact; resources without the
attribute come last when ascending and first when descending (the order reversed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flowloom.auth.scim.filter import CASE_EXACT, attribute_path, lookup
from flowloom.errors import InputError

__all__ = ["ScimSortError", "sort_resources"]


class ScimSortError(InputError):
    """A sortBy or sortOrder the server cannot use (400, scimType invalidValue)."""


def _value(resource: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    found = lookup(resource, path[:1])
    if found and all(isinstance(v, Mapping) for v in found):
        primary = [v for v in found if v.get("primary") is True]
        chosen = (primary or found)[0]
        rest = path[1:] or ("value",)
        values = lookup(chosen, rest)
    else:
        values = lookup(resource, path)
    return values[0] if values else None


def _key(value: Any, case_exact: bool) -> tuple[int, Any]:
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, (int, float)):
        return (2, value)
    if isinstance(value, str):
        return (3, value if case_exact else value.lower())
    return (4, str(value))


def sort_resources(
    resources: Sequence[Mapping[str, Any]], sort_by: str | None, sort_order: str | None
) -> list[Mapping[str, Any]]:
    """`resources` in the order asked for (the given order when `sort_by` is None)."""
    if sort_order is not None and sort_order.lower() not in ("ascending", "descending"):
        raise ScimSortError(f"sortOrder {sort_order!r} is neither ascending nor descending")
    if not sort_by:
        return list(resources)
    try:
        path = attribute_path(sort_by)
    except InputError as exc:
        raise ScimSortError(exc.message) from None
    case_exact = ".".join(path) in CASE_EXACT
    present = []
    missing = []
    for resource in resources:
        value = _value(resource, path)
        if value is None or isinstance(value, (Mapping, list)):
            missing.append(resource)
        else:
            present.append((_key(value, case_exact), resource))
    present.sort(key=lambda pair: pair[0])
    ordered = [r for _, r in present] + missing
    if sort_order is not None and sort_order.lower() == "descending":
        ordered.reverse()
    return ordered
