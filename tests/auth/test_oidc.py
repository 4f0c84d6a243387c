"""OIDC relying party against a real provider on loopback: the good path and each refusal."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from flowloom.auth.oidc import (
    CALLBACK_PATH,
    OidcClient,
    OidcIdentity,
    OidcLoginError,
    OidcSettings,
    PendingLogin,
    RoleGrant,
    pkce_challenge,
    relative_redirect,
)
from flowloom.errors import AuthError, ConfigError, InputError
from tests.support.oidc_provider import OidcProvider, ProviderUser

REDIRECT = "http://127.0.0.1:9/api/v1/auth/oidc/callback"  # never contacted: code is read off
SECRET = "client secret with spaces & symbols"


@pytest.fixture
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(user=ProviderUser(groups=["engineering", "qa"])) as provider:
        provider.register_client("flowloom", [REDIRECT], secret=SECRET)
        provider.register_client("flowloom-public", [REDIRECT])
        yield provider


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


def settings_for(idp: OidcProvider, **overrides: Any) -> OidcSettings:
    data: dict[str, Any] = {
        "issuer": idp.issuer,
        "client_id": "flowloom",
        "client_secret": SECRET,
        "redirect_uri": REDIRECT,
        "role_map": {"engineering": ["alpha:developer"], "admins": ["*:admin"]},
        "default_roles": ["alpha:auditor"],
    }
    data.update(overrides)
    return OidcSettings.from_mapping({k: v for k, v in data.items() if v is not None})


def login(
    client: OidcClient,
    http: httpx.Client,
    *,
    reauth: bool = False,
    tamper: dict[str, str] | None = None,
) -> OidcIdentity:
    """What a browser and the callback route do: follow the provider, then finish."""
    request = client.begin("/projects/alpha", reauth=reauth)
    answer = http.get(request.authorization_url)
    assert answer.status_code == 302, answer.text
    query = parse_qs(urlsplit(answer.headers["location"]).query)
    assert query["state"] == [request.state]
    pending = PendingLogin(
        state=request.state,
        verifier=request.verifier,
        nonce=request.nonce,
        redirect="/projects/alpha",
    )
    if tamper:
        pending = PendingLogin(**{**pending.__dict__, **tamper})
    return client.finish(query["code"][0], pending)


def refusal(client: OidcClient, http: httpx.Client, **kwargs: Any) -> OidcLoginError:
    with pytest.raises(OidcLoginError) as info:
        login(client, http, **kwargs)
    assert isinstance(info.value, AuthError)
    return info.value


# -- the good path --------------------------------------------------------------------


def test_valid_login_gives_the_verified_identity(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp), http)
    identity = login(client, http)
    assert identity.issuer == idp.issuer
    assert identity.subject == "user-1234"
    assert identity.email == "ada@example.test"
    assert identity.name == "Ada Lovelace"
    assert identity.groups == ("engineering", "qa")
    assert identity.auth_time is not None
    assert abs((datetime.now(UTC) - identity.auth_time).total_seconds()) < 30
    # Discovery and keys are cached: a second login fetches neither again.
    login(client, http)
    assert idp.count("/.well-known/openid-configuration") == 1
    assert idp.count("/jwks") == 1
    assert idp.count("/token") == 2


def test_public_client_uses_pkce_alone(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp, client_id="flowloom-public", client_secret=None), http)
    assert login(client, http).subject == "user-1234"


def test_authorization_url_carries_state_nonce_and_s256_challenge(
    idp: OidcProvider, http: httpx.Client
) -> None:
    client = OidcClient(settings_for(idp), http)
    request = client.begin("/")
    url = urlsplit(request.authorization_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == idp.issuer + "/authorize"
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == "flowloom"
    assert query["redirect_uri"] == REDIRECT
    assert query["scope"] == "openid email profile"
    assert query["state"] == request.state and query["nonce"] == request.nonce
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(request.verifier.encode()).digest()
    expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert query["code_challenge"] == expected == pkce_challenge(request.verifier)
    assert 43 <= len(request.verifier) <= 128
    assert "prompt" not in query and "max_age" not in query
    # Each login attempt gets fresh secrets.
    again = client.begin("/")
    assert {again.state, again.verifier, again.nonce}.isdisjoint(
        {request.state, request.verifier, request.nonce}
    )


def test_reauth_asks_the_provider_to_prompt_again(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp), http)
    request = client.begin("/", reauth=True)
    query = {k: v[0] for k, v in parse_qs(urlsplit(request.authorization_url).query).items()}
    assert query["prompt"] == "login" and query["max_age"] == "0"
    assert PendingLogin(request.state, request.verifier, request.nonce).reauth
    assert not PendingLogin(client.begin("/").state, "v", "n").reauth
    identity = login(client, http, reauth=True)
    assert identity.auth_time is not None


def test_reauth_refused_when_provider_does_not_ask_again(
    idp: OidcProvider, http: httpx.Client
) -> None:
    client = OidcClient(settings_for(idp), http)
    login(client, http)
    idp.session_auth_time = int(datetime.now(UTC).timestamp()) - 3600
    idp.misbehaviour.ignore_reauth = True
    assert refusal(client, http, reauth=True).reason == "reauth"
    # An ordinary login with the old provider session is still fine.
    assert login(client, http).subject == "user-1234"


def test_unverified_email_is_not_trusted(idp: OidcProvider, http: httpx.Client) -> None:
    idp.user.email_verified = False
    identity = login(OidcClient(settings_for(idp), http), http)
    assert identity.email is None
    assert identity.name == "Ada Lovelace"


def test_groups_from_a_configured_claim(http: httpx.Client) -> None:
    user = ProviderUser(groups=["admins"])
    with OidcProvider(user=user, groups_claim="roles") as provider:
        provider.register_client("flowloom", [REDIRECT], secret=SECRET)
        client = OidcClient(settings_for(provider, groups_claim="roles"), http)
        identity = login(client, http)
    assert identity.groups == ("admins",)
    assert client.roles_for(identity.groups) == {
        RoleGrant("*", "admin"),
        RoleGrant("alpha", "auditor"),
    }


def test_es256_provider_is_accepted_by_default(http: httpx.Client) -> None:
    with OidcProvider(alg="ES256") as provider:
        provider.register_client("flowloom", [REDIRECT], secret=SECRET)
        assert login(OidcClient(settings_for(provider), http), http).subject == "user-1234"
        only_rsa = OidcClient(settings_for(provider, allowed_algs=["RS256"]), http)
        assert refusal(only_rsa, http).reason == "algorithm"


def test_key_rotation_at_the_provider_is_picked_up(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp), http)
    login(client, http)
    old_kid = idp.keys[0].kid
    new = idp.rotate_key()
    assert new.kid != old_kid
    assert login(client, http).subject == "user-1234"
    assert idp.count("/jwks") == 2


# -- refusals -------------------------------------------------------------------------


def test_wrong_audience_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.audience = "some-other-client"
    error = refusal(OidcClient(settings_for(idp), http), http)
    assert error.reason == "audience"
    assert "audience" in error.message


def test_expired_token_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.expired = True
    assert refusal(OidcClient(settings_for(idp), http), http).reason == "expired"


def test_token_from_the_future_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.issued_in_future = True
    assert refusal(OidcClient(settings_for(idp), http), http).reason == "not_yet_valid"


@pytest.mark.parametrize(("skew", "leeway", "accepted"), [(150, 120, True), (250, 120, False)])
def test_clock_skew_within_leeway_is_tolerated(
    idp: OidcProvider, http: httpx.Client, skew: int, leeway: int, accepted: bool
) -> None:
    idp.token_lifetime = 100  # exp = now + 100 at the provider

    def ahead() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=skew)

    client = OidcClient(settings_for(idp, leeway_seconds=leeway), http, clock=ahead)
    if accepted:
        assert login(client, http).subject == "user-1234"
    else:
        assert refusal(client, http).reason == "expired"


def test_signature_by_an_unpublished_key_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.foreign_key = True
    error = refusal(OidcClient(settings_for(idp), http), http)
    assert error.reason == "signature"


def test_hmac_signed_token_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.hs256_with_secret = True
    assert refusal(OidcClient(settings_for(idp), http), http).reason == "algorithm"


def test_token_from_another_issuer_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.issuer = "https://impostor.example"
    assert refusal(OidcClient(settings_for(idp), http), http).reason == "issuer"


def test_provider_claiming_another_issuer_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.discovery_issuer = "https://impostor.example"
    client = OidcClient(settings_for(idp), http)
    with pytest.raises(OidcLoginError) as info:
        client.begin("/")
    assert info.value.reason == "issuer"
    assert "https://impostor.example" in info.value.message


@pytest.mark.parametrize("how", ["other", "missing"])
def test_nonce_mismatch_is_refused(idp: OidcProvider, http: httpx.Client, how: str) -> None:
    if how == "other":
        idp.misbehaviour.nonce = "a-different-nonce"
    else:
        idp.misbehaviour.omit_nonce = True
    assert refusal(OidcClient(settings_for(idp), http), http).reason == "nonce"


def test_nonce_of_another_attempt_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp), http)
    other = client.begin("/")
    assert refusal(client, http, tamper={"nonce": other.nonce}).reason == "nonce"


def test_token_without_kid_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.omit_kid = True
    assert refusal(OidcClient(settings_for(idp), http), http).reason == "missing_kid"


def test_unknown_kid_is_refetched_once_then_refused(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp), http)
    login(client, http)
    idp.misbehaviour.unknown_kid = True
    assert refusal(client, http).reason == "unknown_key"
    assert idp.count("/jwks") == 2


def test_wrong_pkce_verifier_is_refused_by_the_provider(
    idp: OidcProvider, http: httpx.Client
) -> None:
    client = OidcClient(settings_for(idp), http)
    error = refusal(client, http, tamper={"verifier": "x" * 64})
    assert error.reason == "token_exchange"
    assert "invalid_grant" in error.message


def test_authorization_code_is_single_use(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp), http)
    request = client.begin("/")
    location = http.get(request.authorization_url).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    pending = PendingLogin(request.state, request.verifier, request.nonce)
    client.finish(code, pending)
    with pytest.raises(OidcLoginError) as info:
        client.finish(code, pending)
    assert info.value.reason == "token_exchange"
    assert code not in info.value.message


def test_wrong_client_secret_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp, client_secret="wrong"), http)
    error = refusal(client, http)
    assert error.reason == "token_exchange"
    assert "invalid_client" in error.message
    assert "wrong" not in error.message
    assert error.hint is not None and "client_secret" in error.hint


def test_missing_id_token_is_refused(idp: OidcProvider, http: httpx.Client) -> None:
    idp.misbehaviour.omit_id_token = True
    assert refusal(OidcClient(settings_for(idp), http), http).reason == "token_exchange"


def test_provider_down_before_login(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp, timeout_seconds=2), http)
    idp.stop()
    with pytest.raises(OidcLoginError) as info:
        client.begin("/")
    assert info.value.reason == "unreachable"
    assert "identity provider" in info.value.message


def test_provider_down_during_login(idp: OidcProvider, http: httpx.Client) -> None:
    client = OidcClient(settings_for(idp, timeout_seconds=2), http)
    request = client.begin("/")
    location = http.get(request.authorization_url).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    idp.stop()
    with pytest.raises(OidcLoginError) as info:
        client.finish(code, PendingLogin(request.state, request.verifier, request.nonce))
    assert info.value.reason == "unreachable"


# -- group mapping and settings -------------------------------------------------------


def test_roles_for_groups(idp: OidcProvider) -> None:
    settings = OidcSettings.from_mapping(
        {
            "issuer": "https://id.example.com/realms/x/",
            "client_id": "flowloom",
            "redirect_uri": "https://flowloom.example.com" + CALLBACK_PATH,
            "role_map": {
                "engineering": ["alpha:developer", {"project": "beta", "role": "developer"}],
                "leads": ["alpha:approver", "alpha:developer"],
                "secops": ["*:auditor"],
            },
            "default_roles": [],
        }
    )
    with httpx.Client() as http:
        client = OidcClient(settings, http)
        assert settings.issuer == "https://id.example.com/realms/x"
        assert client.roles_for([]) == frozenset()
        assert client.roles_for(["unknown"]) == frozenset()
        assert client.roles_for(["engineering", "leads", "secops"]) == {
            RoleGrant("alpha", "developer"),
            RoleGrant("beta", "developer"),
            RoleGrant("alpha", "approver"),
            RoleGrant("*", "auditor"),
        }


def test_settings_defaults_and_derived_redirect() -> None:
    settings = OidcSettings.from_mapping(
        {"issuer": "https://id.example.com", "client_id": "fl", "client_secret": "hush"},
        public_url="https://flowloom.example.com/",
    )
    assert settings.redirect_uri == "https://flowloom.example.com" + CALLBACK_PATH
    assert settings.scopes == ("openid", "email", "profile")
    assert settings.groups_claim == "groups"
    assert settings.allowed_algs == ("RS256", "ES256")
    assert settings.leeway_seconds == 60
    assert "hush" not in repr(settings)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"issuer": None}, "issuer is required"),
        ({"issuer": "http://id.example.com"}, "https://"),
        ({"client_id": ""}, "client_id"),
        ({"colour": "blue"}, "unknown [server.oidc] setting"),
        ({"redirect_uri": None}, "redirect_uri"),
        ({"scopes": "email profile"}, "openid"),
        ({"allowed_algs": ["none"]}, "allowed_algs"),
        ({"allowed_algs": ["HS256"]}, "allowed_algs"),
        ({"role_map": {"eng": ["alpha:wizard"]}}, "unknown role 'wizard'"),
        ({"role_map": {"eng": ["bad project!:developer"]}}, "not a project name"),
        ({"role_map": {"eng": "alpha:developer"}}, "must be a list"),
        ({"default_roles": ["developer"]}, 'is not "project:role"'),
        ({"leeway_seconds": -1}, "leeway_seconds"),
        ({"leeway_seconds": "60"}, "leeway_seconds"),
        ({"client_secret": ""}, "client_secret"),
    ],
)
def test_settings_are_validated(change: dict[str, Any], words: str) -> None:
    data: dict[str, Any] = {
        "issuer": "https://id.example.com",
        "client_id": "fl",
        "redirect_uri": "https://flowloom.example.com" + CALLBACK_PATH,
    }
    data.update(change)
    with pytest.raises(ConfigError) as info:
        OidcSettings.from_mapping({k: v for k, v in data.items() if v is not None})
    assert words in info.value.diagnostics()


@pytest.mark.parametrize("good", ["/", "/projects/alpha", "/a?b=c&d=%2F", "/x#frag"])
def test_relative_redirect_accepts_paths(good: str) -> None:
    assert relative_redirect(good) == good
    assert relative_redirect(None) == "/" == relative_redirect("")


@pytest.mark.parametrize(
    "bad",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
        " /x",
        "/x\r\nSet-Cookie: a=b",
    ],
)
def test_relative_redirect_refuses_other_sites(bad: str) -> None:
    with pytest.raises(InputError):
        relative_redirect(bad)


def test_load_from_table_and_environment() -> None:
    assert OidcSettings.load(None, {}) is None
    assert OidcSettings.load({}, {"FLOWLOOM_SERVER_OIDC_UNRELATED": ""}) is None
    settings = OidcSettings.load(
        {"issuer": "https://id.example.com", "client_id": "from-file", "leeway_seconds": 30},
        {
            "FLOWLOOM_SERVER_OIDC_CLIENT_ID": "from-env",
            "FLOWLOOM_SERVER_OIDC_CLIENT_SECRET": "env-secret",
            "FLOWLOOM_SERVER_OIDC_ROLE_MAP": '{"admins": ["*:admin"]}',
            "FLOWLOOM_SERVER_OIDC_DEFAULT_ROLES": "alpha:auditor, beta:auditor",
            "FLOWLOOM_SERVER_OIDC_ALLOWED_ALGS": "ES256",
            "FLOWLOOM_SERVER_OIDC_SCOPES": "openid,email groups",
            "FLOWLOOM_SERVER_OIDC_LEEWAY_SECONDS": "5",
        },
        public_url="https://flowloom.example.com",
    )
    assert settings is not None
    assert settings.client_id == "from-env" and settings.client_secret == "env-secret"
    assert settings.role_map == {"admins": (RoleGrant("*", "admin"),)}
    assert settings.default_roles == (RoleGrant("alpha", "auditor"), RoleGrant("beta", "auditor"))
    assert settings.allowed_algs == ("ES256",)
    assert settings.scopes == ("openid", "email", "groups")
    assert settings.leeway_seconds == 5
    assert settings.redirect_uri == "https://flowloom.example.com" + CALLBACK_PATH


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("ROLE_MAP", "admins=*:admin", "must be JSON"),
        ("LEEWAY_SECONDS", "soon", "number of seconds"),
        ("CLIENT_SECRET", "only-a-secret", "issuer is required"),
    ],
)
def test_load_reports_bad_environment(variable: str, value: str, words: str) -> None:
    table = {} if variable == "CLIENT_SECRET" else {"issuer": "https://id.example.com"}
    with pytest.raises(ConfigError) as info:
        OidcSettings.load(
            {**table, "client_id": "x"} if table else None,
            {"FLOWLOOM_SERVER_OIDC_" + variable: value},
            public_url="https://flowloom.example.com",
        )
    assert words in info.value.diagnostics()
