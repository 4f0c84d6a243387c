"""SCIM 2.0 endpoints under /scim/v2: Users, Groups and the three discovery documents.

Authentication is a provisioning token (``Authorization: Bearer flscim_...``, made with
``flowloom admin scim-token create``): API keys and session cookies are refused here,
and a provisioning token is refused everywhere else. Bodies and errors are SCIM's own
(``application/scim+json``; errors carry ``status``, ``scimType`` and ``detail``), not
the API's error shape. ETags are weak content hashes: ``If-Match`` on PUT, PATCH and
DELETE answers 412 when the resource changed, ``If-None-Match`` on GET answers 304.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from flowloom.auth.principals import Principal
from flowloom.auth.scim import (
    PreconditionFailedError,
    Provisioning,
    ScimConflictError,
    ScimFilterError,
    ScimPatchError,
)
from flowloom.auth.scim.schemas import (
    ERROR_SCHEMA,
    LIST_SCHEMA,
    SEARCH_SCHEMA,
    resource_types,
    schemas,
    service_provider_config,
)
from flowloom.auth.scim.sort import ScimSortError
from flowloom.errors import (
    AuthError,
    ConflictError,
    FlowLoomError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
)
from flowloom.server.deps import server_of

__all__ = ["SCIM_PREFIX", "router"]

SCIM_PREFIX = "/scim/v2"
SCIM_MEDIA_TYPE = "application/scim+json"
"""Unknown paths and methods under the prefix get SCIM errors too (flowloom.server.errors)."""
_log = logging.getLogger("flowloom.server")


class _ScimResponse(Response):
    media_type = SCIM_MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        return json.dumps(content, separators=(",", ":")).encode()


_SCIM_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["schemas", "status"],
    "properties": {
        "schemas": {"type": "array", "items": {"type": "string"}},
        "status": {"type": "string"},
        "detail": {"type": "string"},
        "scimType": {"type": "string"},
    },
}
_SCIM_ERRORS = {
    400: "The request is malformed (scimType names why: invalidFilter, invalidValue, ...).",
    401: "No valid provisioning token (API keys are refused here).",
    403: "The token may not touch this user or group.",
    404: "No such user, group, resource type or schema.",
    409: "A user or group of that name exists already.",
    412: "If-Match names an older version.",
    413: "The request body is over the server's limit.",
    422: "The request does not match the schema.",
}
SCIM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {
        "description": text,
        "content": {SCIM_MEDIA_TYPE: {"schema": _SCIM_ERROR_SCHEMA}},
    }
    for status, text in _SCIM_ERRORS.items()
}
"""Every SCIM route's error answers, in SCIM's own shape and media type (RFC 7644 §3.12),
as the OpenAPI document declares them."""

router = APIRouter(
    prefix=SCIM_PREFIX,
    tags=["scim"],
    include_in_schema=True,
    default_response_class=_ScimResponse,
    responses=SCIM_RESPONSES,
)


def _error(status: int, detail: str, scim_type: str | None = None) -> Response:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    headers = {"WWW-Authenticate": 'Bearer realm="flowloom-scim"'} if status == 401 else None
    return _ScimResponse(body, status_code=status, headers=headers)


def _from_exception(exc: FlowLoomError) -> Response:
    detail = exc.message + (f" ({exc.hint})" if exc.hint else "")
    if isinstance(exc, PreconditionFailedError):
        return _error(412, detail)
    if isinstance(exc, ScimConflictError):
        return _error(409, detail, "uniqueness")
    if isinstance(exc, ConflictError):
        return _error(409, detail)
    if isinstance(exc, ScimFilterError):
        return _error(400, detail, "invalidFilter")
    if isinstance(exc, ScimSortError):
        return _error(400, detail, "invalidValue")
    if isinstance(exc, ScimPatchError):
        return _error(400, detail, exc.scim_type)
    if isinstance(exc, InputError):
        return _error(400, detail, "invalidValue")
    if isinstance(exc, NotFoundError):
        return _error(404, detail)
    if isinstance(exc, AuthError):
        return _error(401, detail)
    if isinstance(exc, PermissionDeniedError):
        return _error(403, detail)
    if isinstance(exc, StoreError):
        return _error(503, detail)
    return _error(500, "internal error")


def _provisioning(request: Request) -> Provisioning:
    provisioning = server_of(request).provisioning
    if provisioning is None:
        raise NotFoundError("SCIM provisioning is not enabled on this server")
    return provisioning


def _principal(request: Request, provisioning: Provisioning) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthError(
            "SCIM needs 'Authorization: Bearer <SCIM token>'",
            hint="create one with 'flowloom admin scim-token create --name NAME'",
        )
    return provisioning.principal_for_token(secret.strip())


def _base(request: Request) -> str:
    public = server_of(request).settings.public_url
    root = public.rstrip("/") if public else str(request.base_url).rstrip("/")
    return root + SCIM_PREFIX


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    try:
        return json.loads(raw or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ScimPatchError("the body is not JSON", scim_type="invalidSyntax") from None


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ScimPatchError(f"{name} must be a whole number", scim_type="invalidValue") from None


def _project(resource: dict[str, Any], attributes: str | None, excluded: str | None) -> Any:
    """`attributes` / `excludedAttributes` (top-level names; id, schemas, meta always)."""
    if not attributes and not excluded:
        return resource
    always = {"id", "schemas", "meta"}

    def names(raw: str) -> set[str]:
        return {n.strip().rsplit(":", 1)[-1].split(".")[0].lower() for n in raw.split(",") if n}

    if attributes:
        keep = names(attributes) | always
        return {k: v for k, v in resource.items() if k.lower() in keep}
    drop = names(excluded or "") - always
    return {k: v for k, v in resource.items() if k.lower() not in drop}


def _shaped(
    document: Any, request: Request, attributes: str | None = None, excluded: str | None = None
) -> Any:
    attributes = attributes or request.query_params.get("attributes")
    excluded = excluded or request.query_params.get("excludedAttributes")
    if isinstance(document, dict) and document.get("schemas") == [LIST_SCHEMA]:
        return {
            **document,
            "Resources": [_project(r, attributes, excluded) for r in document["Resources"]],
        }
    return _project(document, attributes, excluded)


async def _serve(
    request: Request,
    work: Callable[[Provisioning, Principal, str, Any], Any],
    *,
    status: int = 200,
    with_body: bool = False,
) -> Response:
    """Authenticate, run `work` off the event loop, answer in SCIM's shape."""
    try:
        provisioning = _provisioning(request)
        body = await _json_body(request) if with_body else None
        if with_body and not isinstance(body, dict):
            raise ScimPatchError("the body must be a JSON object", scim_type="invalidSyntax")
        base = _base(request)

        def run() -> Any:
            principal = _principal(request, provisioning)
            return work(provisioning, principal, base, body)

        result = await run_in_threadpool(run)
    except FlowLoomError as exc:
        return _from_exception(exc)
    except Exception:
        _log.exception("SCIM request failed")
        return _error(500, "internal error")
    if result is None:
        return Response(status_code=204)
    headers: dict[str, str] = {}
    meta = result.get("meta") if isinstance(result, dict) else None
    if isinstance(meta, dict) and "version" in meta:
        headers["ETag"] = str(meta["version"])
        if status == 201:
            headers["Location"] = str(meta["location"])
        wanted = request.headers.get("if-none-match")
        if request.method == "GET" and wanted and headers["ETag"] in wanted:
            return Response(status_code=304, headers={"ETag": headers["ETag"]})
    return _ScimResponse(_shaped(result, request), status_code=status, headers=headers)


def _if_match(request: Request) -> str | None:
    return request.headers.get("if-match")


# -- discovery ------------------------------------------------------------------------


@router.get("/ServiceProviderConfig", summary="What this SCIM server supports")
async def get_service_provider_config(request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: service_provider_config(base, None),
    )


@router.get("/ResourceTypes", summary="The resource types: User and Group")
async def list_resource_types(request: Request) -> Response:
    return await _serve(request, lambda p, who, base, body: _listing(resource_types(base)))


@router.get("/ResourceTypes/{name}", summary="One resource type")
async def get_resource_type(name: str, request: Request) -> Response:
    return await _serve(request, lambda p, who, base, body: _one(resource_types(base), name))


@router.get("/Schemas", summary="The User and Group schemas")
async def list_schemas(request: Request) -> Response:
    return await _serve(request, lambda p, who, base, body: _listing(schemas(base)))


@router.get("/Schemas/{schema_id}", summary="One schema")
async def get_schema(schema_id: str, request: Request) -> Response:
    return await _serve(request, lambda p, who, base, body: _one(schemas(base), schema_id))


def _listing(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": len(items),
        "startIndex": 1,
        "itemsPerPage": len(items),
        "Resources": items,
    }


def _one(items: list[dict[str, Any]], wanted: str) -> dict[str, Any]:
    for item in items:
        if item["id"] == wanted:
            return item
    raise NotFoundError(f"no {wanted!r} here")


# -- users ----------------------------------------------------------------------------


@router.get("/Users", summary="List or filter users (filter, startIndex, count)")
async def list_users(request: Request) -> Response:
    query = request.query_params
    start = _int_param(request, "startIndex", 1) or 1
    count = _int_param(request, "count", None)
    return await _serve(
        request,
        lambda p, who, base, body: p.list_users(
            base,
            filter=query.get("filter"),
            start_index=start,
            count=count,
            sort_by=query.get("sortBy"),
            sort_order=query.get("sortOrder"),
        ),
    )


@router.post("/Users/.search", summary="Search users with a SearchRequest body")
async def search_users(request: Request) -> Response:
    return await _search(request, "users")


@router.post("/Users", status_code=201, summary="Provision a user")
async def create_user(request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.create_user(body, base, by=who),
        status=201,
        with_body=True,
    )


@router.get("/Users/{user_id}", summary="One user")
async def get_user(user_id: str, request: Request) -> Response:
    return await _serve(request, lambda p, who, base, body: p.get_user(user_id, base))


@router.put("/Users/{user_id}", summary="Replace a user (active: false disables at once)")
async def replace_user(user_id: str, request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.replace_user(
            user_id, body, base, by=who, if_match=_if_match(request)
        ),
        with_body=True,
    )


@router.patch("/Users/{user_id}", summary="Patch a user (active: false disables at once)")
async def patch_user(user_id: str, request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.patch_user(
            user_id, body, base, by=who, if_match=_if_match(request)
        ),
        with_body=True,
    )


@router.delete("/Users/{user_id}", status_code=204, summary="Delete a user")
async def delete_user(user_id: str, request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.delete_user(
            user_id, base, by=who, if_match=_if_match(request)
        ),
    )


# -- groups ---------------------------------------------------------------------------


@router.get("/Groups", summary="List or filter groups (teams)")
async def list_groups(request: Request) -> Response:
    query = request.query_params
    start = _int_param(request, "startIndex", 1) or 1
    count = _int_param(request, "count", None)
    return await _serve(
        request,
        lambda p, who, base, body: p.list_groups(
            base,
            filter=query.get("filter"),
            start_index=start,
            count=count,
            sort_by=query.get("sortBy"),
            sort_order=query.get("sortOrder"),
        ),
    )


@router.post("/Groups/.search", summary="Search groups with a SearchRequest body")
async def search_groups(request: Request) -> Response:
    return await _search(request, "groups")


@router.post("/Groups", status_code=201, summary="Provision a group (a team)")
async def create_group(request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.create_group(body, base, by=who),
        status=201,
        with_body=True,
    )


@router.get("/Groups/{group_id}", summary="One group")
async def get_group(group_id: str, request: Request) -> Response:
    return await _serve(request, lambda p, who, base, body: p.get_group(group_id, base))


@router.put("/Groups/{group_id}", summary="Replace a group's name and members")
async def replace_group(group_id: str, request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.replace_group(
            group_id, body, base, by=who, if_match=_if_match(request)
        ),
        with_body=True,
    )


@router.patch("/Groups/{group_id}", summary="Patch a group: rename, add or remove members")
async def patch_group(group_id: str, request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.patch_group(
            group_id, body, base, by=who, if_match=_if_match(request)
        ),
        with_body=True,
    )


@router.delete("/Groups/{group_id}", status_code=204, summary="Delete a group (its team)")
async def delete_group(group_id: str, request: Request) -> Response:
    return await _serve(
        request,
        lambda p, who, base, body: p.delete_group(
            group_id, base, by=who, if_match=_if_match(request)
        ),
    )


def _optional_text(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ScimPatchError(f"{name} must be a string", scim_type="invalidValue")
    return value


async def _search(request: Request, kind: str) -> Response:
    """POST /.search: the query in a SearchRequest body instead of the URL."""

    def work(p: Provisioning, who: Principal, base: str, body: Any) -> Any:
        if SEARCH_SCHEMA not in (body.get("schemas") or []):
            raise ScimPatchError(
                f"a search body must list {SEARCH_SCHEMA}", scim_type="invalidSyntax"
            )
        start = body.get("startIndex", 1)
        count = body.get("count")
        if not isinstance(start, int) or (count is not None and not isinstance(count, int)):
            raise ScimPatchError("startIndex and count must be whole numbers")
        found = p.search(
            base,
            kinds=("users", "groups") if kind == "all" else (kind,),
            filter=body.get("filter"),
            start_index=start,
            count=count,
            sort_by=_optional_text(body, "sortBy"),
            sort_order=_optional_text(body, "sortOrder"),
        )
        attributes = body.get("attributes")
        excluded = body.get("excludedAttributes")
        return _shaped(
            found,
            request,
            ",".join(attributes) if isinstance(attributes, list) else None,
            ",".join(excluded) if isinstance(excluded, list) else None,
        )

    return await _serve(request, work, with_body=True)


@router.post("/.search", summary="Search users and groups at once")
async def search_all(request: Request) -> Response:
    return await _search(request, "all")
