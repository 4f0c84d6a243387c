"""Web sign-in: the session cookie for pages, CSRF tokens in forms, HTML error pages.

Pages use the API's session (the ``flowloom_session`` cookie set by the same sign-in)
and the same `authorize()` dependency. Two things differ from the JSON API, because
a plain HTML form cannot set headers: a form proves it came from our page with a
hidden ``csrf_token`` field (the session's CSRF token) instead of ``X-CSRF-Token``, and
the sign-in form itself carries a double-submit token (a cookie and a field that must
match) so another site cannot sign a browser into someone else's account. Errors are
pages, not JSON: no credentials give the sign-in form (401), a refusal a 403 page.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from flowloom.auth.oidc import relative_redirect
from flowloom.auth.principals import Principal
from flowloom.auth.sessions import csrf_for
from flowloom.errors import FlowLoomError, InputError, PermissionDeniedError
from flowloom.server.deps import CSRF_HEADER, SESSION_COOKIE, server_of
from flowloom.server.errors import retry_after_headers, status_of
from flowloom.server.web.state import web_state

__all__ = [
    "CSRF_FIELD",
    "LOGIN_CSRF_COOKIE",
    "WEB_PREFIX",
    "WebRoute",
    "base_context",
    "html",
    "login_page",
    "safe_next",
    "web_session",
]

WEB_PREFIX = "/ui"
CSRF_FIELD = "csrf_token"
LOGIN_CSRF_COOKIE = "flowloom_login_csrf"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NO_STORE = {"Cache-Control": "no-store"}


async def web_session(request: Request) -> None:
    """Authenticate a page request from its session cookie, the CSRF token from the form.

    Runs before `authorize()` (a router-level dependency) and leaves the principal where
    `current_principal` looks first; requests with an API key, or without a cookie,
    are left to `current_principal` (which answers 401 for the latter).
    """
    if request.headers.get("authorization") is not None:
        return
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return
    server = server_of(request)
    principal = await run_in_threadpool(server.directory.principal_for_session, token)
    if request.method not in _SAFE_METHODS:
        sent: Any = request.headers.get(CSRF_HEADER)
        if not sent:
            content_type = request.headers.get("content-type", "")
            if content_type.startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            ):
                sent = (await request.form()).get(CSRF_FIELD)
        if not isinstance(sent, str) or not server.directory.verify_csrf(token, sent):
            raise PermissionDeniedError(
                "this form has no valid CSRF token (it was not sent from a FlowLoom page)",
                hint="reload the page and submit the form again",
            )
    request.state.principal = principal


def safe_next(value: str | None) -> str:
    """A same-server path to go to after sign-in; the project list when unusable."""
    try:
        target = relative_redirect(value)
    except InputError:
        return WEB_PREFIX
    return target if target != "/" else WEB_PREFIX


def html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**_NO_STORE, **(headers or {})})


def login_page(
    request: Request,
    *,
    status: int = 200,
    error: str | None = None,
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The sign-in form, with a fresh double-submit token in a cookie and a field."""
    state = web_state(request)
    server = state.server
    token = secrets.token_urlsafe(24)
    target = safe_next(next_path)
    sso = None
    if server.oidc is not None:
        sso = "/api/v1/auth/oidc/login?redirect=" + quote(target, safe="/")
    elif server.saml is not None:
        sso = "/api/v1/auth/saml/login?redirect=" + quote(target, safe="/")
    body = state.render(
        "web/login.html",
        {
            "title": "Sign in",
            "principal": None,
            "project": None,
            "csrf": token,
            "next": target,
            "error": error,
            "sso": sso,
            "nav": "login",
        },
    )
    response = html(body, status, {"WWW-Authenticate": "Session"} if status == 401 else headers)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=server.settings.secure_cookies,
        path=WEB_PREFIX + "/login",
    )
    return response


def error_page(
    request: Request,
    status: int,
    message: str,
    hint: str | None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    if status == 401:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET":
            here = WEB_PREFIX
        return login_page(request, status=401, error=message, next_path=here)
    principal = getattr(request.state, "principal", None)
    csrf = ""
    token = request.cookies.get(SESSION_COOKIE)
    if isinstance(principal, Principal) and principal.via == "session" and token:
        csrf = csrf_for(token)  # the session was checked when the principal was made
    body = web_state(request).render(
        "web/error.html",
        {
            "title": f"Error {status}",
            "principal": principal if isinstance(principal, Principal) else None,
            "project": None,
            "csrf": csrf,
            "status": status,
            "message": message,
            "hint": hint,
            "nav": "",
        },
    )
    return html(body, status, headers)


class WebRoute(APIRoute):
    """A page route: FlowLoom errors (from dependencies too) become HTML pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except FlowLoomError as exc:
                status, _ = status_of(exc)
                return await run_in_threadpool(
                    error_page, request, status, exc.message, exc.hint, retry_after_headers(exc)
                )
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', 'invalid')}"
                    for e in exc.errors()[:5]
                )
                return await run_in_threadpool(
                    error_page,
                    request,
                    422,
                    f"the form or address is not valid ({problems})",
                    "go back and correct it",
                )

        return handler


def base_context(
    request: Request, principal: Principal, *, project: str | None = None, **extra: Any
) -> dict[str, Any]:
    """What every signed-in page's template gets: who, where, what they may do, the CSRF token."""
    server = server_of(request)
    csrf = ""
    token = request.cookies.get(SESSION_COOKIE)
    if principal.via == "session" and token:
        csrf = csrf_for(token)  # the session was checked when the principal was made
    can = server.authorizer.permissions(principal, project)
    context: dict[str, Any] = {
        "principal": principal,
        "project": project,
        "csrf": csrf,
        "can": can,
        "instance_admin": server.authorizer.allowed(principal, "instance.admin", None),
        "nav": "",
        "title": project or "FlowLoom",
    }
    context.update(extra)
    return context
