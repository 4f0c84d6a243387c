"""SAML sign-in through the real server app on loopback, against SimpleSAMLphp.

The browser is an httpx client with one cookie jar (as a browser has) that visits both
the IdP and FlowLoom; the server runs under uvicorn in a thread. Every sign-in, sign-out
and refusal must leave its event (auth.login, auth.logout, auth.reauthenticated,
auth.login_failed with the reason) in the instance ledger.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn

from flowloom.auth.saml import (
    ACS_PATH,
    LOGIN_PATH,
    METADATA_PATH,
    SLS_PATH,
    SamlServiceProvider,
    SamlSettings,
)
from flowloom.server import INSTANCE_PROJECT
from flowloom.server.app import create_app
from flowloom.server.build import build_server
from flowloom.server.settings import ServerSettings
from flowloom.server.state import ServerState
from tests.support.simplesamlphp import (
    RemoteSp,
    SimpleSamlIdp,
    form_action,
    form_fields,
    self_signed,
    sign_in_at_idp,
)


@dataclass
class Running:
    url: str
    state: ServerState
    idp: SimpleSamlIdp

    def browser(self) -> httpx.Client:
        return httpx.Client(follow_redirects=True, timeout=30)

    def events(self, kind: str, project: str = INSTANCE_PROJECT) -> list[dict[str, Any]]:
        ledger = self.state.ledger(project)
        found = [json.loads(ledger.entry(i).envelope) for i in range(ledger.size())]
        return [e for e in found if e["kind"] == kind]

    def failures(self) -> list[str]:
        return [e["refs"]["reason"] for e in self.events("auth.login_failed")]

    def login_url(self, redirect: str = "/api/v1/me", **extra: str) -> str:
        return self.url + LOGIN_PATH + "?" + urlencode({"redirect": redirect, **extra})


def post_back(browser: httpx.Client, page: httpx.Response) -> httpx.Response:
    """What the IdP page's auto-submitting form does: POST SAMLResponse to the ACS."""
    return browser.post(form_action(page.text), data=form_fields(page.text))


@pytest.fixture
def running(tmp_path: Path, saml_idp: SimpleSamlIdp) -> Iterator[Running]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    key, cert = self_signed("flowloom-sp.test")
    (tmp_path / "sp.key").write_bytes(key)
    (tmp_path / "sp.crt").write_bytes(cert)
    (tmp_path / "idp.xml").write_text(saml_idp.metadata_xml())
    saml_idp.register(RemoteSp(url + METADATA_PATH, url + ACS_PATH, url + SLS_PATH, cert))
    settings = ServerSettings(
        database=str(tmp_path / "server.db"),
        home=tmp_path / "home",
        host="127.0.0.1",
        port=port,
        public_url=url,
    )
    state = build_server(settings)
    state.saml = SamlServiceProvider(
        SamlSettings.from_mapping(
            {
                "idp_metadata_file": str(tmp_path / "idp.xml"),
                "sp_key_file": str(tmp_path / "sp.key"),
                "sp_cert_file": str(tmp_path / "sp.crt"),
                "allow_idp_initiated": True,
                "role_map": {
                    "engineering": ["alpha:developer", "alpha:approver"],
                    "secops": ["*:auditor"],
                },
            },
            public_url=url,
        )
    )
    state.directory.create_project("alpha")
    server = uvicorn.Server(
        uvicorn.Config(create_app(state), log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        assert thread.is_alive(), "the server thread died"
        time.sleep(0.02)
    try:
        yield Running(url=url, state=state, idp=saml_idp)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        state.close()


def sign_in(run: Running, browser: httpx.Client, **extra: str) -> httpx.Response:
    page = sign_in_at_idp(browser, run.login_url(**extra))
    return post_back(browser, page)


def test_metadata_is_served_for_the_idp(running: Running) -> None:
    answer = httpx.get(running.url + METADATA_PATH)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/samlmetadata+xml")
    assert f'entityID="{running.url}{METADATA_PATH}"' in answer.text


def test_sp_initiated_sign_in_maps_roles_and_is_recorded(running: Running) -> None:
    with running.browser() as browser:
        me = sign_in(running, browser)
        assert me.status_code == 200, me.text
        assert str(me.url) == running.url + "/api/v1/me"
        body = me.json()
        assert body["email"] == "ada@example.test" and body["name"] == "Ada Lovelace"
        assert body["grants"] == {"alpha": ["approver", "developer"], "*": ["auditor"]}
        acs = next(r for r in me.history if r.url.path == ACS_PATH)
        assert acs.status_code == 303
        cookie = next(
            c for c in acs.headers.get_list("set-cookie") if c.startswith("flowloom_session=")
        )
        assert "HttpOnly" in cookie
    user = running.state.directory.user_by_email("ada@example.test")
    assert user.oidc_issuer == running.idp.entity_id and user.oidc_subject == "ada"
    logins = running.events("auth.login")
    assert [e["refs"]["method"] for e in logins] == ["saml"]
    assert logins[0]["actor"]["id"] == user.id
    assert len(running.events("auth.user_created")) == 1
    session = running.state.directory.get_session(logins[0]["refs"]["session_id"])
    assert session.via == "saml"
    bound = running.state.directory.saml_session(session.id)
    assert bound is not None and bound.name_id == "ada" and bound.session_index
    assert running.failures() == []


def test_idp_initiated_sign_in_and_its_replay(running: Running) -> None:
    with running.browser() as browser:
        page = sign_in_at_idp(
            browser,
            running.idp.idp_initiated_url(running.url + METADATA_PATH, "/api/v1/me"),
        )
        fields = form_fields(page.text)
        first = browser.post(form_action(page.text), data=fields)
        assert first.status_code == 200 and first.json()["email"] == "ada@example.test"
    # The same assertion again (an attacker who captured it): refused and recorded.
    with running.browser() as thief:
        again = thief.post(form_action(page.text), data=fields)
        assert again.status_code == 401, again.text
        assert "already used" in again.text
        assert thief.get(running.url + "/api/v1/me").status_code == 401
    assert running.failures() == ["replay"]
    assert running.events("auth.login_failed")[0]["refs"]["method"] == "saml"


def test_response_posted_in_another_browser_is_refused(running: Running) -> None:
    with running.browser() as victim_of_csrf, running.browser() as attacker:
        page = sign_in_at_idp(attacker, running.login_url())
        refused = victim_of_csrf.post(form_action(page.text), data=form_fields(page.text))
        assert refused.status_code == 401
        assert victim_of_csrf.get(running.url + "/api/v1/me").status_code == 401
    assert running.failures() == ["state_binding"]


def test_sp_initiated_response_cannot_pass_as_idp_initiated(running: Running) -> None:
    with running.browser() as browser:
        page = sign_in_at_idp(browser, running.login_url())
        fields = form_fields(page.text)
        fields["RelayState"] = "/api/v1/me"  # strip the binding to this sign-in
        refused = browser.post(form_action(page.text), data=fields)
        assert refused.status_code == 401
    assert running.failures() == ["unsolicited"]


def test_garbage_is_refused_and_recorded(running: Running) -> None:
    refused = httpx.post(running.url + ACS_PATH, data={"SAMLResponse": "%%%"})
    assert refused.status_code == 401
    assert running.failures() == ["malformed"]


def _sign(browser: httpx.Client, run: Running, **extra: Any) -> httpx.Response:
    token = browser.cookies.get("flowloom_session")
    assert token
    csrf = run.state.directory.csrf_token(token)
    digest = "sha256:" + hashlib.sha256(secrets.token_bytes(8)).hexdigest()
    return browser.post(
        run.url + "/api/v1/projects/alpha/signatures",
        json={"subject": "document:plan-1", "content_digest": digest, "meaning": "approved"},
        headers={"X-CSRF-Token": csrf},
    )


def test_signing_needs_force_authn_reauthentication(running: Running) -> None:
    with running.browser() as browser:
        assert sign_in(running, browser).status_code == 200
        refused = _sign(browser, running)
        assert refused.status_code == 401, refused.text
        assert "saml/login?reauth=true" in refused.text
        # ForceAuthn: the IdP asks for the password although its session is alive.
        start = browser.get(running.login_url(reauth="1"))
        assert 'name="AuthState"' in start.text
        page = sign_in_at_idp(browser, running.login_url(reauth="1"))
        back = post_back(browser, page)
        assert back.status_code == 200
        signed = _sign(browser, running)
        assert signed.status_code == 201, signed.text
        assert signed.json()["method"] == "saml-reauth"
        assert signed.json()["components"] == ["identity-provider"]
    events = running.events("auth.reauthenticated")
    assert [e["refs"]["method"] for e in events] == ["saml"]
    assert len(running.events("auth.login")) == 1  # re-authentication opened no session
    assert len(running.events("signature.apply", "alpha")) == 1


def test_sp_initiated_single_logout(running: Running) -> None:
    with running.browser() as browser:
        assert sign_in(running, browser).status_code == 200
        token = browser.cookies.get("flowloom_session")
        assert token
        csrf = running.state.directory.csrf_token(token)
        out = browser.post(running.url + "/api/v1/auth/saml/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 200, out.text
        logout_url = out.json()["logout_url"]
        assert logout_url.startswith(running.idp.slo_url)
        assert (
            httpx.get(running.url + "/api/v1/me", cookies={"flowloom_session": token}).status_code
            == 401
        )
        # The IdP ends its session and answers at our SLS, which goes home.
        done = browser.get(logout_url)
        sls = [r for r in done.history if r.url.path == SLS_PATH]
        assert sls and sls[0].status_code == 303, [str(r.url) for r in done.history]
        # The IdP session is gone: signing in asks for the password again.
        again = browser.get(running.login_url())
        assert 'name="AuthState"' in again.text
    logouts = running.events("auth.logout")
    assert [e["refs"].get("method") for e in logouts] == ["saml"]
    assert running.events("auth.logout_failed") == []


def test_idp_initiated_single_logout_ends_the_session(running: Running) -> None:
    with running.browser() as browser:
        assert sign_in(running, browser).status_code == 200
        token = browser.cookies.get("flowloom_session")
        done = browser.get(
            running.idp.base + "/saml2/idp/initSLO.php",
            params={"RelayState": running.idp.base + "/"},
        )
        hops = [str(r.url) for r in done.history]
        assert any(running.url + SLS_PATH in hop for hop in hops), hops
        gone = httpx.get(running.url + "/api/v1/me", cookies={"flowloom_session": token or ""})
        assert gone.status_code == 401
    logouts = running.events("auth.logout")
    assert len(logouts) == 1 and logouts[0]["refs"]["initiated_by"] == "idp"
    assert running.events("auth.logout_failed") == []


def test_forged_logout_request_is_refused(running: Running) -> None:
    with running.browser() as browser:
        assert sign_in(running, browser).status_code == 200
        token = browser.cookies.get("flowloom_session")
        forged = httpx.get(
            running.url + SLS_PATH, params={"SAMLRequest": "fZBBa8MwDIX/ivE9", "RelayState": "x"}
        )
        assert forged.status_code == 401
        me = httpx.get(running.url + "/api/v1/me", cookies={"flowloom_session": token or ""})
        assert me.status_code == 200
    assert [e["refs"]["reason"] for e in running.events("auth.logout_failed")] == ["signature"]


def _logout_request_to_us(run: Running, browser: httpx.Client) -> str:
    """Start logout at the IdP and stop at its signed LogoutRequest for FlowLoom."""
    url = run.idp.base + "/saml2/idp/initSLO.php?" + urlencode({"RelayState": run.idp.base + "/"})
    for _hop in range(10):
        answer = browser.get(url, follow_redirects=False)
        assert answer.status_code in (302, 303), answer.text[:1000]
        url = answer.headers["location"]
        if url.startswith(run.url + SLS_PATH):
            return url
    raise AssertionError("the IdP sent no LogoutRequest to FlowLoom")


def test_tampered_or_unsigned_logout_requests_are_refused(running: Running) -> None:
    with running.browser() as browser:
        assert sign_in(running, browser).status_code == 200
        token = browser.cookies.get("flowloom_session") or ""
        genuine = _logout_request_to_us(running, browser)
        parts = httpx.URL(genuine)
        query = dict(parts.params)
        # Another RelayState under the same signature: the signature no longer matches.
        tampered = {**query, "RelayState": "https://evil.example.test/"}
        assert httpx.get(running.url + SLS_PATH, params=tampered).status_code == 401
        unsigned = {k: v for k, v in query.items() if k not in ("Signature", "SigAlg")}
        assert httpx.get(running.url + SLS_PATH, params=unsigned).status_code == 401
        # An unsigned LogoutRequest by HTTP-POST naming ada is refused too.
        forged = (
            '<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
            'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_f1" Version="2.0" '
            f'IssueInstant="2026-01-01T00:00:00Z" Destination="{running.url}{SLS_PATH}">'
            f"<saml:Issuer>{running.idp.entity_id}</saml:Issuer>"
            '<saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">ada'
            "</saml:NameID></samlp:LogoutRequest>"
        )
        posted = httpx.post(
            running.url + SLS_PATH,
            data={"SAMLRequest": base64.b64encode(forged.encode()).decode()},
        )
        assert posted.status_code == 401
        me = httpx.get(running.url + "/api/v1/me", cookies={"flowloom_session": token})
        assert me.status_code == 200  # still signed in
        # The genuine request does sign ada out.
        assert httpx.get(genuine).status_code == 302
        me = httpx.get(running.url + "/api/v1/me", cookies={"flowloom_session": token})
        assert me.status_code == 401
    reasons = [e["refs"]["reason"] for e in running.events("auth.logout_failed")]
    assert reasons == ["signature", "signature", "signature"]


def test_reauth_without_a_session_opens_a_reauthenticated_one(running: Running) -> None:
    with running.browser() as browser:
        assert sign_in(running, browser, reauth="1").status_code == 200
        token = browser.cookies.get("flowloom_session") or ""
    session = running.state.directory.session_for_token(token)
    assert session.via == "saml" and session.reauthenticated_at is not None


def test_disabled_account_cannot_sign_in(running: Running) -> None:
    with running.browser() as browser:
        assert sign_in(running, browser).status_code == 200
    user = running.state.directory.user_by_email("ada@example.test")
    running.state.directory.disable_user(user.id)
    with running.browser() as browser:
        refused = sign_in(running, browser)
        assert refused.status_code == 401
        assert "disabled" in refused.text
    assert running.failures() == ["account"]
    assert len(running.events("auth.login")) == 1
