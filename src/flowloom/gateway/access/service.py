"""Access: the gateway's door — virtual keys, allow-lists, rate limits, budgets, spend.

Data model (tables prefixed ``gateway_``, in the same database as the ledger; schema in
flowloom/gateway/access/migrations/<dialect>/, versions in ``gateway_access_migrations``):

- vkeys(id, prefix UNIQUE, key_hash SHA-256, name, owner_kind user|team|project, owner,
  project, models JSON list of globs or NULL, rpm, tpm, budget_usd, period day|month,
  created_at, expires_at, revoked_at). The secret "flv_<prefix>_<secret>" is shown once.
- provider_keys(name, sealed, created_at, updated_at): upstream API keys, AES-256-GCM
  under a key derived from the installation master key (see vault.py); never plaintext.
- project_budgets(project, budget_usd, period, updated_at).
- usage(day, key_id, project, provider, model, requests, input/output/cache_read/
  cache_write tokens, cost_usd): one row per combination and UTC day, added to in batches.

The hot path (authenticate → admit → settle) runs mostly on memory: verified keys sit
in a bounded LRU (``key_cache_size`` entries) for ``key_cache_ttl_s`` seconds, and a
cached key is re-checked for revocation on every request with one primary-key read of
its ``revoked_at``, so a key revoked by any process (``gateway keys revoke``, a user
disabled by SCIM, LDAP or an access review) is refused by every process at its next
request, not after the cache's time;
rate windows and budget trackers are in-process, and so are the leases this process
holds on the quotas it shares with every other gateway process over the same database
(quota.py: limits and budgets hold across processes and hosts); spend is aggregated in
memory and flushed by a background thread every ``flush_interval_s`` (and by close()). Every
security-relevant change calls the injected ``audit(kind, project, meta)`` with a meta
ready for Ledger.record that never holds a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from flowloom.auth.schema import READ_ONLY, make_engine, translate
from flowloom.errors import (
    AuthError,
    FlowLoomError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from flowloom.gateway.access import vkeys
from flowloom.gateway.access.budgets import BudgetTracker, Calendar
from flowloom.gateway.access.cache import TtlLru
from flowloom.gateway.access.errors import BudgetExceededError, RateLimitedError
from flowloom.gateway.access.limits import SlidingWindow
from flowloom.gateway.access.prices import PriceTable, cost_of, load_price_file
from flowloom.gateway.access.quota import Grant, LeaseNeeded, Leases, QuotaStore, SqlQuotaStore
from flowloom.gateway.access.records import (
    Admission,
    BudgetStatus,
    Cost,
    OwnerKind,
    Period,
    Price,
    ProviderKeyInfo,
    Usage,
    UsageRow,
    VirtualKey,
)
from flowloom.gateway.access.revocation import RevocationProbe
from flowloom.gateway.access.schema import migrate
from flowloom.gateway.access.spend import SpendKey, SpendRow, write_rows
from flowloom.gateway.access.vault import ProviderKeyVault

if TYPE_CHECKING:
    from flowloom.ledger.keyprovider import Envelope

__all__ = ["Access", "AccessSettings", "AuditHook"]

AuditHook = Callable[[str, str | None, Mapping[str, Any]], None]
"""audit(kind, project or None for instance-wide, meta) — meta fits Ledger.record(meta=)."""

SYSTEM_ACTOR: Mapping[str, Any] = MappingProxyType({"type": "service", "id": "flowloom"})
_TS = "%Y-%m-%dT%H:%M:%S.%fZ"
_PERIODS: tuple[Period, ...] = ("day", "month")
_ADJECTIVE = {"day": "daily", "month": "monthly"}
_OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+:-]{0,199}$")
_REF_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_GROUPS = {
    "model": "model",
    "key": "key_id",
    "day": "day",
    "provider": "provider",
    "project": "project",
}
_KEY_COLUMNS = (
    "id, prefix, key_hash, name, owner_kind, owner, project, models, rpm, tpm, budget_usd,"
    " period, created_at, expires_at, revoked_at"
)
_AUTH_FAILED = "the virtual key is not valid (unknown, expired or revoked)"
_AUTH_HINT = "check the key, or ask an administrator for a new one"


@dataclass(frozen=True)
class AccessSettings:
    """Tuning knobs; the defaults suit one gateway process.

    key_cache_size / key_cache_ttl_s: the verified-key LRU bound and how long a cached
    verification stands (so revocation elsewhere takes effect within this time);
    provider keys are cached as long. window_s: the rate-limit window (rpm/tpm are per
    this window). flush_interval_s: how often spend is written; refresh_interval_s: how
    often budgets and project budgets are re-read (to see other processes' spend).
    background: run the writer thread (tests drive flush()/refresh() themselves).
    shared_limits: count rpm, tpm and budgets in the database too, so that every gateway
    process over it shares them (quota.py); lease_fraction: the share of a limit one
    process leases at a time (what it may hold unused; never what a limit is exceeded by).
    """

    key_cache_size: int = 10_000
    key_cache_ttl_s: float = 5.0
    window_s: float = 60.0
    flush_interval_s: float = 1.0
    refresh_interval_s: float = 5.0
    flush_rows: int = 1_000
    background: bool = True
    shared_limits: bool = True
    lease_fraction: float = 0.05


@dataclass(frozen=True)
class _KeyEntry:
    vkey: VirtualKey
    expires_ts: float | None


def _retry_after(refused: Grant, limit: int, need: int, window_s: float, now: float) -> float:
    """Seconds until `need` more fits under `limit`, from a refused lease's rows."""
    over = refused.used + need - limit
    freed = 0.0
    for amount, newest in refused.rows:
        freed += amount
        if freed >= over - 1e-9:
            return max(newest + window_s - now, 0.001)
    return window_s


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime(_TS)


def _parse_ts(value: Any) -> datetime | None:
    if value is None:
        return None
    return datetime.strptime(str(value), _TS).replace(tzinfo=UTC)


def _positive_int(value: int | None, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{what} must be a whole number ≥ 1, not {value!r}")
    return value


def _budget(value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(f"a budget must be a number of USD ≥ 0, not {value!r}")
    if value == float("inf"):
        raise InputError("a budget must be finite; leave it out for no budget")
    return float(value)


def _period(value: str) -> Period:
    for period in _PERIODS:
        if value == period:
            return period
    raise InputError(f"{value!r} is not a budget period", hint="use day or month")


def _patterns(models: Sequence[str] | None) -> tuple[str, ...] | None:
    if models is None:
        return None
    clean: list[str] = []
    for pattern in models:
        if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 200:
            raise InputError(f"{pattern!r} is not a model pattern", hint="e.g. 'claude-*'")
        if any(ch.isspace() for ch in pattern.strip()):
            raise InputError(f"model pattern {pattern!r} contains spaces")
        clean.append(pattern.strip())
    if not clean:
        raise InputError("an empty model allow-list would refuse every model", hint="omit it")
    return tuple(dict.fromkeys(clean))


class Access:
    """Virtual keys, allow-lists, rate limits, budgets, spend and provider keys."""

    def __init__(
        self,
        database: str | Engine,
        *,
        master_key_loader: Callable[[], bytes | Envelope],
        clock: Callable[[], float] = time.time,
        audit: AuditHook | None = None,
        prices: Path | Mapping[str, Any] | None = None,
        settings: AccessSettings | None = None,
        default_actor: Mapping[str, Any] | None = None,
        quota: QuotaStore | None = None,
    ) -> None:
        """Open (and migrate) the access tables in `database`: a URL or an engine.

        `master_key_loader` returns the installation's master key: its key provider's
        `Envelope` (docs/keys.md), or 32 raw bytes (tests);
        it is called on the first provider-key operation only. `clock` returns POSIX
        seconds (tests move it). `prices` overrides the packaged price table (a TOML
        path or a mapping of the same shape). `default_actor` is the ledger actor for
        audit events of changes made without an explicit actor. `quota` is where limits
        and budgets shared with other processes are counted (default: this database,
        unless settings.shared_limits is off).
        """
        self._settings = settings or AccessSettings()
        self._clock = clock
        self._audit_hook = audit
        self._default_actor = dict(default_actor or SYSTEM_ACTOR)
        overrides = load_price_file(prices) if isinstance(prices, Path) else prices
        self._prices = PriceTable(overrides)
        self._vault = ProviderKeyVault(master_key_loader)
        self._owns_engine = not isinstance(database, Engine)
        self._engine = make_engine(database) if isinstance(database, str) else database
        try:
            migrate(self._engine)
        except BaseException:
            if self._owns_engine:
                self._engine.dispose()
            raise
        ttl = self._settings.key_cache_ttl_s
        size = self._settings.key_cache_size
        self._lock = threading.Lock()  # guards every in-memory structure below
        self._flush_lock = threading.Lock()  # one flush or budget load at a time
        self._keys: TtlLru[str, _KeyEntry] = TtlLru(size, ttl, clock)
        self._revocations = RevocationProbe(self._engine)
        self._bad: TtlLru[str, bool] = TtlLru(size, ttl, clock)
        self._provider_keys: TtlLru[str, tuple[str | None]] = TtlLru(256, ttl, clock)
        self._windows: dict[str, SlidingWindow] = {}
        self._trackers: dict[str, BudgetTracker] = {}
        self._pending: dict[SpendKey, SpendRow] = {}
        self._project_budgets: dict[str, tuple[float, Period]] = {}
        self._calendar = Calendar()
        self._leases: Leases | None = None
        if quota is not None or self._settings.shared_limits:
            self._leases = Leases(
                quota or SqlQuotaStore(self._engine), fraction=self._settings.lease_fraction
            )
        self._closed = False
        self._load_project_budgets()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        if self._settings.background:
            self._thread = threading.Thread(
                target=self._run, name="flowloom-gateway-spend", daemon=True
            )
            self._thread.start()

    # -- plumbing ---------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextlib.contextmanager
    def _tx(self, doing: str) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise translate(exc, doing) from exc

    @contextlib.contextmanager
    def _read(self, doing: str) -> Iterator[Connection]:
        """A transaction that only reads: on SQLite a deferred one, so key checks and
        lookups never wait for the write lock behind the ledger's commits (the gateway
        calls them on its event loop)."""
        try:
            with self._engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True})
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            raise translate(exc, doing) from exc

    def _audit(
        self,
        kind: str,
        project: str | None,
        *,
        subject: str,
        refs: Mapping[str, Any],
        actor: Mapping[str, Any] | None,
    ) -> None:
        if self._audit_hook is None:
            return
        meta: dict[str, Any] = {
            "actor": dict(actor) if actor else dict(self._default_actor),
            "subject": subject,
        }
        clean = {k: v for k, v in refs.items() if v is not None}
        if clean:
            meta["refs"] = clean
        self._audit_hook(kind, project, meta)

    @staticmethod
    def _vkey(row: Any) -> VirtualKey:
        models = json.loads(row.models) if row.models is not None else None
        return VirtualKey(
            id=row.id,
            prefix=row.prefix,
            name=row.name,
            owner_kind=row.owner_kind,
            owner=row.owner,
            project=row.project,
            models=tuple(models) if models is not None else None,
            rpm=row.rpm,
            tpm=row.tpm,
            budget_usd=float(row.budget_usd) if row.budget_usd is not None else None,
            period=_period(row.period),
            created_at=_parse_ts(row.created_at) or datetime.fromtimestamp(0, UTC),
            expires_at=_parse_ts(row.expires_at),
            revoked_at=_parse_ts(row.revoked_at),
        )

    @staticmethod
    def _key_refs(key: VirtualKey) -> dict[str, Any]:
        return {
            "vkey_id": key.id,
            "prefix": key.prefix,
            "name": key.name,
            "owner_kind": key.owner_kind,
            "owner": key.owner,
            "project": key.project,
            "models": list(key.models) if key.models is not None else None,
            "rpm": key.rpm,
            "tpm": key.tpm,
            "budget_usd": key.budget_usd,
            "period": key.period if key.budget_usd is not None else None,
            "expires_at": key.expires_at.strftime(_TS) if key.expires_at else None,
        }

    def _forget_key(self, key_id: str) -> None:
        with self._lock:
            self._keys.discard_where(lambda entry: entry.vkey.id == key_id)

    # -- virtual keys -----------------------------------------------------------------

    def create_key(
        self,
        *,
        name: str | None = None,
        owner_user: str | None = None,
        owner_team: str | None = None,
        project: str | None = None,
        models: Sequence[str] | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        budget_usd: float | None = None,
        period: Period = "month",
        expires_at: datetime | None = None,
        actor: Mapping[str, Any] | None = None,
    ) -> tuple[VirtualKey, str]:
        """A new virtual key and its secret (shown once; only its hash is stored).

        The owner is a user (`owner_user`), a team (`owner_team`) or, with neither, the
        `project`; a user's or team's key may also be bound to a project (its spend then
        counts against the project's budget too).
        """
        owner_kind: OwnerKind
        if owner_user is not None and owner_team is not None:
            raise InputError("a virtual key has one owner", hint="give a user or a team, not both")
        if owner_user is not None:
            owner_kind, owner = "user", owner_user
        elif owner_team is not None:
            owner_kind, owner = "team", owner_team
        elif project is not None:
            owner_kind, owner = "project", project
        else:
            raise InputError(
                "a virtual key needs an owner", hint="give --owner-user, --owner-team or --project"
            )
        for value, what in ((owner, "owner"), (project, "project")):
            if value is not None and not _OWNER_RE.match(value):
                raise InputError(f"{value!r} is not a valid {what} name")
        clean_name = " ".join((name or f"{owner_kind}:{owner}").split())
        if not clean_name or len(clean_name) > 200:
            raise InputError("a key name must be 1 to 200 characters of text")
        patterns = _patterns(models)
        rpm = _positive_int(rpm, "rpm")
        tpm = _positive_int(tpm, "tpm")
        budget = _budget(budget_usd)
        period = _period(period)
        now = self._clock()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                raise InputError("the expiry time must carry a time zone")
            if expires_at.timestamp() <= now:
                raise InputError("the expiry time is in the past", hint="give a future time")
        created = datetime.fromtimestamp(now, UTC)
        for attempt in range(3):
            generated = vkeys.generate()
            key = VirtualKey(
                id="vk_" + generated.prefix,
                prefix=generated.prefix,
                name=clean_name,
                owner_kind=owner_kind,
                owner=owner,
                project=project,
                models=patterns,
                rpm=rpm,
                tpm=tpm,
                budget_usd=budget,
                period=period,
                created_at=created,
                expires_at=expires_at.astimezone(UTC) if expires_at else None,
            )
            try:
                with self._tx("creating a virtual key") as conn:
                    conn.execute(
                        text(
                            f"INSERT INTO gateway_vkeys ({_KEY_COLUMNS}) VALUES (:id, :prefix,"
                            " :key_hash, :name, :owner_kind, :owner, :project, :models, :rpm,"
                            " :tpm, :budget_usd, :period, :created_at, :expires_at, NULL)"
                        ),
                        {
                            "id": key.id,
                            "prefix": key.prefix,
                            "key_hash": generated.digest,
                            "name": key.name,
                            "owner_kind": owner_kind,
                            "owner": owner,
                            "project": project,
                            "models": json.dumps(list(patterns)) if patterns else None,
                            "rpm": rpm,
                            "tpm": tpm,
                            "budget_usd": budget,
                            "period": period,
                            "created_at": created.strftime(_TS),
                            "expires_at": key.expires_at.strftime(_TS) if key.expires_at else None,
                        },
                    )
            except IntegrityError:
                if attempt == 2:
                    raise
                continue  # a prefix collision (1 in 2.8e12): draw another key
            self._audit(
                "auth.vkey_created", project, subject=key.id, refs=self._key_refs(key), actor=actor
            )
            return key, generated.secret
        raise AssertionError("unreachable")

    def get_key(self, key: str) -> VirtualKey:
        """The virtual key with id or prefix `key` (revoked ones too); NotFoundError."""
        with self._read("reading a virtual key") as conn:
            row = conn.execute(
                text(f"SELECT {_KEY_COLUMNS} FROM gateway_vkeys WHERE id = :k OR prefix = :k"),
                {"k": key},
            ).first()
        if row is None:
            raise NotFoundError(
                f"no virtual key {key!r}", hint="list them: flowloom gateway keys list"
            )
        return self._vkey(row)

    def list_keys(
        self, *, project: str | None = None, include_revoked: bool = False
    ) -> list[VirtualKey]:
        """Virtual keys, oldest first; of one project when `project` is given."""
        where = []
        params: dict[str, Any] = {}
        if project is not None:
            where.append("project = :project")
            params["project"] = project
        if not include_revoked:
            where.append("revoked_at IS NULL")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._read("listing virtual keys") as conn:
            rows = conn.execute(
                text(f"SELECT {_KEY_COLUMNS} FROM gateway_vkeys{clause} ORDER BY created_at, id"),
                params,
            ).all()
        return [self._vkey(row) for row in rows]

    def revoke_key(self, key: str, *, actor: Mapping[str, Any] | None = None) -> VirtualKey:
        """Revoke the key with id or prefix `key`: refused by every gateway process from
        its next request (`authenticate`). Revoking a revoked key changes nothing and
        records nothing."""
        current = self.get_key(key)
        if current.revoked_at is not None:
            return current
        now = self._clock()
        with self._tx("revoking a virtual key") as conn:
            conn.execute(
                text(
                    "UPDATE gateway_vkeys SET revoked_at = :now"
                    " WHERE id = :id AND revoked_at IS NULL"
                ),
                {"now": _iso(now), "id": current.id},
            )
        self._forget_key(current.id)
        revoked = replace(current, revoked_at=datetime.fromtimestamp(now, UTC))
        self._audit(
            "auth.vkey_revoked",
            current.project,
            subject=current.id,
            refs={"vkey_id": current.id, "prefix": current.prefix, "owner": current.owner},
            actor=actor,
        )
        return revoked

    def revoke_owned_keys(self, owner_kind: OwnerKind, owners: Sequence[str]) -> list[VirtualKey]:
        """Revoke every live key of these owners (a deprovisioned user: their id and
        email) and forget any cached verification of their keys, here at once. Returns
        the keys this call revoked; the caller records them (it knows why and who)."""
        wanted = sorted({o for o in owners if o})
        if not wanted:
            return []
        now = self._clock()
        names = {f"o{i}": owner for i, owner in enumerate(wanted)}
        marks = ", ".join(f":{name}" for name in names)
        with self._tx("revoking a user's virtual keys") as conn:
            rows = conn.execute(
                text(
                    f"SELECT {_KEY_COLUMNS} FROM gateway_vkeys WHERE owner_kind = :kind"
                    f" AND owner IN ({marks}) AND revoked_at IS NULL"
                ),
                {"kind": owner_kind, **names},
            ).all()
            conn.execute(
                text(
                    "UPDATE gateway_vkeys SET revoked_at = :now WHERE owner_kind = :kind"
                    f" AND owner IN ({marks}) AND revoked_at IS NULL"
                ),
                {"now": _iso(now), "kind": owner_kind, **names},
            )
        owned = set(wanted)
        with self._lock:
            self._keys.discard_where(
                lambda entry: entry.vkey.owner_kind == owner_kind and entry.vkey.owner in owned
            )
        at = datetime.fromtimestamp(now, UTC)
        return [replace(self._vkey(row), revoked_at=at) for row in rows]

    def set_budget(
        self,
        key: str,
        budget_usd: float | None,
        *,
        period: Period | None = None,
        actor: Mapping[str, Any] | None = None,
    ) -> VirtualKey:
        """Set (or with None, remove) a key's budget; recorded as config.change."""
        current = self.get_key(key)
        budget = _budget(budget_usd)
        new_period = _period(period) if period is not None else current.period
        with self._tx("changing a key budget") as conn:
            conn.execute(
                text("UPDATE gateway_vkeys SET budget_usd = :b, period = :p WHERE id = :id"),
                {"b": budget, "p": new_period, "id": current.id},
            )
        self._forget_key(current.id)
        updated = replace(current, budget_usd=budget, period=new_period)
        self._audit(
            "config.change",
            current.project,
            subject=current.id,
            refs={
                "setting": "gateway.vkey.budget",
                "vkey_id": current.id,
                "budget_usd": budget,
                "period": new_period,
                "previous_budget_usd": current.budget_usd,
                "previous_period": current.period,
            },
            actor=actor,
        )
        return updated

    def set_project_budget(
        self,
        project: str,
        budget_usd: float | None,
        *,
        period: Period = "month",
        actor: Mapping[str, Any] | None = None,
    ) -> None:
        """Set (or with None, remove) the budget shared by all keys bound to `project`."""
        if not _OWNER_RE.match(project or ""):
            raise InputError(f"{project!r} is not a valid project name")
        budget = _budget(budget_usd)
        period = _period(period)
        now = _iso(self._clock())
        with self._tx("changing a project budget") as conn:
            if budget is None:
                conn.execute(
                    text("DELETE FROM gateway_project_budgets WHERE project = :p"),
                    {"p": project},
                )
            else:
                conn.execute(
                    text(
                        "INSERT INTO gateway_project_budgets (project, budget_usd, period,"
                        " updated_at) VALUES (:p, :b, :per, :now) ON CONFLICT (project)"
                        " DO UPDATE SET budget_usd = excluded.budget_usd,"
                        " period = excluded.period, updated_at = excluded.updated_at"
                    ),
                    {"p": project, "b": budget, "per": period, "now": now},
                )
        with self._lock:
            if budget is None:
                self._project_budgets.pop(project, None)
            else:
                self._project_budgets[project] = (budget, period)
        self._audit(
            "config.change",
            project,
            subject=project,
            refs={
                "setting": "gateway.project.budget",
                "project": project,
                "budget_usd": budget,
                "period": period if budget is not None else None,
            },
            actor=actor,
        )

    def project_budget(self, project: str) -> tuple[float, Period] | None:
        with self._lock:
            return self._project_budgets.get(project)

    def budgets(self, project: str) -> list[BudgetStatus]:
        """The budgets `project`'s requests count against, with their current spend.

        The project's own budget first (when it has one), then the budgets of its live
        keys (bound to the project, neither revoked nor expired), oldest key first. Read
        from the database, not this process's trackers, so the spend of every gateway
        process is included as of its last flush; the periods are those admit() uses.
        """
        now = self._clock()
        scopes: list[tuple[str, float, Period, VirtualKey | None]] = []
        with self._read("reading budgets") as conn:
            row = conn.execute(
                text("SELECT budget_usd, period FROM gateway_project_budgets WHERE project = :p"),
                {"p": project},
            ).first()
            if row is not None:
                scopes.append(
                    ("project:" + project, float(row.budget_usd), _period(row.period), None)
                )
            keys = conn.execute(
                text(
                    f"SELECT {_KEY_COLUMNS} FROM gateway_vkeys WHERE project = :p"
                    " AND revoked_at IS NULL AND budget_usd IS NOT NULL ORDER BY created_at, id"
                ),
                {"p": project},
            ).all()
            for vkey in map(self._vkey, keys):
                if vkey.budget_usd is None:
                    continue
                if vkey.expires_at is not None and vkey.expires_at.timestamp() <= now:
                    continue
                scopes.append(("key:" + vkey.id, vkey.budget_usd, vkey.period, vkey))
            spent = [
                self._period_spend(conn, scope, self._calendar.bounds(period, now)[0])
                for scope, _, period, _ in scopes
            ]
        found: list[BudgetStatus] = []
        for (scope, budget_usd, period, key), total in zip(scopes, spent, strict=True):
            start, end = self._calendar.bounds(period, now)
            with self._lock:
                total += self._pending_cost(scope, start)
            found.append(
                BudgetStatus(
                    scope="key" if key is not None else "project",
                    project=project,
                    budget_usd=budget_usd,
                    period=period,
                    period_start=start,
                    period_end=datetime.fromtimestamp(end, UTC),
                    spent_usd=total,
                    key_id=key.id if key is not None else None,
                    prefix=key.prefix if key is not None else None,
                    name=key.name if key is not None else None,
                )
            )
        return found

    def _load_project_budgets(self) -> None:
        with self._read("reading project budgets") as conn:
            rows = conn.execute(
                text("SELECT project, budget_usd, period FROM gateway_project_budgets")
            ).all()
        loaded = {row.project: (float(row.budget_usd), _period(row.period)) for row in rows}
        with self._lock:
            self._project_budgets = loaded

    # -- the hot path -----------------------------------------------------------------

    def authenticate(self, secret: str) -> VirtualKey:
        """The live virtual key for `secret`; AuthError (401) otherwise.

        Verified keys are cached (bounded LRU, key_cache_ttl_s); on a miss the stored
        digest is compared in constant time, on a hit the key's revocation is re-read by
        primary key, so a revocation in another process holds from the next request.
        """
        if not isinstance(secret, str):
            raise AuthError(_AUTH_FAILED, hint=_AUTH_HINT)
        digest = vkeys.hash_secret(secret.strip())
        with self._lock:
            entry = self._keys.get(digest)
            known_bad = entry is None and self._bad.get(digest) is not None
        if known_bad:
            raise AuthError(_AUTH_FAILED, hint=_AUTH_HINT)
        if entry is None:
            entry = self._verify(secret.strip(), digest)
        elif self._revoked_since(entry.vkey.id):
            with self._lock:
                self._keys.discard_where(lambda cached: cached.vkey.id == entry.vkey.id)
                self._bad.put(digest, True)
            raise AuthError(_AUTH_FAILED, hint=_AUTH_HINT)
        if entry.expires_ts is not None and self._clock() >= entry.expires_ts:
            raise AuthError(_AUTH_FAILED, hint=_AUTH_HINT)
        return entry.vkey

    def _revoked_since(self, key_id: str) -> bool:
        """Whether a cached key was revoked since (by any process): one indexed read."""
        return self._revocations.revoked(key_id)

    def _verify(self, secret: str, digest: str) -> _KeyEntry:
        prefix = vkeys.parse(secret)
        row = None
        if prefix is not None:
            with self._read("checking a virtual key") as conn:
                row = conn.execute(
                    text(f"SELECT {_KEY_COLUMNS} FROM gateway_vkeys WHERE prefix = :p"),
                    {"p": prefix},
                ).first()
        if row is None or not vkeys.matches(digest, row.key_hash) or row.revoked_at is not None:
            with self._lock:
                self._bad.put(digest, True)
            raise AuthError(_AUTH_FAILED, hint=_AUTH_HINT)
        vkey = self._vkey(row)
        entry = _KeyEntry(vkey, vkey.expires_at.timestamp() if vkey.expires_at else None)
        with self._lock:
            self._keys.put(digest, entry)
        return entry

    def _scopes(self, vkey: VirtualKey) -> list[tuple[str, float, Period, str]]:
        """(scope, budget, period, what) for each budget the key's requests count against."""
        scopes: list[tuple[str, float, Period, str]] = []
        if vkey.budget_usd is not None:
            scopes.append(
                ("key:" + vkey.id, vkey.budget_usd, vkey.period, f"the virtual key {vkey.prefix}")
            )
        if vkey.project is not None:
            with self._lock:
                project_budget = self._project_budgets.get(vkey.project)
            if project_budget is not None:
                scopes.append(
                    (
                        "project:" + vkey.project,
                        project_budget[0],
                        project_budget[1],
                        f"the project {vkey.project}",
                    )
                )
        return scopes

    def check_model(self, vkey: VirtualKey, model: str) -> None:
        """PermissionDeniedError (403) when `model` is outside the key's allow-list."""
        if vkey.models is not None and not any(
            fnmatch.fnmatchcase(model, pattern) for pattern in vkey.models
        ):
            raise PermissionDeniedError(
                f"the virtual key {vkey.prefix} may not use model {model!r}",
                hint="allowed: " + ", ".join(vkey.models),
            )

    async def admit_async(self, vkey: VirtualKey, *, model: str, est_tokens: int) -> Admission:
        """`admit` for the event loop: in line while the local leases and trackers cover
        the request (no I/O), in a thread when a lease transaction or a spend read is
        needed, so a slow database holds up this request only, not every other one."""
        try:
            return self.admit(vkey, model=model, est_tokens=est_tokens, wait=False)
        except LeaseNeeded:
            return await asyncio.to_thread(
                functools.partial(self.admit, vkey, model=model, est_tokens=est_tokens)
            )

    def admit(
        self, vkey: VirtualKey, *, model: str, est_tokens: int, wait: bool = True
    ) -> Admission:
        """Let one request for `model` of about `est_tokens` tokens through, or refuse it.

        PermissionDeniedError (403) when the model is outside the key's allow-list;
        RateLimitedError (429, retry_after_s) when rpm or tpm is reached;
        BudgetExceededError (429) when the key's or its project's budget is spent.
        Nothing is counted for a refused request. With `wait` False, LeaseNeeded (and
        nothing counted) when admitting would need the database.
        """
        self.check_model(vkey, model)
        est_tokens = max(int(est_tokens), 0)
        now = self._clock()
        scopes = self._scopes(vkey)
        for scope, _budget_usd, period, _what in scopes:
            self._ensure_tracker(scope, period, now, wait=wait)
        price = self._prices.lookup(None, model)
        estimate = est_tokens * price.input / 1_000_000 if price is not None else 0.0
        shared = self._take_shared(vkey, scopes, est_tokens, estimate, now, wait=wait)
        try:
            return self._admit_here(vkey, model, est_tokens, estimate, scopes, shared, now)
        except BaseException:
            if self._leases is not None:
                for scope, bucket, amount in shared:
                    self._leases.untake(scope, bucket, amount, now)
            raise

    def _admit_here(
        self,
        vkey: VirtualKey,
        model: str,
        est_tokens: int,
        estimate: float,
        scopes: list[tuple[str, float, Period, str]],
        shared: tuple[tuple[str, int, float], ...],
        now: float,
    ) -> Admission:
        """The in-process checks: this process's window and budget trackers."""
        with self._lock:
            window = self._windows.get(vkey.id)
            if window is None:
                window = self._windows[vkey.id] = SlidingWindow(self._settings.window_s)
            if vkey.rpm is not None or vkey.tpm is not None:
                wait = window.retry_after(now, rpm=vkey.rpm, tpm=vkey.tpm, tokens=est_tokens)
                if wait > 0:
                    limit = "rpm" if vkey.rpm is not None and window.requests >= vkey.rpm else "tpm"
                    raise RateLimitedError(wait, limit=limit)
            trackers = []
            for scope, budget_usd, period, what in scopes:
                tracker = self._current_tracker(scope, period, now)
                if tracker.spent + tracker.reserved >= budget_usd:
                    end = self._calendar.bounds(period, now)[1]
                    raise BudgetExceededError(
                        f"{what} has spent ${tracker.spent:.2f} of its"
                        f" ${budget_usd:.2f} {_ADJECTIVE[period]} budget",
                        scope=scope.split(":", 1)[0],
                        budget_usd=budget_usd,
                        spent_usd=tracker.spent,
                        retry_after_s=max(end - now, 0.0),
                    )
                trackers.append(tracker)
            for tracker in trackers:
                tracker.reserved += estimate
                tracker.last_used = now
            slot = window.add(now, est_tokens)
        return Admission(
            key=vkey,
            model=model,
            est_tokens=est_tokens,
            at=now,
            reserved_usd=estimate,
            slot=slot,
            scopes=tuple(scope for scope, *_ in scopes),
            shared=shared,
        )

    def _take_shared(
        self,
        vkey: VirtualKey,
        scopes: list[tuple[str, float, Period, str]],
        est_tokens: int,
        estimate: float,
        now: float,
        *,
        wait: bool = True,
    ) -> tuple[tuple[str, int, float], ...]:
        """Take one request, its tokens and its estimated cost from the shared quotas.

        Refused like the in-process checks (RateLimitedError, BudgetExceededError); what
        was taken before a refusal is given back. Returns what to correct on settlement.
        """
        leases = self._leases
        if leases is None:
            return ()
        taken: list[tuple[str, int, float]] = []
        window = self._settings.window_s
        slot = int(now)
        try:
            limits = (("rpm", vkey.rpm, 1), ("tpm", vkey.tpm, est_tokens))
            for name, limit, amount in limits:
                if limit is None:
                    continue
                need = min(amount, limit)
                if need <= 0:
                    continue
                scope = f"{name}:{vkey.id}"
                refused = leases.take(
                    scope,
                    now=now,
                    bucket=slot,
                    expires=slot + 1.0,
                    limit=float(limit),
                    need=float(need),
                    amount=float(need),
                    expire_newest_before=now - window,
                    wait=wait,
                )
                if refused is not None:
                    raise RateLimitedError(
                        _retry_after(refused, limit, need, window, now), limit=name
                    )
                taken.append((scope, slot, float(need)))
            for scope, budget_usd, period, what in scopes:
                start, end = self._calendar.bounds(period, now)
                bucket = date.fromisoformat(start).toordinal()
                quota_scope = f"usd:{scope}:{period}"
                refused = leases.take(
                    quota_scope,
                    now=now,
                    bucket=bucket,
                    expires=end,
                    limit=budget_usd,
                    need=1e-6,
                    amount=estimate,
                    expire_bucket_before=bucket,
                    seed=functools.partial(self._period_spend, scope=scope, start=start),
                    wait=wait,
                )
                if refused is not None:
                    raise BudgetExceededError(
                        f"{what} has spent ${refused.used:.2f} of its"
                        f" ${budget_usd:.2f} {_ADJECTIVE[period]} budget",
                        scope=scope.split(":", 1)[0],
                        budget_usd=budget_usd,
                        spent_usd=refused.used,
                        retry_after_s=max(end - now, 0.0),
                    )
                taken.append((quota_scope, bucket, estimate))
        except BaseException:
            for taken_scope, taken_bucket, taken_amount in taken:
                leases.untake(taken_scope, taken_bucket, taken_amount, now)
            raise
        return tuple(taken)

    def _correct_shared(self, admission: Admission, usage: Usage | None, cost: float) -> None:
        """Count what an admission really used (None: nothing) in the shared quotas."""
        leases = self._leases
        if leases is None or not admission.shared:
            return
        now = self._clock()
        for scope, bucket, amount in admission.shared:
            if scope.startswith("rpm:"):
                continue  # a request counts once it was admitted, whatever happened
            if scope.startswith("tpm:"):
                used = float(usage.total_tokens) if usage is not None else 0.0
                delta = used - amount
                # extra tokens count from now; a refund lowers the slot they were taken in
                leases.correct(scope, int(now) if delta > 0 else bucket, delta, now)
            else:
                leases.correct(scope, bucket, (cost if usage is not None else 0.0) - amount, now)

    def _current_tracker(self, scope: str, period: Period, now: float) -> BudgetTracker:
        """The scope's tracker for the period holding `now` (caller holds _lock)."""
        start = self._calendar.bounds(period, now)[0]
        tracker = self._trackers.get(scope)
        if tracker is None or tracker.period_start != start:
            # a new period: nothing spent yet but what this process has not flushed;
            # reservations of requests still in flight carry over
            carried = tracker.reserved if tracker is not None else 0.0
            tracker = BudgetTracker(
                start, base=self._pending_cost(scope, start), reserved=carried, last_used=now
            )
            self._trackers[scope] = tracker
        return tracker

    def _pending_cost(self, scope: str, start: str) -> float:
        kind, _, name = scope.partition(":")
        index = 1 if kind == "key" else 2
        return sum(
            row.cost_usd
            for key, row in self._pending.items()
            if key[index] == name and key[0] >= start
        )

    def _ensure_tracker(self, scope: str, period: Period, now: float, *, wait: bool = True) -> None:
        """Load the scope's spend from the database the first time it is used (with
        `wait` False, LeaseNeeded instead of reading)."""
        with self._lock:
            if scope in self._trackers:
                return
        if not wait:
            raise LeaseNeeded(scope)
        with self._flush_lock:
            self._load_tracker(scope, self._calendar.bounds(period, now)[0], now)

    def _load_tracker(self, scope: str, start: str, now: float) -> None:
        """Re-read a scope's period spend (caller holds _flush_lock, so no flush runs)."""
        with self._read("reading spend") as conn:
            total = self._period_spend(conn, scope, start)
        with self._lock:
            base = total + self._pending_cost(scope, start)
            tracker = self._trackers.get(scope)
            if tracker is not None and tracker.period_start == start:
                tracker.base = base
                tracker.local = 0.0
            else:
                reserved = tracker.reserved if tracker is not None else 0.0
                self._trackers[scope] = BudgetTracker(
                    start, base=base, reserved=reserved, last_used=now
                )

    @staticmethod
    def _period_spend(conn: Connection, scope: str, start: str) -> float:
        """What `scope` ("key:<id>" or "project:<name>") spent in the database since `start`."""
        kind, _, name = scope.partition(":")
        column = "key_id" if kind == "key" else "project"
        total = conn.execute(
            text(
                "SELECT COALESCE(SUM(cost_usd), 0) FROM gateway_usage"
                f" WHERE {column} = :name AND day >= :start"
            ),
            {"name": name, "start": start},
        ).scalar()
        return float(total or 0.0)

    def settle(self, admission: Admission, *, provider: str, model: str, usage: Usage) -> Cost:
        """Record what an admitted request used and cost; returns the cost.

        `model` is the upstream model that answered (priced at `provider`). Call once
        per admission; the spend reaches the database with the next flush.
        """
        cost = cost_of(self._prices.lookup(provider, model), usage)
        total = cost.total_usd
        now = self._clock()
        key = admission.key
        spend_key: SpendKey = (self._calendar.day(now), key.id, key.project or "", provider, model)
        with self._lock:
            window = self._windows.get(key.id)
            if window is not None:
                window.adjust(admission.slot, usage.total_tokens - admission.est_tokens)
            for scope in admission.scopes:
                tracker = self._trackers.get(scope)
                if tracker is not None:
                    tracker.reserved = max(tracker.reserved - admission.reserved_usd, 0.0)
                    tracker.local += total
                    tracker.last_used = now
            row = self._pending.get(spend_key)
            if row is None:
                row = self._pending[spend_key] = SpendRow()
            row.requests += 1
            row.input_tokens += usage.input_tokens
            row.output_tokens += usage.output_tokens
            row.cache_read_tokens += usage.cache_read
            row.cache_write_tokens += usage.cache_write
            row.cost_usd += total
            crowded = len(self._pending) >= self._settings.flush_rows
        self._correct_shared(admission, usage, total)
        if crowded:
            self._wake.set()
        return cost

    def release(self, admission: Admission) -> None:
        """Give back an admission whose request never reached a provider (nothing used).

        The request still counts against rpm; its estimated tokens and reserved cost
        are returned.
        """
        with self._lock:
            window = self._windows.get(admission.key.id)
            if window is not None:
                window.adjust(admission.slot, -admission.est_tokens)
            for scope in admission.scopes:
                tracker = self._trackers.get(scope)
                if tracker is not None:
                    tracker.reserved = max(tracker.reserved - admission.reserved_usd, 0.0)
        self._correct_shared(admission, None, 0.0)

    def price(self, provider: str, model: str) -> Price | None:
        """The list price of `model` at `provider` (per 1M tokens), or None if unknown."""
        return self._prices.lookup(provider, model)

    # -- provider keys ----------------------------------------------------------------

    def provider_key(self, ref: str) -> str | None:
        """The decrypted upstream key stored as `ref`, or None when none is stored.

        Cached in memory for key_cache_ttl_s, so a rotation elsewhere is seen within
        that time; the database only ever holds the sealed form.
        """
        with self._lock:
            cached = self._provider_keys.get(ref)
        if cached is not None:
            return cached[0]
        with self._read("reading a provider key") as conn:
            row = conn.execute(
                text("SELECT sealed FROM gateway_provider_keys WHERE name = :n"), {"n": ref}
            ).first()
        value = self._vault.open(ref, bytes(row.sealed)) if row is not None else None
        with self._lock:
            self._provider_keys.put(ref, (value,))
        return value

    def rewrap_provider_keys(self) -> int:
        """Wrap every stored provider key's data key under the active master key (after a
        master-key rotation); a row changed meanwhile is left to its writer. Returns how
        many rows were re-wrapped."""
        with self._read("reading provider keys") as conn:
            rows = conn.execute(text("SELECT name, sealed FROM gateway_provider_keys")).all()
        done = 0
        for row in rows:
            renewed = self._vault.rewrap(str(row.name), bytes(row.sealed))
            if renewed is None:
                continue
            with self._tx("re-wrapping a provider key") as conn:
                changed = conn.execute(
                    text(
                        "UPDATE gateway_provider_keys SET sealed = :new"
                        " WHERE name = :n AND sealed = :old"
                    ),
                    {"new": renewed, "n": row.name, "old": bytes(row.sealed)},
                ).rowcount
            done += 1 if changed == 1 else 0
        return done

    def set_provider_key(
        self, name: str, secret: str, *, actor: Mapping[str, Any] | None = None
    ) -> ProviderKeyInfo:
        """Store (or replace) the upstream key `name`, encrypted; audited, never logged."""
        if not isinstance(name, str) or not _REF_RE.match(name):
            raise InputError(
                f"{name!r} is not a provider key name",
                hint="use lower-case letters, digits, '.', '_' or '-' (e.g. anthropic)",
            )
        secret = secret.strip() if isinstance(secret, str) else ""
        if not secret:
            raise InputError("the provider key is empty", hint="pipe the key on standard input")
        sealed = self._vault.seal(name, secret)
        now = _iso(self._clock())
        with self._tx("storing a provider key") as conn:
            existed = (
                conn.execute(
                    text("SELECT created_at FROM gateway_provider_keys WHERE name = :n"),
                    {"n": name},
                ).first()
                is not None
            )
            conn.execute(
                text(
                    "INSERT INTO gateway_provider_keys (name, sealed, created_at, updated_at)"
                    " VALUES (:n, :s, :now, :now) ON CONFLICT (name) DO UPDATE SET"
                    " sealed = excluded.sealed, updated_at = excluded.updated_at"
                ),
                {"n": name, "s": sealed, "now": now},
            )
            row = conn.execute(
                text(
                    "SELECT name, created_at, updated_at FROM gateway_provider_keys WHERE name = :n"
                ),
                {"n": name},
            ).one()
        with self._lock:
            self._provider_keys.pop(name)
        self._audit(
            "key.provider_rotated" if existed else "key.provider_set",
            None,
            subject=name,
            refs={"provider_key": name},
            actor=actor,
        )
        return ProviderKeyInfo(
            name=row.name,
            created_at=_parse_ts(row.created_at) or datetime.fromtimestamp(0, UTC),
            updated_at=_parse_ts(row.updated_at) or datetime.fromtimestamp(0, UTC),
        )

    def delete_provider_key(self, name: str, *, actor: Mapping[str, Any] | None = None) -> None:
        """Remove the stored upstream key `name`; NotFoundError when there is none."""
        with self._tx("deleting a provider key") as conn:
            gone = conn.execute(
                text("DELETE FROM gateway_provider_keys WHERE name = :n"), {"n": name}
            ).rowcount
        if not gone:
            raise NotFoundError(f"no provider key {name!r}")
        with self._lock:
            self._provider_keys.pop(name)
        self._audit(
            "key.provider_deleted", None, subject=name, refs={"provider_key": name}, actor=actor
        )

    def list_provider_keys(self) -> list[ProviderKeyInfo]:
        """The stored provider keys' names and times (never the keys)."""
        with self._read("listing provider keys") as conn:
            rows = conn.execute(
                text("SELECT name, created_at, updated_at FROM gateway_provider_keys ORDER BY name")
            ).all()
        epoch = datetime.fromtimestamp(0, UTC)
        return [
            ProviderKeyInfo(
                row.name, _parse_ts(row.created_at) or epoch, _parse_ts(row.updated_at) or epoch
            )
            for row in rows
        ]

    # -- usage ------------------------------------------------------------------------

    def usage(
        self,
        *,
        by: str = "model",
        project: str | None = None,
        key: str | None = None,
        since: str | None = None,
        until: str | None = None,
    ) -> list[UsageRow]:
        """Usage and cost grouped `by` model, key, day, provider or project.

        `since`/`until` are UTC days 'YYYY-MM-DD' (inclusive). Pending spend is flushed
        first, so the report includes every settled request of this process.
        """
        column = _GROUPS.get(by)
        if column is None:
            raise InputError(f"cannot group usage by {by!r}", hint="use " + ", ".join(_GROUPS))
        where = []
        params: dict[str, Any] = {}
        if project is not None:
            where.append("project = :project")
            params["project"] = project
        if key is not None:
            where.append("key_id = :key_id")
            params["key_id"] = self.get_key(key).id
        for value, op, name in ((since, ">=", "since"), (until, "<=", "until")):
            if value is not None:
                if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
                    raise InputError(f"{value!r} is not a day", hint="write YYYY-MM-DD")
                where.append(f"day {op} :{name}")
                params[name] = value
        self.flush()
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        with self._read("reading usage") as conn:
            rows = conn.execute(
                text(
                    f"SELECT {column} AS grp, SUM(requests) AS requests,"
                    " SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,"
                    " SUM(cache_read_tokens) AS cache_read_tokens,"
                    " SUM(cache_write_tokens) AS cache_write_tokens, SUM(cost_usd) AS cost_usd"
                    f" FROM gateway_usage{clause} GROUP BY {column} ORDER BY {column}"
                ),
                params,
            ).all()
        return [
            UsageRow(
                group=str(row.grp),
                requests=int(row.requests),
                input_tokens=int(row.input_tokens),
                output_tokens=int(row.output_tokens),
                cache_read_tokens=int(row.cache_read_tokens),
                cache_write_tokens=int(row.cache_write_tokens),
                cost_usd=float(row.cost_usd),
            )
            for row in rows
        ]

    # -- background work --------------------------------------------------------------

    def flush(self) -> None:
        """Write the pending spend now (one transaction); kept for retry on failure.

        Also counts the shared-quota corrections owed and gives back leases that expired
        or were not used for two refresh intervals (all of them once closed).
        """
        if self._leases is not None:
            now = self._clock()
            self._leases.flush(
                now,
                idle_before=now - 2 * self._settings.refresh_interval_s,
                everything=self._closed,
            )
        with self._flush_lock:
            with self._lock:
                rows, self._pending = self._pending, {}
            if not rows:
                return
            try:
                with self._tx("writing gateway usage") as conn:
                    write_rows(conn, rows)
            except BaseException:
                with self._lock:
                    for spend_key, row in rows.items():
                        have = self._pending.get(spend_key)
                        if have is None:
                            self._pending[spend_key] = row
                        else:
                            have.add(row)
                raise

    def refresh(self) -> None:
        """Re-read project budgets and the spend of budgets in use (other processes').

        Trackers and rate windows idle for a whole window are dropped (they reload on
        next use), so memory follows the keys in use, not every key ever seen.
        """
        self._load_project_budgets()
        now = self._clock()
        with self._lock:
            idle = now - max(self._settings.window_s, self._settings.refresh_interval_s * 2)
            for key_id in [k for k, w in self._windows.items() if w.last_used < idle]:
                window = self._windows[key_id]
                window.retry_after(now, rpm=None, tpm=None, tokens=0)
                if window.empty:
                    del self._windows[key_id]
            for scope in [
                s for s, t in self._trackers.items() if t.last_used < idle and t.reserved == 0
            ]:
                del self._trackers[scope]
            active = [(scope, t.period_start) for scope, t in self._trackers.items()]
        with self._flush_lock:
            for scope, start in active:
                self._load_tracker(scope, start, now)

    def _run(self) -> None:
        next_refresh = time.monotonic() + self._settings.refresh_interval_s
        while not self._stop.is_set():
            self._wake.wait(self._settings.flush_interval_s)
            self._wake.clear()
            with contextlib.suppress(FlowLoomError):  # rows are kept for the next try
                self.flush()
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + self._settings.refresh_interval_s
                with contextlib.suppress(FlowLoomError):
                    self.refresh()

    def close(self) -> None:
        """Stop the writer, write the pending spend, release the connections."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        finally:
            self._revocations.close()
            if self._owns_engine:
                self._engine.dispose()

    def __enter__(self) -> Access:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
