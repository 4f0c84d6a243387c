"""Which CI run is recording: an OIDC token verified against its issuer's keys, or a claim.

Environment variables (``GITHUB_RUN_ID``, ``CI_JOB_ID``, ``BUILD_URL``) are whatever the
process that runs FlowLoom says they are, so they are recorded as a *claim*, marked
unverified. Proof is an OIDC token the CI platform signed for this job: GitHub Actions
hands one out on request (``permissions: id-token: write``; ``ACTIONS_ID_TOKEN_REQUEST_URL``),
GitLab CI puts one in a variable named by the job's ``id_tokens:``, Bitbucket Pipelines
in ``BITBUCKET_STEP_OIDC_TOKEN`` (``oidc: true``), any other in ``FLOWLOOM_ID_TOKEN``.
`verify_token` checks it the way a relying party must: the issuer's JWKS (found by OIDC
discovery, or given), an asymmetric algorithm, the expected issuer and audience, expiry
and issue time with a small clock skew. The token itself is never stored (it is a bearer
credential until it expires); its verified claims and its digest are.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
import jwt

from flowloom.errors import AuthError, InputError

__all__ = [
    "CLAIMS",
    "DEFAULT_AUDIENCE",
    "GITHUB_ISSUER",
    "CIIdentity",
    "CIIdentityError",
    "IdentitySource",
    "detect_platform",
    "environment_claims",
    "find_token",
    "identify",
    "verify_token",
]

GITHUB_ISSUER: Final = "https://token.actions.githubusercontent.com"
DEFAULT_AUDIENCE: Final = "flowloom"
"""The audience FlowLoom asks for and requires: a token minted for a cloud role (AWS's
``sts.amazonaws.com``) is not accepted here, and one minted here opens no cloud role."""

SKEW_S: Final = 60
_ALGORITHMS: Final = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
_LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})

CLAIMS: Final = (
    "iss", "sub", "aud", "jti", "iat", "exp",
    # GitHub Actions
    "repository", "repository_id", "repository_owner", "ref", "ref_type", "sha",
    "workflow", "workflow_ref", "job_workflow_ref", "run_id", "run_number", "run_attempt",
    "actor", "event_name", "environment", "runner_environment", "head_ref", "base_ref",
    # GitLab CI
    "project_path", "project_id", "namespace_path", "pipeline_id", "pipeline_source",
    "job_id", "user_login", "ref_protected", "ci_config_ref_uri",
    # Bitbucket Pipelines
    "workspaceUuid", "repositoryUuid", "pipelineUuid", "stepUuid", "branchName",
)  # fmt: skip
"""The claims recorded from a verified token (strings, numbers and booleans only)."""

_ENVIRONMENT: Final = {
    "github": (
        "GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_RUN_ATTEMPT", "GITHUB_WORKFLOW",
        "GITHUB_REF", "GITHUB_SHA", "GITHUB_ACTOR", "GITHUB_EVENT_NAME", "GITHUB_SERVER_URL",
    ),
    "gitlab": (
        "CI_SERVER_URL", "CI_PROJECT_PATH", "CI_PIPELINE_ID", "CI_JOB_ID", "CI_JOB_URL",
        "CI_COMMIT_REF_NAME", "CI_COMMIT_SHA", "GITLAB_USER_LOGIN", "CI_PIPELINE_SOURCE",
    ),
    "jenkins": ("JENKINS_URL", "JOB_NAME", "BUILD_NUMBER", "BUILD_URL", "GIT_COMMIT", "GIT_BRANCH"),
    "bitbucket": (
        "BITBUCKET_WORKSPACE", "BITBUCKET_REPO_FULL_NAME", "BITBUCKET_BUILD_NUMBER",
        "BITBUCKET_PIPELINE_UUID", "BITBUCKET_STEP_UUID", "BITBUCKET_BRANCH", "BITBUCKET_COMMIT",
    ),
}  # fmt: skip


class CIIdentityError(AuthError):
    """A CI identity token that does not verify: nothing was recorded."""


@dataclass(frozen=True)
class CIIdentity:
    """Who is recording: the platform, and claims that are proven (`verified`) or not."""

    platform: str
    verified: bool
    claims: Mapping[str, Any] = field(default_factory=dict)
    issuer: str | None = None
    token_sha256: str | None = None
    token: str | None = field(default=None, repr=False, compare=False)
    """The verified token itself, for a team server to verify again (never recorded)."""

    @property
    def sha(self) -> str | None:
        """The commit the run says it built, when it says so."""
        for key in ("sha", "GITHUB_SHA", "CI_COMMIT_SHA", "BITBUCKET_COMMIT", "GIT_COMMIT"):
            value = self.claims.get(key)
            if isinstance(value, str) and value:
                return value
        return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "platform": self.platform,
            "verified": self.verified,
            "claims": dict(self.claims),
        }
        if self.issuer:
            data["issuer"] = self.issuer
        if self.token_sha256:
            data["token_sha256"] = self.token_sha256
        return data


def detect_platform(env: Mapping[str, str]) -> str | None:
    """github, gitlab, jenkins or bitbucket, from the variables each always sets."""
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    if env.get("BITBUCKET_BUILD_NUMBER"):
        return "bitbucket"
    if env.get("JENKINS_URL"):
        return "jenkins"
    return None


def environment_claims(platform: str | None, env: Mapping[str, str]) -> dict[str, str]:
    """What the environment says about the run (a claim, not proof)."""
    names = _ENVIRONMENT.get(platform or "", ())
    return {name: env[name] for name in names if env.get(name)}


IdentitySource = Callable[[str], str | None]
"""Returns a token for an audience, or None: how a platform hands one out."""


def _check_url(url: str, what: str) -> None:
    parts = urlsplit(url)
    loopback = (parts.hostname or "") in _LOOPBACK
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise InputError(f"{what} must be an https:// URL, got {url!r}")


def find_token(
    platform: str | None, env: Mapping[str, str], http: httpx.Client, audience: str
) -> str | None:
    """This job's OIDC token, where the platform offers one; None when there is none."""
    explicit = env.get("FLOWLOOM_ID_TOKEN")
    if explicit:
        return explicit.strip()
    if platform == "bitbucket" and env.get("BITBUCKET_STEP_OIDC_TOKEN"):
        return env["BITBUCKET_STEP_OIDC_TOKEN"].strip()
    url, bearer = env.get("ACTIONS_ID_TOKEN_REQUEST_URL"), env.get("ACTIONS_ID_TOKEN_REQUEST_TOKEN")
    if platform == "github" and url and bearer:
        _check_url(url, "ACTIONS_ID_TOKEN_REQUEST_URL")
        joiner = "&" if "?" in url else "?"
        try:
            answer = http.get(
                f"{url}{joiner}{urlencode({'audience': audience})}",
                headers={"Authorization": f"bearer {bearer}"},
            )
        except httpx.HTTPError as exc:
            raise CIIdentityError(f"cannot get the job's OIDC token from GitHub: {exc}") from None
        if answer.status_code != 200:
            raise CIIdentityError(
                f"GitHub refused the job's OIDC token (HTTP {answer.status_code})",
                hint="the workflow needs 'permissions: id-token: write'",
            )
        try:
            value = answer.json()["value"]
        except (ValueError, KeyError, TypeError):
            raise CIIdentityError("GitHub's OIDC token answer has no 'value'") from None
        return str(value)
    return None


def default_issuer(platform: str | None, env: Mapping[str, str]) -> str | None:
    """The issuer a platform's tokens come from, when it can be known without configuration."""
    if platform == "github":
        return GITHUB_ISSUER
    if platform == "gitlab" and env.get("CI_SERVER_URL"):
        return env["CI_SERVER_URL"].rstrip("/")
    if platform == "bitbucket" and env.get("BITBUCKET_WORKSPACE"):
        return (
            "https://api.bitbucket.org/2.0/workspaces/"
            f"{env['BITBUCKET_WORKSPACE']}/pipelines-config/identity/oidc"
        )
    return None


def _get_json(http: httpx.Client, url: str, what: str) -> dict[str, Any]:
    _check_url(url, what)
    try:
        answer = http.get(url)
    except httpx.HTTPError as exc:
        raise CIIdentityError(f"cannot fetch the {what} at {url}: {exc}") from None
    if answer.status_code != 200:
        raise CIIdentityError(f"the {what} at {url} answered HTTP {answer.status_code}")
    try:
        data = answer.json()
    except ValueError:
        raise CIIdentityError(f"the {what} at {url} is not JSON") from None
    if not isinstance(data, dict):
        raise CIIdentityError(f"the {what} at {url} is not a JSON object")
    return data


def verify_token(
    token: str,
    *,
    issuer: str,
    audience: str,
    http: httpx.Client,
    jwks_url: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The token's claims, once its signature, issuer, audience and times verify."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise CIIdentityError("the CI identity token is not a JWT") from None
    algorithm = header.get("alg")
    if algorithm not in _ALGORITHMS:
        raise CIIdentityError(f"the CI identity token is signed with {algorithm!r}, not allowed")
    if jwks_url is None:
        discovery = _get_json(
            http, issuer.rstrip("/") + "/.well-known/openid-configuration", "OIDC discovery"
        )
        found = discovery.get("jwks_uri")
        if not isinstance(found, str):
            raise CIIdentityError(f"{issuer}'s OIDC discovery names no jwks_uri")
        jwks_url = found
    try:
        keys = jwt.PyJWKSet.from_dict(_get_json(http, jwks_url, "issuer's JWKS"))
    except jwt.PyJWTError as exc:
        raise CIIdentityError(f"the JWKS at {jwks_url} cannot be used: {exc}") from None
    kid = header.get("kid")
    candidates = [k for k in keys.keys if kid is None or k.key_id == kid]
    if not candidates:
        raise CIIdentityError(f"the issuer's JWKS has no key {kid!r} (the token's kid)")
    moment = (now or datetime.now(UTC)).timestamp()
    last: Exception | None = None
    for key in candidates:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=SKEW_S,
                options={"require": ["exp", "iat", "iss", "aud"], "verify_iat": False},
            )
        except jwt.InvalidSignatureError as exc:
            last = exc
            continue
        except jwt.PyJWTError as exc:
            raise CIIdentityError(f"the CI identity token does not verify: {exc}") from None
        iat = claims.get("iat")
        exp = claims.get("exp")
        if not isinstance(iat, int | float) or iat > moment + SKEW_S:
            raise CIIdentityError("the CI identity token was issued in the future")
        if not isinstance(exp, int | float) or exp < moment - SKEW_S:
            raise CIIdentityError("the CI identity token has expired")
        return claims
    raise CIIdentityError(f"the CI identity token does not verify: {last}")


def identify(
    env: Mapping[str, str] | None,
    http: httpx.Client,
    *,
    issuer: str | None = None,
    audience: str = DEFAULT_AUDIENCE,
    jwks_url: str | None = None,
    now: datetime | None = None,
) -> CIIdentity:
    """The recording run's identity: verified from its OIDC token when there is one
    (CIIdentityError when that token does not verify), else the environment's claim."""
    env = dict(os.environ) if env is None else env
    platform = detect_platform(env)
    token = find_token(platform, env, http, audience)
    if token is None:
        return CIIdentity(
            platform=platform or "unknown",
            verified=False,
            claims=environment_claims(platform, env),
        )
    issuer = issuer or env.get("FLOWLOOM_CI_ISSUER") or default_issuer(platform, env)
    if not issuer:
        raise InputError(
            "a CI identity token was found but no issuer to verify it against",
            hint="give --issuer URL (or FLOWLOOM_CI_ISSUER)",
        )
    claims = verify_token(
        token,
        issuer=issuer,
        audience=audience,
        http=http,
        jwks_url=jwks_url or env.get("FLOWLOOM_CI_JWKS_URL") or None,
        now=now,
    )
    kept = {
        name: claims[name]
        for name in CLAIMS
        if isinstance(claims.get(name), str | int | float | bool)
        or (name == "aud" and isinstance(claims.get(name), list))
    }
    return CIIdentity(
        platform=platform or "oidc",
        verified=True,
        claims=kept,
        issuer=issuer,
        token_sha256=hashlib.sha256(token.encode("utf-8")).hexdigest(),
        token=token,
    )
