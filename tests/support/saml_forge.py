"""Hand-made SAML responses, signed with xmlsec1 like an IdP signs them, for refusal tests.

`forge` writes a Response with one Assertion whose every field a test can set (ids,
issuer, audience, recipient, times, subject and its NameID format, attributes with their
NameFormat), then signs the Assertion, the Response or both (the Assertion first, as
IdPs do) with the given key through the xmlsec1 command line (enveloped signature,
RSA-SHA256, exclusive C14N). Tests then tamper with the signed text, drop the
signature, or sign with a key the IdP does not publish; tests/auth/test_saml_idps.py
replays the shapes Okta, Entra ID, Google Workspace and Keycloak send.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

_NS = (
    'xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" '
    'xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion"'
)
_SIGNATURE_TEMPLATE = """<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ds:SignedInfo>
<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<ds:SignatureMethod Algorithm="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"/>
<ds:Reference URI="#{id}">
<ds:Transforms>
<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</ds:Transforms>
<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<ds:DigestValue></ds:DigestValue>
</ds:Reference>
</ds:SignedInfo>
<ds:SignatureValue></ds:SignatureValue>
<ds:KeyInfo><ds:X509Data><ds:X509Certificate></ds:X509Certificate></ds:X509Data></ds:KeyInfo>
</ds:Signature>"""


def _t(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Forgery:
    """The facts of one assertion; defaults make a valid one for `sp` from `issuer`."""

    issuer: str
    audience: str
    recipient: str
    in_response_to: str | None = None
    destination: str | None = None
    """The Response's Destination; the recipient when None."""
    name_id: str = "ada"
    email: str = "ada@example.test"
    name: str = "Ada Lovelace"
    groups: list[str] = field(default_factory=lambda: ["engineering"])
    issued: datetime = field(default_factory=lambda: datetime.now(UTC))
    lifetime: timedelta = timedelta(minutes=5)
    assertion_id: str = field(default_factory=lambda: "_" + secrets.token_hex(20))
    response_id: str = field(default_factory=lambda: "_" + secrets.token_hex(20))
    session_index: str = field(default_factory=lambda: "_" + secrets.token_hex(16))
    name_id_format: str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
    attributes: list[tuple[str, str | None, list[str]]] | None = None
    """(Name, NameFormat or None, values) as the IdP sends them; None: uid, email,
    displayName and groups in the basic format."""
    typed_values: bool = True
    """AttributeValues carry xsi:type="xs:string" (most IdPs; Entra ID does not)."""

    def assertion(self, *, signature_slot: bool) -> str:
        until = _t(self.issued + self.lifetime)
        irt = f" InResponseTo={quoteattr(self.in_response_to)}" if self.in_response_to else ""
        basic = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
        sent = self.attributes
        if sent is None:
            sent = [
                ("uid", basic, [self.name_id]),
                ("email", basic, [self.email]),
                ("displayName", basic, [self.name]),
                ("groups", basic, self.groups),
            ]
        typed = (
            ' xmlns:xs="http://www.w3.org/2001/XMLSchema" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="xs:string"'
            if self.typed_values
            else ""
        )
        attributes = "".join(
            f"<saml:Attribute Name={quoteattr(name)}"
            + (f" NameFormat={quoteattr(name_format)}" if name_format else "")
            + ">"
            + "".join(
                f"<saml:AttributeValue{typed}>{escape(v)}</saml:AttributeValue>" for v in values
            )
            + "</saml:Attribute>"
            for name, name_format, values in sent
        )
        signature = _SIGNATURE_TEMPLATE.format(id=self.assertion_id) if signature_slot else ""
        return (
            f'<saml:Assertion {_NS} ID="{self.assertion_id}" Version="2.0" '
            f'IssueInstant="{_t(self.issued)}">'
            f"<saml:Issuer>{escape(self.issuer)}</saml:Issuer>{signature}"
            "<saml:Subject>"
            f"<saml:NameID Format={quoteattr(self.name_id_format)}>"
            f"{escape(self.name_id)}</saml:NameID>"
            '<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
            f'<saml:SubjectConfirmationData NotOnOrAfter="{until}" '
            f"Recipient={quoteattr(self.recipient)}{irt}/>"
            "</saml:SubjectConfirmation></saml:Subject>"
            f'<saml:Conditions NotBefore="{_t(self.issued - timedelta(seconds=30))}" '
            f'NotOnOrAfter="{until}"><saml:AudienceRestriction>'
            f"<saml:Audience>{escape(self.audience)}</saml:Audience>"
            "</saml:AudienceRestriction></saml:Conditions>"
            f'<saml:AuthnStatement AuthnInstant="{_t(self.issued)}" '
            f'SessionIndex="{self.session_index}"><saml:AuthnContext>'
            "<saml:AuthnContextClassRef>"
            "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"
            "</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"
            f"<saml:AttributeStatement>{attributes}</saml:AttributeStatement>"
            "</saml:Assertion>"
        )

    def response(self, assertion: str, *, signature_slot: bool = False) -> str:
        irt = f" InResponseTo={quoteattr(self.in_response_to)}" if self.in_response_to else ""
        signature = _SIGNATURE_TEMPLATE.format(id=self.response_id) if signature_slot else ""
        return (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<samlp:Response {_NS} '
            f'ID="{self.response_id}" Version="2.0" IssueInstant="{_t(self.issued)}" '
            f"Destination={quoteattr(self.destination or self.recipient)}{irt}>"
            f"<saml:Issuer>{escape(self.issuer)}</saml:Issuer>{signature}"
            '<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/>'
            f"</samlp:Status>{assertion}</samlp:Response>"
        )

    def unsigned(self) -> str:
        """The Response XML with an assertion that carries no signature."""
        return self.response(self.assertion(signature_slot=False))

    def response_signed_only(self, key_pem: bytes, cert_pem: bytes) -> str:
        """The Response signed as a whole, its assertion not signed on its own."""
        xml = self.response(self.assertion(signature_slot=False), signature_slot=True)
        return sign(xml, key_pem, cert_pem)

    def signed(self, key_pem: bytes, cert_pem: bytes) -> str:
        """The Response XML with its assertion signed by `key_pem` (via xmlsec1)."""
        return sign(self.response(self.assertion(signature_slot=True)), key_pem, cert_pem)

    def signed_both(self, key_pem: bytes, cert_pem: bytes) -> str:
        """The Assertion signed, then the Response around it (Okta's and Keycloak's way)."""
        inner = sign(self.response(self.assertion(signature_slot=True)), key_pem, cert_pem)
        issuer = f"<saml:Issuer>{escape(self.issuer)}</saml:Issuer>"
        slot = _SIGNATURE_TEMPLATE.format(id=self.response_id)
        at = inner.index(issuer) + len(issuer)  # the Response's Issuer comes first
        return sign(inner[:at] + slot + inner[at:], key_pem, cert_pem)


def sign(xml: str, key_pem: bytes, cert_pem: bytes) -> str:
    """Fill every signature template in `xml` with xmlsec1, using this key and cert."""
    with tempfile.TemporaryDirectory(prefix="saml-forge-") as tmp:
        folder = Path(tmp)
        (folder / "key.pem").write_bytes(key_pem)
        (folder / "cert.pem").write_bytes(cert_pem)
        (folder / "in.xml").write_text(xml)
        subprocess.run(
            [
                "xmlsec1",
                "--sign",
                "--privkey-pem",
                f"{folder / 'key.pem'},{folder / 'cert.pem'}",
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
                "--id-attr:ID",
                "urn:oasis:names:tc:SAML:2.0:protocol:Response",
                "--output",
                str(folder / "out.xml"),
                str(folder / "in.xml"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        return (folder / "out.xml").read_text()


def encode(xml: str) -> str:
    """As the HTTP-POST binding carries it: base64 of the XML."""
    return base64.b64encode(xml.encode()).decode()
