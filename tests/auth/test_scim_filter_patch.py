"""SCIM filters and PATCH on plain resources: the grammar, case rules, and the forms
Okta and Entra ID send (the server-level replay is tests/server/test_scim.py)."""

from __future__ import annotations

from typing import Any

import pytest

from flowloom.auth.scim import ScimFilterError, ScimPatchError, apply_patch, parse_filter

ADA: dict[str, Any] = {
    "id": "usr_1",
    "userName": "Ada@Example.org",
    "externalId": "X-1",
    "displayName": "Ada Lovelace",
    "active": True,
    "name": {"givenName": "Ada", "familyName": "Lovelace"},
    "emails": [
        {"value": "ada@work.example", "type": "work", "primary": True},
        {"value": "ada@home.example", "type": "home"},
    ],
    "meta": {"version": 'W/"abc"'},
}
USER_KNOWN = {
    "username": "userName",
    "name": "name",
    "displayname": "displayName",
    "active": "active",
    "emails": "emails",
    "externalid": "externalId",
}
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('userName eq "ada@example.org"', True),
        ('USERNAME EQ "ADA@EXAMPLE.ORG"', True),
        ('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "ada@example.org"', True),
        ('externalId eq "x-1"', False),
        ('externalId eq "X-1"', True),
        ('emails co "home.example"', True),
        ('emails.value ew "@work.example"', True),
        ('emails[type eq "home" and value sw "ada@"]', True),
        ('emails[type eq "other"]', False),
        ('displayName sw "ada" and name.familyName eq "lovelace"', True),
        ('displayName eq "nobody" or userName co "example"', True),
        ("not (active eq true)", False),
        ("title pr", False),
        ("name.givenName pr", True),
        ('active eq true and (displayName co "x" or externalId pr)', True),
        ('userName ne "someone"', True),
        ("title eq null", True),
    ],
)
def test_filters(text: str, expected: bool) -> None:
    assert parse_filter(text).matches(ADA) is expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "userName",
        'userName zz "a"',
        'userName eq "unterminated',
        "userName eq unquoted",
        '(userName eq "a"',
        'userName eq "a" extra',
        'emails[type eq "work"',
        "not userName pr",
        "(" * 40 + "userName pr" + ")" * 40,
        "userName gt true",
    ],
)
def test_bad_filters_are_refused(text: str) -> None:
    with pytest.raises(ScimFilterError):
        parse_filter(text).matches(ADA)


def _patch(*operations: dict[str, Any]) -> dict[str, Any]:
    writable = {k: v for k, v in ADA.items() if k not in ("id", "meta")}
    return apply_patch(
        writable,
        {"schemas": [PATCH], "Operations": list(operations)},
        known=USER_KNOWN,
        multi=frozenset({"emails"}),
    )


def test_okta_path_less_replace() -> None:
    patched = _patch({"op": "replace", "value": {"id": "usr_1", "active": False}})
    assert patched["active"] is False and "id" not in patched


def test_entra_capitalised_ops_and_sub_paths() -> None:
    patched = _patch(
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "new@work.example"},
        {"op": "Replace", "path": "name.familyName", "value": "King"},
        {"op": "Replace", "path": "active", "value": "False"},
        {
            "op": "Add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "value": "x",
        },
    )
    assert patched["emails"][0] == {"value": "new@work.example", "type": "work", "primary": True}
    assert patched["name"] == {"givenName": "Ada", "familyName": "King"}
    assert patched["active"] == "False"  # made a boolean by the service's validation
    assert ADA["emails"][0]["value"] == "ada@work.example"  # the input is not modified


def test_replace_of_a_missing_typed_email_adds_it() -> None:
    patched = _patch(
        {"op": "replace", "path": 'emails[type eq "other"].value', "value": "o@x.example"}
    )
    assert {"type": "other", "value": "o@x.example"} in patched["emails"]


def test_add_and_remove_multi_valued() -> None:
    added = _patch(
        {
            "op": "add",
            "path": "emails",
            "value": [{"value": "ada@work.example"}, {"value": "third@x.example"}],
        }
    )
    assert [e["value"] for e in added["emails"]] == [
        "ada@work.example",
        "ada@home.example",
        "third@x.example",
    ]
    by_filter = _patch({"op": "remove", "path": 'emails[type eq "home"]'})
    assert [e["value"] for e in by_filter["emails"]] == ["ada@work.example"]
    by_value = _patch({"op": "remove", "path": "emails", "value": [{"value": "ada@work.example"}]})
    assert [e["value"] for e in by_value["emails"]] == ["ada@home.example"]
    whole = _patch({"op": "remove", "path": "displayName"})
    assert "displayName" not in whole
    sub = _patch({"op": "remove", "path": "name.givenName"})
    assert sub["name"] == {"familyName": "Lovelace"}


@pytest.mark.parametrize(
    ("body", "scim_type"),
    [
        ({"Operations": [{"op": "add", "path": "displayName", "value": "x"}]}, "invalidSyntax"),
        ({"schemas": [PATCH], "Operations": []}, "invalidSyntax"),
        ({"schemas": [PATCH], "Operations": [{"op": "move", "path": "x"}]}, "invalidSyntax"),
        ({"schemas": [PATCH], "Operations": [{"op": "remove"}]}, "noTarget"),
        (
            {"schemas": [PATCH], "Operations": [{"op": "add", "path": "nickName", "value": "x"}]},
            "invalidPath",
        ),
        (
            {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName"}]},
            "invalidValue",
        ),
        (
            {
                "schemas": [PATCH],
                "Operations": [{"op": "replace", "path": 'userName[type eq "x"]', "value": {}}],
            },
            "invalidPath",
        ),
        (
            {
                "schemas": [PATCH],
                "Operations": [
                    {"op": "replace", "path": 'emails[type zz "x"].value', "value": "v"}
                ],
            },
            "invalidFilter",
        ),
        (
            {
                "schemas": [PATCH],
                "Operations": [
                    {"op": "replace", "path": 'emails[value co "nothing"]', "value": {"value": "v"}}
                ],
            },
            "noTarget",
        ),
    ],
)
def test_bad_patches_are_refused(body: dict[str, Any], scim_type: str) -> None:
    with pytest.raises(ScimPatchError) as raised:
        apply_patch(dict(ADA), body, known=USER_KNOWN, multi=frozenset({"emails"}))
    assert raised.value.scim_type == scim_type
