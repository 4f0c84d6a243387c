"""SAML 2.0 single sign-on routes: metadata, sign-in (SP- and IdP-initiated), single logout.

GET  /api/v1/auth/saml/metadata  this SP's metadata for the IdP administrator.
GET  /api/v1/auth/saml/login     a signed AuthnRequest (ForceAuthn with `reauth=1`); the
     request id waits in the Directory under a random RelayState, which a cookie binds to
     this browser (so a response obtained by someone else cannot sign the victim in).
POST /api/v1/auth/saml/acs       verifies the IdP's response, refuses a replayed assertion,
     creates or links the user, applies mapped roles and opens the session.
POST /api/v1/auth/saml/logout    ends this session, and returns the IdP's logout URL.
GET|POST /api/v1/auth/saml/sls   the IdP's LogoutRequest (ends that subject's sessions)
     or its LogoutResponse to ours.

Every sign-in, sign-out and refusal is recorded in the instance ledger: auth.login,
auth.reauthenticated, auth.logout (refs.method "saml"), auth.login_failed with a reason.
"""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT

from flowloom.auth.oidc import relative_redirect
from flowloom.auth.principals import Principal
from flowloom.auth.records import SamlPending, SamlSessionRef
from flowloom.auth.saml import (
    LOGIN_PATH,
    NameIdRef,
    SamlIdentity,
    SamlLoginError,
    SamlServiceProvider,
)
from flowloom.errors import AuthError, InputError, NotFoundError
from flowloom.server.deps import SESSION_COOKIE, authenticated, server_of
from flowloom.server.errors import ERROR_RESPONSES
from flowloom.server.routes import API_PREFIX
from flowloom.server.routes.oidc import apply_grants, current_session
from flowloom.server.routes.session import set_session_cookie
from flowloom.server.state import ServerState

__all__ = ["STATE_COOKIE", "router"]

router = APIRouter(prefix=API_PREFIX + "/auth/saml", tags=["identity"], responses=ERROR_RESPONSES)

STATE_COOKIE = "flowloom_saml_state"
"""Holds the RelayState of this browser's own sign-in until the IdP posts back."""
_COOKIE_PATH = LOGIN_PATH.rsplit("/", 1)[0]
_STATE_LIFETIME = 600
_NO_STORE = {"Cache-Control": "no-store"}
_REDIRECT: dict[int | str, dict[str, Any]] = {302: {"description": "to the identity provider"}}


def _provider(server: ServerState) -> SamlServiceProvider:
    provider = getattr(server, "saml", None)
    if not isinstance(provider, SamlServiceProvider):
        raise NotFoundError(
            "SAML single sign-on is not configured on this server",
            hint="add a [server.saml] table to the server configuration (see docs/auth.md)",
        )
    return provider


@router.get(
    "/metadata",
    response_class=Response,
    responses={200: {"content": {"application/samlmetadata+xml": {}}}},
    summary="This service provider's SAML metadata",
)
def saml_metadata(request: Request) -> Response:
    """Entity id, ACS and logout URLs and the SP certificate, for the IdP's set-up."""
    xml = _provider(server_of(request)).metadata()
    return Response(xml, media_type="application/samlmetadata+xml")


@router.get(
    "/login",
    status_code=302,
    response_class=RedirectResponse,
    responses=_REDIRECT,
    summary="Start SAML single sign-on",
)
def saml_login(
    request: Request,
    redirect: str = Query("/", description="a path on this server to return to"),
    reauth: bool = Query(False, description="make the IdP ask for credentials (ForceAuthn)"),
) -> Response:
    """Redirect to the IdP with a signed AuthnRequest; `reauth=1` is for signing."""
    server = server_of(request)
    provider = _provider(server)
    target = relative_redirect(redirect)
    attempt = provider.begin(reauth=reauth)
    kind = "reauth" if reauth else "login"
    server.directory.put_saml_request(attempt.relay_state, attempt.request_id, kind, target)
    response = RedirectResponse(attempt.url, status_code=302, headers=_NO_STORE)
    _set_state_cookie(response, server, attempt.relay_state)
    return response


def _set_state_cookie(response: Response, server: ServerState, relay_state: str) -> None:
    # The IdP posts back cross-site: over https the cookie must be SameSite=None to come
    # along (it is HttpOnly, path-bound and single-use).
    secure = server.settings.secure_cookies
    response.set_cookie(
        STATE_COOKIE,
        relay_state,
        max_age=_STATE_LIFETIME,
        path=_COOKIE_PATH,
        httponly=True,
        samesite="none" if secure else "lax",
        secure=secure,
    )


@router.post(
    "/acs",
    status_code=303,
    response_class=RedirectResponse,
    responses={303: {"description": "signed in; back to where the sign-in started"}},
    summary="SAML assertion consumer service",
)
def saml_acs(
    request: Request,
    saml_response: Annotated[str, Form(alias="SAMLResponse")] = "",
    relay_state: Annotated[str, Form(alias="RelayState")] = "",
) -> Response:
    """Verify the IdP's signed assertion, sign the user in and go back."""
    server = server_of(request)
    provider = _provider(server)
    try:
        pending = _take_pending(server, request, relay_state)
        identity = provider.finish(
            saml_response,
            expected_request=pending.request_id if pending else None,
            reauth=pending is not None and pending.kind == "reauth",
        )
        if not server.directory.remember_saml_assertion(
            identity.idp, identity.assertion_id, identity.expires_at
        ):
            raise SamlLoginError(
                "replay",
                "this assertion was already used to sign in",
                hint="start the sign-in again",
            )
        target = pending.redirect if pending is not None else _idp_relay_target(relay_state)
        return _sign_in(server, provider, request, identity, pending, target)
    except SamlLoginError as exc:
        _audit_failure(server, request, exc)
        raise


def _take_pending(server: ServerState, request: Request, relay_state: str) -> SamlPending | None:
    """The sign-in this browser started, named by RelayState; None for an IdP-initiated
    one (a RelayState FlowLoom never issued)."""
    if not relay_state:
        return None
    try:
        pending = server.directory.take_saml_request(relay_state)
    except (AuthError, NotFoundError, InputError):
        return None
    if pending.kind == "logout":
        raise SamlLoginError("state", "this relay state belongs to a logout, not a sign-in")
    cookie = request.cookies.get(STATE_COOKIE, "")
    if not hmac.compare_digest(cookie.encode(), relay_state.encode()):
        raise SamlLoginError(
            "state_binding",
            "this sign-in was started in another browser",
            hint="start the sign-in again from this browser",
        )
    return pending


def _idp_relay_target(relay_state: str) -> str:
    """Where an IdP-initiated sign-in lands: its RelayState if a path here, else home."""
    try:
        return relative_redirect(relay_state)
    except InputError:
        return "/"


def _sign_in(
    server: ServerState,
    provider: SamlServiceProvider,
    request: Request,
    identity: SamlIdentity,
    pending: SamlPending | None,
    target: str,
) -> Response:
    directory = server.directory
    response = RedirectResponse(target, status_code=303, headers=_NO_STORE)
    response.delete_cookie(STATE_COOKIE, path=_COOKIE_PATH)
    reauth = pending is not None and pending.kind == "reauth"
    try:
        user = directory.upsert_federated_user(
            identity.idp, identity.subject, identity.email, identity.name, method="saml"
        )
        if user.disabled:
            raise AuthError("this account is disabled", hint="ask a FlowLoom administrator")
        apply_grants(server, user.id, provider.roles_for(identity.groups))
        current = current_session(server, request) if reauth else None
        if current is not None and current.user_id != user.id:
            raise SamlLoginError(
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
                    "refs": {"session_id": current.session_id, "method": "saml"},
                },
            )
            return response
        session, token, _csrf = directory.create_session(user.id, via="saml")
        directory.bind_saml_session(
            SamlSessionRef(
                session_id=session.id,
                idp=identity.idp,
                name_id=identity.name_id.value,
                name_id_format=identity.name_id.format,
                name_qualifier=identity.name_id.name_qualifier,
                sp_name_qualifier=identity.name_id.sp_name_qualifier,
                session_index=identity.session_index,
            )
        )
    except SamlLoginError:
        raise
    except AuthError as exc:
        raise SamlLoginError("account", exc.message, hint=exc.hint) from None
    if reauth:  # as for OIDC: a fresh sign-in with ForceAuthn is itself a re-authentication
        directory.mark_reauthenticated(session.id)
    set_session_cookie(response, server, token)
    return response


@router.post("/logout", summary="Sign out here and at the SAML identity provider")
def saml_logout(
    request: Request,
    principal: Annotated[Principal, Depends(authenticated)],
) -> JSONResponse:
    """End this session now; `logout_url` (if any) ends the IdP session too."""
    server = server_of(request)
    provider = _provider(server)
    token = request.cookies.get(SESSION_COOKIE)
    ref = (
        server.directory.saml_session(principal.session_id)
        if principal.via == "session" and principal.session_id
        else None
    )
    url: str | None = None
    if ref is not None:
        name_id = NameIdRef(
            ref.name_id, ref.name_id_format, ref.name_qualifier, ref.sp_name_qualifier
        )
        outgoing = provider.logout_request(name_id, ref.session_index)
        if outgoing is not None:
            server.directory.put_saml_request(
                outgoing.relay_state, outgoing.request_id, "logout", "/"
            )
            url = outgoing.url
    response = JSONResponse({"logout_url": url}, headers=_NO_STORE)
    if principal.via == "session" and token:
        server.directory.end_session(token, method="saml" if ref is not None else None)
        response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get(
    "/sls",
    status_code=302,
    response_class=RedirectResponse,
    summary="SAML single logout service (HTTP-Redirect)",
)
def saml_sls(request: Request) -> Response:
    """The IdP's LogoutRequest (sign that user out, answer) or LogoutResponse to ours."""
    return _single_logout(request, dict(request.query_params), BINDING_HTTP_REDIRECT)


@router.post(
    "/sls",
    status_code=303,
    response_class=RedirectResponse,
    summary="SAML single logout service (HTTP-POST)",
)
async def saml_sls_post(request: Request) -> Response:
    """The POST binding of the same service."""
    form = await request.form()
    values = {k: str(v) for k, v in form.items()}
    return _single_logout(request, values, BINDING_HTTP_POST)


def _single_logout(request: Request, values: dict[str, str], binding: str) -> Response:
    server = server_of(request)
    provider = _provider(server)
    try:
        if "SAMLRequest" in values:
            answer = provider.handle_logout_request(
                values["SAMLRequest"],
                binding=binding,
                relay_state=values.get("RelayState"),
                query=values,
            )
            ended = server.directory.end_saml_sessions(
                provider.idp_entity_id, answer.name_id.value, answer.session_indexes
            )
            response = RedirectResponse(answer.response_url, status_code=302, headers=_NO_STORE)
            if request.cookies.get(SESSION_COOKIE) and ended:
                response.delete_cookie(SESSION_COOKIE, path="/")
            return response
        if "SAMLResponse" in values:
            request_id = provider.finish_logout(
                values["SAMLResponse"], binding=binding, query=values
            )
            relay = values.get("RelayState", "")
            try:
                pending = server.directory.take_saml_request(relay)
            except AuthError:
                pending = None
            if pending is None or pending.kind != "logout" or pending.request_id != request_id:
                raise SamlLoginError(
                    "in_response_to", "this logout response answers no logout started here"
                )
            return RedirectResponse("/", status_code=303, headers=_NO_STORE)
        raise SamlLoginError("malformed", "no SAMLRequest or SAMLResponse was sent")
    except SamlLoginError as exc:
        _audit_failure(server, request, exc, what="auth.logout_failed")
        raise


def _audit_failure(
    server: ServerState, request: Request, exc: SamlLoginError, what: str = "auth.login_failed"
) -> None:
    server.audit(
        what,
        None,
        {
            "refs": {
                "method": "saml",
                "reason": exc.reason,
                "message": exc.message,
                "client": request.client.host if request.client else None,
            }
        },
    )
