"""Request dependencies: who is asking (`current_principal`) and may they (`authorize`).

Authentication: ``Authorization: Bearer flk_...`` (an API key), or the session cookie
``flowloom_session``, with unsafe methods then also needing ``X-CSRF-Token`` (a cross-site
page can make the browser send the cookie, but cannot read the token to echo it).

Authorization happens here and nowhere else: `authorize(permission)` checks the
principal against the path's ``{project}`` through the Authorizer, then that the project
exists, so a caller without a grant learns nothing about which projects exist.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from flowloom.auth.permissions import ALL_PROJECTS
from flowloom.auth.principals import Principal
from flowloom.errors import AuthError, PermissionDeniedError
from flowloom.server import INSTANCE_PROJECT
from flowloom.server.state import ServerState

__all__ = [
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "authenticated",
    "authorize",
    "authorize_anywhere",
    "current_principal",
    "get_server",
    "require",
    "server_of",
]

SESSION_COOKIE = "flowloom_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_INSTANCE_LOG_PERMISSIONS = frozenset({"project.read", "ledger.read", "audit.read"})


def server_of(request: Request) -> ServerState:
    """The server state the app was built with."""
    server = request.app.state.flowloom
    assert isinstance(server, ServerState)
    return server


async def get_server(request: Request) -> ServerState:
    """The server state, as a dependency: `async` because it does no I/O, so FastAPI
    runs it on the event loop instead of sending it to the threadpool."""
    return server_of(request)


def current_principal(request: Request) -> Principal:
    """The authenticated caller; AuthError (401) when there are no usable credentials.

    A plain function, as the Directory is synchronous: the dependencies below call it
    directly, so authenticating and authorizing take one trip to FastAPI's threadpool,
    not two (each trip costs CPU on every request).
    """
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    server = server_of(request)
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise AuthError(
                "the Authorization header must be 'Bearer <API key>'",
                hint="create a key with 'flowloom admin create-key' or POST /api/v1/keys",
            )
        principal = server.directory.principal_for_key(secret.strip())
    else:
        token = request.cookies.get(SESSION_COOKIE)
        if not token:
            raise AuthError(
                "authentication required",
                hint="send 'Authorization: Bearer <API key>' or sign in at /api/v1/auth/login",
            )
        principal = server.directory.principal_for_session(token)
        if request.method not in _SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, "")
            if not sent or not server.directory.verify_csrf(token, sent):
                raise PermissionDeniedError(
                    f"missing or wrong {CSRF_HEADER} header",
                    hint="send the csrf_token returned at sign-in in the X-CSRF-Token header",
                )
    request.state.principal = principal
    return principal


def authenticated(request: Request) -> Principal:
    """Any authenticated caller (what they may see is filtered by the handler)."""
    return current_principal(request)


def authorize(permission: str) -> Callable[..., Principal]:
    """A dependency: the principal, once it holds `permission` on the path's {project}.

    Routes without {project} check instance-wide ("*" grants only).
    """

    def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        server = server_of(request)
        project = request.path_params.get("project")
        server.authorizer.check(principal, permission, project)
        if project == INSTANCE_PROJECT:
            # The instance's audit log exists always, and only the server writes to it.
            if permission not in _INSTANCE_LOG_PERMISSIONS:
                raise PermissionDeniedError(
                    f"{INSTANCE_PROJECT} holds the server's own security events: read-only"
                )
        elif project is not None:
            server.directory.get_project(project)  # NotFoundError when it does not exist
        return principal

    dependency.__name__ = f"authorize_{permission.replace('.', '_')}"
    return dependency


def authorize_anywhere(permission: str) -> Callable[..., Principal]:
    """A dependency: the principal, once it holds `permission` on at least one project.

    For actions on one's own things that belong to no project (one's API keys).
    """

    def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        server = server_of(request)
        projects = server.authorizer.projects_with(principal, permission)
        if projects is not None and not projects:
            server.authorizer.check(principal, permission, None)  # raises, with the reason
        return principal

    dependency.__name__ = f"authorize_anywhere_{permission.replace('.', '_')}"
    return dependency


def require(server: ServerState, principal: Principal, *, owner_id: str) -> None:
    """The object-level check for per-user things (API keys): own ones or anyone's.

    One's own need key.self on some project; another user's need key.admin on "*".
    """
    if owner_id == principal.user_id:
        projects = server.authorizer.projects_with(principal, "key.self")
        if projects is None or projects:
            return
        server.authorizer.check(principal, "key.self", None)  # raises, with the reason
    server.authorizer.check(principal, "key.admin", ALL_PROJECTS)
