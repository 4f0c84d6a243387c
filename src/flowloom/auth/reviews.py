"""Access reviews: periodic campaigns where a reviewer certifies or revokes each access.

A campaign covers one project (its roles) or the instance ("*": every role anywhere).
Opening it takes a snapshot, one *line* per person x project role (a role held through
a team is its own line), with the facts a reviewer needs: the account's state, its last
activity (the latest session or API-key use the directory recorded), whether it is
dormant (no activity for `dormant_days`), its active API keys and gateway virtual keys.

A reviewer decides each line, ``certify`` or ``revoke``, with an electronic signature
(flowloom.auth.signatures: re-authentication, the manifestation recorded in the ledger).
The signed subject is ``access_review:<campaign>/<line>/<decision>`` and its digest
covers the line's facts and the decision, so the signature binds to exactly what was
decided. Revoking removes the role at once - a role held through a team by taking the
person out of that team (the only way to take it from them and not from every member;
the team's other roles go with it, as the decision's refs say) - and when the person is
left with no role at all, their API keys and virtual keys are revoked too (they would
reach nothing), and virtual keys bound to the project go when no role on it remains;
each virtual key so revoked is recorded as its own ``auth.vkey_revoked``. Nobody reviews their
own access, and the identity of the reviewer is the authenticated principal.

Opening, each decision and closing are ``access.review_*`` ledger events (authority
kinds: only this module writes them, attested by the log's key) in the project's
ledger, or the instance's for "*" campaigns. A campaign closes once every line is
decided; an open campaign past its due date is *overdue*. The compliance checks read
these events as evidence of the periodic access review.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol

from sqlalchemy import text

from flowloom.auth.permissions import ALL_PROJECTS, INSTANCE_PROJECT
from flowloom.auth.signatures import ReauthCredentials, SignatureMeaning, identities_of
from flowloom.errors import ConflictError, InputError, NotFoundError, PermissionDeniedError
from flowloom.ledger.canonical import canonicalize

if TYPE_CHECKING:
    from flowloom.auth.directory import Directory
    from flowloom.auth.principals import Principal
    from flowloom.auth.signatures import SignatureService
    from flowloom.ledger.log import Ledger

__all__ = [
    "CLOSE_KIND",
    "DECIDE_KIND",
    "OPEN_KIND",
    "SUBJECT_TYPE",
    "AccessReviews",
    "Campaign",
    "Decision",
    "Line",
    "ReviewPolicy",
    "VirtualKeyInfo",
    "VirtualKeyStore",
    "line_digest",
]

OPEN_KIND: Final = "access.review_opened"
DECIDE_KIND: Final = "access.review_decided"
CLOSE_KIND: Final = "access.review_closed"
SUBJECT_TYPE: Final = "access_review"

Decision = Literal["certify", "revoke"]
DECISIONS: Final[tuple[Decision, ...]] = ("certify", "revoke")
_ID = re.compile(r"AR-[0-9a-f]{10}")
CLI_ACTOR: Final[Mapping[str, str]] = {
    "type": "service",
    "id": "flowloom-admin-cli",
    "name": "flowloom access-review",
}
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
_MAX_DAYS = 3660


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_TS)


def _parse(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    text_value = str(value)
    parsed = datetime.fromisoformat(text_value.replace("Z", "+00:00"))
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _days(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= _MAX_DAYS:
        raise InputError(f"{what} must be a whole number of days from 1 to {_MAX_DAYS}")
    return value


@dataclass(frozen=True)
class VirtualKeyInfo:
    """A gateway virtual key as a review shows it (never its secret)."""

    id: str
    prefix: str
    name: str
    owner_kind: str
    owner: str
    project: str | None


class VirtualKeyStore(Protocol):
    """The gateway's virtual keys, as far as a review needs them (the server adapts them)."""

    def active_keys(self) -> list[VirtualKeyInfo]: ...

    def revoke(self, key_id: str, actor: Mapping[str, Any], refs: Mapping[str, Any]) -> None:
        """Revoke the key and record its own ``auth.vkey_revoked`` (with `refs`: why)."""
        ...


@dataclass(frozen=True)
class ReviewPolicy:
    """Defaults for new campaigns; each campaign may set its own."""

    dormant_days: int = 90
    """An account with no activity for this many days is flagged dormant."""
    due_days: int = 14
    """A campaign is overdue this many days after it opened, unless closed."""
    period_days: int = 90
    """The period a campaign covers by default: this many days up to its opening."""

    def __post_init__(self) -> None:
        _days(self.dormant_days, "dormant_days")
        _days(self.due_days, "due_days")
        _days(self.period_days, "period_days")


@dataclass(frozen=True)
class Line:
    """One person's one role on one project, as the campaign saw it, and its decision."""

    campaign: str
    line: int
    user_id: str
    project: str
    role: str
    team: str | None
    facts: Mapping[str, Any]
    decision: Decision | None = None
    reason: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    signature: int | None = None
    entry: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "line": self.line,
            "user_id": self.user_id,
            "project": self.project,
            "role": self.role,
            "team": self.team,
            **dict(self.facts),
            "decision": self.decision,
            "reason": self.reason,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "signature": self.signature,
            "entry": self.entry,
        }


def line_digest(line: Line, decision: str) -> str:
    """The content a decision signs: the line's snapshot and the decision, canonical JSON."""
    content = {
        "campaign": line.campaign,
        "line": line.line,
        "user_id": line.user_id,
        "project": line.project,
        "role": line.role,
        "team": line.team,
        "facts": dict(line.facts),
        "decision": decision,
    }
    return "sha256:" + hashlib.sha256(canonicalize(content)).hexdigest()


@dataclass(frozen=True)
class Campaign:
    """A review campaign and its lines."""

    id: str
    scope: str
    """A project name, or "*" for the whole instance."""
    period_start: str
    period_end: str
    due_at: str
    dormant_days: int
    opened_by: str
    opened_at: str
    opened_entry: int | None
    closed_by: str | None
    closed_at: str | None
    closed_entry: int | None
    lines: tuple[Line, ...] = field(default=())

    @property
    def status(self) -> Literal["open", "closed"]:
        return "closed" if self.closed_at is not None else "open"

    def overdue(self, now: datetime) -> bool:
        """Open past its due date."""
        due = _parse(self.due_at)
        return self.closed_at is None and due is not None and now > due

    def counts(self) -> dict[str, int]:
        decided = [line.decision for line in self.lines]
        return {
            "lines": len(decided),
            "certified": decided.count("certify"),
            "revoked": decided.count("revoke"),
            "pending": decided.count(None),
            "dormant": sum(1 for line in self.lines if line.facts.get("dormant")),
        }

    def to_json(self, now: datetime, *, with_lines: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "scope": self.scope,
            "status": self.status,
            "overdue": self.overdue(now),
            "period_start": self.period_start,
            "period_end": self.period_end,
            "due_at": self.due_at,
            "dormant_days": self.dormant_days,
            "opened_by": self.opened_by,
            "opened_at": self.opened_at,
            "opened_entry": self.opened_entry,
            "closed_by": self.closed_by,
            "closed_at": self.closed_at,
            "closed_entry": self.closed_entry,
            "counts": self.counts(),
        }
        if with_lines:
            out["lines"] = [line.to_json() for line in self.lines]
        return out


_CAMPAIGN_COLUMNS = (
    "id, scope, period_start, period_end, due_at, dormant_days, opened_by, opened_at,"
    " opened_entry, closed_by, closed_at, closed_entry"
)
_LINE_COLUMNS = (
    "campaign_id, line, user_id, project, role, team, facts, decision, reason, decided_by,"
    " decided_at, signature, entry"
)


def _no_campaign(campaign_id: str) -> NotFoundError:
    return NotFoundError(
        f"no access review campaign {campaign_id!r}", hint="list the campaigns to find the id"
    )


class AccessReviews:
    """Opens, decides and closes access review campaigns over the directory's grants."""

    def __init__(
        self,
        directory: Directory,
        ledger_for: Callable[[str], Ledger],
        signatures: SignatureService | None = None,
        *,
        policy: ReviewPolicy | None = None,
        vkeys: VirtualKeyStore | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """`ledger_for(project)` gives a project's ledger (the instance's for "*"
        campaigns); `signatures` applies the reviewers' e-signatures; `vkeys` lists and
        revokes gateway virtual keys (None: this server runs no gateway)."""
        self.directory = directory
        self._ledger_for = ledger_for
        self._signatures = signatures
        self.policy = policy or ReviewPolicy()
        self._vkeys = vkeys
        self._clock = clock or (lambda: datetime.now(UTC))

    # -- plumbing -------------------------------------------------------------------

    def now(self) -> datetime:
        """The review clock's current time (aware UTC)."""
        return self._clock().astimezone(UTC)

    @staticmethod
    def log_of(scope: str) -> str:
        """The ledger a campaign's events go to: the project's, or the instance's."""
        return INSTANCE_PROJECT if scope == ALL_PROJECTS else scope

    def _record(
        self, scope: str, kind: str, by: Principal, subject: str, refs: Mapping[str, Any]
    ) -> int:
        """Append an attested ``access.review_*`` event; its index. A principal named on
        the command line (``--as``) is a claim: the command is the actor, as for the
        directory's own events."""
        actor = by.actor()
        clean = {**refs, "auth_via": by.via}
        if by.via == "cli":
            clean["claimed_by"] = actor
            actor = dict(CLI_ACTOR)
        ledger = self._ledger_for(self.log_of(scope))
        prepared = ledger.prepare(kind, meta={"actor": actor, "subject": subject, "refs": clean})
        return ledger.writer.append_many([prepared.entry])[0].index

    def _last_activity(self, user_ids: Iterable[str]) -> dict[str, datetime]:
        """Each user's latest session activity or API-key use, from the directory."""
        latest: dict[str, datetime] = {}
        ids = sorted(set(user_ids))
        if not ids:
            return latest
        with self.directory.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT user_id, MAX(last_seen_at) FROM directory_sessions GROUP BY user_id"
                    " UNION ALL SELECT user_id, MAX(last_used_at) FROM directory_api_keys"
                    " WHERE last_used_at IS NOT NULL GROUP BY user_id"
                )
            ).all()
        wanted = set(ids)
        for user_id, moment in rows:
            when = _parse(moment)
            if user_id in wanted and when is not None:
                latest[user_id] = max(when, latest.get(user_id, when))
        return latest

    def _user_vkeys(self, user_id: str, email: str | None) -> list[VirtualKeyInfo]:
        if self._vkeys is None:
            return []
        names = {user_id} | ({email} if email else set())
        return [k for k in self._vkeys.active_keys() if k.owner_kind == "user" and k.owner in names]

    # -- opening --------------------------------------------------------------------

    def open(
        self,
        principal: Principal,
        scope: str,
        *,
        dormant_days: int | None = None,
        due_days: int | None = None,
        period_days: int | None = None,
    ) -> Campaign:
        """Open a campaign over `scope` (a project, or "*"): snapshot its lines, record
        ``access.review_opened``. ConflictError while another campaign of the scope is open."""
        dormant = _days(dormant_days or self.policy.dormant_days, "dormant_days")
        due = _days(due_days or self.policy.due_days, "due_days")
        period = _days(period_days or self.policy.period_days, "period_days")
        if scope != ALL_PROJECTS:
            self.directory.get_project(scope)  # NotFoundError for an unknown project
        if self.find(scope, status="open"):
            raise ConflictError(
                f"an access review of {scope!r} is already open",
                hint="decide and close it before opening another",
            )
        now = self.now()
        campaign_id = f"AR-{secrets.token_hex(5)}"
        lines = self._snapshot(campaign_id, scope, now, dormant)
        campaign = Campaign(
            id=campaign_id,
            scope=scope,
            period_start=_iso(now - timedelta(days=period)),
            period_end=_iso(now),
            due_at=_iso(now + timedelta(days=due)),
            dormant_days=dormant,
            opened_by=principal.user_id,
            opened_at=_iso(now),
            opened_entry=None,
            closed_by=None,
            closed_at=None,
            closed_entry=None,
            lines=tuple(lines),
        )
        with self.directory.engine.begin() as conn:
            conn.execute(
                text(
                    f"INSERT INTO directory_review_campaigns ({_CAMPAIGN_COLUMNS}) VALUES"
                    " (:id, :scope, :ps, :pe, :due, :dormant, :by, :at, NULL, NULL, NULL, NULL)"
                ),
                {
                    "id": campaign.id,
                    "scope": scope,
                    "ps": campaign.period_start,
                    "pe": campaign.period_end,
                    "due": campaign.due_at,
                    "dormant": dormant,
                    "by": principal.user_id,
                    "at": campaign.opened_at,
                },
            )
            for line in lines:
                conn.execute(
                    text(
                        "INSERT INTO directory_review_lines (campaign_id, line, user_id, project,"
                        " role, team, facts) VALUES (:c, :n, :u, :p, :r, :t, :f)"
                    ),
                    {
                        "c": campaign.id,
                        "n": line.line,
                        "u": line.user_id,
                        "p": line.project,
                        "r": line.role,
                        "t": line.team,
                        "f": json.dumps(dict(line.facts), sort_keys=True),
                    },
                )
        entry = self._record(
            scope,
            OPEN_KIND,
            principal,
            campaign.id,
            {
                "campaign": campaign.id,
                "scope": scope,
                "period_start": campaign.period_start,
                "period_end": campaign.period_end,
                "due_at": campaign.due_at,
                "dormant_days": dormant,
                "lines": [
                    {
                        "line": line.line,
                        "user_id": line.user_id,
                        "project": line.project,
                        "role": line.role,
                        "team": line.team,
                        "dormant": bool(line.facts.get("dormant")),
                    }
                    for line in lines
                ],
            },
        )
        self._set(campaign.id, "opened_entry", entry)
        return self.get(campaign.id)

    def _snapshot(
        self, campaign_id: str, scope: str, now: datetime, dormant_days: int
    ) -> list[Line]:
        """The campaign's lines: every role in scope, with each person's facts."""
        users = {u.id: u for u in self.directory.list_users() if u.deleted_at is None}
        rows: list[tuple[str, str, str, str | None]] = []
        for user_id in sorted(users):
            for grant in self.directory.effective_grants(user_id):
                if scope == ALL_PROJECTS or grant.project == scope:
                    rows.append((user_id, grant.project, grant.role, grant.team))
        activity = self._last_activity(u for u, _, _, _ in rows)
        threshold = now - timedelta(days=dormant_days)
        lines: list[Line] = []
        for number, (user_id, project, role, team) in enumerate(rows, start=1):
            user = users[user_id]
            last = activity.get(user_id)
            keys = [
                {
                    "id": k.id,
                    "name": k.name,
                    "prefix": k.prefix,
                    "last_used_at": None if k.last_used_at is None else _iso(k.last_used_at),
                }
                for k in self.directory.list_keys(user_id)
                if k.active(now)
            ]
            vkeys = [
                {"id": v.id, "name": v.name, "prefix": v.prefix, "project": v.project}
                for v in self._user_vkeys(user_id, user.email)
                if scope == ALL_PROJECTS or v.project in (None, scope)
            ]
            facts = {
                "name": user.name,
                "email": user.email,
                "kind": user.kind,
                "disabled": user.disabled,
                "last_activity": None if last is None else _iso(last),
                "dormant": (last or user.created_at) < threshold,
                "api_keys": keys,
                "virtual_keys": vkeys,
            }
            lines.append(Line(campaign_id, number, user_id, project, role, team, facts))
        return lines

    def _set(self, campaign_id: str, column: str, value: Any) -> None:
        assert column in ("opened_entry", "closed_entry")
        with self.directory.engine.begin() as conn:
            conn.execute(
                text(f"UPDATE directory_review_campaigns SET {column} = :v WHERE id = :id"),
                {"v": value, "id": campaign_id},
            )

    # -- reading --------------------------------------------------------------------

    def get(self, campaign_id: str) -> Campaign:
        """The campaign with its lines; NotFoundError when there is none."""
        if not isinstance(campaign_id, str) or not _ID.fullmatch(campaign_id):
            raise _no_campaign(str(campaign_id))
        with self.directory.engine.connect() as conn:
            row = conn.execute(
                text(f"SELECT {_CAMPAIGN_COLUMNS} FROM directory_review_campaigns WHERE id = :id"),
                {"id": campaign_id},
            ).first()
            if row is None:
                raise _no_campaign(campaign_id)
            lines = conn.execute(
                text(
                    f"SELECT {_LINE_COLUMNS} FROM directory_review_lines WHERE campaign_id = :id"
                    " ORDER BY line"
                ),
                {"id": campaign_id},
            ).all()
        return self._campaign(row, [self._line(r) for r in lines])

    def find(self, scope: str | None = None, *, status: str | None = None) -> list[Campaign]:
        """Campaigns (without their lines), newest first; of one scope / status if given."""
        where, params = [], {}
        if scope is not None:
            where.append("scope = :scope")
            params["scope"] = scope
        if status == "open":
            where.append("closed_at IS NULL")
        elif status == "closed":
            where.append("closed_at IS NOT NULL")
        elif status is not None:
            raise InputError(f"status {status!r} is neither open nor closed")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self.directory.engine.connect() as conn:
            rows = conn.execute(
                text(
                    f"SELECT {_CAMPAIGN_COLUMNS} FROM directory_review_campaigns{clause}"
                    " ORDER BY opened_at DESC, id"
                ),
                params,
            ).all()
        return [self._campaign(r, []) for r in rows]

    @staticmethod
    def _campaign(row: Sequence[Any], lines: list[Line]) -> Campaign:
        return Campaign(
            id=row[0],
            scope=row[1],
            period_start=row[2],
            period_end=row[3],
            due_at=row[4],
            dormant_days=int(row[5]),
            opened_by=row[6],
            opened_at=row[7],
            opened_entry=row[8],
            closed_by=row[9],
            closed_at=row[10],
            closed_entry=row[11],
            lines=tuple(lines),
        )

    @staticmethod
    def _line(row: Sequence[Any]) -> Line:
        return Line(
            campaign=row[0],
            line=int(row[1]),
            user_id=row[2],
            project=row[3],
            role=row[4],
            team=row[5],
            facts=json.loads(row[6]),
            decision=row[7],
            reason=row[8],
            decided_by=row[9],
            decided_at=row[10],
            signature=row[11],
            entry=row[12],
        )

    def dormant(self, scope: str, *, days: int | None = None) -> list[dict[str, Any]]:
        """People with a role in `scope` and no activity for `days` (the policy's default),
        as of now: the live flag, between campaigns."""
        days = _days(days or self.policy.dormant_days, "days")
        now = self.now()
        users = {u.id: u for u in self.directory.list_users() if u.deleted_at is None}
        holders = {
            user_id
            for user_id in users
            if any(
                scope == ALL_PROJECTS or g.project == scope
                for g in self.directory.effective_grants(user_id)
            )
        }
        activity = self._last_activity(holders)
        threshold = now - timedelta(days=days)
        found = []
        for user_id in sorted(holders):
            last = activity.get(user_id)
            if (last or users[user_id].created_at) < threshold:
                found.append(
                    {
                        "user_id": user_id,
                        "name": users[user_id].name,
                        "email": users[user_id].email,
                        "last_activity": None if last is None else _iso(last),
                        "disabled": users[user_id].disabled,
                    }
                )
        return found

    def resolve(self, ledger: Ledger, ref: str) -> str:
        """The signed digest of subject ``access_review:<ref>`` (a signature resolver)."""
        campaign_id, _, rest = ref.partition("/")
        number, _, decision = rest.partition("/")
        if not number.isdigit() or decision not in DECISIONS:
            raise InputError(f"access_review:{ref} does not name a line and a decision")
        return line_digest(self._find_line(self.get(campaign_id), int(number)), decision)

    @staticmethod
    def _find_line(campaign: Campaign, number: int) -> Line:
        for line in campaign.lines:
            if line.line == number:
                return line
        raise NotFoundError(
            f"campaign {campaign.id} has no line {number}",
            hint=f"its lines are 1 to {len(campaign.lines)}",
        )

    # -- deciding -------------------------------------------------------------------

    def decide(
        self,
        principal: Principal,
        campaign_id: str,
        number: int,
        decision: str,
        *,
        credentials: ReauthCredentials,
        reason: str | None = None,
    ) -> Line:
        """Certify or revoke line `number` with the reviewer's e-signature; revoking takes
        the role (and keys, see the module) away at once. ConflictError when the campaign
        is closed or the line decided; PermissionDeniedError for one's own line."""
        if decision not in DECISIONS:
            raise InputError(f"{decision!r} is not a decision", hint="use certify or revoke")
        if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
            raise InputError("a reason is text of at most 1000 characters")
        campaign = self.get(campaign_id)
        if campaign.closed_at is not None:
            raise ConflictError(f"campaign {campaign.id} is closed", hint="open a new one")
        line = self._find_line(campaign, number)
        if line.decision is not None:
            raise ConflictError(
                f"line {number} of {campaign.id} was already decided ({line.decision})",
                hint="a decision stands once signed; open a new campaign to review again",
            )
        if line.user_id == principal.user_id or (
            line.facts.get("email")
            and str(line.facts["email"]).lower() in {i.lower() for i in identities_of(principal)}
        ):
            raise PermissionDeniedError(
                "nobody reviews their own access",
                hint="another administrator decides this line",
            )
        if self._signatures is None:
            raise ConflictError("this access review service only reads")  # a wiring mistake
        log = self.log_of(campaign.scope)
        signature = self._signatures.sign(
            principal,
            log,
            subject=f"{SUBJECT_TYPE}:{campaign.id}/{number}/{decision}",
            content_digest=line_digest(line, decision),
            meaning=SignatureMeaning.REVIEWED,
            credentials=credentials,
        )
        revoked: dict[str, Any] = {}
        if decision == "revoke":
            revoked = self._take_away(principal, line, campaign.id)
        now = _iso(self.now())
        with self.directory.engine.begin() as conn:
            changed = conn.execute(
                text(
                    "UPDATE directory_review_lines SET decision = :d, reason = :r,"
                    " decided_by = :by, decided_at = :at, signature = :s"
                    " WHERE campaign_id = :c AND line = :n AND decision IS NULL"
                ),
                {
                    "d": decision,
                    "r": reason,
                    "by": principal.user_id,
                    "at": now,
                    "s": signature.id,
                    "c": campaign.id,
                    "n": number,
                },
            ).rowcount
        if not changed:
            raise ConflictError(f"line {number} of {campaign.id} was decided meanwhile")
        refs: dict[str, Any] = {
            "campaign": campaign.id,
            "line": number,
            "user_id": line.user_id,
            "project": line.project,
            "role": line.role,
            "decision": decision,
            "signature": signature.id,
            "content_digest": signature.content_digest,
            **revoked,
        }
        if line.team is not None:
            refs["team"] = line.team
        if reason:
            refs["reason"] = reason
        entry = self._record(campaign.scope, DECIDE_KIND, principal, campaign.id, refs)
        with self.directory.engine.begin() as conn:
            conn.execute(
                text(
                    "UPDATE directory_review_lines SET entry = :e"
                    " WHERE campaign_id = :c AND line = :n"
                ),
                {"e": entry, "c": campaign.id, "n": number},
            )
        return self._find_line(self.get(campaign.id), number)

    def _take_away(self, principal: Principal, line: Line, campaign_id: str) -> dict[str, Any]:
        """Revoke the line's role now (a team's: leave the team); then the keys that
        reach nothing any more."""
        taken: dict[str, Any] = {}
        if line.team is None:
            try:
                self.directory.revoke(line.user_id, line.project, line.role, by=principal)
                role_removed = True
            except NotFoundError:
                role_removed = False  # already gone (revoked since the campaign opened)
        else:
            try:
                role_removed = self.directory.remove_member(line.team, line.user_id, by=principal)
            except NotFoundError:
                role_removed = False  # the team is gone since the campaign opened
            taken["left_team"] = role_removed
        left = self.directory.grants_of(line.user_id)
        keys: list[str] = []
        vkeys: list[str] = []
        if not left:
            for key in self.directory.list_keys(line.user_id):
                if key.active(self.now()):
                    self.directory.revoke_key(key.id, by=principal)
                    keys.append(key.id)
        if self._vkeys is not None:
            email = line.facts.get("email")
            on_project = bool(left.get(line.project)) or bool(left.get(ALL_PROJECTS))
            why = {
                "reason": "access review",
                "campaign": campaign_id,
                "line": line.line,
                "user_id": line.user_id,
            }
            for vkey in self._user_vkeys(line.user_id, email if isinstance(email, str) else None):
                if not left or (vkey.project == line.project and not on_project):
                    self._vkeys.revoke(vkey.id, principal.actor(), why)
                    vkeys.append(vkey.id)
        return {
            "role_removed": role_removed,
            **taken,
            "revoked_keys": keys,
            "revoked_vkeys": vkeys,
        }

    # -- closing --------------------------------------------------------------------

    def close(self, principal: Principal, campaign_id: str) -> Campaign:
        """Close a campaign whose every line is decided; record ``access.review_closed``."""
        campaign = self.get(campaign_id)
        if campaign.closed_at is not None:
            raise ConflictError(f"campaign {campaign.id} is already closed")
        counts = campaign.counts()
        if counts["pending"]:
            raise ConflictError(
                f"campaign {campaign.id} has {counts['pending']} undecided line(s)",
                hint="certify or revoke every line, then close",
            )
        now = _iso(self.now())
        with self.directory.engine.begin() as conn:
            changed = conn.execute(
                text(
                    "UPDATE directory_review_campaigns SET closed_by = :by, closed_at = :at"
                    " WHERE id = :id AND closed_at IS NULL"
                ),
                {"by": principal.user_id, "at": now, "id": campaign.id},
            ).rowcount
        if not changed:
            raise ConflictError(f"campaign {campaign.id} was closed meanwhile")
        entry = self._record(
            campaign.scope,
            CLOSE_KIND,
            principal,
            campaign.id,
            {
                "campaign": campaign.id,
                "scope": campaign.scope,
                "period_start": campaign.period_start,
                "period_end": campaign.period_end,
                "due_at": campaign.due_at,
                "late": now > campaign.due_at,
                **counts,
                "signatures": [line.signature for line in campaign.lines],
            },
        )
        self._set(campaign.id, "closed_entry", entry)
        return self.get(campaign.id)
