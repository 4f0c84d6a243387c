"""Password sign-in and sign-out: a session cookie plus a CSRF token for the web UI.

The cookie is HttpOnly and SameSite=Lax (Secure behind https); unsafe requests made
with it must echo the CSRF token returned here in the X-CSRF-Token header.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from flowloom.auth.principals import Principal
from flowloom.auth.throttle import LoginThrottledError
from flowloom.errors import AuthError, InputError
from flowloom.server.deps import SESSION_COOKIE, authenticated, get_server
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.models import LoginIn, LoginOut
from flowloom.server.routes import API_PREFIX
from flowloom.server.state import ServerState
from flowloom.server.views import me_out

__all__ = ["router", "set_session_cookie"]

router = APIRouter(prefix=API_PREFIX + "/auth", tags=["identity"], responses=ERROR_RESPONSES)


def set_session_cookie(response: Response, server: ServerState, token: str) -> None:
    """Put the session token in the cookie (shared with the OIDC callback)."""
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=server.settings.secure_cookies,
        path="/",
    )


@router.post("/login", response_model=LoginOut, summary="Sign in with email and password")
def login(
    body: LoginIn,
    request: Request,
    response: Response,
    server: Annotated[ServerState, Depends(get_server)],
) -> LoginOut:
    client = request.client.host if request.client is not None else "unknown"
    via = "password"
    try:
        user_id = server.directory.check_password(body.email, body.password, client=client).user_id
    except LoginThrottledError:
        raise
    except (AuthError, InputError):
        if server.ldap is None:
            raise
        # Not a local password: the LDAP server decides (the attempt was counted above).
        user_id = server.ldap.authenticate(body.email, body.password).id
        via = "ldap"
    _, token, csrf = server.directory.create_session(user_id, via=via)
    principal = server.directory.principal_for_session(token)
    set_session_cookie(response, server, token)
    return LoginOut(csrf_token=csrf, user=me_out(principal))


@router.post("/logout", status_code=204, response_class=Response, summary="End the session")
def logout(
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],
    server: Annotated[ServerState, Depends(get_server)],
) -> Response:
    response = Response(status_code=204)
    token = request.cookies.get(SESSION_COOKIE)
    if principal.via == "session" and token:
        server.directory.end_session(token)
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response
