"""OIDC single sign-on: the authorization code flow with PKCE against one identity provider.

`OidcClient.begin` builds the provider's authorization URL with a fresh state, nonce and
PKCE (S256) verifier, which the caller keeps server-side; `OidcClient.finish` exchanges
the returned code for tokens and verifies the ID token against the provider's published
keys (JWKS): signature with an allowed algorithm, issuer, audience, expiry and issue time
with a bounded clock skew, and the nonce. Provider groups map to FlowLoom roles through
`OidcSettings.role_map`. Every failure is an `OidcLoginError` (an AuthError) whose
`reason` is a short code for the audit trail; no message ever contains a token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import jwt

from flowloom.auth.rolemap import RoleGrant, RoleMap, groups_from
from flowloom.errors import ConfigError, InputError, SignInError

__all__ = [
    "CALLBACK_PATH",
    "ENV_PREFIX",
    "LOGIN_PATH",
    "REAUTH_STATE_PREFIX",
    "SUPPORTED_ALGS",
    "AuthRequest",
    "Clock",
    "OidcClient",
    "OidcIdentity",
    "OidcLoginError",
    "OidcSettings",
    "PendingLogin",
    "ProviderMetadata",
    "RoleGrant",
    "oidc_config",
    "pkce_challenge",
    "relative_redirect",
]

Clock = Callable[[], datetime]

LOGIN_PATH: Final = "/api/v1/auth/oidc/login"
CALLBACK_PATH: Final = "/api/v1/auth/oidc/callback"

REAUTH_STATE_PREFIX: Final = "r."
"""States of re-authentication requests start with this. The state is looked up exactly
in server-side storage, so the flag cannot be forged or stripped by the browser."""

SUPPORTED_ALGS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
"""Asymmetric algorithms only: "none" and shared-secret HMAC are never accepted."""

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_SETTING_KEYS = frozenset(
    {
        "issuer",
        "client_id",
        "client_secret",
        "redirect_uri",
        "scopes",
        "groups_claim",
        "role_map",
        "default_roles",
        "allowed_algs",
        "leeway_seconds",
        "discovery_ttl_seconds",
        "timeout_seconds",
        "reauth_max_age_seconds",
    }
)


class OidcLoginError(SignInError):
    """A single sign-on attempt failed; `reason` is a short code recorded in the audit trail."""


@dataclass(frozen=True)
class OidcSettings:
    """How FlowLoom talks to its identity provider (`[server.oidc]` in the server config)."""

    issuer: str
    client_id: str
    redirect_uri: str
    client_secret: str | None = field(default=None, repr=False)
    """None for a public client, which then relies on PKCE alone."""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    groups_claim: str = "groups"
    role_map: Mapping[str, tuple[RoleGrant, ...]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    default_roles: tuple[RoleGrant, ...] = ()
    """Granted to every user who signs in, whatever their groups."""
    allowed_algs: tuple[str, ...] = ("RS256", "ES256")
    leeway_seconds: float = 60.0
    """Clock skew tolerated between FlowLoom and the provider for exp/iat/auth_time."""
    discovery_ttl_seconds: float = 3600.0
    timeout_seconds: float = 10.0
    reauth_max_age_seconds: float = 600.0
    """How recent `auth_time` must be when re-authentication was asked for."""

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, public_url: str | None = None
    ) -> OidcSettings:
        """Validate a `[server.oidc]` table; `public_url` supplies the default redirect_uri.

        Unknown keys are refused so that a misspelt setting is not silently ignored.
        """
        unknown = sorted(set(data) - _SETTING_KEYS)
        if unknown:
            raise ConfigError(
                f"unknown [server.oidc] setting(s): {', '.join(unknown)}",
                hint=f"valid settings are: {', '.join(sorted(_SETTING_KEYS))}",
            )
        issuer = _required_str(data, "issuer").rstrip("/")
        _check_endpoint_url("issuer", issuer)
        client_id = _required_str(data, "client_id")
        secret = data.get("client_secret")
        if secret is not None and (not isinstance(secret, str) or not secret):
            raise ConfigError(
                "[server.oidc] client_secret must be a non-empty string",
                hint="leave it out for a public client (PKCE only)",
            )
        redirect = data.get("redirect_uri")
        if redirect is None:
            if not public_url:
                raise ConfigError(
                    "[server.oidc] needs redirect_uri (or a server public_url to derive it)",
                    hint=f'set redirect_uri = "https://<your server>{CALLBACK_PATH}"',
                )
            redirect = public_url.rstrip("/") + CALLBACK_PATH
        if not isinstance(redirect, str):
            raise ConfigError("[server.oidc] redirect_uri must be a string")
        _check_endpoint_url("redirect_uri", redirect)
        scopes = _scopes(data.get("scopes", "openid email profile"))
        groups_claim = data.get("groups_claim", "groups")
        if not isinstance(groups_claim, str) or not groups_claim:
            raise ConfigError("[server.oidc] groups_claim must be a non-empty claim name")
        roles = RoleMap.from_mapping("oidc", data)
        algs = data.get("allowed_algs", ["RS256", "ES256"])
        if (
            isinstance(algs, str)
            or not isinstance(algs, list | tuple)
            or not algs
            or any(a not in SUPPORTED_ALGS for a in algs)
        ):
            raise ConfigError(
                "[server.oidc] allowed_algs must be a non-empty list of asymmetric algorithms",
                hint=f"choose from: {', '.join(sorted(SUPPORTED_ALGS))}",
            )
        return cls(
            issuer=issuer,
            client_id=client_id,
            client_secret=secret,
            redirect_uri=redirect,
            scopes=scopes,
            groups_claim=groups_claim,
            role_map=roles.groups,
            default_roles=roles.default_roles,
            allowed_algs=tuple(str(a) for a in algs),
            leeway_seconds=_seconds(data, "leeway_seconds", 60.0, maximum=600.0),
            discovery_ttl_seconds=_seconds(data, "discovery_ttl_seconds", 3600.0),
            timeout_seconds=_seconds(data, "timeout_seconds", 10.0, minimum=0.1),
            reauth_max_age_seconds=_seconds(data, "reauth_max_age_seconds", 600.0, minimum=1.0),
        )

    @classmethod
    def load(
        cls,
        table: Mapping[str, Any] | None,
        env: Mapping[str, str],
        *,
        public_url: str | None = None,
    ) -> OidcSettings | None:
        """Settings from the `[server.oidc]` table overlaid with FLOWLOOM_SERVER_OIDC_*
        variables; None when both are empty (single sign-on off).

        The environment is the place for client_secret, which should not sit in a file.
        Lists (scopes, allowed_algs, default_roles) are comma- or space-separated there;
        role_map is JSON: {"group": ["project:role", ...]}.
        """
        data = oidc_config(table, env)
        if data is None:
            return None
        return cls.from_mapping(data, public_url=public_url)


ENV_PREFIX: Final = "FLOWLOOM_SERVER_OIDC_"


def oidc_config(table: Mapping[str, Any] | None, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The `[server.oidc]` table overlaid with FLOWLOOM_SERVER_OIDC_* variables, not yet
    validated (`OidcSettings.from_mapping` does that once the public URL is final);
    None when both are empty."""
    if table is not None and not isinstance(table, Mapping):
        raise ConfigError("[server.oidc] must be a table", hint="see docs/oidc.md")
    data: dict[str, Any] = dict(table or {})
    for key in sorted(_SETTING_KEYS):
        raw = env.get(ENV_PREFIX + key.upper())
        if raw:
            data[key] = _from_env(key, raw)
    return data or None


def _from_env(key: str, raw: str) -> Any:
    name = ENV_PREFIX + key.upper()
    if key == "role_map":
        try:
            return json.loads(raw)
        except ValueError:
            raise ConfigError(f'{name} must be JSON such as {{"admins": ["*:admin"]}}') from None
    if key in ("scopes", "allowed_algs", "default_roles"):
        return [item for item in re.split(r"[,\s]+", raw) if item]
    if key.endswith("_seconds"):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    return raw


def _required_str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(
            f"[server.oidc] {key} is required and must be a non-empty string",
            hint="see docs/oidc.md for a complete example",
        )
    return value.strip()


def _check_endpoint_url(name: str, url: str) -> None:
    """HTTPS everywhere, except loopback addresses (a provider on the same machine)."""
    parts = urlsplit(url)
    loopback = (parts.hostname or "") in _LOOPBACK_HOSTS
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ConfigError(
            f"[server.oidc] {name} must be an https:// URL, got {url!r}",
            hint="plain http is accepted only for 127.0.0.1, ::1 and localhost",
        )
    if not parts.hostname or parts.fragment:
        raise ConfigError(f"[server.oidc] {name} must be an absolute URL without a #fragment")


def _scopes(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items = value.split()
    elif isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        items = [str(v) for v in value]
    else:
        raise ConfigError('[server.oidc] scopes must be a string like "openid email profile"')
    if "openid" not in items:
        raise ConfigError(
            "[server.oidc] scopes must include openid", hint='use "openid email profile"'
        )
    return tuple(dict.fromkeys(items))


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
        raise ConfigError(f"[server.oidc] {key} must be a number of seconds")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum:g} and {maximum:g}" if maximum else f"at least {minimum:g}"
        raise ConfigError(f"[server.oidc] {key} must be {bound} seconds")
    return float(value)


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of the provider's discovery document FlowLoom uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str


class AuthRequest(NamedTuple):
    """What `begin` produces: send the browser to the URL, keep the rest server-side."""

    authorization_url: str
    state: str
    verifier: str
    nonce: str


@dataclass(frozen=True)
class PendingLogin:
    """The server-side record of a login in progress, taken back (once) at the callback."""

    state: str
    verifier: str
    nonce: str
    redirect: str = "/"

    @property
    def reauth(self) -> bool:
        """Whether the user was asked to sign in again (electronic signatures need it)."""
        return self.state.startswith(REAUTH_STATE_PREFIX)


@dataclass(frozen=True)
class OidcIdentity:
    """Who the provider says signed in, taken from a verified ID token."""

    issuer: str
    subject: str
    email: str | None
    """None unless the provider vouches for it (email_verified is not false)."""
    name: str
    groups: tuple[str, ...]
    auth_time: datetime | None


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge for `verifier` (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def relative_redirect(value: str | None) -> str:
    """`value` if it is a path on this server, "/" if empty; InputError otherwise.

    Only same-origin paths are accepted so the login endpoint cannot be used to send
    a freshly signed-in user to another site (an open redirect).
    """
    if value is None or value == "":
        return "/"
    parts = urlsplit(value)
    bad = (
        not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)
        or parts.scheme
        or parts.netloc
    )
    if bad:
        raise InputError(
            "redirect must be a path on this server, such as /projects/alpha",
            hint="absolute URLs and //host forms are refused to prevent open redirects",
        )
    return value


class OidcClient:
    """A relying party for one provider; safe to share between request threads."""

    def __init__(
        self, settings: OidcSettings, http: httpx.Client, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self._http = http
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._keys: dict[str, dict[str, Any]] = {}
        self._keys_at = 0.0

    # -- provider metadata and keys -------------------------------------------------

    def discover(self) -> ProviderMetadata:
        """The provider's endpoints, fetched once per `discovery_ttl_seconds`."""
        now = self._now()
        with self._lock:
            cached = self._metadata
            if cached is not None and now - self._metadata_at < self.settings.discovery_ttl_seconds:
                return cached
        url = self.settings.issuer + "/.well-known/openid-configuration"
        document = self._get_json(url, what="discovery document")
        issuer = document.get("issuer")
        if issuer != self.settings.issuer:
            raise OidcLoginError(
                "issuer",
                f"the identity provider's discovery document names issuer {issuer!r}, "
                f"not the configured {self.settings.issuer!r}",
                hint="set [server.oidc] issuer to exactly the provider's issuer URL",
            )
        endpoints: dict[str, str] = {}
        for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(key)
            if not isinstance(value, str) or not value:
                raise OidcLoginError(
                    "discovery",
                    f"the identity provider's discovery document has no {key}",
                    hint="check that [server.oidc] issuer points at an OpenID Connect provider",
                )
            try:
                _check_endpoint_url(key, value)
            except ConfigError as exc:
                raise OidcLoginError("discovery", exc.message, hint=exc.hint) from None
            endpoints[key] = value
        methods = document.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise OidcLoginError(
                "discovery",
                "the identity provider does not support PKCE with S256",
                hint="enable PKCE (S256) for this client at the provider",
            )
        metadata = ProviderMetadata(issuer=issuer, **endpoints)
        with self._lock:
            self._metadata, self._metadata_at = metadata, now
        return metadata

    def _signing_key(self, kid: str, alg: str) -> jwt.PyJWK:
        """The provider key named `kid`; the key set is fetched again once if it is unknown,
        which is how a key rotation at the provider is picked up."""
        now = self._now()
        with self._lock:
            fresh = now - self._keys_at < self.settings.discovery_ttl_seconds
            entry = self._keys.get(kid) if fresh else None
        if entry is None:
            keys = self._fetch_keys()
            with self._lock:
                self._keys, self._keys_at = keys, now
            entry = keys.get(kid)
        if entry is None:
            raise OidcLoginError(
                "unknown_key",
                "the ID token is signed with a key the identity provider does not publish",
                hint="sign in again; if it persists, check the provider's signing keys",
            )
        if entry.get("alg", alg) != alg:
            raise OidcLoginError(
                "algorithm",
                f"the ID token's algorithm {alg} is not the one its key is published for",
                hint="check the signing algorithm configured at the provider",
            )
        try:
            return jwt.PyJWK(entry, algorithm=alg)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise OidcLoginError(
                "algorithm",
                f"the provider's key {kid!r} cannot be used with algorithm {alg}",
                hint="check the signing algorithm configured at the provider",
            ) from None

    def _fetch_keys(self) -> dict[str, dict[str, Any]]:
        document = self._get_json(self.discover().jwks_uri, what="signing keys (JWKS)")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise OidcLoginError("discovery", "the identity provider's JWKS has no keys list")
        return {
            entry["kid"]: entry
            for entry in entries
            if isinstance(entry, dict)
            and isinstance(entry.get("kid"), str)
            and entry.get("use", "sig") == "sig"
        }

    def _get_json(self, url: str, *, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, timeout=self.settings.timeout_seconds)
        except httpx.HTTPError as exc:
            raise OidcLoginError(
                "unreachable",
                f"could not reach the identity provider for its {what}: {type(exc).__name__}",
                hint="check [server.oidc] issuer and that the provider is up, then try again",
            ) from None
        if response.status_code != 200:
            raise OidcLoginError(
                "unreachable",
                f"the identity provider answered HTTP {response.status_code} for its {what}",
                hint="check [server.oidc] issuer and that the provider is up, then try again",
            )
        return _json_object(response, what)

    # -- the flow ---------------------------------------------------------------------

    def begin(self, redirect: str = "/", *, reauth: bool = False) -> AuthRequest:
        """Start a login: the provider URL to send the browser to, with fresh secrets.

        With `reauth` the provider is told to ask for credentials again (prompt=login,
        max_age=0) even when the user has a provider session.
        """
        relative_redirect(redirect)
        metadata = self.discover()
        state = secrets.token_urlsafe(32)
        if reauth:
            state = REAUTH_STATE_PREFIX + state
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(32)
        query: dict[str, str] = {
            "response_type": "code",
            "client_id": self.settings.client_id,
            "redirect_uri": self.settings.redirect_uri,
            "scope": " ".join(self.settings.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": pkce_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if reauth:
            query.update(prompt="login", max_age="0")
        parts = urlsplit(metadata.authorization_endpoint)
        existing = parse_qsl(parts.query, keep_blank_values=True)
        url = urlunsplit(parts._replace(query=urlencode([*existing, *query.items()])))
        return AuthRequest(url, state, verifier, nonce)

    def finish(self, code: str, pending: PendingLogin) -> OidcIdentity:
        """Exchange `code` and verify the ID token; the identity it names, or OidcLoginError."""
        if not code:
            raise OidcLoginError(
                "missing_code", "the identity provider returned no authorization code"
            )
        id_token = self._exchange(code, pending.verifier)
        claims = self._verify(id_token, pending)
        return self._identity(claims)

    def _exchange(self, code: str, verifier: str) -> str:
        token_endpoint = self.discover().token_endpoint
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.settings.redirect_uri,
            "code_verifier": verifier,
        }
        headers = {"Accept": "application/json"}
        if self.settings.client_secret is None:
            form["client_id"] = self.settings.client_id
        else:
            # client_secret_basic: both parts form-encoded first (RFC 6749 §2.3.1).
            credentials = (
                _form_encode(self.settings.client_id)
                + ":"
                + _form_encode(self.settings.client_secret)
            )
            headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
        try:
            response = self._http.post(
                token_endpoint,
                data=form,
                headers=headers,
                timeout=self.settings.timeout_seconds,
            )
        except httpx.HTTPError as exc:
            raise OidcLoginError(
                "unreachable",
                f"could not reach the identity provider's token endpoint: {type(exc).__name__}",
                hint="check that the provider is up, then sign in again",
            ) from None
        if response.status_code != 200:
            error = "unknown_error"
            try:
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("error"), str):
                    error = re.sub(r"[^A-Za-z0-9_.-]", "", body["error"])[:64] or error
            except ValueError:
                pass
            hint = "sign in again"
            if error == "invalid_client":
                hint = "check [server.oidc] client_id and client_secret"
            raise OidcLoginError(
                "token_exchange",
                f"the identity provider refused the authorization code ({error})",
                hint=hint,
            )
        tokens = _json_object(response, "token response")
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcLoginError(
                "token_exchange",
                "the identity provider's token response has no ID token",
                hint="make sure the openid scope is allowed for this client",
            )
        return id_token

    def _verify(self, id_token: str, pending: PendingLogin) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise OidcLoginError("malformed", "the ID token is not a valid JWT") from None
        alg = header.get("alg")
        if alg not in self.settings.allowed_algs:
            raise OidcLoginError(
                "algorithm",
                f"the ID token uses algorithm {alg!r}, which is not allowed",
                hint="allowed: "
                + ", ".join(self.settings.allowed_algs)
                + " ([server.oidc] allowed_algs)",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise OidcLoginError(
                "missing_kid",
                "the ID token does not name its signing key (no kid)",
                hint="configure the provider to include kid in ID token headers",
            )
        key = self._signing_key(kid, str(alg))
        try:
            # Times are checked below against the injected clock, not PyJWT's own.
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=[str(alg)],
                audience=self.settings.client_id,
                issuer=self.settings.issuer,
                options={
                    "require": ["iss", "sub", "aud", "exp", "iat"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise OidcLoginError("signature", "the ID token's signature does not verify") from None
        except jwt.InvalidAudienceError:
            raise OidcLoginError(
                "audience",
                "the ID token was issued for a different client (audience)",
                hint="check that [server.oidc] client_id matches the provider's client",
            ) from None
        except jwt.InvalidIssuerError:
            raise OidcLoginError(
                "issuer",
                "the ID token was issued by a different issuer than configured",
                hint="check [server.oidc] issuer",
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise OidcLoginError(
                "malformed", f"the ID token lacks the required claim {exc.claim}"
            ) from None
        except jwt.PyJWTError as exc:
            raise OidcLoginError(
                "malformed", f"the ID token is not acceptable ({type(exc).__name__})"
            ) from None
        self._check_times(claims, pending)
        audience = claims["aud"]
        several = isinstance(audience, list) and len(audience) > 1
        if several and claims.get("azp") != self.settings.client_id:
            raise OidcLoginError(
                "audience", "the ID token names several audiences but not this client as azp"
            )
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), pending.nonce.encode()
        ):
            raise OidcLoginError(
                "nonce",
                "the ID token's nonce does not match this login attempt",
                hint="start the sign-in again from FlowLoom",
            )
        return claims

    def _check_times(self, claims: Mapping[str, Any], pending: PendingLogin) -> None:
        now = self._now()
        leeway = self.settings.leeway_seconds
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        if now > exp + leeway:
            raise OidcLoginError(
                "expired",
                "the ID token has expired",
                hint="sign in again; if it persists, check this server's clock",
            )
        if iat > now + leeway:
            raise OidcLoginError(
                "not_yet_valid",
                "the ID token was issued in the future",
                hint="check the clocks of this server and the identity provider",
            )
        if "nbf" in claims and _number(claims, "nbf") > now + leeway:
            raise OidcLoginError("not_yet_valid", "the ID token is not valid yet")
        if pending.reauth:
            if "auth_time" not in claims:
                raise OidcLoginError(
                    "reauth",
                    "the identity provider did not say when the user last signed in",
                    hint="the provider must support max_age and return auth_time",
                )
            age = now - _number(claims, "auth_time")
            if age > self.settings.reauth_max_age_seconds + leeway:
                raise OidcLoginError(
                    "reauth",
                    "the identity provider did not ask for credentials again",
                    hint="the provider must honour prompt=login / max_age=0",
                )

    def _identity(self, claims: Mapping[str, Any]) -> OidcIdentity:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise OidcLoginError("malformed", "the ID token has an empty subject")
        email = claims.get("email")
        if not isinstance(email, str) or not email or claims.get("email_verified") is False:
            # An unverified address must not link this login to someone else's account.
            email = None
        name = next(
            (
                claims[k]
                for k in ("name", "preferred_username")
                if isinstance(claims.get(k), str) and claims[k].strip()
            ),
            email or subject,
        )
        auth_time = (
            datetime.fromtimestamp(_number(claims, "auth_time"), UTC)
            if "auth_time" in claims
            else None
        )
        return OidcIdentity(
            issuer=self.settings.issuer,
            subject=subject,
            email=email,
            name=str(name).strip(),
            groups=groups_from(claims.get(self.settings.groups_claim)),
            auth_time=auth_time,
        )

    def roles_for(self, groups: Iterable[str]) -> frozenset[RoleGrant]:
        """The grants a member of `groups` receives: default_roles plus each group's roles."""
        return RoleMap(self.settings.role_map, self.settings.default_roles).roles_for(groups)

    def _now(self) -> float:
        return self._clock().timestamp()


def _form_encode(value: str) -> str:
    return urlencode({"": value})[1:]


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise OidcLoginError("malformed", f"the identity provider's {what} is not a JSON object")
    return document


def _number(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OidcLoginError("malformed", f"the ID token's {name} claim is not a number")
    return float(value)
