"""Administration pages: members and roles of a project (people's and teams'), one's API
keys, users (add, disable, enable, delete), teams, and the LLM gateway's providers and
routing policy.

Each action checks the same permissions as the API (project.admin to grant and revoke
roles, key.self / key.admin for keys, instance.admin for users and for the gateway,
which serves every project) through `authorize()`, so a hidden button is never the only
protection; the Directory applies the offboarding rules (not oneself, owners only by
owners, never the last owner). A new API key's secret is shown once, on the page that
answers its creation (not cached, never shown again). Deleting a user asks first, on a
page of its own, for the user's email (or name) to be typed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flowloom.auth.permissions import PERMISSION_DESCRIPTIONS, ROLE_DESCRIPTIONS, ROLE_PERMISSIONS
from flowloom.auth.principals import Principal
from flowloom.auth.signatures import SigningPolicy
from flowloom.errors import FlowLoomError, InputError
from flowloom.server.deps import authorize, authorize_anywhere, get_server, require
from flowloom.server.gateway_view import provider_entries
from flowloom.server.state import ServerState
from flowloom.server.web.session import WEB_PREFIX, WebRoute, base_context, html
from flowloom.server.web.state import WebState, web_state

if TYPE_CHECKING:  # the gateway's modules load on first use, not with the server
    from flowloom.gateway.access.records import ProviderKeyInfo
    from flowloom.server.gateway_view import RoutingPolicy

__all__ = ["router"]

router = APIRouter(prefix=WEB_PREFIX, route_class=WebRoute, include_in_schema=False)

Server = Annotated[ServerState, Depends(get_server)]
Web = Annotated[WebState, Depends(web_state)]
RoleName = Annotated[str, Path(pattern="^(owner|admin|approver|developer|auditor|service)$")]
RoleField = Annotated[str, Form(pattern="^(owner|admin|approver|developer|auditor|service)$")]
UserId = Annotated[str, Path(max_length=200)]
InstanceAdmin = Annotated[Principal, Depends(authorize("instance.admin"))]
ProjectAdmin = Annotated[Principal, Depends(authorize("project.admin"))]


@router.get("/projects/{project}/members", response_class=HTMLResponse)
def members_page(
    project: str,
    request: Request,
    principal: Annotated[Principal, Depends(authorize("project.read"))],
    server: Server,
    web: Web,
) -> Response:
    context = base_context(
        request,
        principal,
        project=project,
        title=f"{project} — members",
        nav="members",
        members=server.directory.members(project),
        team_grants=server.directory.team_grants(project=project),
        teams=server.directory.list_teams(),
        roles=tuple(ROLE_PERMISSIONS),
        role_descriptions=ROLE_DESCRIPTIONS,
    )
    return html(web.render("web/members.html", context))


@router.post("/projects/{project}/members")
def grant_role(
    project: str,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Server,
    email: Annotated[str, Form(min_length=3, max_length=320)],
    role: Annotated[str, Form(pattern="^(owner|admin|approver|developer|auditor|service)$")],
) -> Response:
    user = server.directory.user_by_email(email)
    server.directory.grant(user.id, project, role, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/members", status_code=303)


@router.post("/projects/{project}/members/{user_id}/{role}/revoke")
def revoke_role(
    project: str,
    user_id: Annotated[str, Path(max_length=200)],
    role: RoleName,
    principal: Annotated[Principal, Depends(authorize("project.admin"))],
    server: Server,
) -> Response:
    server.directory.revoke(user_id, project, role, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/members", status_code=303)


@router.post("/projects/{project}/teams")
def grant_team_role(
    project: str,
    principal: ProjectAdmin,
    server: Server,
    team: Annotated[str, Form(min_length=1, max_length=200)],
    role: RoleField,
) -> Response:
    server.directory.grant_team(team, project, role, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/members", status_code=303)


@router.post("/projects/{project}/teams/{team}/{role}/revoke")
def revoke_team_role(
    project: str,
    team: Annotated[str, Path(max_length=200)],
    role: RoleName,
    principal: ProjectAdmin,
    server: Server,
) -> Response:
    server.directory.revoke_team(team, project, role, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/projects/{project}/members", status_code=303)


def _keys_page(
    request: Request, principal: Principal, server: ServerState, web: WebState, secret: str | None
) -> str:
    now = datetime.now(UTC)
    keys = server.directory.list_keys(principal.user_id)
    context = base_context(
        request,
        principal,
        title="Your API keys",
        nav="keys",
        keys=[(k, k.active(now)) for k in keys],
        secret=secret,
    )
    return web.render("web/keys.html", context)


@router.get("/keys", response_class=HTMLResponse)
def keys_page(
    request: Request,
    principal: Annotated[Principal, Depends(authorize_anywhere("key.self"))],
    server: Server,
    web: Web,
) -> Response:
    return html(_keys_page(request, principal, server, web, None))


@router.post("/keys", response_class=HTMLResponse)
def create_key(
    request: Request,
    principal: Annotated[Principal, Depends(authorize_anywhere("key.self"))],
    server: Server,
    web: Web,
    name: Annotated[str, Form(min_length=1, max_length=100)],
) -> Response:
    _, secret = server.directory.create_key(principal.user_id, name=name, by=principal)
    return html(_keys_page(request, principal, server, web, secret), 201)


@router.post("/keys/{key_id}/revoke")
def revoke_key(
    key_id: Annotated[str, Path(max_length=200)],
    principal: Annotated[Principal, Depends(authorize_anywhere("key.self"))],
    server: Server,
) -> Response:
    existing = server.directory.get_key(key_id)
    require(server, principal, owner_id=existing.user_id)
    server.directory.revoke_key(key_id, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/keys", status_code=303)


@router.get("/admin", response_class=HTMLResponse)
def admin_page(
    request: Request,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Server,
    web: Web,
) -> Response:
    directory = server.directory
    users = directory.list_users()
    policy = SigningPolicy()
    context = base_context(
        request,
        principal,
        title="Administration",
        nav="admin",
        users=[(u, directory.grants_of(u.id)) for u in users],
        teams=[
            (t, directory.team_members(t.id), directory.team_grants(team=t.id))
            for t in directory.list_teams()
        ],
        roles=tuple(ROLE_PERMISSIONS),
        role_permissions=ROLE_PERMISSIONS,
        permissions=PERMISSION_DESCRIPTIONS,
        policy=policy,
        oidc=server.oidc is not None,
        settings=server.settings,
    )
    return html(web.render("web/admin.html", context))


@router.post("/admin/users")
def create_user(
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Server,
    email: Annotated[str, Form(min_length=3, max_length=320)],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    password: Annotated[str | None, Form(max_length=1024)] = None,
) -> Response:
    server.directory.create_user(email, name, password=password or None, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/admin", status_code=303)


@router.post("/admin/users/{user_id}/disable")
def disable_user(user_id: UserId, principal: InstanceAdmin, server: Server) -> Response:
    before = server.directory.get_user(user_id)
    server.directory.disable_user(user_id, by=principal)
    if server.provisioning is not None:
        server.provisioning.run_cut_off(before, principal, "disabled")  # gateway keys too
    return RedirectResponse(f"{WEB_PREFIX}/admin", status_code=303)


@router.post("/admin/users/{user_id}/enable")
def enable_user(user_id: UserId, principal: InstanceAdmin, server: Server) -> Response:
    server.directory.enable_user(user_id, by=principal)
    return RedirectResponse(f"{WEB_PREFIX}/admin", status_code=303)


@router.get("/admin/users/{user_id}/delete", response_class=HTMLResponse)
def delete_user_page(
    user_id: UserId, request: Request, principal: InstanceAdmin, server: Server, web: Web
) -> Response:
    """The confirmation step: what deleting erases, and a field to type the name into."""
    user = server.directory.get_user(user_id)
    context = base_context(
        request,
        principal,
        title=f"Delete {user.name}",
        nav="admin",
        user=user,
        confirm_with=user.email or user.name,
    )
    return html(web.render("web/delete_user.html", context))


@router.post("/admin/users/{user_id}/delete")
def delete_user(
    user_id: UserId,
    principal: InstanceAdmin,
    server: Server,
    confirm: Annotated[str, Form(max_length=500)],
) -> Response:
    user = server.directory.get_user(user_id)
    expected = user.email or user.name
    if user.deleted_at is None and confirm.strip().lower() != expected.lower():
        raise InputError(
            f"type {expected} to confirm the deletion",
            hint="go back to the confirmation page and type it exactly",
        )
    server.directory.delete_user(user_id, by=principal)
    if server.provisioning is not None:
        server.provisioning.run_cut_off(user, principal, "deleted")  # gateway keys too
    return RedirectResponse(f"{WEB_PREFIX}/admin", status_code=303)


@router.get("/admin/gateway", response_class=HTMLResponse)
def gateway_page(
    request: Request,
    principal: Annotated[Principal, Depends(authorize("instance.admin"))],
    server: Server,
    web: Web,
) -> Response:
    """The gateway's providers (and whether their upstream keys are stored) and its
    routing policy, read-only; names and times of keys, never key material."""
    view = server.gateway
    policy: RoutingPolicy | None = None
    policy_error: str | None = None
    keys_error: str | None = "this server was built without a gateway view"
    stored: list[ProviderKeyInfo] = []
    if view is not None:
        keys_error = None
        try:
            policy = view.policy()
        except FlowLoomError as exc:
            policy_error = exc.diagnostics()
        try:
            stored = view.provider_keys()
        except FlowLoomError as exc:
            keys_error = exc.diagnostics()
    providers, unreferenced = provider_entries(policy, stored)
    context = base_context(
        request,
        principal,
        title="Gateway providers and policy",
        nav="gateway",
        configured=view is not None and view.config_path is not None,
        config_path=str(view.config_path) if view is not None and view.config_path else None,
        policy=policy,
        policy_error=policy_error,
        providers=providers,
        unreferenced=unreferenced,
        stored=stored,
        keys_error=keys_error,
    )
    return html(web.render("web/gateway.html", context))
