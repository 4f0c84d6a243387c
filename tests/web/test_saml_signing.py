"""Signing from the web in a SAML session: the decision page sends the user to the IdP
with ForceAuthn (SimpleSAMLphp asks for the password although its session is alive), and
the fresh re-authentication lets them sign (method saml-reauth)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from flowloom.auth.saml import ACS_PATH, METADATA_PATH, SLS_PATH, SamlServiceProvider, SamlSettings
from tests.server.support import OWN, World, live_server, make_world
from tests.support.simplesamlphp import (
    RemoteSp,
    SimpleSamlIdp,
    form_action,
    form_fields,
    self_signed,
    sign_in_at_idp,
)
from tests.web.support import Populated, csrf_of, populate

_REAUTH_LINK = re.compile(r'href="(/api/v1/auth/saml/login\?reauth=1[^"]*)"')


@dataclass
class Saml:
    world: World
    made: Populated
    url: str

    @property
    def decision_path(self) -> str:
        return f"/ui/projects/{OWN}/decisions/{self.made.decision}"

    def envelopes(self, project: str, kind: str) -> list[dict[str, Any]]:
        ledger = self.world.server.ledger(project)
        return [json.loads(e.envelope) for e in ledger.store.entries(project, kind=kind)]


@pytest.fixture
def saml(tmp_path: Path, saml_idp: SimpleSamlIdp) -> Iterator[Saml]:
    world = make_world(str(tmp_path / "server.db"), tmp_path / "home")
    made = populate(world)
    try:
        with live_server(world.server) as url:
            key, cert = self_signed("flowloom-sp.test")
            (tmp_path / "sp.key").write_bytes(key)
            (tmp_path / "sp.crt").write_bytes(cert)
            (tmp_path / "idp.xml").write_text(saml_idp.metadata_xml())
            saml_idp.register(RemoteSp(url + METADATA_PATH, url + ACS_PATH, url + SLS_PATH, cert))
            settings = SamlSettings.from_mapping(
                {
                    "idp_metadata_file": str(tmp_path / "idp.xml"),
                    "sp_key_file": str(tmp_path / "sp.key"),
                    "sp_cert_file": str(tmp_path / "sp.crt"),
                    "role_map": {"engineering": [f"{OWN}:approver"]},
                },
                public_url=url,
            )
            world.server.saml = SamlServiceProvider(settings)
            yield Saml(world, made, url)
    finally:
        world.close()


def _through_idp(browser: httpx.Client, url: str) -> httpx.Response:
    page = sign_in_at_idp(browser, url)
    return browser.post(form_action(page.text), data=form_fields(page.text))


def test_saml_session_signs_after_force_authn(saml: Saml) -> None:
    with httpx.Client(follow_redirects=True, timeout=30) as browser:
        login = browser.get(saml.url + "/ui/login")
        assert "/api/v1/auth/saml/login?redirect=" in login.text
        start = f"{saml.url}/api/v1/auth/saml/login?redirect={saml.decision_path}"
        page = _through_idp(browser, start)
        assert page.status_code == 200 and page.url.path == saml.decision_path
        assert "Re-authenticate with single sign-on" in page.text
        assert 'name="password"' not in page.text
        found = _REAUTH_LINK.search(page.text)
        assert found, "no re-authentication link"
        link = saml.url + html.unescape(found.group(1))
        assert 'name="AuthState"' in browser.get(link).text  # the IdP asks again
        back = _through_idp(browser, link)
        assert back.status_code == 200 and back.url.path == saml.decision_path
        assert "You re-authenticated at your identity provider" in back.text
        done = browser.post(
            saml.url + saml.decision_path + "/approve",
            data={"csrf_token": csrf_of(back.text), "meaning": "approved", "password": ""},
        )
        assert done.status_code == 200, done.text[:500]
        assert "saml-reauth" in done.text
    [signature] = saml.envelopes(OWN, "signature.apply")
    assert signature["refs"]["method"] == "saml-reauth"
