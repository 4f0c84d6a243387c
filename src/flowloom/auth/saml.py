"""SAML 2.0 single sign-on: FlowLoom as a service provider (SP) of one identity provider.

pysaml2 (with the system's xmlsec1) builds and signs the SP's requests and parses the
IdP's answers; this module sets it up strictly and adds what it leaves to the caller:

- every assertion must be signed by the IdP's published key (an encrypted one is
  decrypted with the SP key first, and must still be signed inside);
- exactly one assertion, from the configured IdP, whose AudienceRestriction names this
  SP and whose bearer confirmation names this SP's ACS URL (pysaml2 accepts an assertion
  without audience restriction; FlowLoom does not);
- an answer to a request (InResponseTo) must be the answer to the request this browser
  made; an unsolicited (IdP-initiated) one only when `allow_idp_initiated` is on;
- with re-authentication asked (ForceAuthn, for electronic signatures) the AuthnInstant
  must be recent.

Replay protection (an assertion id seen once, remembered until it expires) and sessions
are the Directory's job; the routes in flowloom.server.routes.saml tie it together.
Every failure is a `SamlLoginError` whose `reason` is a short code for the audit trail.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

from defusedxml.ElementTree import fromstring as defused_fromstring
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, SAMLError
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.metadata import entity_descriptor
from saml2.response import (
    AuthnResponse,
    IncorrectlySigned,
    StatusError,
    UnsolicitedResponse,
    VerificationError,
)
from saml2.s_utils import UnsupportedBinding
from saml2.saml import NameID
from saml2.sigver import SignatureError, SigverError, verify_redirect_signature
from saml2.time_util import str_to_time
from saml2.validate import ResponseLifetimeExceed, ToEarly

from flowloom.auth.rolemap import RoleGrant, RoleMap, groups_from
from flowloom.errors import ConfigError, SignInError

__all__ = [
    "ACS_PATH",
    "ENV_PREFIX",
    "LOGIN_PATH",
    "METADATA_PATH",
    "SLS_PATH",
    "LogoutAnswer",
    "NameIdRef",
    "SamlIdentity",
    "SamlLoginError",
    "SamlRequest",
    "SamlServiceProvider",
    "SamlSettings",
    "saml_config",
]

Clock = Callable[[], datetime]

_BASE: Final = "/api/v1/auth/saml"
METADATA_PATH: Final = _BASE + "/metadata"
LOGIN_PATH: Final = _BASE + "/login"
ACS_PATH: Final = _BASE + "/acs"
SLS_PATH: Final = _BASE + "/sls"
ENV_PREFIX: Final = "FLOWLOOM_SERVER_SAML_"

PERSISTENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
_NAME_ID_FORMATS: Final = {
    "persistent": PERSISTENT,
    "email": "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress",
    "unspecified": "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
}
_TRANSIENT: Final = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
_SETTING_KEYS: Final = frozenset(
    {
        "idp_metadata_file",
        "sp_key_file",
        "sp_cert_file",
        "entity_id",
        "name_id_format",
        "subject_attribute",
        "email_attribute",
        "name_attribute",
        "groups_attribute",
        "role_map",
        "default_roles",
        "allow_idp_initiated",
        "leeway_seconds",
        "reauth_max_age_seconds",
        "replay_ttl_seconds",
    }
)
_MAX_RESPONSE_BYTES: Final = 512 * 1024


class SamlLoginError(SignInError):
    """A SAML sign-in or logout failed; `reason` is a short code for the audit trail."""


@dataclass(frozen=True)
class SamlSettings:
    """How FlowLoom talks to its SAML identity provider (`[server.saml]`)."""

    entity_id: str
    acs_url: str
    sls_url: str
    idp_metadata: str = field(repr=False)
    """The IdP's metadata XML (entity id, endpoints, signing certificates)."""
    sp_key_file: Path
    sp_cert_file: Path
    name_id_format: str = PERSISTENT
    subject_attribute: str | None = None
    """Identify users by this attribute instead of the NameID (e.g. an immutable id)."""
    email_attribute: str = "email"
    name_attribute: str = "displayName"
    groups_attribute: str = "groups"
    roles: RoleMap = field(default_factory=RoleMap)
    allow_idp_initiated: bool = False
    leeway_seconds: float = 60.0
    reauth_max_age_seconds: float = 600.0
    replay_ttl_seconds: float = 86400.0
    """How long an assertion id is remembered when the assertion names no expiry."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, public_url: str | None) -> SamlSettings:
        """Validate a `[server.saml]` table; URLs derive from the server's public URL."""
        unknown = sorted(set(data) - _SETTING_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown [server.saml] setting(s): {', '.join(unknown)}",
                hint=f"valid settings are: {', '.join(sorted(_SETTING_KEYS))}",
            )
        if not public_url:
            raise ConfigError(
                "[server.saml] needs the server's public_url (the IdP posts back to it)",
                hint='set [server] public_url = "https://flowloom.example.com"',
            )
        base = public_url.rstrip("/")
        _check_url("public_url", base)
        entity_id = data.get("entity_id", base + METADATA_PATH)
        if not isinstance(entity_id, str) or not entity_id.strip():
            raise ConfigError("[server.saml] entity_id must be a non-empty string")
        metadata_file = _path(data, "idp_metadata_file")
        try:
            metadata = metadata_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"[server.saml] cannot read idp_metadata_file {metadata_file}: "
                f"{type(exc).__name__}",
                hint="download the IdP's SAML metadata XML and point idp_metadata_file at it",
            ) from None
        if "EntityDescriptor" not in metadata:
            raise ConfigError(
                f"[server.saml] {metadata_file} is not SAML metadata (no EntityDescriptor)"
            )
        key, cert = _path(data, "sp_key_file"), _path(data, "sp_cert_file")
        for name, path in (("sp_key_file", key), ("sp_cert_file", cert)):
            if not path.is_file():
                raise ConfigError(
                    f"[server.saml] {name} {path} does not exist",
                    hint="make one with: openssl req -x509 -newkey rsa:3072 -nodes -days 730"
                    " -subj /CN=flowloom-sp -keyout sp.key -out sp.crt",
                )
        fmt = data.get("name_id_format", "persistent")
        if fmt not in _NAME_ID_FORMATS:
            raise ConfigError(
                f"[server.saml] name_id_format must be one of: {', '.join(_NAME_ID_FORMATS)}",
                hint="transient NameIDs change at every sign-in and cannot identify a user",
            )
        subject = data.get("subject_attribute")
        if subject is not None and (not isinstance(subject, str) or not subject):
            raise ConfigError("[server.saml] subject_attribute must be an attribute name")
        names = {}
        for key_name, default in (
            ("email_attribute", "email"),
            ("name_attribute", "displayName"),
            ("groups_attribute", "groups"),
        ):
            value = data.get(key_name, default)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"[server.saml] {key_name} must be an attribute name")
            names[key_name] = value
        idp_initiated = data.get("allow_idp_initiated", False)
        if not isinstance(idp_initiated, bool):
            raise ConfigError("[server.saml] allow_idp_initiated must be true or false")
        return cls(
            entity_id=entity_id.strip(),
            acs_url=base + ACS_PATH,
            sls_url=base + SLS_PATH,
            idp_metadata=metadata,
            sp_key_file=key,
            sp_cert_file=cert,
            name_id_format=_NAME_ID_FORMATS[str(fmt)],
            subject_attribute=subject,
            roles=RoleMap.from_mapping("saml", data),
            allow_idp_initiated=idp_initiated,
            leeway_seconds=_seconds(data, "leeway_seconds", 60.0, maximum=600.0),
            reauth_max_age_seconds=_seconds(data, "reauth_max_age_seconds", 600.0, minimum=1.0),
            replay_ttl_seconds=_seconds(data, "replay_ttl_seconds", 86400.0, minimum=60.0),
            **names,
        )


def saml_config(table: Mapping[str, Any] | None, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The `[server.saml]` table overlaid with FLOWLOOM_SERVER_SAML_* variables, not yet
    validated; None when both are empty (SAML off). role_map is JSON in the environment."""
    if table is not None and not isinstance(table, Mapping):
        raise ConfigError("[server.saml] must be a table", hint="see docs/auth.md")
    data: dict[str, Any] = dict(table or {})
    for key in sorted(_SETTING_KEYS):
        raw = env.get(ENV_PREFIX + key.upper())
        if not raw:
            continue
        name = ENV_PREFIX + key.upper()
        if key == "role_map":
            try:
                data[key] = json.loads(raw)
            except ValueError:
                raise ConfigError(
                    f'{name} must be JSON such as {{"admins": ["*:admin"]}}'
                ) from None
        elif key == "default_roles":
            data[key] = [item for item in re.split(r"[,\s]+", raw) if item]
        elif key == "allow_idp_initiated":
            data[key] = raw.strip().lower() in ("1", "true", "yes", "on")
        elif key.endswith("_seconds"):
            try:
                data[key] = float(raw)
            except ValueError:
                raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
        else:
            data[key] = raw
    return data or None


def _path(data: Mapping[str, Any], key: str) -> Path:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"[server.saml] {key} is required (a file path)",
            hint="see the SAML section of docs/auth.md",
        )
    return Path(value.strip())


def _check_url(name: str, url: str) -> None:
    parts = urlsplit(url)
    loopback = (parts.hostname or "") in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(
            f"SAML needs an https:// {name}, got {url!r}",
            hint="plain http is accepted only for 127.0.0.1, ::1 and localhost",
        )


def _seconds(
    data: Mapping[str, Any],
    key: str,
    default: float,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"[server.saml] {key} must be a number of seconds")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum:g} and {maximum:g}" if maximum else f"at least {minimum:g}"
        raise ConfigError(f"[server.saml] {key} must be {bound} seconds")
    return float(value)


class NameIdRef(NamedTuple):
    """The NameID an IdP session is known by, kept for single logout."""

    value: str
    format: str | None = None
    name_qualifier: str | None = None
    sp_name_qualifier: str | None = None

    def to_saml(self) -> NameID:
        return NameID(
            text=self.value,
            format=self.format,
            name_qualifier=self.name_qualifier,
            sp_name_qualifier=self.sp_name_qualifier,
        )


@dataclass(frozen=True)
class SamlIdentity:
    """Who the IdP vouched for, and the facts needed for replay checks and logout."""

    idp: str
    subject: str
    email: str | None
    name: str
    groups: tuple[str, ...]
    name_id: NameIdRef
    session_index: str | None
    assertion_id: str
    expires_at: datetime
    """Until when the assertion could be presented: its id is remembered that long."""
    authn_instant: datetime | None
    in_response_to: str | None


class SamlRequest(NamedTuple):
    """An AuthnRequest or LogoutRequest: send the browser to `url`, keep the id."""

    url: str
    request_id: str
    relay_state: str


class LogoutAnswer(NamedTuple):
    """What an IdP's LogoutRequest asks, and the signed LogoutResponse URL to send back."""

    name_id: NameIdRef
    session_indexes: tuple[str, ...]
    response_url: str


class SamlServiceProvider:
    """The SP for one IdP; safe to share between request threads (pysaml2 under a lock)."""

    def __init__(self, settings: SamlSettings, clock: Clock | None = None) -> None:
        xmlsec = shutil.which("xmlsec1")
        if xmlsec is None:
            raise ConfigError(
                "SAML needs the xmlsec1 program", hint="install it: apt-get install xmlsec1"
            )
        self.settings = settings
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        config = SPConfig()
        config.load(
            {
                "entityid": settings.entity_id,
                "xmlsec_binary": xmlsec,
                "key_file": str(settings.sp_key_file),
                "cert_file": str(settings.sp_cert_file),
                "encryption_keypairs": [
                    {"key_file": str(settings.sp_key_file), "cert_file": str(settings.sp_cert_file)}
                ],
                "metadata": {"inline": [settings.idp_metadata]},
                "accepted_time_diff": int(settings.leeway_seconds),
                "allow_unknown_attributes": True,
                "attribute_map_dir": None,
                "service": {
                    "sp": {
                        "endpoints": {
                            "assertion_consumer_service": [(settings.acs_url, BINDING_HTTP_POST)],
                            "single_logout_service": [
                                (settings.sls_url, BINDING_HTTP_REDIRECT),
                                (settings.sls_url, BINDING_HTTP_POST),
                            ],
                        },
                        "name_id_format": [settings.name_id_format],
                        "name_id_format_allow_create": True,
                        "authn_requests_signed": True,
                        "logout_requests_signed": True,
                        "logout_responses_signed": True,
                        "want_assertions_signed": True,
                        "want_response_signed": False,
                        "want_assertions_or_response_signed": True,
                        "allow_unsolicited": settings.allow_idp_initiated,
                        "signing_algorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                        "digest_algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
                    }
                },
            }
        )
        self._config = config
        self._client = Saml2Client(config)
        idps = list(self._client.metadata.identity_providers())
        if len(idps) != 1:
            raise ConfigError(
                f"[server.saml] idp_metadata_file must describe exactly one IdP, found {len(idps)}"
            )
        self.idp_entity_id: str = idps[0]

    # -- metadata ---------------------------------------------------------------------

    def metadata(self) -> str:
        """This SP's metadata XML, for the IdP administrator (entity id, ACS, SLO, cert)."""
        with self._lock:
            descriptor = entity_descriptor(self._config)
        return str(descriptor)

    def roles_for(self, groups: Iterable[str]) -> frozenset[RoleGrant]:
        """The grants the IdP groups map to ([server.saml] role_map and default_roles)."""
        return self.settings.roles.roles_for(groups)

    # -- sign-in ------------------------------------------------------------------------

    def begin(self, *, reauth: bool = False) -> SamlRequest:
        """A signed AuthnRequest (HTTP-Redirect); `reauth` sets ForceAuthn="true"."""
        relay_state = secrets.token_urlsafe(32)
        extra: dict[str, Any] = {"force_authn": "true"} if reauth else {}
        with self._lock:
            request_id, info = self._client.prepare_for_authenticate(
                entityid=self.idp_entity_id,
                relay_state=relay_state,
                binding=BINDING_HTTP_REDIRECT,
                sign=True,
                sigalg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                **extra,
            )
        return SamlRequest(_location(info), str(request_id), relay_state)

    def finish(
        self, saml_response: str, *, expected_request: str | None, reauth: bool = False
    ) -> SamlIdentity:
        """Verify a POSTed SAMLResponse; the identity it proves, or SamlLoginError.

        `expected_request` is the id of the AuthnRequest this browser made (None for an
        IdP-initiated sign-in, refused unless allowed).
        """
        if not saml_response:
            raise SamlLoginError("missing_response", "the identity provider sent no SAMLResponse")
        if len(saml_response) > _MAX_RESPONSE_BYTES:
            raise SamlLoginError("malformed", "the SAMLResponse is too large")
        try:
            xml = base64.b64decode(saml_response, validate=True)
        except (binascii.Error, ValueError):
            raise SamlLoginError("malformed", "the SAMLResponse is not base64") from None
        self._check_destination(xml)
        outstanding = {expected_request: "/"} if expected_request else {}
        with self._lock:
            try:
                response = self._client.parse_authn_request_response(
                    saml_response, BINDING_HTTP_POST, outstanding=outstanding
                )
            except Exception as exc:  # pysaml2 raises bare Exception for some checks
                raise _login_error(exc) from None
        if not isinstance(response, AuthnResponse) or response.assertion is None:
            raise SamlLoginError("malformed", "the SAMLResponse holds no usable assertion")
        return self._identity(response, expected_request, reauth)

    def _check_destination(self, xml: bytes) -> None:
        """A Response addressed elsewhere is refused with its own reason (pysaml2 would
        only log it). Parsed with defusedxml: no entities, no network."""
        try:
            root = defused_fromstring(xml)
        except Exception:
            raise SamlLoginError("malformed", "the SAMLResponse is not well-formed XML") from None
        destination = root.get("Destination")
        if destination is not None and destination != self.settings.acs_url:
            raise SamlLoginError(
                "destination",
                "the SAML response is not addressed to this sign-in endpoint (Destination)",
                hint=f"the IdP's ACS URL must be {self.settings.acs_url}",
            )

    def _identity(
        self, response: AuthnResponse, expected_request: str | None, reauth: bool
    ) -> SamlIdentity:
        assertion = response.assertion
        issuer = assertion.issuer.text.strip() if assertion.issuer is not None else ""
        if issuer != self.idp_entity_id:
            raise SamlLoginError(
                "issuer", "the assertion was issued by another identity provider than configured"
            )
        in_response_to = response.in_response_to or None
        if expected_request is None:
            if in_response_to is not None or not self.settings.allow_idp_initiated:
                raise SamlLoginError(
                    "unsolicited",
                    "this SAML response answers no sign-in started in this browser",
                    hint="start the sign-in from FlowLoom (or allow_idp_initiated = true)",
                )
        elif in_response_to != expected_request:
            raise SamlLoginError(
                "in_response_to",
                "this SAML response answers another sign-in attempt",
                hint="start the sign-in again from this browser",
            )
        conditions = assertion.conditions
        audiences = [
            (audience.text or "").strip()
            for restriction in (conditions.audience_restriction if conditions else [])
            for audience in restriction.audience
        ]
        if self.settings.entity_id not in audiences:
            raise SamlLoginError(
                "audience",
                "the assertion is not addressed to this service provider (audience)",
                hint=f"the IdP's audience / SP entity id must be {self.settings.entity_id}",
            )
        bearer = [
            sc
            for sc in assertion.subject.subject_confirmation
            if sc.method == "urn:oasis:names:tc:SAML:2.0:cm:bearer"
            and sc.subject_confirmation_data is not None
            and sc.subject_confirmation_data.recipient == self.settings.acs_url
        ]
        if not bearer:
            raise SamlLoginError(
                "recipient",
                "the assertion is not for this sign-in endpoint (recipient)",
                hint=f"the IdP's ACS URL must be {self.settings.acs_url}",
            )
        now = self._clock()
        leeway = timedelta(seconds=self.settings.leeway_seconds)
        limits = [
            _moment(sc.subject_confirmation_data.not_on_or_after)
            for sc in bearer
            if sc.subject_confirmation_data.not_on_or_after
        ]
        if conditions is not None and conditions.not_on_or_after:
            limits.append(_moment(conditions.not_on_or_after))
        if limits and now >= min(limits) + leeway:
            raise SamlLoginError("expired", "the assertion has expired")
        expires_at = (
            max(limits) + leeway
            if limits
            else now + timedelta(seconds=self.settings.replay_ttl_seconds)
        )
        statements = assertion.authn_statement
        if not statements:
            raise SamlLoginError("malformed", "the assertion has no AuthnStatement")
        authn = statements[0]
        instant = _moment(authn.authn_instant) if authn.authn_instant else None
        if reauth:
            max_age = timedelta(seconds=self.settings.reauth_max_age_seconds)
            if instant is None or now - instant > max_age + leeway:
                raise SamlLoginError(
                    "reauth",
                    "the identity provider did not ask for credentials again",
                    hint="the IdP must honour ForceAuthn",
                )
        name_id = response.name_id
        if name_id is None or not (name_id.text or "").strip():
            raise SamlLoginError("malformed", "the assertion names no subject (NameID)")
        ref = NameIdRef(
            name_id.text.strip(),
            name_id.format,
            name_id.name_qualifier,
            name_id.sp_name_qualifier,
        )
        # The names an IdP sent, exactly (Entra's claim URIs included), first; pysaml2's
        # friendly names (its built-in maps rename some URIs) as well.
        attributes: Mapping[str, list[Any]] = {**(response.ava or {}), **_wire(assertion)}
        if self.settings.subject_attribute is not None:
            subject = _first(attributes, self.settings.subject_attribute)
            if subject is None:
                raise SamlLoginError(
                    "malformed",
                    f"the assertion lacks the subject attribute {self.settings.subject_attribute}",
                )
        else:
            if ref.format == _TRANSIENT:
                raise SamlLoginError(
                    "name_id",
                    "the IdP sent a transient NameID, which cannot identify a user",
                    hint="send a persistent NameID, or set subject_attribute",
                )
            subject = ref.value
        email = _first(attributes, self.settings.email_attribute)
        if email is None and ref.format == _NAME_ID_FORMATS["email"]:
            email = ref.value
        name = _first(attributes, self.settings.name_attribute) or email or subject
        assertion_id = assertion.id
        if not assertion_id:
            raise SamlLoginError("malformed", "the assertion has no ID")
        return SamlIdentity(
            idp=issuer,
            subject=subject,
            email=email,
            name=name,
            groups=groups_from(list(attributes.get(self.settings.groups_attribute, []))),
            name_id=ref,
            session_index=authn.session_index,
            assertion_id=str(assertion_id),
            expires_at=expires_at,
            authn_instant=instant,
            in_response_to=in_response_to,
        )

    # -- single logout --------------------------------------------------------------------

    def logout_request(self, name_id: NameIdRef, session_index: str | None) -> SamlRequest | None:
        """A signed LogoutRequest (HTTP-Redirect) for the IdP session behind a FlowLoom
        one; None when the IdP publishes no single logout endpoint (Google Workspace)."""
        relay_state = secrets.token_urlsafe(32)
        with self._lock:
            try:
                destination = self._client.metadata.single_logout_service(
                    self.idp_entity_id, BINDING_HTTP_REDIRECT, "idpsso"
                )
            except UnsupportedBinding:
                destination = None
            if not destination:
                return None
            request_id, request = self._client.create_logout_request(
                destination[0]["location"],
                self.idp_entity_id,
                name_id=name_id.to_saml(),
                session_indexes=[session_index] if session_index else None,
                sign=False,
            )
            info = self._client.apply_binding(
                BINDING_HTTP_REDIRECT,
                str(request),
                destination[0]["location"],
                relay_state,
                sign=True,
                sigalg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            )
        return SamlRequest(_location(info), str(request_id), relay_state)

    def finish_logout(self, saml_response: str, *, binding: str, query: Mapping[str, str]) -> str:
        """Verify the IdP's LogoutResponse; the id of the request it answers."""
        with self._lock:
            try:
                response = self._client.parse_logout_request_response(saml_response, binding)
            except Exception as exc:
                raise _login_error(exc) from None
            if response is None:
                raise SamlLoginError("malformed", "the LogoutResponse could not be read")
            if binding == BINDING_HTTP_REDIRECT:
                self._check_redirect_signature(query, "SAMLResponse")
        if not response.status_ok():
            raise SamlLoginError("logout_failed", "the identity provider did not sign you out")
        return str(response.in_response_to or "")

    def handle_logout_request(
        self, saml_request: str, *, binding: str, relay_state: str | None, query: Mapping[str, str]
    ) -> LogoutAnswer:
        """Verify an IdP-initiated LogoutRequest; who to sign out, and the answer to send."""
        with self._lock:
            if binding == BINDING_HTTP_REDIRECT:
                self._check_redirect_signature(query, "SAMLRequest")
            try:
                request = self._client.parse_logout_request(saml_request, binding)
            except Exception as exc:
                raise _login_error(exc) from None
            if request is None or request.message is None:
                raise SamlLoginError("malformed", "the LogoutRequest could not be read")
            message = request.message
            issuer = message.issuer.text.strip() if message.issuer is not None else ""
            if issuer != self.idp_entity_id:
                raise SamlLoginError("issuer", "the LogoutRequest comes from another IdP")
            if binding == BINDING_HTTP_POST:
                # The XML signature inside, which pysaml2 checks only when present.
                try:
                    signed = request.signature_check(
                        request.xmlstr, origdoc=request.xmlstr, must=True
                    )
                except Exception as exc:
                    raise _login_error(exc) from None
                if not signed:
                    raise SamlLoginError("signature", "the LogoutRequest is not signed")
            name_id = message.name_id
            if name_id is None or not name_id.text:
                raise SamlLoginError("malformed", "the LogoutRequest names no subject")
            indexes = tuple(str(i.text) for i in message.session_index if i.text)
            destination = self._client.metadata.single_logout_service(
                self.idp_entity_id, BINDING_HTTP_REDIRECT, "idpsso"
            )
            location = destination[0].get("response_location") or destination[0]["location"]
            answer = self._client.create_logout_response(
                message, [BINDING_HTTP_REDIRECT], sign=False
            )
            info = self._client.apply_binding(
                BINDING_HTTP_REDIRECT,
                str(answer),
                location,
                relay_state or "",
                response=True,
                sign=True,
                sigalg="http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            )
        ref = NameIdRef(
            name_id.text.strip(), name_id.format, name_id.name_qualifier, name_id.sp_name_qualifier
        )
        return LogoutAnswer(ref, indexes, _location(info))

    def _check_redirect_signature(self, query: Mapping[str, str], kind: str) -> None:
        """HTTP-Redirect messages carry their signature in the query string, outside the
        XML: check it against the IdP's signing certificates (pysaml2 re-encodes the
        parameters in the order SAML fixes, as SAMLBind 3.4.4.1 signs them)."""
        signature = query.get("Signature")
        sigalg = query.get("SigAlg")
        if not signature or not sigalg:
            raise SamlLoginError("signature", f"the {kind} is not signed")
        message = {
            name: query[name]
            for name in (kind, "RelayState", "SigAlg", "Signature")
            if name in query
        }
        for _name, cert in self._client.metadata.certs(self.idp_entity_id, "idpsso", "signing"):
            try:
                if verify_redirect_signature(message, self._client.sec.sec_backend, cert=cert):
                    return
            except Exception:  # a malformed signature or algorithm is a failed check
                continue
        raise SamlLoginError("signature", f"the {kind}'s signature does not verify")


def _location(info: Mapping[str, Any]) -> str:
    for name, value in info.get("headers", []):
        if name.lower() == "location":
            return str(value)
    raise SamlLoginError("internal", "pysaml2 produced no redirect URL")


def _moment(value: str) -> datetime:
    try:
        return datetime.fromtimestamp(__import__("calendar").timegm(str_to_time(value)), UTC)
    except (ValueError, TypeError):
        raise SamlLoginError("malformed", f"the assertion holds a bad time {value!r}") from None


def _wire(assertion: Any) -> dict[str, list[Any]]:
    """Attribute values by the Name each attribute has in the assertion, as sent."""
    found: dict[str, list[Any]] = {}
    for statement in assertion.attribute_statement or []:
        for attribute in statement.attribute or []:
            if not attribute.name:
                continue
            values = found.setdefault(str(attribute.name), [])
            values.extend(v.text for v in attribute.attribute_value or [] if v.text is not None)
    return found


def _first(attributes: Mapping[str, list[Any]], name: str) -> str | None:
    values = attributes.get(name) or []
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _login_error(exc: Exception) -> SamlLoginError:
    """A short audit reason for what pysaml2 refused; the message holds no XML."""
    text = str(exc)
    if isinstance(exc, ResponseLifetimeExceed):
        return SamlLoginError("expired", "the assertion has expired")
    if isinstance(exc, ToEarly):
        return SamlLoginError("not_yet_valid", "the assertion is not valid yet")
    if isinstance(exc, SignatureError | IncorrectlySigned | SigverError):
        return SamlLoginError(
            "signature",
            "the SAML response is not signed, or its signature does not verify",
            hint="the IdP must sign assertions with the certificate in its metadata",
        )
    if isinstance(exc, UnsolicitedResponse) or "don't recall" in text:
        return SamlLoginError("unsolicited", "this SAML response answers no sign-in started here")
    if "AudienceRestrictions" in text:
        return SamlLoginError(
            "audience", "the assertion is not addressed to this service provider (audience)"
        )
    if isinstance(exc, VerificationError) and "recipient" in text:
        return SamlLoginError("recipient", "the assertion is not for this sign-in endpoint")
    if isinstance(exc, StatusError):
        return SamlLoginError(
            "provider_error", f"the identity provider did not sign you in ({type(exc).__name__})"
        )
    if isinstance(exc, VerificationError | SAMLError):
        return SamlLoginError(
            "invalid", f"the SAML response is not acceptable ({type(exc).__name__})"
        )
    return SamlLoginError(
        "malformed", f"the SAML response could not be read ({type(exc).__name__})"
    )
