"""A real OpenID Connect provider on loopback, for testing single sign-on end to end.

It speaks HTTP on 127.0.0.1 (port chosen by the OS) from a thread: discovery, a JWKS
endpoint with its own signing key, /authorize (which consents at once as the configured
user and redirects back with a code) and /token (which checks the code, the client's
credentials and the PKCE verifier). `misbehaviour` makes it issue the bad tokens a
relying party must refuse; `rotate_key` replaces its signing key as a real provider does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.support.loopback import LoopbackServer, Reply, Request

__all__ = ["Misbehaviour", "OidcProvider", "ProviderUser", "SigningKey"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass
class ProviderUser:
    """The person the provider signs in, without asking, at every /authorize."""

    subject: str = "user-1234"
    email: str | None = "ada@example.test"
    email_verified: bool = True
    name: str = "Ada Lovelace"
    groups: list[str] = field(default_factory=lambda: ["engineering"])


@dataclass
class Misbehaviour:
    """Ways the next tokens (and redirects) go wrong; all off by default."""

    audience: str | None = None
    issuer: str | None = None
    expired: bool = False
    issued_in_future: bool = False
    foreign_key: bool = False
    """Signed by a key the provider does not publish, under the published kid."""
    unknown_kid: bool = False
    omit_kid: bool = False
    omit_nonce: bool = False
    nonce: str | None = None
    hs256_with_secret: bool = False
    """Signed with HMAC using the client secret (an algorithm confusion attempt)."""
    ignore_reauth: bool = False
    """Does not ask for credentials again on prompt=login: auth_time stays old."""
    callback_error: str | None = None
    discovery_issuer: str | None = None
    omit_id_token: bool = False


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: PrivateKey

    @classmethod
    def generate(cls, alg: str = "RS256") -> SigningKey:
        private: PrivateKey
        if alg.startswith("ES"):
            private = ec.generate_private_key(ec.SECP256R1())
        else:
            private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(kid=secrets.token_hex(8), alg=alg, private=private)

    def jwk(self) -> dict[str, Any]:
        if isinstance(self.private, rsa.RSAPrivateKey):
            data: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        else:
            data = ECAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}


@dataclass
class _Client:
    client_id: str
    redirect_uris: frozenset[str]
    secret: str | None


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    auth_time: int
    issued: float
    used: bool = False


class OidcProvider:
    """The provider; use as a context manager, then `register_client` the relying party."""

    def __init__(
        self,
        *,
        user: ProviderUser | None = None,
        alg: str = "RS256",
        groups_claim: str = "groups",
        token_lifetime: int = 300,
    ) -> None:
        self.user = user or ProviderUser()
        self.groups_claim = groups_claim
        self.token_lifetime = token_lifetime
        self.misbehaviour = Misbehaviour()
        self.keys: list[SigningKey] = [SigningKey.generate(alg)]
        self.clients: dict[str, _Client] = {}
        self.requests: list[str] = []
        self.authorize_params: list[dict[str, str]] = []
        self.session_auth_time: int | None = None
        """When the user last gave credentials at the provider (None: never)."""
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()
        self._foreign: SigningKey | None = None
        self._http: LoopbackServer | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> OidcProvider:
        self._http = LoopbackServer(self._serve).start()
        return self

    def stop(self) -> None:
        """Shut the provider down; later requests to it fail to connect (IdP down)."""
        if self._http is not None:
            self._http.stop()
            self._http = None

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._http is not None, "start the provider first"
        return self._http.port

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- configuration ------------------------------------------------------------------

    def register_client(
        self, client_id: str, redirect_uris: list[str], *, secret: str | None = None
    ) -> None:
        with self._lock:
            self.clients[client_id] = _Client(client_id, frozenset(redirect_uris), secret)

    def rotate_key(self, *, alg: str | None = None, keep_old: bool = False) -> SigningKey:
        """A new signing key with a new kid; the old one is withdrawn unless `keep_old`."""
        key = SigningKey.generate(alg or self.keys[0].alg)
        with self._lock:
            self.keys = [key, *self.keys] if keep_old else [key]
        return key

    def behave(self) -> None:
        self.misbehaviour = Misbehaviour()

    def count(self, path: str) -> int:
        """How many requests reached `path` (e.g. "/jwks")."""
        with self._lock:
            return sum(1 for p in self.requests if p == path)

    # -- protocol -----------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        base = self.issuer
        return {
            "issuer": self.misbehaviour.discovery_issuer or base,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "jwks_uri": base + "/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({k.alg for k in self.keys}),
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
        }

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [k.jwk() for k in self.keys]}

    def authorize(self, params: dict[str, str]) -> tuple[int, str]:
        """(status, Location or error text) for an authorization request."""
        self.authorize_params.append(params)
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return 400, "unknown client_id"
        redirect_uri = params.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return 400, "redirect_uri is not registered for this client"
        state = params.get("state")

        def back(**query: str) -> tuple[int, str]:
            if state is not None:
                query["state"] = state
            parts = urlsplit(redirect_uri)
            existing = parse_qsl(parts.query, keep_blank_values=True)
            return 302, urlunsplit(parts._replace(query=urlencode([*existing, *query.items()])))

        if self.misbehaviour.callback_error:
            return back(error=self.misbehaviour.callback_error, error_description="refused")
        if params.get("response_type") != "code":
            return back(error="unsupported_response_type")
        if "openid" not in params.get("scope", "").split():
            return back(error="invalid_scope")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return back(error="invalid_request", error_description="PKCE S256 is required")
        now = int(time.time())
        force = params.get("prompt") == "login" or params.get("max_age") == "0"
        if self.session_auth_time is None or (force and not self.misbehaviour.ignore_reauth):
            self.session_auth_time = now
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                challenge=params["code_challenge"],
                nonce=params.get("nonce"),
                auth_time=self.session_auth_time,
                issued=time.time(),
            )
        return back(code=code)

    def token(self, form: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """(status, JSON body) for a token request."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except ValueError:
                return 401, {"error": "invalid_client"}
            raw_id, _, raw_secret = decoded.partition(":")
            client_id, secret = (
                unquote(raw_id.replace("+", " ")),
                unquote(raw_secret.replace("+", " ")),
            )
        client = self.clients.get(client_id or "")
        if client is None or (client.secret is not None and secret != client.secret):
            return 401, {"error": "invalid_client"}
        if form.get("grant_type") != "authorization_code":
            return 400, {"error": "unsupported_grant_type"}
        with self._lock:
            record = self._codes.get(form.get("code", ""))
            if record is None or record.used or time.time() - record.issued > 60:
                return 400, {"error": "invalid_grant"}
            record.used = True
        if record.client_id != client.client_id or record.redirect_uri != form.get("redirect_uri"):
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .rstrip(b"=")
            .decode()
        )
        if not verifier or not secrets.compare_digest(challenge, record.challenge):
            return 400, {"error": "invalid_grant", "error_description": "PKCE check failed"}
        body: dict[str, Any] = {
            "access_token": secrets.token_urlsafe(24),
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
        }
        if not self.misbehaviour.omit_id_token:
            body["id_token"] = self.id_token(client, record)
        return 200, body

    def id_token(self, client: _Client, record: _Code) -> str:
        bad = self.misbehaviour
        now = int(time.time())
        iat = now - 7200 if bad.expired else now + 3600 if bad.issued_in_future else now
        claims: dict[str, Any] = {
            "iss": bad.issuer or self.issuer,
            "sub": self.user.subject,
            "aud": bad.audience or client.client_id,
            "iat": iat,
            "exp": iat + self.token_lifetime if not bad.expired else now - 3600,
            "auth_time": record.auth_time,
            "name": self.user.name,
            self.groups_claim: list(self.user.groups),
        }
        if self.user.email is not None:
            claims["email"] = self.user.email
            claims["email_verified"] = self.user.email_verified
        if not bad.omit_nonce and (bad.nonce or record.nonce) is not None:
            claims["nonce"] = bad.nonce or record.nonce
        with self._lock:
            key = self.keys[0]
        headers: dict[str, Any] = {"kid": key.kid}
        if bad.unknown_kid:
            headers["kid"] = "not-" + key.kid
        if bad.omit_kid:
            headers = {}
        if bad.hs256_with_secret:
            hmac_key = (client.secret or "").ljust(32, "\0")  # long enough to not warn
            return jwt.encode(claims, hmac_key, "HS256", headers=headers)
        if bad.foreign_key:
            if self._foreign is None or self._foreign.alg != key.alg:
                self._foreign = SigningKey.generate(key.alg)
            key = self._foreign
        return jwt.encode(claims, key.private, key.alg, headers=headers)

    # -- HTTP ---------------------------------------------------------------------------

    def _serve(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request.path)
        if request.method == "POST":
            if request.path != "/token":
                return Reply.text(404, "not found")
            form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
            return _json(*self.token(form, request.headers.get("Authorization")))
        if request.path == "/.well-known/openid-configuration":
            return _json(200, self.discovery())
        if request.path == "/jwks":
            return _json(200, self.jwks())
        if request.path == "/authorize":
            params = {k: v[-1] for k, v in parse_qs(request.query).items()}
            status, target = self.authorize(params)
            if status == 302:
                return Reply(302, headers={"Location": target})
            return Reply.text(status, target)
        return Reply.text(404, "not found")


def _json(status: int, body: dict[str, Any]) -> Reply:
    headers = {"Cache-Control": "no-store"}
    return Reply(status, json.dumps(body).encode(), "application/json", headers)
