"""Single sign-on routes: send the browser to the identity provider, take it back signed in.

GET /api/v1/auth/oidc/login keeps the attempt's state, PKCE verifier and nonce in the
Directory (single use, short-lived) and binds the attempt to the browser with a cookie,
so a callback link made by someone else cannot sign the victim in as that someone
(login CSRF). GET /api/v1/auth/oidc/callback verifies the provider's answer, creates or
updates the user, applies the roles its groups map to, opens a session and records
auth.login — or auth.login_failed with the reason — in the instance ledger.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from flowloom.auth.oidc import (
    CALLBACK_PATH,
    OidcClient,
    OidcIdentity,
    OidcLoginError,
    PendingLogin,
    RoleGrant,
    relative_redirect,
)
from flowloom.auth.principals import Principal
from flowloom.errors import AuthError, InputError, NotFoundError
from flowloom.server.deps import SESSION_COOKIE, server_of
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.routes.session import set_session_cookie
from flowloom.server.state import ServerState

__all__ = ["STATE_COOKIE", "apply_grants", "current_session", "router"]

router = APIRouter(prefix=API_PREFIX + "/auth/oidc", tags=["identity"], responses=ERROR_RESPONSES)

STATE_COOKIE = "flowloom_oidc_state"
"""Holds the state of the browser's own login attempt until the callback."""
_STATE_COOKIE_PATH = CALLBACK_PATH.rsplit("/", 1)[0]
_STATE_LIFETIME = 600
_NO_STORE = {"Cache-Control": "no-store"}
_REDIRECT: dict[int | str, dict[str, Any]] = {302: {"description": "to the identity provider"}}


def _client(server: ServerState) -> OidcClient:
    client = getattr(server, "oidc", None)
    if not isinstance(client, OidcClient):
        raise NotFoundError(
            "single sign-on is not configured on this server",
            hint="add a [server.oidc] table to the server configuration (see docs/oidc.md)",
        )
    return client


@router.get(
    "/login",
    status_code=302,
    response_class=RedirectResponse,
    responses=_REDIRECT,
    summary="Start single sign-on",
)
def oidc_login(
    request: Request,
    redirect: str = Query("/", description="a path on this server to return to"),
    reauth: bool = Query(False, description="make the provider ask for credentials again"),
) -> Response:
    """Redirect to the identity provider; `reauth=1` asks it to prompt again (for signing)."""
    server = server_of(request)
    client = _client(server)
    target = relative_redirect(redirect)
    try:
        attempt = client.begin(target, reauth=reauth)
    except OidcLoginError as exc:
        _audit_failure(server, request, exc)
        raise
    server.directory.put_oidc_state(attempt.state, attempt.verifier, attempt.nonce, target)
    response = RedirectResponse(attempt.authorization_url, status_code=302, headers=_NO_STORE)
    response.set_cookie(
        STATE_COOKIE,
        attempt.state,
        max_age=_STATE_LIFETIME,
        path=_STATE_COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=server.settings.secure_cookies,
    )
    return response


@router.get(
    "/callback",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "signed in; back to where the login started"}},
    summary="Finish single sign-on",
)
def oidc_callback(
    request: Request,
    code: str | None = None,
    state: str | None = None,
    error: str | None = None,
) -> Response:
    """Verify the provider's answer, sign the user in and return to the starting page."""
    server = server_of(request)
    client = _client(server)
    try:
        pending = _take_state(server, request, state)
        if error is not None:
            reason = re.sub(r"[^A-Za-z0-9_.-]", "", error)[:64] or "error"
            raise OidcLoginError(
                "provider_error",
                f"the identity provider did not sign you in ({reason})",
                hint="try again, or ask your identity provider administrator",
            )
        identity = client.finish(code or "", pending)
        return _sign_in(server, client, request, identity, pending)
    except OidcLoginError as exc:
        _audit_failure(server, request, exc)
        raise


def _take_state(server: ServerState, request: Request, state: str | None) -> PendingLogin:
    """The pending login named by `state`, once, and only in the browser that began it."""
    if not state:
        raise OidcLoginError(
            "state",
            "the sign-in callback carries no state",
            hint=f"start the sign-in at {API_PREFIX}/auth/oidc/login",
        )
    try:
        record = server.directory.take_oidc_state(state)
    except (AuthError, NotFoundError, InputError):
        raise OidcLoginError(
            "state",
            "this sign-in attempt is unknown, already used or expired",
            hint="start the sign-in again",
        ) from None
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not hmac.compare_digest(cookie.encode(), state.encode()):
        raise OidcLoginError(
            "state_binding",
            "this sign-in attempt was started in another browser",
            hint="start the sign-in again from this browser",
        )
    return PendingLogin(
        state=record.state,
        verifier=record.verifier,
        nonce=record.nonce,
        redirect=relative_redirect(record.redirect),
    )


def _sign_in(
    server: ServerState,
    client: OidcClient,
    request: Request,
    identity: OidcIdentity,
    pending: PendingLogin,
) -> Response:
    """Create or update the user, add mapped roles, and open (or refresh) the session.

    The Directory records auth.user_created, auth.role_granted and auth.login itself.
    """
    directory = server.directory
    response = RedirectResponse(pending.redirect, status_code=302, headers=_NO_STORE)
    response.delete_cookie(STATE_COOKIE, path=_STATE_COOKIE_PATH)
    try:
        user = directory.upsert_oidc_user(
            identity.issuer, identity.subject, identity.email, identity.name
        )
        if user.disabled:
            raise AuthError("this account is disabled", hint="ask a FlowLoom administrator")
        apply_grants(server, user.id, client.roles_for(identity.groups))
        current = current_session(server, request) if pending.reauth else None
        if current is not None and current.user_id != user.id:
            raise OidcLoginError(
                "reauth_user",
                "re-authentication was done as a different user than the one signed in",
                hint="sign in at the identity provider as the user of this session",
            )
        if current is not None and current.session_id is not None:
            directory.mark_reauthenticated(current.session_id)
            server.audit(
                "auth.reauthenticated",
                None,
                {
                    "actor": current.actor(),
                    "subject": user.id,
                    "refs": {"session_id": current.session_id, "method": "oidc"},
                },
            )
            return response
        session, token, _csrf = directory.create_session(user.id, via="oidc")
    except OidcLoginError:
        raise
    except AuthError as exc:
        raise OidcLoginError("account", exc.message, hint=exc.hint) from None
    if pending.reauth:
        directory.mark_reauthenticated(session.id)
    set_session_cookie(response, server, token)
    return response


def apply_grants(server: ServerState, user_id: str, wanted: frozenset[RoleGrant]) -> None:
    """Add the mapped roles the user lacks (the Directory audits each as auth.role_granted).

    Shared with SAML sign-in.
    Roles are only added: a role granted by hand is never taken away by a login. A role
    on a project that does not exist (yet) is skipped and recorded, not an error.
    """
    held = server.directory.grants_of(user_id)
    skipped: list[str] = []
    for grant in sorted(wanted):
        if grant.role in held.get(grant.project, frozenset()):
            continue
        try:
            server.directory.grant(user_id, grant.project, grant.role)
        except NotFoundError:
            skipped.append(f"{grant.project}:{grant.role}")
    if skipped:
        server.audit(
            "auth.role_mapping_skipped",
            None,
            {"subject": user_id, "refs": {"user_id": user_id, "roles": skipped}},
        )


def current_session(server: ServerState, request: Request) -> Principal | None:
    """The principal of this browser's live session cookie, if any (for re-authentication)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        return server.directory.principal_for_session(token)
    except AuthError:
        return None


def _client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def _audit_failure(server: ServerState, request: Request, exc: OidcLoginError) -> None:
    server.audit(
        "auth.login_failed",
        None,
        {
            "refs": {
                "method": "oidc",
                "reason": exc.reason,
                "message": exc.message,
                "client": _client_address(request),
            }
        },
    )
