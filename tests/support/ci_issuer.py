"""A CI platform's OIDC token issuer on loopback: discovery, JWKS, and GitHub's token request.

It stands in for ``token.actions.githubusercontent.com`` (and GitLab's or Bitbucket's
issuer): `mint` signs a job token with the issuer's own key (RS256), or, asked to, with
a key it does not publish, for another issuer or audience, or expired. ``/request`` is
what ``ACTIONS_ID_TOKEN_REQUEST_URL`` points at in a GitHub job: with the job's bearer
secret it answers ``{"value": <token>}`` for the ``audience`` asked for.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs

import jwt

from tests.support.loopback import LoopbackServer, Reply, Request
from tests.support.oidc_provider import SigningKey

__all__ = ["CIIssuer"]

REQUEST_SECRET = "request-secret-for-this-job"


class CIIssuer:
    """Use as a context manager; `issuer` is its URL, `env` a GitHub job's variables."""

    def __init__(self, claims: dict[str, Any] | None = None) -> None:
        self.key = SigningKey.generate("RS256")
        self.claims = dict(claims or {})
        self.requests: list[str] = []
        self.server = LoopbackServer(self._serve)

    def __enter__(self) -> CIIssuer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def issuer(self) -> str:
        return self.server.url

    def mint(
        self,
        *,
        audience: str = "flowloom",
        issuer: str | None = None,
        lifetime: int = 300,
        age: int = 0,
        foreign_key: bool = False,
        **claims: Any,
    ) -> str:
        now = int(time.time()) - age
        payload = {
            "iss": issuer or self.issuer,
            "aud": audience,
            "sub": "repo:acme/app:ref:refs/heads/main",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "jti": f"job-{now}",
            **self.claims,
            **claims,
        }
        key = SigningKey.generate("RS256").private if foreign_key else self.key.private
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": self.key.kid})

    def github_env(self, **claims: Any) -> dict[str, str]:
        """What a GitHub job with ``id-token: write`` sees (and `claims` in its token)."""
        self.claims.update(claims)
        return {
            "GITHUB_ACTIONS": "true",
            "ACTIONS_ID_TOKEN_REQUEST_URL": f"{self.issuer}/request?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": REQUEST_SECRET,
            "FLOWLOOM_CI_ISSUER": self.issuer,
        }

    def _serve(self, request: Request) -> Reply:
        if request.path == "/.well-known/openid-configuration":
            return _json({"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"})
        if request.path == "/jwks":
            return _json({"keys": [self.key.jwk()]})
        if request.path == "/request":
            headers = {k.lower(): v for k, v in request.headers.items()}
            if headers.get("authorization") != f"bearer {REQUEST_SECRET}":
                return Reply.text(403, "bad request token")
            audience = parse_qs(request.query).get("audience", ["flowloom"])[0]
            self.requests.append(audience)
            return _json({"value": self.mint(audience=audience)})
        return Reply.text(404, "not found")


def _json(data: dict[str, Any]) -> Reply:
    return Reply(200, json.dumps(data).encode(), "application/json")
