"""The CI run's identity: an OIDC token verified against a real JWKS on loopback, or a claim."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import jwt
import pytest

from flowloom.ci.identity import CIIdentityError, identify, verify_token
from flowloom.errors import InputError
from tests.support.ci_issuer import CIIssuer

SHA = "a" * 40


@pytest.fixture
def issuer() -> Iterator[CIIssuer]:
    with CIIssuer({"repository": "acme/app", "sha": SHA, "run_id": "4242"}) as found:
        yield found


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


def test_a_github_job_token_is_requested_and_verified(issuer: CIIssuer, http: httpx.Client) -> None:
    env = {**issuer.github_env(), "GITHUB_REPOSITORY": "someone/else", "GITHUB_RUN_ID": "1"}
    found = identify(env, http)
    assert found.verified and found.platform == "github"
    assert found.issuer == issuer.issuer
    assert found.claims["repository"] == "acme/app"  # from the token, not the environment
    assert found.claims["run_id"] == "4242" and found.sha == SHA
    assert "GITHUB_RUN_ID" not in found.claims
    assert issuer.requests == ["flowloom"]  # the audience asked for
    assert found.token_sha256 is not None and len(found.token_sha256) == 64
    assert "token" not in found.to_json()


def test_a_token_in_a_variable_gitlab_style(issuer: CIIssuer, http: httpx.Client) -> None:
    env = {
        "GITLAB_CI": "true",
        "CI_SERVER_URL": issuer.issuer,
        "FLOWLOOM_ID_TOKEN": issuer.mint(project_path="acme/app", pipeline_id=7),
    }
    found = identify(env, http)
    assert found.verified and found.platform == "gitlab"
    assert found.claims["project_path"] == "acme/app" and found.claims["pipeline_id"] == 7


def test_without_a_token_the_environment_is_only_a_claim(http: httpx.Client) -> None:
    env = {"GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/app", "GITHUB_SHA": SHA}
    found = identify(env, http)
    assert not found.verified
    assert found.claims == {"GITHUB_REPOSITORY": "acme/app", "GITHUB_SHA": SHA}
    assert identify({}, http).platform == "unknown"
    jenkins = identify({"JENKINS_URL": "https://ci.example", "BUILD_NUMBER": "9"}, http)
    assert jenkins.platform == "jenkins" and not jenkins.verified


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"audience": "sts.amazonaws.com"}, "Audience doesn't match"),
        ({"issuer": "https://evil.example"}, "Invalid issuer"),
        ({"age": 3600}, "expired"),
        ({"age": -3600}, "not yet valid|issued in the future"),
        ({"foreign_key": True}, "does not verify"),
    ],
)
def test_bad_tokens_are_refused(
    issuer: CIIssuer, http: httpx.Client, kwargs: dict[str, object], message: str
) -> None:
    token = issuer.mint(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(CIIdentityError, match=message):
        verify_token(token, issuer=issuer.issuer, audience="flowloom", http=http)


def test_symmetric_and_unsigned_tokens_are_refused(issuer: CIIssuer, http: httpx.Client) -> None:
    claims = {"iss": issuer.issuer, "aud": "flowloom", "iat": 1, "exp": 2**40}
    for token in (
        jwt.encode(claims, "a shared secret long enough for hs256!!", algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
    ):
        with pytest.raises(CIIdentityError, match="not allowed"):
            verify_token(token, issuer=issuer.issuer, audience="flowloom", http=http)
    with pytest.raises(CIIdentityError, match="not a JWT"):
        verify_token("not-a-token", issuer=issuer.issuer, audience="flowloom", http=http)


def test_the_jwks_is_fetched_over_https_only(issuer: CIIssuer, http: httpx.Client) -> None:
    token = issuer.mint()
    with pytest.raises(InputError, match="must be an https:// URL"):
        verify_token(
            token,
            issuer=issuer.issuer,
            audience="flowloom",
            http=http,
            jwks_url="http://jwks.example/keys",
        )
    # A given JWKS URL is used instead of discovery.
    claims = verify_token(
        token,
        issuer=issuer.issuer,
        audience="flowloom",
        http=http,
        jwks_url=f"{issuer.issuer}/jwks",
    )
    assert claims["sha"] == SHA


def test_a_token_without_a_known_issuer_is_an_error(issuer: CIIssuer, http: httpx.Client) -> None:
    with pytest.raises(InputError, match="no issuer to verify it against"):
        identify({"JENKINS_URL": "https://ci.example", "FLOWLOOM_ID_TOKEN": issuer.mint()}, http)


def test_an_unreachable_issuer_is_an_error(http: httpx.Client) -> None:
    with CIIssuer() as gone:
        token, url = gone.mint(), gone.issuer
    with pytest.raises(CIIdentityError, match="cannot fetch"):
        verify_token(token, issuer=url, audience="flowloom", http=http)
