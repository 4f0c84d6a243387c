"""SAML service provider against a real IdP (SimpleSAMLphp on loopback), and refusals of
hand-made assertions signed with xmlsec1: tampered, unsigned, wrongly signed, expired,
not yet valid, for another audience or recipient, unsolicited, or answering another
request."""

from __future__ import annotations

import base64
import re
import secrets
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from flowloom.auth.rolemap import RoleGrant
from flowloom.auth.saml import (
    ACS_PATH,
    METADATA_PATH,
    PERSISTENT,
    SLS_PATH,
    NameIdRef,
    SamlIdentity,
    SamlLoginError,
    SamlServiceProvider,
    SamlSettings,
    saml_config,
)
from flowloom.errors import AuthError, ConfigError
from tests.support.saml_forge import Forgery, encode
from tests.support.simplesamlphp import (
    RemoteSp,
    SimpleSamlIdp,
    form_fields,
    self_signed,
    sign_in_at_idp,
)

PUBLIC = "http://127.0.0.1:9"  # never contacted: the SAMLResponse is read off the IdP's page


def make_sp(
    idp: SimpleSamlIdp, folder: Path, *, encrypt: bool = False, **overrides: Any
) -> SamlServiceProvider:
    """A FlowLoom SP with its own key and entity id, registered with the IdP."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = self_signed("flowloom-sp.test")
    (folder / "sp.key").write_bytes(key)
    (folder / "sp.crt").write_bytes(cert)
    (folder / "idp.xml").write_text(idp.metadata_xml())
    entity_id = f"{PUBLIC}{METADATA_PATH}/{secrets.token_hex(4)}"
    idp.register(RemoteSp(entity_id, PUBLIC + ACS_PATH, PUBLIC + SLS_PATH, cert, encrypt=encrypt))
    data: dict[str, Any] = {
        "idp_metadata_file": str(folder / "idp.xml"),
        "sp_key_file": str(folder / "sp.key"),
        "sp_cert_file": str(folder / "sp.crt"),
        "entity_id": entity_id,
        "role_map": {"engineering": ["alpha:developer"], "secops": ["*:auditor"]},
        "default_roles": ["alpha:auditor"],
    }
    data.update(overrides)
    return SamlServiceProvider(SamlSettings.from_mapping(data, public_url=PUBLIC))


@pytest.fixture
def sp(saml_idp: SimpleSamlIdp, tmp_path: Path) -> SamlServiceProvider:
    return make_sp(saml_idp, tmp_path / "sp")


def login(
    sp: SamlServiceProvider, *, reauth: bool = False, browser: httpx.Client | None = None
) -> SamlIdentity:
    request = sp.begin(reauth=reauth)
    with httpx.Client(timeout=30) if browser is None else _same(browser) as client:
        page = sign_in_at_idp(client, request.url)
    fields = form_fields(page.text)
    assert fields["RelayState"] == request.relay_state
    return sp.finish(fields["SAMLResponse"], expected_request=request.request_id, reauth=reauth)


class _same:
    """Use a caller's browser in a with-statement without closing it."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def __enter__(self) -> httpx.Client:
        return self.client

    def __exit__(self, *exc: object) -> None:
        return None


# -- the good path against SimpleSAMLphp ----------------------------------------------


def test_sp_initiated_login_gives_the_signed_identity(
    sp: SamlServiceProvider, saml_idp: SimpleSamlIdp
) -> None:
    identity = login(sp)
    assert identity.idp == saml_idp.entity_id
    assert identity.subject == "ada"
    assert identity.email == "ada@example.test"
    assert identity.name == "Ada Lovelace"
    assert identity.groups == ("engineering", "secops")
    assert identity.session_index
    assert identity.expires_at > datetime.now(UTC)
    assert sp.roles_for(identity.groups) == {
        RoleGrant("alpha", "developer"),
        RoleGrant("*", "auditor"),
        RoleGrant("alpha", "auditor"),
    }


def test_authn_request_is_signed_and_force_authn_only_on_reauth(sp: SamlServiceProvider) -> None:
    plain = parse_qs(urlsplit(sp.begin().url).query)
    assert plain["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert plain["Signature"] and plain["SAMLRequest"] and plain["RelayState"]
    assert b"ForceAuthn" not in inflate(plain["SAMLRequest"][0])
    again = parse_qs(urlsplit(sp.begin(reauth=True).url).query)
    assert b'ForceAuthn="true"' in inflate(again["SAMLRequest"][0])


def inflate(value: str) -> bytes:
    """The XML of an HTTP-Redirect binding message (raw DEFLATE, then base64)."""
    return zlib.decompress(base64.b64decode(value), -15)


def test_force_authn_makes_the_idp_ask_again(sp: SamlServiceProvider) -> None:
    with httpx.Client(timeout=30) as browser:
        first = login(sp, browser=browser)
        # With an IdP session, a plain request comes straight back without a form...
        silent = browser.get(sp.begin().url, follow_redirects=True)
        assert "SAMLResponse" in silent.text and 'name="AuthState"' not in silent.text
        # ...but ForceAuthn shows the login form again.
        forced = browser.get(sp.begin(reauth=True).url, follow_redirects=True)
        assert 'name="AuthState"' in forced.text
        again = login(sp, reauth=True, browser=browser)
    assert again.subject == first.subject
    assert again.authn_instant is not None and first.authn_instant is not None


def test_encrypted_assertion_is_accepted(saml_idp: SimpleSamlIdp, tmp_path: Path) -> None:
    sp = make_sp(saml_idp, tmp_path / "enc", encrypt=True)
    request = sp.begin()
    with httpx.Client(timeout=30) as browser:
        page = sign_in_at_idp(browser, request.url)
    xml = base64.b64decode(form_fields(page.text)["SAMLResponse"])
    assert b"EncryptedAssertion" in xml and b"ada@example.test" not in xml
    identity = sp.finish(
        form_fields(page.text)["SAMLResponse"], expected_request=request.request_id
    )
    assert identity.email == "ada@example.test"


def test_idp_initiated_login_only_when_allowed(saml_idp: SimpleSamlIdp, tmp_path: Path) -> None:
    strict = make_sp(saml_idp, tmp_path / "strict")
    with httpx.Client(timeout=30) as browser:
        page = sign_in_at_idp(
            browser, saml_idp.idp_initiated_url(strict.settings.entity_id, "/projects/alpha")
        )
    fields = form_fields(page.text)
    assert fields["RelayState"] == "/projects/alpha"
    with pytest.raises(SamlLoginError) as info:
        strict.finish(fields["SAMLResponse"], expected_request=None)
    assert info.value.reason == "unsolicited"

    open_sp = make_sp(saml_idp, tmp_path / "open", allow_idp_initiated=True)
    with httpx.Client(timeout=30) as browser:
        page = sign_in_at_idp(browser, saml_idp.idp_initiated_url(open_sp.settings.entity_id))
    identity = open_sp.finish(form_fields(page.text)["SAMLResponse"], expected_request=None)
    assert identity.subject == "ada" and identity.in_response_to is None


def test_answer_to_another_request_is_refused(sp: SamlServiceProvider) -> None:
    request = sp.begin()
    with httpx.Client(timeout=30) as browser:
        page = sign_in_at_idp(browser, request.url)
    other = sp.begin()
    with pytest.raises(SamlLoginError) as info:
        sp.finish(form_fields(page.text)["SAMLResponse"], expected_request=other.request_id)
    assert info.value.reason in ("unsolicited", "in_response_to")
    # Nor may it pass as IdP-initiated when it answers a request.
    open_sp_refusal = pytest.raises(SamlLoginError)
    with open_sp_refusal as again:
        sp.finish(form_fields(page.text)["SAMLResponse"], expected_request=None)
    assert again.value.reason == "unsolicited"


def test_metadata_names_entity_endpoints_and_certificate(sp: SamlServiceProvider) -> None:
    xml = sp.metadata()
    assert f'entityID="{sp.settings.entity_id}"' in xml
    assert PUBLIC + ACS_PATH in xml and PUBLIC + SLS_PATH in xml
    assert 'AuthnRequestsSigned="true"' in xml and 'WantAssertionsSigned="true"' in xml
    cert = Path(sp.settings.sp_cert_file).read_text().splitlines()[1]
    assert cert in xml.replace("\n", "")


# -- forged assertions -------------------------------------------------------------------


def forgery(sp: SamlServiceProvider, idp: SimpleSamlIdp, **changes: Any) -> tuple[Forgery, str]:
    request = sp.begin()
    facts = Forgery(
        issuer=idp.entity_id,
        audience=sp.settings.entity_id,
        recipient=sp.settings.acs_url,
        in_response_to=request.request_id,
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts, request.request_id


def refused(sp: SamlServiceProvider, xml: str, request_id: str | None) -> str:
    with pytest.raises(SamlLoginError) as info:
        sp.finish(encode(xml), expected_request=request_id)
    assert isinstance(info.value, AuthError)
    return info.value.reason


def test_a_well_forged_assertion_with_the_idp_key_is_accepted(
    sp: SamlServiceProvider, saml_idp: SimpleSamlIdp
) -> None:
    """The control for the refusals below: the forge itself makes valid assertions."""
    facts, request_id = forgery(sp, saml_idp)
    xml = facts.signed(saml_idp.key_pem, saml_idp.cert_pem)
    identity = sp.finish(encode(xml), expected_request=request_id)
    assert identity.subject == "ada" and identity.assertion_id == facts.assertion_id


def test_unsigned_assertion_is_refused(sp: SamlServiceProvider, saml_idp: SimpleSamlIdp) -> None:
    facts, request_id = forgery(sp, saml_idp)
    assert refused(sp, facts.unsigned(), request_id) == "signature"


def test_tampered_assertion_is_refused(sp: SamlServiceProvider, saml_idp: SimpleSamlIdp) -> None:
    facts, request_id = forgery(sp, saml_idp)
    xml = facts.signed(saml_idp.key_pem, saml_idp.cert_pem)
    assert "engineering" in xml
    assert refused(sp, xml.replace("engineering", "admins"), request_id) == "signature"
    assert refused(sp, xml.replace(">ada<", ">eve<"), request_id) == "signature"


def test_assertion_signed_by_another_key_is_refused(
    sp: SamlServiceProvider, saml_idp: SimpleSamlIdp
) -> None:
    facts, request_id = forgery(sp, saml_idp)
    key, cert = self_signed("not-the-idp")
    assert refused(sp, facts.signed(key, cert), request_id) == "signature"


def test_response_signed_but_assertion_not_is_refused(
    sp: SamlServiceProvider, saml_idp: SimpleSamlIdp
) -> None:
    """A signature over something else (here: nothing) does not vouch for the assertion."""
    facts, request_id = forgery(sp, saml_idp)
    xml = facts.response_signed_only(saml_idp.key_pem, saml_idp.cert_pem)
    assert refused(sp, xml, request_id) == "signature"


def test_expired_assertion_is_refused(sp: SamlServiceProvider, saml_idp: SimpleSamlIdp) -> None:
    facts, request_id = forgery(
        sp, saml_idp, issued=datetime.now(UTC) - timedelta(hours=1), lifetime=timedelta(minutes=5)
    )
    reason = refused(sp, facts.signed(saml_idp.key_pem, saml_idp.cert_pem), request_id)
    assert reason == "expired"


def test_assertion_from_the_future_is_refused(
    sp: SamlServiceProvider, saml_idp: SimpleSamlIdp
) -> None:
    facts, request_id = forgery(sp, saml_idp, issued=datetime.now(UTC) + timedelta(hours=1))
    reason = refused(sp, facts.signed(saml_idp.key_pem, saml_idp.cert_pem), request_id)
    assert reason == "not_yet_valid"


def test_wrong_audience_is_refused(sp: SamlServiceProvider, saml_idp: SimpleSamlIdp) -> None:
    facts, request_id = forgery(sp, saml_idp, audience="https://other-sp.example.com/metadata")
    reason = refused(sp, facts.signed(saml_idp.key_pem, saml_idp.cert_pem), request_id)
    assert reason == "audience"


def test_wrong_recipient_is_refused(sp: SamlServiceProvider, saml_idp: SimpleSamlIdp) -> None:
    other = "https://other-sp.example.com/acs"
    facts, request_id = forgery(sp, saml_idp, recipient=other, destination=sp.settings.acs_url)
    reason = refused(sp, facts.signed(saml_idp.key_pem, saml_idp.cert_pem), request_id)
    assert reason == "recipient"
    facts, request_id = forgery(sp, saml_idp, destination=other)
    reason = refused(sp, facts.signed(saml_idp.key_pem, saml_idp.cert_pem), request_id)
    assert reason == "destination"


def test_other_issuer_is_refused(sp: SamlServiceProvider, saml_idp: SimpleSamlIdp) -> None:
    facts, request_id = forgery(sp, saml_idp, issuer="https://evil-idp.example.com")
    reason = refused(sp, facts.signed(saml_idp.key_pem, saml_idp.cert_pem), request_id)
    assert reason in ("issuer", "signature", "malformed", "invalid")


def test_not_base64_or_empty_is_refused(sp: SamlServiceProvider) -> None:
    for junk in ("", "%%%not base64%%%", encode("<notsaml/>")):
        with pytest.raises(SamlLoginError):
            sp.finish(junk, expected_request=None)


# -- settings ---------------------------------------------------------------------------


def test_settings_are_validated(saml_idp: SimpleSamlIdp, tmp_path: Path) -> None:
    make_sp(saml_idp, tmp_path)
    base = {
        "idp_metadata_file": str(tmp_path / "idp.xml"),
        "sp_key_file": str(tmp_path / "sp.key"),
        "sp_cert_file": str(tmp_path / "sp.crt"),
    }
    ok = SamlSettings.from_mapping(base, public_url="https://fl.example.com/")
    assert ok.entity_id == "https://fl.example.com" + METADATA_PATH
    assert ok.acs_url == "https://fl.example.com" + ACS_PATH
    assert not ok.allow_idp_initiated
    cases: list[tuple[dict[str, Any], str | None, str]] = [
        ({"colour": "blue"}, "https://fl.example.com", "unknown [server.saml] setting"),
        ({}, None, "public_url"),
        ({}, "http://fl.example.com", "https://"),
        ({"idp_metadata_file": str(tmp_path / "none.xml")}, "https://x.test", "cannot read"),
        ({"idp_metadata_file": str(tmp_path / "sp.crt")}, "https://x.test", "not SAML metadata"),
        ({"sp_key_file": str(tmp_path / "no.key")}, "https://x.test", "does not exist"),
        ({"name_id_format": "transient"}, "https://x.test", "name_id_format"),
        ({"role_map": {"g": ["alpha:wizard"]}}, "https://x.test", "unknown role 'wizard'"),
        ({"allow_idp_initiated": "yes"}, "https://x.test", "allow_idp_initiated"),
        ({"leeway_seconds": 3600}, "https://x.test", "leeway_seconds"),
    ]
    for change, public, words in cases:
        with pytest.raises(ConfigError) as info:
            SamlSettings.from_mapping({**base, **change}, public_url=public)
        assert words in info.value.diagnostics(), (change, info.value.diagnostics())


def test_config_from_table_and_environment() -> None:
    assert saml_config(None, {}) is None
    data = saml_config(
        {"idp_metadata_file": "/etc/flowloom/idp.xml"},
        {
            "FLOWLOOM_SERVER_SAML_ROLE_MAP": '{"admins": ["*:admin"]}',
            "FLOWLOOM_SERVER_SAML_ALLOW_IDP_INITIATED": "true",
            "FLOWLOOM_SERVER_SAML_LEEWAY_SECONDS": "30",
            "FLOWLOOM_SERVER_SAML_DEFAULT_ROLES": "alpha:auditor, beta:auditor",
        },
    )
    assert data == {
        "idp_metadata_file": "/etc/flowloom/idp.xml",
        "role_map": {"admins": ["*:admin"]},
        "allow_idp_initiated": True,
        "leeway_seconds": 30.0,
        "default_roles": ["alpha:auditor", "beta:auditor"],
    }
    with pytest.raises(ConfigError):
        saml_config({}, {"FLOWLOOM_SERVER_SAML_ROLE_MAP": "not json"})


def test_idp_without_single_logout_means_a_local_logout(
    saml_idp: SimpleSamlIdp, tmp_path: Path
) -> None:
    """Google Workspace publishes no SLO endpoint: logout then ends FlowLoom's session only."""
    sp = make_sp(saml_idp, tmp_path / "sp")
    with_slo = sp.logout_request(NameIdRef("ada", PERSISTENT), "_s1")
    assert with_slo is not None and with_slo.url.startswith(saml_idp.slo_url)
    metadata = (tmp_path / "sp" / "idp.xml").read_text()
    stripped = re.sub(r"<md:SingleLogoutService[^>]*/>", "", metadata)
    assert stripped != metadata
    (tmp_path / "no-slo.xml").write_text(stripped)
    no_slo = make_sp(saml_idp, tmp_path / "other", idp_metadata_file=str(tmp_path / "no-slo.xml"))
    assert no_slo.logout_request(NameIdRef("ada", PERSISTENT), "_s1") is None
