"""Shared quotas: rate limits and budgets counted across gateway processes and hosts.

Every gateway process (uvicorn worker, or gateway on another host) over one database
counts against the same rows, so N processes together grant a key its limit once, not
N times. The hot path stays in memory through *leases*: a process takes a small block of
a quota (``lease_fraction`` of the limit, at least what the request needs) in one short
transaction and spends it locally; what it does not use goes back.

A lease is one transaction on the scope's lock row (an upsert, so PostgreSQL holds a
row lock until commit and SQLite's BEGIN IMMEDIATE serialises it anyway): apply the
corrections this process owes, forget what left the window, sum what is in use, and
grant ``min(want, limit - used)`` when at least ``need`` is left. The grant is counted
before the transaction ends, so two processes can never both be granted the same unit:
counted use never exceeds the limit by a grant. What can exceed it is only what was
known after admission — a request's real tokens or cost beyond its estimate — and it is
counted (as a correction) within one flush interval.

Rate scopes keep one row per one-second bucket with the time of its newest use, so
the window slides as the in-memory one does (a lease that is not spent at once is dated
at the end of its second, and expires then: a unit is never counted as older than it
is). Budget scopes keep one row per period, seeded from the recorded spend when the
period's row is first made.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import translate

__all__ = ["Grant", "LeaseAsk", "LeaseNeeded", "Leases", "QuotaStore", "SqlQuotaStore"]

EPSILON = 1e-9
Seed = Callable[[Connection], float]


@dataclass(frozen=True)
class LeaseAsk:
    """One lease request on `scope`, made at `now`.

    `bucket`: where a grant is counted; `newest`: the time it is dated at. Use older
    than `expire_newest_before` or in a bucket below `expire_bucket_before` is gone.
    `adjust`: (bucket, delta, newest) corrections owed, applied first (a negative delta
    only lowers a row that is still there). `seed`: the first value of a new bucket row.
    """

    scope: str
    now: float
    bucket: int
    newest: float
    limit: float
    want: float
    need: float
    adjust: tuple[tuple[int, float, float], ...] = ()
    expire_newest_before: float | None = None
    expire_bucket_before: int | None = None
    seed: Seed | None = None


class LeaseNeeded(Exception):
    """Taking would need a lease transaction, and the caller said it may not wait (it
    runs on the event loop): nothing was taken; ask again from a thread."""


@dataclass(frozen=True)
class Grant:
    """What a lease granted, the use counted before it, and the rows (amount, newest)."""

    granted: float
    used: float
    rows: tuple[tuple[float, float], ...]


class QuotaStore(Protocol):
    def lease(self, ask: LeaseAsk) -> Grant: ...


class SqlQuotaStore:
    """Leases on the gateway_quota_* tables of a SQLite or PostgreSQL database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        greatest = "GREATEST" if engine.dialect.name == "postgresql" else "MAX"
        self._add = text(
            "INSERT INTO gateway_quota_use (scope, bucket, amount, newest)"
            " VALUES (:s, :b, :a, :n) ON CONFLICT (scope, bucket) DO UPDATE SET"
            " amount = gateway_quota_use.amount + excluded.amount,"
            f" newest = {greatest}(gateway_quota_use.newest, excluded.newest)"
        )
        self._lower = text(
            "UPDATE gateway_quota_use SET amount = CASE WHEN amount + :a < 0 THEN 0"
            " ELSE amount + :a END WHERE scope = :s AND bucket = :b"
        )

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self._engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise translate(exc, "counting a shared rate limit or budget") from exc

    def lease(self, ask: LeaseAsk) -> Grant:
        s = ask.scope
        with self._tx() as conn:
            conn.execute(
                text(
                    "INSERT INTO gateway_quota_scopes (scope, touched) VALUES (:s, :t)"
                    " ON CONFLICT (scope) DO UPDATE SET touched = excluded.touched"
                ),
                {"s": s, "t": ask.now},
            )
            for bucket, delta, newest in ask.adjust:
                if delta > 0:
                    conn.execute(self._add, {"s": s, "b": bucket, "a": delta, "n": newest})
                elif delta < 0:
                    conn.execute(self._lower, {"s": s, "b": bucket, "a": delta})
            if ask.expire_newest_before is not None:
                conn.execute(
                    text("DELETE FROM gateway_quota_use WHERE scope = :s AND newest <= :t"),
                    {"s": s, "t": ask.expire_newest_before},
                )
            if ask.expire_bucket_before is not None:
                conn.execute(
                    text("DELETE FROM gateway_quota_use WHERE scope = :s AND bucket < :b"),
                    {"s": s, "b": ask.expire_bucket_before},
                )
            rows = [
                _Row(int(r.bucket), float(r.amount), float(r.newest))
                for r in conn.execute(
                    text(
                        "SELECT bucket, amount, newest FROM gateway_quota_use WHERE scope = :s"
                        " ORDER BY newest, bucket"
                    ),
                    {"s": s},
                )
            ]
            if ask.seed is not None and not any(r.bucket == ask.bucket for r in rows):
                first = max(float(ask.seed(conn)), 0.0)
                conn.execute(self._add, {"s": s, "b": ask.bucket, "a": first, "n": ask.now})
                rows = [*rows, _Row(ask.bucket, first, ask.now)]
            used = sum(r.amount for r in rows)
            left = ask.limit - used
            granted = 0.0
            if ask.want > 0 and left >= ask.need - EPSILON and left > EPSILON:
                granted = min(ask.want, left)
                conn.execute(self._add, {"s": s, "b": ask.bucket, "a": granted, "n": ask.newest})
        return Grant(granted, used, tuple((r.amount, r.newest) for r in rows))


@dataclass(frozen=True)
class _Row:
    bucket: int
    amount: float
    newest: float


@dataclass
class _Lease:
    bucket: int
    left: float
    expires: float
    last_used: float


class Leases:
    """This process's leases and owed corrections, per scope, over a QuotaStore.

    Thread-safe: admissions (event loop), settlements (recorder thread) and flushes
    (writer thread) meet here. Store calls run one at a time, outside the memory lock.
    """

    def __init__(self, store: QuotaStore, *, fraction: float) -> None:
        if not 0 < fraction <= 1:
            raise ValueError("the lease fraction must be in (0, 1]")
        self._store = store
        self._fraction = fraction
        self._lock = threading.Lock()
        self._io = threading.Lock()
        self._leases: dict[str, _Lease] = {}
        self._owed: dict[str, dict[int, list[float]]] = {}

    def block(self, limit: float, amount: float) -> float:
        """How much to lease: a fraction of the limit, at least what is to be spent now."""
        return max(amount, limit * self._fraction)

    def take(
        self,
        scope: str,
        *,
        now: float,
        bucket: int,
        expires: float,
        limit: float,
        need: float,
        amount: float,
        expire_newest_before: float | None = None,
        expire_bucket_before: int | None = None,
        seed: Seed | None = None,
        wait: bool = True,
    ) -> Grant | None:
        """Spend `amount` (≥ `need` must be left) from the scope's lease; None when taken.

        When the lease cannot cover it, a new one is asked for (the old one's rest goes
        back); the Grant of a refused ask is returned so the caller can say why. With
        `wait` False that ask (a database transaction) is not made: LeaseNeeded instead.
        """
        with self._lock:
            if self._spend(scope, bucket, now, need, amount):
                return None
        if not wait:
            raise LeaseNeeded(scope)
        with self._io:
            with self._lock:  # another thread may have leased meanwhile
                if self._spend(scope, bucket, now, need, amount):
                    return None
                adjust = self._release(scope, now)
            want = self.block(limit, max(need, amount))
            newest = now if want <= amount + EPSILON else expires
            try:
                grant = self._store.lease(
                    LeaseAsk(
                        scope,
                        now,
                        bucket,
                        newest,
                        limit,
                        want,
                        need,
                        adjust,
                        expire_newest_before,
                        expire_bucket_before,
                        seed,
                    )
                )
            except BaseException:
                with self._lock:
                    self._owe_all(scope, adjust)
                raise
            with self._lock:
                if grant.granted <= 0:
                    return grant
                self._leases[scope] = _Lease(bucket, grant.granted - amount, expires, now)
                if grant.granted < amount:  # a budget's last sliver: the rest is owed
                    self._owe(scope, bucket, amount - grant.granted, now)
                    self._leases[scope].left = 0.0
        return None

    def _spend(self, scope: str, bucket: int, now: float, need: float, amount: float) -> bool:
        lease = self._leases.get(scope)
        if lease is None or lease.bucket != bucket or now >= lease.expires:
            return False
        if lease.left < need - EPSILON or lease.left <= EPSILON:
            return False
        lease.left -= amount
        lease.last_used = now
        if lease.left < 0:
            self._owe(scope, bucket, -lease.left, now)
            lease.left = 0.0
        return True

    def _release(self, scope: str, now: float) -> tuple[tuple[int, float, float], ...]:
        """Pop the scope's lease (its rest given back) and its owed corrections."""
        lease = self._leases.pop(scope, None)
        if lease is not None and lease.left > 0:
            self._owe(scope, lease.bucket, -lease.left, now)
        owed = self._owed.pop(scope, {})
        return tuple((bucket, delta, newest) for bucket, (delta, newest) in owed.items())

    def _owe(self, scope: str, bucket: int, delta: float, now: float) -> None:
        row = self._owed.setdefault(scope, {}).setdefault(bucket, [0.0, now])
        row[0] += delta
        row[1] = max(row[1], now)

    def _owe_all(self, scope: str, adjust: Sequence[tuple[int, float, float]]) -> None:
        for bucket, delta, newest in adjust:
            self._owe(scope, bucket, delta, newest)

    def untake(self, scope: str, bucket: int, amount: float, now: float) -> None:
        """Give `amount` taken from `bucket` back (a refusal later in admission)."""
        with self._lock:
            lease = self._leases.get(scope)
            if lease is not None and lease.bucket == bucket and now < lease.expires:
                lease.left += amount
            else:
                self._owe(scope, bucket, -amount, now)

    def correct(self, scope: str, bucket: int, delta: float, now: float) -> None:
        """Owe `delta` more (or, negative, less) in `bucket`: counted at the next flush."""
        if delta == 0:
            return
        with self._lock:
            self._owe(scope, bucket, delta, now)

    def flush(self, now: float, *, idle_before: float, everything: bool = False) -> None:
        """Write owed corrections, and give back leases expired or idle since `idle_before`
        (with `everything`, all leases: the process is stopping)."""
        with self._io:
            with self._lock:
                scopes = set(self._owed)
                scopes.update(
                    s
                    for s, lease in self._leases.items()
                    if everything or now >= lease.expires or lease.last_used < idle_before
                )
                work = [(scope, self._release(scope, now)) for scope in sorted(scopes)]
            for index, (scope, adjust) in enumerate(work):
                if not adjust:
                    continue
                try:
                    self._store.lease(LeaseAsk(scope, now, 0, now, 0.0, 0.0, 0.0, adjust))
                except BaseException:
                    with self._lock:
                        for rest_scope, rest in work[index:]:
                            self._owe_all(rest_scope, rest)
                    raise

    def forget(self, scope: str) -> None:
        """Drop a scope's lease without giving it back (its budget or limit changed)."""
        with self._lock:
            self._leases.pop(scope, None)
