"""Single sign-on through the real server app on loopback, against a real OIDC provider.

The browser is an httpx client with a cookie jar; the server runs under uvicorn in a
thread; the provider is tests.support.oidc_provider. Every refusal must answer 401 and
leave an auth.login_failed event, with its reason, in the instance ledger.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import uvicorn

from flowloom.auth.oidc import CALLBACK_PATH, OidcClient, OidcSettings
from flowloom.server import INSTANCE_PROJECT
from flowloom.server.app import create_app
from flowloom.server.build import build_server
from flowloom.server.settings import ServerSettings
from flowloom.server.state import ServerState
from tests.support.oidc_provider import OidcProvider, ProviderUser

LOGIN = "/api/v1/auth/oidc/login"
SECRET = "s3cret-for-tests"


@dataclass
class Running:
    """A server on loopback with single sign-on configured against `idp`."""

    url: str
    state: ServerState
    idp: OidcProvider
    oidc: OidcClient

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=True, timeout=20)

    def events(
        self, kind: str | None = None, project: str = INSTANCE_PROJECT
    ) -> list[dict[str, Any]]:
        """Envelopes of a ledger (the instance's: security events), oldest first."""
        ledger = self.state.ledger(project)
        found = [json.loads(ledger.entry(i).envelope) for i in range(ledger.size())]
        return [e for e in found if kind is None or e["kind"] == kind]

    def failures(self) -> list[str]:
        return [e["refs"]["reason"] for e in self.events("auth.login_failed")]


def _free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    user = ProviderUser(
        subject="sso-ada", email="ada@example.test", groups=["engineering", "secops"]
    )
    with OidcProvider(user=user) as provider:
        yield provider


def _serve(
    database: str, home: Path, idp: OidcProvider, *, public_url: str | None = None
) -> Iterator[Running]:
    sock = _free_socket()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = ServerSettings(
        database=database, home=home, host="127.0.0.1", port=port, public_url=public_url or url
    )
    redirect_uri = url + CALLBACK_PATH
    idp.register_client("flowloom", [redirect_uri], secret=SECRET)
    oidc_settings = OidcSettings.from_mapping(
        {
            "issuer": idp.issuer,
            "client_id": "flowloom",
            "client_secret": SECRET,
            "redirect_uri": redirect_uri,
            "role_map": {
                "engineering": ["alpha:developer", "beta:developer"],
                "secops": ["*:auditor"],
                "approvers": ["alpha:approver"],
            },
        }
    )
    state = build_server(settings)
    http = httpx.Client()
    oidc = OidcClient(oidc_settings, http)
    state.oidc = oidc
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
        yield Running(url=url, state=state, idp=idp, oidc=oidc)
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()
        http.close()
        state.close()


@pytest.fixture
def running(tmp_path: Path, idp: OidcProvider) -> Iterator[Running]:
    yield from _serve(str(tmp_path / "server.db"), tmp_path / "home", idp)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def running_any(
    request: pytest.FixtureRequest, tmp_path: Path, idp: OidcProvider
) -> Iterator[Running]:
    if request.param == "postgres":
        database = request.getfixturevalue("pg_url")
    else:
        database = str(tmp_path / "server.db")
    yield from _serve(database, tmp_path / "home", idp)


def login_url(redirect: str = "/api/v1/me", **extra: str) -> str:
    return LOGIN + "?" + urlencode({"redirect": redirect, **extra})


def provider_callback(browser: httpx.Client, **extra: str) -> str:
    """Start a login and let the provider answer; the callback URL it sends back."""
    start = browser.get(login_url(**extra), follow_redirects=False)
    assert start.status_code == 302, start.text
    answer = httpx.get(start.headers["location"], cookies=browser.cookies)
    assert answer.status_code == 302, answer.text
    location: str = answer.headers["location"]
    return location


# -- the good path --------------------------------------------------------------------


def test_sso_login_creates_user_with_mapped_roles_and_a_session(running_any: Running) -> None:
    run = running_any
    with run.browser() as browser:
        me = browser.get(login_url())
        assert me.status_code == 200, me.text
        assert str(me.url) == run.url + "/api/v1/me"
        body = me.json()
        assert body["email"] == "ada@example.test"
        assert body["name"] == "Ada Lovelace"
        assert body["via"] == "session"
        assert body["grants"] == {"alpha": ["developer"], "*": ["auditor"]}
        # The hops: login → provider → callback → the page asked for.
        hops = [str(r.url) for r in me.history]
        assert hops[0].startswith(run.url + LOGIN)
        assert hops[1].startswith(run.idp.issuer + "/authorize")
        assert hops[2].startswith(run.url + CALLBACK_PATH)
        assert browser.cookies.get("flowloom_session")
        set_cookie = me.history[2].headers.get_list("set-cookie")
        session_cookie = next(c for c in set_cookie if c.startswith("flowloom_session="))
        assert "HttpOnly" in session_cookie
        assert "samesite=lax" in session_cookie.lower()
        assert "Secure" not in session_cookie  # public URL is plain http here
        assert me.history[2].headers["cache-control"] == "no-store"

    user = run.state.directory.user_by_email("ada@example.test")
    assert user.oidc_issuer == run.idp.issuer and user.oidc_subject == "sso-ada"
    logins = run.events("auth.login")
    assert len(logins) == 1
    assert logins[0]["refs"]["method"] == "oidc"
    assert logins[0]["actor"]["id"] == user.id
    assert len(run.events("auth.user_created")) == 1
    granted = [
        (e["refs"]["project"], e["refs"]["role"])
        for where in (INSTANCE_PROJECT, "alpha")
        for e in run.events("auth.role_granted", where)
    ]
    assert granted == [("*", "auditor"), ("alpha", "developer")]
    skipped = run.events("auth.role_mapping_skipped")
    assert [e["refs"]["roles"] for e in skipped] == [["beta:developer"]]
    assert run.failures() == []

    # Signing in again: the same user, no role granted twice, a second session.
    with run.browser() as browser:
        assert browser.get(login_url()).json()["user_id"] == user.id
    assert len(run.events("auth.login")) == 2
    assert len(run.events("auth.user_created")) == 1
    assert len(run.events("auth.role_granted")) + len(run.events("auth.role_granted", "alpha")) == 2


def test_new_group_adds_its_role_at_next_login(running: Running) -> None:
    with running.browser() as browser:
        assert browser.get(login_url()).json()["grants"]["alpha"] == ["developer"]
    running.idp.user.groups.append("approvers")
    with running.browser() as browser:
        grants = browser.get(login_url()).json()["grants"]
    assert sorted(grants["alpha"]) == ["approver", "developer"]


def test_session_cookie_is_secure_behind_https(tmp_path: Path, idp: OidcProvider) -> None:
    for run in _serve(
        str(tmp_path / "s.db"), tmp_path / "home", idp, public_url="https://flowloom.example.test"
    ):
        with run.browser() as browser:
            start = browser.get(login_url(), follow_redirects=False)
            state_cookie = next(
                c
                for c in start.headers.get_list("set-cookie")
                if c.startswith("flowloom_oidc_state=")
            )
            assert "Secure" in state_cookie and "HttpOnly" in state_cookie
            # The browser would send it back over https; this test talks plain http.
            state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
            callback = httpx.get(start.headers["location"]).headers["location"]
            browser.cookies.set("flowloom_oidc_state", state)
            done = browser.get(callback, follow_redirects=False)
        assert done.status_code == 302, done.text
        cookies = done.headers.get_list("set-cookie")
        session_cookie = next(c for c in cookies if c.startswith("flowloom_session="))
        assert "Secure" in session_cookie and "HttpOnly" in session_cookie


def test_reauth_marks_the_session_reauthenticated(running: Running) -> None:
    with running.browser() as browser:
        me = browser.get(login_url())
        assert me.status_code == 200
        token = browser.cookies["flowloom_session"]
        session = running.state.directory.session_for_token(token)
        assert session.reauthenticated_at is None
        again = browser.get(login_url(reauth="1"))
        assert again.status_code == 200, again.text
        assert browser.cookies["flowloom_session"] == token  # the same session
    params = running.idp.authorize_params[-1]
    assert params["prompt"] == "login" and params["max_age"] == "0"
    session = running.state.directory.session_for_token(token)
    assert session.reauthenticated_at is not None
    events = running.events("auth.reauthenticated")
    assert len(events) == 1 and events[0]["refs"]["session_id"] == session.id
    assert len(running.events("auth.login")) == 1


def test_reauth_without_a_session_opens_a_reauthenticated_one(running: Running) -> None:
    with running.browser() as browser:
        assert browser.get(login_url(reauth="1")).status_code == 200
        session = running.state.directory.session_for_token(browser.cookies["flowloom_session"])
    assert session.via == "oidc"
    assert session.reauthenticated_at is not None
    assert len(running.events("auth.login")) == 1


def test_reauth_as_another_user_is_refused(running: Running) -> None:
    with running.browser() as browser:
        assert browser.get(login_url()).status_code == 200
        token = browser.cookies["flowloom_session"]
        running.idp.user = ProviderUser(subject="sso-bob", email="bob@example.test", name="Bob")
        refused = browser.get(login_url(reauth="1"))
        assert refused.status_code == 401, refused.text
    assert running.failures() == ["reauth_user"]
    assert running.state.directory.session_for_token(token).reauthenticated_at is None


def test_reauth_refused_when_provider_skips_the_prompt(running: Running) -> None:
    with running.browser() as browser:
        assert browser.get(login_url()).status_code == 200
        running.idp.session_auth_time = int(time.time()) - 3600
        running.idp.misbehaviour.ignore_reauth = True
        assert browser.get(login_url(reauth="1")).status_code == 401
    assert running.failures() == ["reauth"]


# -- refusals -------------------------------------------------------------------------


BAD_TOKENS: dict[str, tuple[Callable[[OidcProvider], None], str]] = {
    "wrong-audience": (lambda p: setattr(p.misbehaviour, "audience", "other-client"), "audience"),
    "expired": (lambda p: setattr(p.misbehaviour, "expired", True), "expired"),
    "bad-signature": (lambda p: setattr(p.misbehaviour, "foreign_key", True), "signature"),
    "other-issuer": (lambda p: setattr(p.misbehaviour, "issuer", "https://evil.test"), "issuer"),
    "no-nonce": (lambda p: setattr(p.misbehaviour, "omit_nonce", True), "nonce"),
    "other-nonce": (lambda p: setattr(p.misbehaviour, "nonce", "not-yours"), "nonce"),
    "no-kid": (lambda p: setattr(p.misbehaviour, "omit_kid", True), "missing_kid"),
    "hmac": (lambda p: setattr(p.misbehaviour, "hs256_with_secret", True), "algorithm"),
    "denied": (
        lambda p: setattr(p.misbehaviour, "callback_error", "access_denied"),
        "provider_error",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_bad_token_gives_401_and_an_audit_event(running: Running, case: str) -> None:
    spoil, reason = BAD_TOKENS[case]
    spoil(running.idp)
    with running.browser() as browser:
        answer = browser.get(login_url())
        assert answer.status_code == 401, answer.text
        assert str(answer.url).startswith(running.url + CALLBACK_PATH)
        error = answer.json()["error"]
        assert error["code"] == "unauthorized"
        assert "eyJ" not in answer.text  # no token echoed
        assert "flowloom_session" not in browser.cookies
        assert browser.get("/api/v1/me").status_code == 401
    assert running.failures() == [reason]
    assert running.events("auth.login") == []
    failed = running.events("auth.login_failed")[0]
    assert failed["refs"]["method"] == "oidc"
    assert failed["refs"]["client"] == "127.0.0.1"


def test_callback_replay_is_refused(running: Running) -> None:
    with running.browser() as browser:
        callback = provider_callback(browser)
        first = browser.get(callback)
        assert first.status_code == 200, first.text
        browser.cookies.clear()
        browser.cookies.set("flowloom_oidc_state", parse_qs(urlsplit(callback).query)["state"][0])
        replay = browser.get(callback)
        assert replay.status_code == 401, replay.text
        assert "flowloom_session" not in browser.cookies
    assert running.failures() == ["state"]
    assert len(running.events("auth.login")) == 1


def test_callback_from_another_browser_is_refused(running: Running) -> None:
    """Login CSRF: an attacker's own callback link must not sign the victim in."""
    with running.browser() as attacker:
        callback = provider_callback(attacker)
    with running.browser() as victim:
        answer = victim.get(callback)
        assert answer.status_code == 401, answer.text
        assert "flowloom_session" not in victim.cookies
    assert running.failures() == ["state_binding"]
    assert running.events("auth.login") == []


def test_callback_without_state_is_refused(running: Running) -> None:
    with running.browser() as browser:
        assert browser.get(CALLBACK_PATH + "?code=abc").status_code == 401
        assert browser.get(CALLBACK_PATH + "?code=abc&state=made-up").status_code == 401
    assert running.failures() == ["state", "state"]


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "evil.example"]
)
def test_open_redirect_is_refused(running: Running, target: str) -> None:
    with running.browser() as browser:
        answer = browser.get(login_url(redirect=target))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == "bad_request"
    assert running.idp.count("/authorize") == 0


def test_provider_down_gives_401_and_an_audit_event(running: Running) -> None:
    running.idp.stop()
    with running.browser() as browser:
        answer = browser.get(login_url())
    assert answer.status_code == 401, answer.text
    assert "identity provider" in answer.json()["error"]["message"]
    assert running.failures() == ["unreachable"]


def test_sso_not_configured_is_404(running: Running) -> None:
    running.state.oidc = None
    with running.browser() as browser:
        answer = browser.get(login_url())
    assert answer.status_code == 404
    assert "[server.oidc]" in answer.json()["error"]["hint"]
