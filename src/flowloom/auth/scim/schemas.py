"""What the SCIM server says about itself: /ServiceProviderConfig, /ResourceTypes, /Schemas.

Only the attributes FlowLoom keeps are published (RFC 7643 §7 lets a service provider
describe a subset), so a client, or the scim2-tester compliance checker, sends what will
be stored and reads back what it sent. Other attributes in a request are ignored.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_SCHEMA",
    "GROUP_SCHEMA",
    "LIST_SCHEMA",
    "MAX_RESULTS",
    "SEARCH_SCHEMA",
    "USER_SCHEMA",
    "resource_types",
    "schemas",
    "service_provider_config",
]

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
_SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
_RT_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
_SCHEMA_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
MAX_RESULTS = 200
"""The most resources one list response holds (a larger `count` is cut to this)."""


def _attr(
    name: str,
    *,
    kind: str = "string",
    multi: bool = False,
    required: bool = False,
    mutability: str = "readWrite",
    uniqueness: str = "none",
    case_exact: bool = False,
    sub: list[dict[str, Any]] | None = None,
    description: str = "",
    refs: list[str] | None = None,
) -> dict[str, Any]:
    attribute: dict[str, Any] = {
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description or name,
        "required": required,
        "mutability": mutability,
        "returned": "default",
    }
    if kind in ("string", "reference"):
        attribute["caseExact"] = case_exact
        attribute["uniqueness"] = uniqueness
    if sub is not None:
        attribute["subAttributes"] = sub
    if refs is not None:
        attribute["referenceTypes"] = refs
    return attribute


def _user_schema() -> dict[str, Any]:
    return {
        "schemas": [_SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "A person who signs in to FlowLoom",
        "attributes": [
            _attr(
                "userName",
                required=True,
                uniqueness="server",
                description="Unique identifier for the user, as the identity provider names it",
            ),
            _attr(
                "name",
                kind="complex",
                sub=[
                    _attr("formatted"),
                    _attr("familyName"),
                    _attr("givenName"),
                ],
            ),
            _attr("displayName", description="The printed name (signatures show it)"),
            _attr(
                "active",
                kind="boolean",
                description="false disables the user at once: sessions and keys stop",
            ),
            _attr(
                "emails",
                kind="complex",
                multi=True,
                sub=[
                    _attr("value"),
                    _attr("type"),
                    _attr("primary", kind="boolean"),
                ],
            ),
            _attr(
                "groups",
                kind="complex",
                multi=True,
                mutability="readOnly",
                sub=[
                    _attr("value", mutability="readOnly"),
                    _attr("$ref", kind="reference", mutability="readOnly", refs=["Group"]),
                    _attr("display", mutability="readOnly"),
                ],
                description="The teams the user is in (change them through Groups)",
            ),
        ],
        "meta": {"resourceType": "Schema", "location": "/Schemas/" + USER_SCHEMA},
    }


def _group_schema() -> dict[str, Any]:
    return {
        "schemas": [_SCHEMA_SCHEMA],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "A FlowLoom team: roles granted to it apply to every member",
        "attributes": [
            _attr("displayName", required=True, uniqueness="server", description="The team's name"),
            _attr(
                "members",
                kind="complex",
                multi=True,
                sub=[
                    _attr("value", mutability="immutable"),
                    _attr("$ref", kind="reference", mutability="immutable", refs=["User"]),
                    _attr("display", mutability="readOnly"),
                ],
            ),
        ],
        "meta": {"resourceType": "Schema", "location": "/Schemas/" + GROUP_SCHEMA},
    }


def schemas(base: str) -> list[dict[str, Any]]:
    """The User and Group schemas, with absolute locations under `base`."""
    found = [_user_schema(), _group_schema()]
    for schema in found:
        schema["meta"]["location"] = base + schema["meta"]["location"]
    return found


def resource_types(base: str) -> list[dict[str, Any]]:
    """The two resource types, User and Group."""
    return [
        {
            "schemas": [_RT_SCHEMA],
            "id": name,
            "name": name,
            "endpoint": endpoint,
            "description": description,
            "schema": schema,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{name}"},
        }
        for name, endpoint, schema, description in (
            ("User", "/Users", USER_SCHEMA, "FlowLoom users"),
            ("Group", "/Groups", GROUP_SCHEMA, "FlowLoom teams"),
        )
    ]


def service_provider_config(base: str, documentation: str | None) -> dict[str, Any]:
    """What this server supports: PATCH, filters, sorting, ETags; no bulk or passwords
    (RFC 7643 §5: an unsupported bulk still states its limits, as zero)."""
    config: dict[str, Any] = {
        "schemas": [_SPC_SCHEMA],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": False},
        "sort": {"supported": True},
        "etag": {"supported": True},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken",
                "name": "SCIM bearer token",
                "description": "A provisioning token made with 'flowloom admin scim-token create'",
                "primary": True,
            }
        ],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": base + "/ServiceProviderConfig",
        },
    }
    if documentation:
        config["documentationUri"] = documentation
    return config
