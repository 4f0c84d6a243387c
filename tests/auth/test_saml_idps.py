"""The assertion shapes Okta, Microsoft Entra ID, Google Workspace and Keycloak send, set
up as docs/auth.md says, replayed against FlowLoom's SAML SP and signed with xmlsec1 as
each IdP signs by default (Response and/or Assertion); attribute names, NameFormats and
NameID formats as each sends them. No hosted IdP is contacted: each IdP is its metadata
(entity id, endpoints, a signing certificate of the test's own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowloom.auth.saml import (
    ACS_PATH,
    METADATA_PATH,
    SamlLoginError,
    SamlServiceProvider,
    SamlSettings,
)
from tests.support.saml_forge import Forgery, encode
from tests.support.simplesamlphp import cert_body, self_signed

PUBLIC = "https://flowloom.example.com"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
UNSPECIFIED_FORMAT = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
CLAIMS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims"
MS_CLAIMS = "http://schemas.microsoft.com/identity/claims"
ENTRA_GROUPS = "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"
ENG_GROUP_ID = "6f4b3c7e-0d5a-4d8e-9b1e-3a2c5f7d9e10"


@dataclass
class Idp:
    """One IdP as FlowLoom sees it: its metadata, and the SP settings docs/auth.md gives."""

    name: str
    entity_id: str
    settings: dict[str, Any]
    has_logout: bool = True
    key: tuple[bytes, bytes] = field(default_factory=lambda: self_signed("idp.test"))

    def metadata(self) -> str:
        sso = f"{self.entity_id.rstrip('/')}/sso"
        logout = (
            '<md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"'
            f' Location="{self.entity_id.rstrip("/")}/slo"/>'
            if self.has_logout
            else ""
        )
        return (
            '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"'
            ' xmlns:ds="http://www.w3.org/2000/09/xmldsig#"'
            f' entityID="{self.entity_id}">'
            '<md:IDPSSODescriptor WantAuthnRequestsSigned="true"'
            ' protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
            '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
            f"{cert_body(self.key[1])}"
            "</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
            f"{logout}"
            '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"'
            f' Location="{sso}"/>'
            "</md:IDPSSODescriptor></md:EntityDescriptor>"
        )

    def sp(self, folder: Path, **overrides: Any) -> SamlServiceProvider:
        folder.mkdir(parents=True, exist_ok=True)
        key, cert = self_signed("flowloom-sp.test")
        (folder / "sp.key").write_bytes(key)
        (folder / "sp.crt").write_bytes(cert)
        (folder / "idp.xml").write_text(self.metadata())
        data: dict[str, Any] = {
            "idp_metadata_file": str(folder / "idp.xml"),
            "sp_key_file": str(folder / "sp.key"),
            "sp_cert_file": str(folder / "sp.crt"),
            "role_map": {"engineering": ["alpha:developer"], ENG_GROUP_ID: ["alpha:developer"]},
            **self.settings,
            **overrides,
        }
        return SamlServiceProvider(SamlSettings.from_mapping(data, public_url=PUBLIC))


OKTA = Idp(
    "okta",
    "http://www.okta.com/exk1fcia6d6EMsf331d8",
    {"name_id_format": "persistent"},
)
ENTRA = Idp(
    "entra",
    "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/",
    {
        "name_id_format": "persistent",
        "email_attribute": f"{CLAIMS}/emailaddress",
        "name_attribute": f"{MS_CLAIMS}/displayname",
        "groups_attribute": ENTRA_GROUPS,
    },
)
GOOGLE = Idp(
    "google",
    "https://accounts.google.com/o/saml2?idpid=C01abcd2e",
    {"name_id_format": "email"},
    has_logout=False,
)
KEYCLOAK = Idp(
    "keycloak",
    "https://keycloak.example.com/realms/flowloom",
    {"name_id_format": "persistent"},
)


def _facts(idp: Idp, sp: SamlServiceProvider, request_id: str | None) -> Forgery:
    facts = Forgery(
        issuer=idp.entity_id,
        audience=sp.settings.entity_id,
        recipient=sp.settings.acs_url,
        in_response_to=request_id,
    )
    if idp is OKTA:
        # Okta: NameID "Persistent" = the Okta user id; Attribute Statements in the Basic
        # format; the Group Attribute Statement "groups" with the group names.
        facts.name_id = "00u1abcd2EFGH3ijk4l5"
        facts.attributes = [
            ("email", BASIC, ["ada@example.com"]),
            ("displayName", BASIC, ["Ada Lovelace"]),
            ("groups", BASIC, ["Everyone", "engineering"]),
        ]
    elif idp is ENTRA:
        # Entra ID: claim URIs with no NameFormat, untyped values, groups as object ids,
        # the object id as a persistent NameID; tenant and object id claims beside.
        object_id = "0c2a7b4e-5f61-4a2b-9c8d-7e6f5a4b3c2d"
        facts.name_id = object_id
        facts.typed_values = False
        facts.attributes = [
            (f"{MS_CLAIMS}/tenantid", None, ["72f988bf-86f1-41af-91ab-2d7cd011db47"]),
            (f"{MS_CLAIMS}/objectidentifier", None, [object_id]),
            (f"{MS_CLAIMS}/displayname", None, ["Ada Lovelace"]),
            (f"{CLAIMS}/emailaddress", None, ["ada@example.com"]),
            (f"{CLAIMS}/givenname", None, ["Ada"]),
            (f"{CLAIMS}/surname", None, ["Lovelace"]),
            (f"{CLAIMS}/name", None, ["ada@example.com"]),
            (ENTRA_GROUPS, None, [ENG_GROUP_ID, "1d2e3f4a-5b6c-7d8e-9f0a-1b2c3d4e5f6a"]),
        ]
    elif idp is GOOGLE:
        # Google: NameID EMAIL = the primary email; mapped app attributes, unspecified
        # NameFormat; the Group membership mapping sends group names.
        facts.name_id = "ada@example.com"
        facts.name_id_format = EMAIL
        facts.attributes = [
            ("displayName", UNSPECIFIED_FORMAT, ["Ada"]),
            ("groups", UNSPECIFIED_FORMAT, ["engineering"]),
        ]
    else:
        # Keycloak: persistent NameID ("G-" + uuid), User Property and Group list mappers
        # in the Basic format (full group path off).
        facts.name_id = "G-5a1f0c4e-6a4d-4b8e-8f55-2f7e1d3c9b0a"
        facts.attributes = [
            ("email", BASIC, ["ada@example.com"]),
            ("displayName", BASIC, ["ada"]),
            ("groups", BASIC, ["engineering"]),
        ]
    return facts


def _signed(idp: Idp, facts: Forgery) -> str:
    """Signed as each IdP does with docs/auth.md's settings: Okta and Keycloak sign the
    Response and the Assertion; Entra ID ("Sign SAML assertion") and Google (signed
    response off) the Assertion only."""
    key, cert = idp.key
    if idp in (OKTA, KEYCLOAK):
        return facts.signed_both(key, cert)
    return facts.signed(key, cert)


EXPECTED = {
    "okta": ("00u1abcd2EFGH3ijk4l5", "ada@example.com", "Ada Lovelace", "engineering"),
    "entra": (
        "0c2a7b4e-5f61-4a2b-9c8d-7e6f5a4b3c2d",
        "ada@example.com",
        "Ada Lovelace",
        ENG_GROUP_ID,
    ),
    "google": ("ada@example.com", "ada@example.com", "Ada", "engineering"),
    "keycloak": ("G-5a1f0c4e-6a4d-4b8e-8f55-2f7e1d3c9b0a", "ada@example.com", "ada", "engineering"),
}


@pytest.mark.parametrize("idp", [OKTA, ENTRA, GOOGLE, KEYCLOAK], ids=lambda i: i.name)
def test_each_idps_assertion_shape_signs_in_with_the_documented_settings(
    idp: Idp, tmp_path: Path
) -> None:
    sp = idp.sp(tmp_path / idp.name)
    request = sp.begin()
    facts = _facts(idp, sp, request.request_id)
    identity = sp.finish(encode(_signed(idp, facts)), expected_request=request.request_id)
    subject, email, name, group = EXPECTED[idp.name]
    assert (identity.idp, identity.subject, identity.email, identity.name) == (
        idp.entity_id,
        subject,
        email,
        name,
    )
    assert group in identity.groups
    assert sp.settings.roles.roles_for(identity.groups)  # the group maps to a role
    # Logout goes to the IdP's SLO where it has one; Google has none.
    logout = sp.logout_request(identity.name_id, identity.session_index)
    assert (logout is not None) == idp.has_logout
    # A copy whose email was changed after signing is refused, whatever was signed.
    again = sp.begin()
    facts.in_response_to = again.request_id
    facts.assertion_id, facts.response_id = "_" + "a1" * 20, "_" + "b2" * 20
    tampered = _signed(idp, facts).replace("ada@example.com", "eve@example.com")
    with pytest.raises(SamlLoginError) as info:
        sp.finish(encode(tampered), expected_request=again.request_id)
    assert info.value.reason == "signature"


def test_keycloaks_default_response_only_signature_is_refused(tmp_path: Path) -> None:
    """Keycloak signs only the document unless "Sign assertions" is on (docs/auth.md)."""
    sp = KEYCLOAK.sp(tmp_path / "kc")
    request = sp.begin()
    facts = _facts(KEYCLOAK, sp, request.request_id)
    xml = facts.response_signed_only(*KEYCLOAK.key)
    with pytest.raises(SamlLoginError) as info:
        sp.finish(encode(xml), expected_request=request.request_id)
    assert info.value.reason == "signature"


def test_entra_claims_are_not_found_under_the_short_names(tmp_path: Path) -> None:
    """Without the claim URIs in the settings, Entra's email and groups are not read:
    the names must be set exactly (docs/auth.md)."""
    sp = ENTRA.sp(tmp_path / "entra-plain", email_attribute="email", groups_attribute="groups")
    request = sp.begin()
    facts = _facts(ENTRA, sp, request.request_id)
    identity = sp.finish(encode(_signed(ENTRA, facts)), expected_request=request.request_id)
    assert identity.email is None and identity.groups == ()


def test_googles_test_login_is_idp_initiated(tmp_path: Path) -> None:
    sp = GOOGLE.sp(tmp_path / "google-tile", allow_idp_initiated=True)
    facts = _facts(GOOGLE, sp, None)
    identity = sp.finish(encode(_signed(GOOGLE, facts)), expected_request=None)
    assert identity.subject == "ada@example.com" and identity.in_response_to is None
    strict = GOOGLE.sp(tmp_path / "google-strict")
    facts = _facts(GOOGLE, strict, None)
    with pytest.raises(SamlLoginError) as info:
        strict.finish(encode(_signed(GOOGLE, facts)), expected_request=None)
    assert info.value.reason == "unsolicited"
    assert METADATA_PATH in strict.settings.entity_id and ACS_PATH in strict.settings.acs_url
