"""Signing from the web in a single sign-on session (21 CFR Part 11 re-authentication).

A real server on loopback, a real OpenID Connect provider (tests.support.oidc_provider)
and an httpx browser with a cookie jar: the user signs in through the provider, has no
password to re-enter, so the decision page sends them to the provider again with
prompt=login / max_age=0; back on the page, the session's fresh re-authentication lets
them sign, for a short window only.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.auth.oidc import CALLBACK_PATH, OidcClient, OidcSettings
from flowloom.auth.signatures import SigningPolicy
from flowloom.server import INSTANCE_PROJECT
from tests.server.support import OWN, World, live_server, make_world
from tests.support.oidc_provider import OidcProvider, ProviderUser
from tests.web.support import Populated, csrf_of, populate

SECRET = "s3cret-for-tests"
_REAUTH_LINK = re.compile(r'href="(/api/v1/auth/oidc/login\?reauth=1[^"]*)"')


@dataclass
class Sso:
    world: World
    made: Populated
    url: str
    idp: OidcProvider

    @property
    def decision_path(self) -> str:
        return f"/ui/projects/{OWN}/decisions/{self.made.decision}"

    def browser(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, follow_redirects=True, timeout=20)

    def envelopes(self, project: str, kind: str) -> list[dict[str, Any]]:
        ledger = self.world.server.ledger(project)
        return [json.loads(e.envelope) for e in ledger.store.entries(project, kind=kind)]


@pytest.fixture
def sso(tmp_path: Path) -> Iterator[Sso]:
    world = make_world(str(tmp_path / "server.db"), tmp_path / "home")
    made = populate(world)
    user = ProviderUser(subject="sso-ada", email="ada@example.test", groups=["approvers"])
    http = httpx.Client()
    try:
        with OidcProvider(user=user) as idp, live_server(world.server) as url:
            redirect_uri = url + CALLBACK_PATH
            idp.register_client("flowloom", [redirect_uri], secret=SECRET)
            settings = OidcSettings.from_mapping(
                {
                    "issuer": idp.issuer,
                    "client_id": "flowloom",
                    "client_secret": SECRET,
                    "redirect_uri": redirect_uri,
                    "role_map": {"approvers": [f"{OWN}:approver"]},
                }
            )
            world.server.oidc = OidcClient(settings, http)
            yield Sso(world, made, url, idp)
    finally:
        http.close()
        world.close()


def _sign_in_with_sso(sso: Sso, browser: httpx.Client) -> httpx.Response:
    page = browser.get("/api/v1/auth/oidc/login", params={"redirect": sso.decision_path})
    assert page.status_code == 200, page.text[:500]
    assert page.url.path == sso.decision_path
    return page


def _approve(sso: Sso, browser: httpx.Client, page: str, **extra: str) -> httpx.Response:
    return browser.post(
        sso.decision_path + "/approve",
        data={"csrf_token": csrf_of(page), "meaning": "approved", **extra},
    )


def test_sso_session_signs_after_reauthenticating_at_the_provider(sso: Sso) -> None:
    with sso.browser() as browser:
        page = _sign_in_with_sso(sso, browser).text
        # No password to re-enter: the form offers the identity provider instead.
        assert "Ada Lovelace" in page and "Re-authenticate with single sign-on" in page
        assert 'name="password"' not in page and "Sign and approve" not in page
        # Posting anyway, without a fresh sign-in, is refused and nothing is signed.
        refused = _approve(sso, browser, page)
        assert refused.status_code == 401 and 'role="alert"' in refused.text
        assert "fresh sign-in at your identity provider" in refused.text
        assert sso.envelopes(OWN, "signature.apply") == []
        # The link runs the provider's flow again with prompt=login and max_age=0 ...
        found = _REAUTH_LINK.search(page)
        assert found, "no re-authentication link"
        back = browser.get(html.unescape(found.group(1)))
        assert back.status_code == 200 and back.url.path == sso.decision_path
        params = sso.idp.authorize_params[-1]
        assert params["prompt"] == "login" and params["max_age"] == "0"
        # ... and comes back to the decision, now ready to sign without a password.
        fresh = back.text
        assert "You re-authenticated at your identity provider" in fresh
        assert "Sign and approve" in fresh and 'name="password"' not in fresh
        done = _approve(sso, browser, fresh, password="")
        assert done.status_code == 200, done.text[:500]
        assert "Signed: your signature is ledger entry" in done.text
        assert "oidc-reauth" in done.text  # the signature's method, on the page
    signatures = sso.envelopes(OWN, "signature.apply")
    assert len(signatures) == 1
    refs = signatures[0]["refs"]
    assert refs["method"] == "oidc-reauth" and refs["components"] == ["identity-provider"]
    assert refs["printed_name"] == "Ada Lovelace" and refs["meaning"] == "approved"
    approvals = sso.envelopes(OWN, "decision.approve")
    assert len(approvals) == 1 and approvals[0]["subject"] == sso.made.decision
    reauths = sso.envelopes(INSTANCE_PROJECT, "auth.reauthenticated")
    assert len(reauths) == 1 and reauths[0]["refs"]["method"] == "oidc"


def test_a_reauthentication_is_accepted_for_a_short_window_only(sso: Sso) -> None:
    sso.world.server.signing_policy = SigningPolicy(  # type: ignore[attr-defined]
        sso_reauth_max_age=timedelta(seconds=1)
    )
    with sso.browser() as browser:
        page = _sign_in_with_sso(sso, browser).text
        found = _REAUTH_LINK.search(page)
        assert found
        fresh = browser.get(html.unescape(found.group(1))).text
        assert "Sign and approve" in fresh
        time.sleep(1.3)
        stale = browser.get(sso.decision_path).text
        assert "Re-authenticate with single sign-on" in stale and "Sign and approve" not in stale
        refused = _approve(sso, browser, fresh)
        assert refused.status_code == 401
        assert "fresh sign-in at your identity provider" in refused.text
    assert sso.envelopes(OWN, "signature.apply") == []
    failures = sso.envelopes(OWN, "auth.signature_failed")
    assert [f["refs"]["reason"] for f in failures] == ["reauth_required"]


def test_a_password_session_still_signs_with_its_password(sso: Sso) -> None:
    with sso.browser() as browser:
        page = browser.get(sso.decision_path)
        assert page.status_code == 401 and "Sign in with single sign-on" in page.text
    with sso.browser() as browser:
        form = browser.get("/ui/login")
        browser.post(
            "/ui/login",
            data={
                "email": "approver@example.org",
                "password": "correct horse battery staple",
                "csrf_token": csrf_of(form.text),
                "next": sso.decision_path,
            },
        )
        page = browser.get(sso.decision_path).text
        assert 'name="password"' in page and "Re-authenticate with single sign-on" not in page
        refused = _approve(sso, browser, page, email="approver@example.org")
        assert refused.status_code == 401 and "signing needs your password" in refused.text
