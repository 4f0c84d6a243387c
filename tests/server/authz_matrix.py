"""The authorization matrix as data: for every route, who may call it.

Written independently of the code's permission table (flowloom.auth.permissions), from
the roles described in the contract, so a wrong table entry or a forgotten
`authorize()` shows up as a mismatch. test_authz_matrix.py calls every route of the app
as every principal, on the principal's own project and on another one, and checks that
exactly the principals listed here get through. A route of the app missing here fails.

Principals: the six roles, each granted on the project "alpha" only; "instance_owner",
owner on "*"; "anonymous", no credentials. For a route with {project}, `own` is who may
call it on alpha and `other` who may call it on beta (nobody but "*" grants). Routes
without {project} use `own` only, except key routes, where `other` means another
user's key.

To add a route: add a row (and, if the default request does not fit, a `request`
recipe: a function of the Ctx that returns the path values, query and JSON body).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

PRINCIPALS = (
    "owner",
    "admin",
    "approver",
    "developer",
    "auditor",
    "service",
    "instance_owner",
    "anonymous",
)


class Ctx(Protocol):
    """What a request recipe may use (implemented by the test)."""

    who: str
    """The principal making the request."""
    project: str
    """The project the request is about (alpha for own, beta for other)."""
    own: bool
    index: int
    """An entry of the project with a body."""

    def grant(self, who: str, project: str, role: str) -> None: ...

    def grant_team(self, team: str, project: str, role: str) -> None: ...

    def person(self, *, disabled: bool = False) -> str:
        """The id of a new user (a role on nobody's project), safe to disable or delete."""
        ...

    def user_id(self, who: str) -> str: ...

    def spare_key(self, who: str) -> str:
        """A fresh API key id of `who` (the caller, or "victim"), safe to rotate/revoke."""
        ...

    def fresh(self, prefix: str) -> str:
        """A name never used before in this run."""
        ...

    def review(self, scope: str) -> tuple[str, int]:
        """An open access review of `scope` (a project, or "*") and the victim's line in it."""
        ...

    def webhook(self, project: str) -> str:
        """The id of a new webhook of `project`, safe to change or delete."""
        ...

    def webhook_delivery(self, project: str) -> int:
        """A pending (test) delivery of a webhook of `project`: redelivering it is 400."""
        ...


@dataclass(frozen=True)
class Call:
    path: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, Any] = field(default_factory=dict)
    json: Any = None


@dataclass(frozen=True)
class Rule:
    own: frozenset[str]
    other: frozenset[str] | None = None
    """Who may call it on another project / another user's thing; None: not scoped."""
    request: Callable[[Ctx], Call] | None = None
    ok: frozenset[int] = frozenset()
    """4xx statuses that still mean 'allowed' (besides 2xx/3xx) for this route."""


def _set(*names: str) -> frozenset[str]:
    return frozenset(names)


EVERYONE = _set(*PRINCIPALS)
AUTHENTICATED = EVERYONE - {"anonymous"}
STAR = _set("instance_owner")
ALL_ROLES = _set("owner", "admin", "approver", "developer", "auditor", "service", "instance_owner")
READERS = ALL_ROLES
APPENDERS = _set("owner", "admin", "approver", "developer", "service", "instance_owner")
CHECKPOINTERS = _set("owner", "admin", "developer", "service", "instance_owner")
PROJECT_ADMINS = _set("owner", "admin", "instance_owner")
AUDITORS = _set("owner", "admin", "auditor", "instance_owner")
OWN_KEYS = _set("owner", "admin", "approver", "developer", "auditor", "instance_owner")
NOBODY: frozenset[str] = frozenset()

_EVENT = {"kind": "agent.prompt", "body": "hello", "session": "s-1"}


def _grant(ctx: Ctx) -> Call:
    return Call(path={"user_id": ctx.user_id("victim"), "role": "auditor"})


def _revoke(ctx: Ctx) -> Call:
    ctx.grant("victim", ctx.project, "auditor")
    return _grant(ctx)


def _key_target(ctx: Ctx) -> Call:
    owner = ctx.who if ctx.own and ctx.who != "anonymous" else "victim"
    return Call(path={"key_id": ctx.spare_key(owner)})


def _key_create(ctx: Ctx) -> Call:
    body: dict[str, Any] = {"name": ctx.fresh("k")}
    if not ctx.own:
        body["user_id"] = ctx.user_id("victim")
    return Call(json=body)


def _key_list(ctx: Ctx) -> Call:
    return Call(query={} if ctx.own else {"user_id": ctx.user_id("victim")})


def _team_member(ctx: Ctx) -> Call:
    return Call(path={"team": "matrix-team", "user_id": ctx.user_id("victim")})


def _person(ctx: Ctx) -> Call:
    return Call(path={"user_id": ctx.person()})


def _disabled_person(ctx: Ctx) -> Call:
    return Call(path={"user_id": ctx.person(disabled=True)})


def _team_role(ctx: Ctx) -> Call:
    return Call(path={"team": "matrix-team", "role": "auditor"})


def _team_revoke(ctx: Ctx) -> Call:
    ctx.grant_team("matrix-team", ctx.project, "auditor")
    return _team_role(ctx)


P = "/api/v1/projects/{project}"
L = P + "/ledger"

MATRIX: dict[tuple[str, str], Rule] = {
    # -- public --------------------------------------------------------------------
    ("GET", "/healthz"): Rule(EVERYONE),
    ("GET", "/readyz"): Rule(EVERYONE),
    ("GET", "/metrics"): Rule(EVERYONE),
    ("GET", "/openapi.json"): Rule(EVERYONE),
    ("GET", "/docs"): Rule(EVERYONE),
    ("GET", "/docs/oauth2-redirect"): Rule(EVERYONE),
    ("POST", "/api/v1/auth/login"): Rule(
        EVERYONE,
        request=lambda ctx: Call(
            json={"email": "login@example.org", "password": "correct horse battery staple"}
        ),
    ),
    # -- identity --------------------------------------------------------------------
    ("POST", "/api/v1/auth/logout"): Rule(AUTHENTICATED),
    ("GET", "/api/v1/me"): Rule(AUTHENTICATED),
    ("GET", "/api/v1/projects"): Rule(AUTHENTICATED),
    ("POST", "/api/v1/projects"): Rule(
        STAR, request=lambda ctx: Call(json={"name": ctx.fresh("proj")})
    ),
    ("GET", "/api/v1/users"): Rule(STAR),
    ("POST", "/api/v1/users"): Rule(
        STAR,
        request=lambda ctx: Call(
            json={"email": ctx.fresh("u") + "@example.org", "name": "New Person"}
        ),
    ),
    ("POST", "/api/v1/teams"): Rule(STAR, request=lambda ctx: Call(json={"name": ctx.fresh("t")})),
    ("PUT", "/api/v1/teams/{team}/members/{user_id}"): Rule(STAR, request=_team_member),
    # -- offboarding and teams' roles -------------------------------------------------
    ("POST", "/api/v1/users/{user_id}/disable"): Rule(STAR, request=_person),
    ("POST", "/api/v1/users/{user_id}/enable"): Rule(STAR, request=_disabled_person),
    ("DELETE", "/api/v1/users/{user_id}"): Rule(STAR, request=_person),
    ("GET", "/api/v1/users/{user_id}/grants"): Rule(
        STAR, request=lambda ctx: Call(path={"user_id": ctx.user_id("victim")})
    ),
    ("GET", "/api/v1/teams"): Rule(STAR),
    ("GET", "/api/v1/teams/{team}/roles"): Rule(STAR, request=_team_role),
    # -- keys: own keys need key.self somewhere; anyone's need key.admin on "*" -------
    ("GET", "/api/v1/keys"): Rule(OWN_KEYS, other=STAR, request=_key_list),
    # a secret goes to its owner: nobody makes one for another person (the victim is a
    # person; service accounts: tests/server/test_keys_minting.py)
    ("POST", "/api/v1/keys"): Rule(OWN_KEYS, other=NOBODY, request=_key_create),
    ("POST", "/api/v1/keys/{key_id}/rotate"): Rule(OWN_KEYS, other=NOBODY, request=_key_target),
    ("DELETE", "/api/v1/keys/{key_id}"): Rule(OWN_KEYS, other=STAR, request=_key_target),
    # -- projects --------------------------------------------------------------------
    ("GET", P): Rule(READERS, other=STAR),
    ("GET", P + "/members"): Rule(READERS, other=STAR),
    ("PUT", P + "/members/{user_id}/{role}"): Rule(PROJECT_ADMINS, other=STAR, request=_grant),
    ("DELETE", P + "/members/{user_id}/{role}"): Rule(PROJECT_ADMINS, other=STAR, request=_revoke),
    ("PUT", P + "/teams/{team}/{role}"): Rule(PROJECT_ADMINS, other=STAR, request=_team_role),
    ("DELETE", P + "/teams/{team}/{role}"): Rule(PROJECT_ADMINS, other=STAR, request=_team_revoke),
    ("GET", P + "/audit"): Rule(AUDITORS, other=STAR),
    # -- ledger ----------------------------------------------------------------------
    ("POST", L + "/entries"): Rule(APPENDERS, other=STAR, request=lambda ctx: Call(json=_EVENT)),
    ("POST", L + "/batch"): Rule(
        APPENDERS, other=STAR, request=lambda ctx: Call(json={"events": [_EVENT, _EVENT]})
    ),
    ("GET", L + "/entries"): Rule(READERS, other=STAR),
    ("GET", L + "/entries/{index}"): Rule(READERS, other=STAR),
    ("GET", L + "/entries/{index}/body"): Rule(READERS, other=STAR),
    ("GET", L + "/checkpoint"): Rule(READERS, other=STAR),
    ("POST", L + "/checkpoint"): Rule(CHECKPOINTERS, other=STAR),
    ("GET", L + "/vkey"): Rule(READERS, other=STAR),
    ("GET", L + "/proof/inclusion"): Rule(
        READERS, other=STAR, request=lambda ctx: Call(query={"index": ctx.index})
    ),
    ("GET", L + "/proof/consistency"): Rule(
        READERS, other=STAR, request=lambda ctx: Call(query={"old": 1})
    ),
    ("GET", L + "/bundle"): Rule(READERS, other=STAR),
}
"""(method, route template) → Rule. Other helpers: add your routes' rows below."""

# -- decisions and electronic signatures (decision.read / decision.approve) ----------------
# The requests carry an invalid id or digest: a principal that passes authorize() gets
# 422 from validation (dependencies run first), one that does not gets 403/404.
DECISION_READERS = _set("owner", "admin", "approver", "developer", "auditor", "instance_owner")
SIGNERS = _set("owner", "admin", "approver", "instance_owner")
_INVALID = frozenset({422})
_BAD_DECISION = Call(path={"decision_id": "not-a-decision"})
_BAD_SIGNATURE = Call(path={"sig_id": "-1"})
MATRIX.update(
    {
        ("GET", P + "/decisions"): Rule(DECISION_READERS, other=STAR),
        ("GET", P + "/decisions/{decision_id}"): Rule(
            DECISION_READERS, other=STAR, request=lambda ctx: _BAD_DECISION, ok=_INVALID
        ),
        ("POST", P + "/decisions/{decision_id}/approve"): Rule(
            SIGNERS, other=STAR, request=lambda ctx: _BAD_DECISION, ok=_INVALID
        ),
        ("POST", P + "/signatures"): Rule(
            SIGNERS,
            other=STAR,
            request=lambda ctx: Call(
                json={"subject": "entry:0", "content_digest": "not-a-digest", "meaning": "approved"}
            ),
            ok=_INVALID,
        ),
        ("GET", P + "/signatures/{sig_id}"): Rule(
            DECISION_READERS, other=STAR, request=lambda ctx: _BAD_SIGNATURE, ok=_INVALID
        ),
        ("GET", P + "/signatures/{sig_id}/verify"): Rule(
            DECISION_READERS, other=STAR, request=lambda ctx: _BAD_SIGNATURE, ok=_INVALID
        ),
    }
)

# -- single sign-on (public: the identity provider authenticates) ---------------------
# Without a [server.oidc] table both answer 404 (not configured), and a callback without
# a pending login 400, for everyone alike. OIDC helper: replace with sharper rows.
_SSO_OFF = frozenset({400, 404})
MATRIX.setdefault(("GET", "/api/v1/auth/oidc/login"), Rule(EVERYONE, ok=_SSO_OFF))
MATRIX.setdefault(("GET", "/api/v1/auth/oidc/callback"), Rule(EVERYONE, ok=_SSO_OFF))
# SAML likewise (404 without [server.saml]); its logout needs a signed-in principal first.
_SAML = "/api/v1/auth/saml"
MATRIX.setdefault(("GET", _SAML + "/metadata"), Rule(EVERYONE, ok=_SSO_OFF))
MATRIX.setdefault(("GET", _SAML + "/login"), Rule(EVERYONE, ok=_SSO_OFF))
MATRIX.setdefault(("POST", _SAML + "/acs"), Rule(EVERYONE, ok=_SSO_OFF))
MATRIX.setdefault(("POST", _SAML + "/logout"), Rule(AUTHENTICATED, ok=_SSO_OFF))
MATRIX.setdefault(("GET", _SAML + "/sls"), Rule(EVERYONE, ok=_SSO_OFF))
MATRIX.setdefault(("POST", _SAML + "/sls"), Rule(EVERYONE, ok=_SSO_OFF))

# -- compliance: reports (audit.read), the catalogue (project.read), legal holds ----------
# A report over one quiet day as JSON: real, and cheap enough to generate per principal.
_REPORT = {"framework": "sox", "from": "2026-01-01", "to": "2026-01-01", "format": "json"}
MATRIX.update(
    {
        ("GET", P + "/reports/frameworks"): Rule(READERS, other=STAR),
        ("POST", P + "/reports"): Rule(
            AUDITORS, other=STAR, request=lambda ctx: Call(json=_REPORT)
        ),
        # Without an uploaded file a principal that passes authorize() gets 422.
        ("POST", P + "/reports/verify"): Rule(AUDITORS, other=STAR, ok=_INVALID),
        ("POST", P + "/reports/responses"): Rule(
            PROJECT_ADMINS,
            other=STAR,
            request=lambda ctx: Call(
                json={"exception": "SOX-0123456789", "response": "matrix: remediated"}
            ),
        ),
        ("GET", P + "/compliance/holds"): Rule(AUDITORS, other=STAR),
        ("POST", P + "/compliance/holds"): Rule(
            PROJECT_ADMINS,
            other=STAR,
            request=lambda ctx: Call(
                json={"action": "hold", "id": ctx.fresh("LH-"), "reason": "matrix"}
            ),
        ),
    }
)

# -- access reviews: campaigns stay open with undecided lines, so opening another is 409,
# closing is 409 and deciding (the matrix principals have no password to re-enter) is 401
# for whoever passes authorize(); everyone else gets 403/404 first.
AR = P + "/access-reviews"
AI = "/api/v1/access-reviews"
_REVIEWED = frozenset({409})
_SIGNING = frozenset({401})
_DECIDE = {"decision": "certify", "password": "not the password"}


def _campaign(ctx: Ctx) -> Call:
    return Call(path={"campaign": ctx.review(ctx.project)[0]})


def _line(ctx: Ctx, scope: str) -> Call:
    campaign, line = ctx.review(scope)
    return Call(path={"campaign": campaign, "line": str(line)}, json=_DECIDE)


def _instance_campaign(ctx: Ctx) -> Call:
    return Call(path={"campaign": ctx.review("*")[0]})


MATRIX.update(
    {
        ("GET", AR): Rule(AUDITORS, other=STAR),
        ("POST", AR): Rule(
            PROJECT_ADMINS, other=STAR, request=lambda ctx: Call(json={}), ok=_REVIEWED
        ),
        ("GET", AR + "/dormant"): Rule(AUDITORS, other=STAR),
        ("GET", AR + "/{campaign}"): Rule(AUDITORS, other=STAR, request=_campaign),
        ("POST", AR + "/{campaign}/lines/{line}"): Rule(
            PROJECT_ADMINS, other=STAR, request=lambda ctx: _line(ctx, ctx.project), ok=_SIGNING
        ),
        ("POST", AR + "/{campaign}/close"): Rule(
            PROJECT_ADMINS, other=STAR, request=_campaign, ok=_REVIEWED
        ),
        ("GET", AI): Rule(STAR),
        ("POST", AI): Rule(STAR, request=lambda ctx: Call(json={}), ok=_REVIEWED),
        ("GET", AI + "/dormant"): Rule(STAR),
        ("GET", AI + "/{campaign}"): Rule(STAR, request=_instance_campaign),
        ("POST", AI + "/{campaign}/lines/{line}"): Rule(
            STAR, request=lambda ctx: _line(ctx, "*"), ok=_SIGNING
        ),
        ("POST", AI + "/{campaign}/close"): Rule(STAR, request=_instance_campaign, ok=_REVIEWED),
    }
)

# -- web interface (HTML pages under /ui; same authorize() as the API) ------------------
# Forms posted with an API key and no form body: a principal that passes authorize()
# gets 422 (or the page's own 400), one that does not gets 403/404 first. Anonymous
# visitors get the sign-in page with status 401; redirects (303) are followed.
W = "/ui/projects/{project}"
_QUIET = {"from": "2026-01-01", "to": "2026-01-01"}
MATRIX.update(
    {
        ("GET", "/"): Rule(AUTHENTICATED),
        ("GET", "/ui"): Rule(AUTHENTICATED),
        ("GET", "/ui/login"): Rule(EVERYONE),
        ("POST", "/ui/login"): Rule(EVERYONE, ok=_INVALID),
        ("POST", "/ui/logout"): Rule(AUTHENTICATED),
        ("GET", "/ui/static/{name}"): Rule(
            EVERYONE, request=lambda ctx: Call(path={"name": "web.css"})
        ),
        ("GET", "/ui/keys"): Rule(OWN_KEYS),
        ("POST", "/ui/keys"): Rule(OWN_KEYS, ok=_INVALID),
        ("POST", "/ui/keys/{key_id}/revoke"): Rule(OWN_KEYS, other=STAR, request=_key_target),
        ("GET", "/ui/admin"): Rule(STAR),
        ("GET", "/ui/admin/gateway"): Rule(STAR),
        ("POST", "/ui/admin/users"): Rule(STAR, ok=_INVALID),
        ("POST", "/ui/admin/users/{user_id}/disable"): Rule(STAR, request=_person),
        ("POST", "/ui/admin/users/{user_id}/enable"): Rule(STAR, request=_disabled_person),
        ("GET", "/ui/admin/users/{user_id}/delete"): Rule(STAR, request=_person),
        ("POST", "/ui/admin/users/{user_id}/delete"): Rule(STAR, request=_person, ok=_INVALID),
        ("GET", W): Rule(READERS, other=STAR),
        ("GET", W + "/timeline"): Rule(READERS, other=STAR),
        ("GET", W + "/entries/{index}"): Rule(READERS, other=STAR),
        ("GET", W + "/decisions"): Rule(DECISION_READERS, other=STAR),
        ("GET", W + "/decisions/{decision_id}"): Rule(
            DECISION_READERS, other=STAR, request=lambda ctx: _BAD_DECISION, ok=_INVALID
        ),
        ("POST", W + "/decisions/{decision_id}/approve"): Rule(
            SIGNERS, other=STAR, request=lambda ctx: _BAD_DECISION, ok=_INVALID
        ),
        ("GET", W + "/why"): Rule(
            READERS, other=STAR, request=lambda ctx: Call(query={"path": "src/x.py"})
        ),
        ("GET", W + "/ledger"): Rule(READERS, other=STAR),
        ("GET", W + "/ledger/verify"): Rule(READERS, other=STAR),
        ("GET", W + "/ledger/receipt"): Rule(
            READERS, other=STAR, request=lambda ctx: Call(query={"index": ctx.index})
        ),
        ("POST", W + "/ledger/verify-receipt"): Rule(READERS, other=STAR, ok=frozenset({400})),
        ("GET", W + "/usage"): Rule(READERS, other=STAR),
        ("GET", W + "/members"): Rule(READERS, other=STAR),
        ("POST", W + "/members"): Rule(PROJECT_ADMINS, other=STAR, ok=_INVALID),
        ("POST", W + "/members/{user_id}/{role}/revoke"): Rule(
            PROJECT_ADMINS, other=STAR, request=_revoke
        ),
        ("POST", W + "/teams"): Rule(PROJECT_ADMINS, other=STAR, ok=_INVALID),
        ("POST", W + "/teams/{team}/{role}/revoke"): Rule(
            PROJECT_ADMINS, other=STAR, request=_team_revoke
        ),
        ("GET", W + "/compliance"): Rule(AUDITORS, other=STAR),
        ("GET", W + "/compliance/{framework}"): Rule(
            AUDITORS, other=STAR, request=lambda ctx: Call(path={"framework": "sox"}, query=_QUIET)
        ),
        ("GET", W + "/compliance/verify"): Rule(AUDITORS, other=STAR),
        ("POST", W + "/compliance/verify"): Rule(AUDITORS, other=STAR, ok=_INVALID),
        ("GET", W + "/compliance/{framework}/report"): Rule(
            AUDITORS,
            other=STAR,
            request=lambda ctx: Call(path={"framework": "sox"}, query={**_QUIET, "format": "json"}),
        ),
    }
)

# -- the log's signing key (ledger.key: owners and admins) ----------------------------------
# An empty reason: a principal that passes authorize() gets 422, so no key is rotated here
# (tests/server/test_key_rotation.py rotates for real).
MATRIX[("POST", L + "/key/rotate")] = Rule(
    PROJECT_ADMINS, other=STAR, request=lambda ctx: Call(json={"reason": ""}), ok=_INVALID
)

# -- SCIM provisioning (/scim/v2): only a provisioning token, never an API key or a session.
# Every principal here holds an API key, so each is refused as unauthenticated (401), not
# as forbidden; tests/server/test_scim.py covers what a provisioning token may do.
S = "/scim/v2"


def _scim_ids(ctx: Ctx) -> Call:
    return Call(
        path={
            "name": "User",
            "schema_id": "urn:ietf:params:scim:schemas:core:2.0:User",
            "user_id": ctx.user_id("victim"),
            "group_id": "team_matrix",
        },
        json={},
    )


MATRIX.update(
    {
        (method, S + path): Rule(NOBODY, request=_scim_ids)
        for method, path in (
            ("GET", "/ServiceProviderConfig"),
            ("GET", "/ResourceTypes"),
            ("GET", "/ResourceTypes/{name}"),
            ("GET", "/Schemas"),
            ("GET", "/Schemas/{schema_id}"),
            ("GET", "/Users"),
            ("POST", "/Users"),
            ("POST", "/Users/.search"),
            ("GET", "/Users/{user_id}"),
            ("PUT", "/Users/{user_id}"),
            ("PATCH", "/Users/{user_id}"),
            ("DELETE", "/Users/{user_id}"),
            ("GET", "/Groups"),
            ("POST", "/Groups"),
            ("POST", "/Groups/.search"),
            ("GET", "/Groups/{group_id}"),
            ("PUT", "/Groups/{group_id}"),
            ("PATCH", "/Groups/{group_id}"),
            ("DELETE", "/Groups/{group_id}"),
            ("POST", "/.search"),
        )
    }
)
# -- the tile API (tlog-tiles; public reads only once a project admin publishes the log) --
T = P + "/tlog"
_MAYBE_NO_CHECKPOINT = frozenset({404})
MATRIX.update(
    {
        ("GET", T + "/checkpoint"): Rule(READERS, other=STAR, ok=_MAYBE_NO_CHECKPOINT),
        ("GET", T + "/tile/{path:path}"): Rule(
            READERS,
            other=STAR,
            request=lambda ctx: Call(path={"path": "0/000.p/1"}),
            ok=_MAYBE_NO_CHECKPOINT,
        ),
        ("GET", T + "/cosignatures"): Rule(READERS, other=STAR),
        ("POST", T + "/cosignatures"): Rule(CHECKPOINTERS, other=STAR),
        ("GET", T + "/settings"): Rule(READERS, other=STAR),
        ("PUT", T + "/settings"): Rule(
            PROJECT_ADMINS, other=STAR, request=lambda ctx: Call(json={"public": False})
        ),
    }
)
# -- code-host integrations: settings (project.admin), verdicts (ledger.append), webhooks
INTEG = P + "/integrations"


def _github(ctx: Ctx) -> Call:
    return Call(path={"kind": "github"})


def _github_settings(ctx: Ctx) -> Call:
    settings = {"repo": "octo/hello", "api_url": "http://127.0.0.1:9"}  # nothing listens
    body = {"settings": settings, "secrets": {"webhook_secret": "s"}}
    return Call(path={"kind": "github"}, json=body)


def _verdict(ctx: Ctx) -> Call:
    body = {"verdict": {"ok": True, "commits": []}, "sha": "0" * 40}
    return Call(path={"kind": "github"}, json=body)


_NONE_YET = frozenset({404})  # allowed, but alpha may have no GitHub settings at that point
MATRIX.update(
    {
        ("GET", INTEG): Rule(READERS, other=STAR),
        ("PUT", INTEG + "/{kind}"): Rule(PROJECT_ADMINS, other=STAR, request=_github_settings),
        ("DELETE", INTEG + "/{kind}"): Rule(
            PROJECT_ADMINS, other=STAR, request=_github, ok=_NONE_YET
        ),
        ("POST", INTEG + "/{kind}/test"): Rule(
            PROJECT_ADMINS, other=STAR, request=_github, ok=_NONE_YET
        ),
        ("POST", INTEG + "/{kind}/verdicts"): Rule(
            APPENDERS, other=STAR, request=_verdict, ok=_NONE_YET
        ),
        ("GET", INTEG + "/{kind}/deliveries"): Rule(READERS, other=STAR, request=_github),
        ("POST", INTEG + "/github/protection"): Rule(
            PROJECT_ADMINS,
            other=STAR,
            request=lambda ctx: Call(query={"branch": "main"}),
            ok=frozenset({404, 502}),
        ),
        # signed by the code host, not by an API key (tests/integrations/test_server.py)
        ("POST", "/api/v1/integrations/github/webhook"): Rule(NOBODY),
        ("POST", "/api/v1/integrations/gitlab/webhook"): Rule(NOBODY),
    }
)

MATRIX.update(
    {
        ("GET", W + "/integrations"): Rule(READERS, other=STAR),
        ("POST", W + "/integrations/{kind}"): Rule(
            PROJECT_ADMINS, other=STAR, request=_github, ok=_INVALID
        ),
        ("POST", W + "/integrations/{kind}/test"): Rule(
            PROJECT_ADMINS, other=STAR, request=_github, ok=_NONE_YET
        ),
        ("POST", W + "/integrations/{kind}/remove"): Rule(
            PROJECT_ADMINS, other=STAR, request=_github
        ),
    }
)

TOKEN_ONLY_PREFIX = (S + "/", "/api/v1/integrations/")
"""Routes under these prefixes refuse every API key as unauthenticated (401)."""

# -- outbound webhooks (project.admin: a subscription sends the record out) --------------
WH = P + "/webhooks"
WW = W + "/webhooks"
_PENDING = frozenset({400})


def _webhook(ctx: Ctx) -> Call:
    return Call(path={"webhook_id": ctx.webhook(ctx.project)})


def _pending_delivery(ctx: Ctx) -> Call:
    return Call(path={"delivery_id": str(ctx.webhook_delivery(ctx.project))})


MATRIX.update(
    {
        ("GET", WH): Rule(PROJECT_ADMINS, other=STAR),
        ("POST", WH): Rule(
            PROJECT_ADMINS,
            other=STAR,
            request=lambda ctx: Call(json={"url": "http://127.0.0.1:9/h", "kinds": ["*"]}),
        ),
        ("GET", WH + "/{webhook_id}"): Rule(PROJECT_ADMINS, other=STAR, request=_webhook),
        ("PATCH", WH + "/{webhook_id}"): Rule(
            PROJECT_ADMINS,
            other=STAR,
            request=lambda ctx: Call(path=_webhook(ctx).path, json={"enabled": False}),
        ),
        ("DELETE", WH + "/{webhook_id}"): Rule(PROJECT_ADMINS, other=STAR, request=_webhook),
        ("POST", WH + "/{webhook_id}/test"): Rule(PROJECT_ADMINS, other=STAR, request=_webhook),
        ("GET", WH + "/{webhook_id}/deliveries"): Rule(
            PROJECT_ADMINS, other=STAR, request=_webhook
        ),
        ("POST", WH + "/deliveries/{delivery_id}/redeliver"): Rule(
            PROJECT_ADMINS, other=STAR, request=_pending_delivery, ok=_PENDING
        ),
        ("GET", P + "/notifications/me"): Rule(DECISION_READERS, other=STAR),
        ("PUT", P + "/notifications/me"): Rule(
            DECISION_READERS,
            other=STAR,
            request=lambda ctx: Call(json={"approval_requests": False}),
        ),
        ("GET", WW): Rule(PROJECT_ADMINS, other=STAR),
        ("POST", WW + "/{webhook_id}/test"): Rule(PROJECT_ADMINS, other=STAR, request=_webhook),
        ("POST", WW + "/deliveries/{delivery_id}/redeliver"): Rule(
            PROJECT_ADMINS, other=STAR, request=_pending_delivery, ok=_PENDING
        ),
    }
)
"""Routes under this prefix refuse every API key as unauthenticated (401)."""

# -- SIEM destinations (audit.read to read, project.admin to change; the instance's: "*")
# and security scanner results (ledger.append). Removing or testing a destination that
# does not exist is 404 for whoever passes authorize().
_MISSING = frozenset({404})
_SIEM_DEST = {"kind": "hec", "target": "http://127.0.0.1:9", "secret": "matrix-token"}
_SARIF = {
    "version": "2.1.0",
    "runs": [{"tool": {"driver": {"name": "matrix", "version": "1"}}, "results": []}],
}
SI = "/api/v1/siem"
MATRIX.update(
    {
        ("GET", P + "/siem"): Rule(AUDITORS, other=STAR),
        ("PUT", P + "/siem/{name}"): Rule(
            PROJECT_ADMINS,
            other=STAR,
            request=lambda ctx: Call(path={"name": ctx.fresh("soc")}, json=_SIEM_DEST),
        ),
        ("DELETE", P + "/siem/{name}"): Rule(
            PROJECT_ADMINS, other=STAR, ok=_MISSING, request=lambda ctx: Call(path={"name": "none"})
        ),
        ("POST", P + "/siem/{name}/test"): Rule(
            PROJECT_ADMINS, other=STAR, ok=_MISSING, request=lambda ctx: Call(path={"name": "none"})
        ),
        ("GET", SI): Rule(STAR),
        ("PUT", SI + "/{name}"): Rule(
            STAR, request=lambda ctx: Call(path={"name": ctx.fresh("soc")}, json=_SIEM_DEST)
        ),
        ("DELETE", SI + "/{name}"): Rule(
            STAR, ok=_MISSING, request=lambda ctx: Call(path={"name": "none"})
        ),
        ("POST", SI + "/{name}/test"): Rule(
            STAR, ok=_MISSING, request=lambda ctx: Call(path={"name": "none"})
        ),
        ("GET", "/ui/projects/{project}/siem"): Rule(AUDITORS, other=STAR),
        ("POST", "/ui/projects/{project}/siem"): Rule(PROJECT_ADMINS, other=STAR, ok=_INVALID),
        ("POST", "/ui/projects/{project}/siem/{name}/remove"): Rule(
            PROJECT_ADMINS, other=STAR, ok=_MISSING, request=lambda ctx: Call(path={"name": "none"})
        ),
        ("POST", "/ui/projects/{project}/siem/{name}/test"): Rule(
            PROJECT_ADMINS, other=STAR, ok=_MISSING, request=lambda ctx: Call(path={"name": "none"})
        ),
        ("POST", P + "/scans"): Rule(
            APPENDERS,
            other=STAR,
            request=lambda ctx: Call(json={"sarif": _SARIF, "commit": "a" * 40, "tree": "b" * 40}),
        ),
    }
)
