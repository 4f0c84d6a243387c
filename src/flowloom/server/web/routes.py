"""The web interface's router: sign-in pages, the project list, static files, and the
project, compliance and administration pages (each in its own module).

Everything is under /ui (and / redirects there), rendered on the server from autoescaped
Jinja2 templates, excluded from the OpenAPI document (that describes /api/v1 only).
Page routes carry `web_session` (session cookie + form CSRF token) before the API's
`authorize()` dependency.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flowloom.auth.principals import Principal
from flowloom.auth.throttle import LoginThrottledError
from flowloom.errors import AuthError, NotFoundError
from flowloom.server.deps import SESSION_COOKIE, authenticated, get_server
from flowloom.server.errors import retry_after_headers
from flowloom.server.routes.session import set_session_cookie
from flowloom.server.state import ServerState
from flowloom.server.web import (
    admin_pages,
    compliance_pages,
    integration_pages,
    project_pages,
    siem_pages,
    webhook_pages,
)
from flowloom.server.web.session import (
    LOGIN_CSRF_COOKIE,
    WEB_PREFIX,
    WebRoute,
    base_context,
    html,
    login_page,
    safe_next,
    web_session,
)
from flowloom.server.web.state import WebState, web_state

__all__ = ["router"]

Server = Annotated[ServerState, Depends(get_server)]
Web = Annotated[WebState, Depends(web_state)]

_STATIC = {"web.css": "text/css; charset=utf-8", "web.js": "text/javascript; charset=utf-8"}

pages = APIRouter(prefix=WEB_PREFIX, route_class=WebRoute, include_in_schema=False)
signin = APIRouter(prefix=WEB_PREFIX, route_class=WebRoute, include_in_schema=False)
"""The sign-in form: outside `web_session`, so a stale or ended session's cookie does
not stand in the way of signing in again."""


@signin.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> Response:
    return login_page(request, next_path=next)


@signin.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    server: Server,
    email: Annotated[str, Form(min_length=1, max_length=320)],
    password: Annotated[str, Form(min_length=1, max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=200)],
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not secrets.compare_digest(cookie.encode(), csrf_token.encode()):
        return login_page(
            request,
            status=403,
            error="the sign-in form expired or did not come from this server; try again",
            next_path=next,
        )
    client = request.client.host if request.client is not None else "unknown"
    try:
        checked = server.directory.check_password(email, password, client=client)
    except LoginThrottledError as exc:
        message = f"{exc.message}; {exc.hint}"
        headers = retry_after_headers(exc)
        return login_page(request, status=429, error=message, next_path=next, headers=headers)
    except AuthError as exc:
        return login_page(request, status=401, error=exc.message, next_path=next)
    _, token, _ = server.directory.create_session(checked.user_id, via="password")
    response = RedirectResponse(safe_next(next), status_code=303)
    set_session_cookie(response, server, token)
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=WEB_PREFIX + "/login")
    return response


@pages.post("/logout")
def logout(
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],
    server: Server,
) -> Response:
    response = RedirectResponse(WEB_PREFIX + "/login", status_code=303)
    token = request.cookies.get(SESSION_COOKIE)
    if principal.via == "session" and token:
        server.directory.end_session(token)
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@pages.get("", response_class=HTMLResponse)
def projects_page(
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],
    server: Server,
    web: Web,
) -> Response:
    visible = server.authorizer.projects_with(principal, "project.read")
    projects = [p for p in server.directory.list_projects() if visible is None or p.name in visible]
    rows = [(p, server.store.size(p.name)) for p in projects]
    context = base_context(request, principal, title="Projects", nav="projects", projects=rows)
    return html(web.render("web/projects.html", context))


static = APIRouter(prefix=WEB_PREFIX + "/static", include_in_schema=False)


@static.get("/{name}")
def static_file(name: Annotated[str, Path(max_length=40)]) -> Response:
    """The stylesheet and the small script: no build step, served from the package."""
    media = _STATIC.get(name)
    if media is None:
        raise NotFoundError(f"no static file {name!r}")
    content = resources.files("flowloom.server").joinpath("static", name).read_bytes()
    return Response(content, media_type=media, headers={"Cache-Control": "public, max-age=300"})


root = APIRouter(include_in_schema=False)


@root.get("/")
def home() -> Response:
    return RedirectResponse(WEB_PREFIX, status_code=303)


router = APIRouter()
for _pages in (
    pages,
    project_pages.router,
    compliance_pages.router,
    admin_pages.router,
    integration_pages.router,
    webhook_pages.router,
    siem_pages.router,
):
    router.include_router(_pages, dependencies=[Depends(web_session)])
router.include_router(signin)
router.include_router(root)
router.include_router(static)
