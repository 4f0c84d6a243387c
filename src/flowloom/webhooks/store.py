"""WebhookStore: the subscriptions, the durable delivery queue and the attempts, in SQL.

Every change that several server processes could race on is a compare-and-set: a
cursor advances (with the deliveries it queues, in one transaction) only from the value
it was read at, and a delivery is leased only while its lease has lapsed. So processes
sharing a PostgreSQL database never queue an entry twice nor send one message at once,
and a process that dies mid-send leaves a lease that lapses, then the message is sent
again (at-least-once).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError

from flowloom.auth.schema import translate
from flowloom.errors import NotFoundError
from flowloom.webhooks.records import Attempt, Delivery, Subscription
from flowloom.webhooks.schema import migrate

__all__ = ["NewDelivery", "WebhookStore"]

NewDelivery = tuple[str, str, int | None, str | None]
"""(message id, kind, ledger index, payload) of a message to queue."""

_SUB_COLUMNS = (
    "id, project, url, kinds, description, include_bodies, enabled, cursor,"
    " created_by, created_at, updated_at, format, next_digest_at"
)
_DELIVERY_COLUMNS = (
    "id, subscription_id, project, message_id, kind, ledger_index, payload, status,"
    " attempts, next_attempt_at, redelivery_of, created_at, finished_at"
)


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _subscription(row: Row[Any]) -> Subscription:
    return Subscription(
        id=row.id,
        project=row.project,
        url=row.url,
        kinds=tuple(json.loads(row.kinds)),
        description=row.description,
        include_bodies=bool(row.include_bodies),
        enabled=bool(row.enabled),
        cursor=int(row.cursor),
        created_by=row.created_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
        format=row.format,
        next_digest_at=float(row.next_digest_at),
    )


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        id=int(row.id),
        subscription_id=row.subscription_id,
        project=row.project,
        message_id=row.message_id,
        kind=row.kind,
        ledger_index=None if row.ledger_index is None else int(row.ledger_index),
        payload=row.payload,
        status=row.status,
        attempts=int(row.attempts),
        next_attempt_at=float(row.next_attempt_at),
        redelivery_of=None if row.redelivery_of is None else int(row.redelivery_of),
        created_at=row.created_at,
        finished_at=row.finished_at,
    )


class WebhookStore:
    """The webhook tables over `engine` (the directory's), migrated on construction."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        migrate(engine)

    def _begin(self, doing: str) -> Any:
        return _Tx(self._engine, doing)

    # -- subscriptions ------------------------------------------------------------------

    def add(self, sub: Subscription, sealed_secret: bytes, sealed_url: bytes | None = None) -> None:
        with self._begin("adding a webhook") as conn:
            conn.execute(
                text(
                    f"INSERT INTO webhook_subscriptions ({_SUB_COLUMNS}, sealed_secret,"
                    " sealed_url) VALUES (:id, :project, :url, :kinds, :description,"
                    " :include_bodies, :enabled, :cursor, :created_by, :created_at,"
                    " :updated_at, :format, :next_digest_at, :sealed, :sealed_url)"
                ),
                {
                    "id": sub.id,
                    "project": sub.project,
                    "url": sub.url,
                    "kinds": json.dumps(list(sub.kinds)),
                    "description": sub.description,
                    "include_bodies": int(sub.include_bodies),
                    "enabled": int(sub.enabled),
                    "cursor": sub.cursor,
                    "created_by": sub.created_by,
                    "created_at": sub.created_at,
                    "updated_at": sub.updated_at,
                    "format": sub.format,
                    "next_digest_at": sub.next_digest_at,
                    "sealed": sealed_secret,
                    "sealed_url": sealed_url,
                },
            )

    def get(self, project: str, sub_id: str) -> Subscription:
        with self._begin("reading a webhook") as conn:
            row = conn.execute(
                text(
                    f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions"
                    " WHERE id = :id AND project = :project"
                ),
                {"id": sub_id, "project": project},
            ).first()
        if row is None:
            raise NotFoundError(
                f"project {project} has no webhook {sub_id}",
                hint="list them with GET /api/v1/projects/{project}/webhooks",
            )
        return _subscription(row)

    def sealed_secret(self, sub_id: str) -> bytes:
        with self._begin("reading a webhook secret") as conn:
            value = conn.execute(
                text("SELECT sealed_secret FROM webhook_subscriptions WHERE id = :id"),
                {"id": sub_id},
            ).scalar()
        if value is None:
            raise NotFoundError(f"no webhook {sub_id}")
        return bytes(value)

    def sealed_url(self, sub_id: str) -> bytes | None:
        """A chat target's sealed URL; None for a CloudEvents receiver."""
        with self._begin("reading a webhook URL") as conn:
            value = conn.execute(
                text("SELECT sealed_url FROM webhook_subscriptions WHERE id = :id"),
                {"id": sub_id},
            ).scalar()
        return None if value is None else bytes(value)

    def subscriptions(
        self, project: str | None = None, *, enabled_only: bool = False
    ) -> list[Subscription]:
        where = []
        params: dict[str, Any] = {}
        if project is not None:
            where.append("project = :project")
            params["project"] = project
        if enabled_only:
            where.append("enabled = 1")
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._begin("listing webhooks") as conn:
            rows = conn.execute(
                text(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions{clause} ORDER BY id"),
                params,
            ).all()
        return [_subscription(r) for r in rows]

    def update(self, project: str, sub_id: str, changes: dict[str, Any]) -> Subscription:
        """Set the columns in `changes` (url, kinds, description, include_bodies, enabled,
        sealed_secret, sealed_url) and updated_at."""
        self.get(project, sub_id)
        values = dict(changes)
        if "kinds" in values:
            values["kinds"] = json.dumps(list(values["kinds"]))
        for flag in ("include_bodies", "enabled"):
            if flag in values:
                values[flag] = int(values[flag])
        values["updated_at"] = _now_text()
        sets = ", ".join(f"{column} = :{column}" for column in values)
        with self._begin("changing a webhook") as conn:
            conn.execute(
                text(f"UPDATE webhook_subscriptions SET {sets} WHERE id = :sub_id"),
                {**values, "sub_id": sub_id},
            )
        return self.get(project, sub_id)

    def delete(self, project: str, sub_id: str) -> None:
        self.get(project, sub_id)
        with self._begin("deleting a webhook") as conn:
            conn.execute(
                text(
                    "DELETE FROM webhook_attempts WHERE delivery_id IN"
                    " (SELECT id FROM webhook_deliveries WHERE subscription_id = :id)"
                ),
                {"id": sub_id},
            )
            conn.execute(
                text("DELETE FROM webhook_deliveries WHERE subscription_id = :id"), {"id": sub_id}
            )
            conn.execute(text("DELETE FROM webhook_subscriptions WHERE id = :id"), {"id": sub_id})

    # -- the queue ----------------------------------------------------------------------

    def advance(
        self,
        sub: Subscription,
        new_cursor: int,
        queued: Sequence[NewDelivery],
        now: float,
        next_digest_at: float | None = None,
    ) -> bool:
        """Queue `queued` and move `sub`'s cursor on, if no one moved it since it was read."""
        try:
            with self._begin("queueing webhook deliveries") as conn:
                moved = conn.execute(
                    text(
                        "UPDATE webhook_subscriptions SET cursor = :new"
                        " WHERE id = :id AND cursor = :old"
                    ),
                    {"new": new_cursor, "id": sub.id, "old": sub.cursor},
                ).rowcount
                if moved != 1:
                    raise _Lost
                if next_digest_at is not None:
                    conn.execute(
                        text(
                            "UPDATE webhook_subscriptions SET next_digest_at = :at WHERE id = :id"
                        ),
                        {"at": next_digest_at, "id": sub.id},
                    )
                for message_id, kind, index, payload in queued:
                    self._insert(conn, sub, message_id, kind, index, payload, now, None)
        except _Lost:
            return False  # another process queued these first; its transaction won
        return True

    def _insert(
        self,
        conn: Connection,
        sub: Subscription,
        message_id: str,
        kind: str,
        index: int | None,
        payload: str | None,
        now: float,
        redelivery_of: int | None,
    ) -> int:
        row = conn.execute(
            text(
                "INSERT INTO webhook_deliveries (subscription_id, project, message_id, kind,"
                " ledger_index, payload, status, attempts, next_attempt_at, redelivery_of,"
                " created_at) VALUES (:sub, :project, :message_id, :kind, :index, :payload,"
                " 'pending', 0, :now, :redelivery_of, :created_at) RETURNING id"
            ),
            {
                "sub": sub.id,
                "project": sub.project,
                "message_id": message_id,
                "kind": kind,
                "index": index,
                "payload": payload,
                "now": now,
                "redelivery_of": redelivery_of,
                "created_at": _now_text(),
            },
        ).scalar_one()
        return int(row)

    def enqueue(self, sub: Subscription, delivery: NewDelivery, now: float) -> Delivery:
        """Queue one message outside the cursor (a test event)."""
        message_id, kind, index, payload = delivery
        with self._begin("queueing a webhook test event") as conn:
            new_id = self._insert(conn, sub, message_id, kind, index, payload, now, None)
        return self.delivery(sub.project, new_id)

    def redeliver(self, project: str, delivery_id: int, now: float) -> Delivery:
        """Queue `delivery_id`'s message again, at the end of its subscription's queue."""
        old = self.delivery(project, delivery_id)
        sub = self._sub_by_id(old.subscription_id)
        with self._begin("queueing a webhook redelivery") as conn:
            new_id = self._insert(
                conn, sub, old.message_id, old.kind, old.ledger_index, old.payload, now, old.id
            )
        return self.delivery(project, new_id)

    def _sub_by_id(self, sub_id: str) -> Subscription:
        with self._begin("reading a webhook") as conn:
            row = conn.execute(
                text(f"SELECT {_SUB_COLUMNS} FROM webhook_subscriptions WHERE id = :id"),
                {"id": sub_id},
            ).first()
        if row is None:
            raise NotFoundError(f"no webhook {sub_id}")
        return _subscription(row)

    def claim_head(self, sub_id: str, now: float, lease_s: float) -> Delivery | None:
        """Lease the oldest pending delivery of `sub_id` if it is due and not leased.

        Only the head is ever sent, so a subscription's messages go out in queue order;
        a later one waits while the head is retried (dead letters step aside).
        """
        with self._begin("leasing a webhook delivery") as conn:
            row = conn.execute(
                text(
                    f"SELECT {_DELIVERY_COLUMNS}, lease_until FROM webhook_deliveries"
                    " WHERE subscription_id = :sub AND status = 'pending' ORDER BY id LIMIT 1"
                ),
                {"sub": sub_id},
            ).first()
            if row is None or float(row.next_attempt_at) > now or float(row.lease_until) > now:
                return None
            taken = conn.execute(
                text(
                    "UPDATE webhook_deliveries SET lease_until = :until"
                    " WHERE id = :id AND lease_until = :seen AND status = 'pending'"
                ),
                {"until": now + lease_s, "id": row.id, "seen": row.lease_until},
            ).rowcount
        return _delivery(row) if taken == 1 else None

    def finish_attempt(
        self,
        delivery: Delivery,
        attempt: Attempt,
        *,
        status: str,
        next_attempt_at: float,
    ) -> None:
        """Record `attempt` and the delivery's new status (and lift its lease)."""
        finished = _now_text() if status != "pending" else None
        with self._begin("recording a webhook attempt") as conn:
            conn.execute(
                text(
                    "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, error,"
                    " duration_ms) VALUES (:d, :n, :at, :code, :error, :ms)"
                ),
                {
                    "d": delivery.id,
                    "n": attempt.attempt,
                    "at": attempt.at,
                    "code": attempt.status_code,
                    "error": attempt.error,
                    "ms": attempt.duration_ms,
                },
            )
            conn.execute(
                text(
                    "UPDATE webhook_deliveries SET status = :status, attempts = :n,"
                    " next_attempt_at = :next, lease_until = 0, finished_at = :finished"
                    " WHERE id = :id"
                ),
                {
                    "status": status,
                    "n": attempt.attempt,
                    "next": next_attempt_at,
                    "finished": finished,
                    "id": delivery.id,
                },
            )

    # -- reading the history ------------------------------------------------------------

    def delivery(self, project: str, delivery_id: int) -> Delivery:
        with self._begin("reading a webhook delivery") as conn:
            row = conn.execute(
                text(
                    f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
                    " WHERE id = :id AND project = :project"
                ),
                {"id": delivery_id, "project": project},
            ).first()
        if row is None:
            raise NotFoundError(f"project {project} has no webhook delivery {delivery_id}")
        return _delivery(row)

    def deliveries(
        self, project: str, sub_id: str | None = None, *, limit: int = 100
    ) -> list[Delivery]:
        """The newest `limit` deliveries of `project` (of one subscription), newest first."""
        clause = " AND subscription_id = :sub" if sub_id is not None else ""
        with self._begin("listing webhook deliveries") as conn:
            rows = conn.execute(
                text(
                    f"SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries"
                    f" WHERE project = :project{clause} ORDER BY id DESC LIMIT :limit"
                ),
                {"project": project, "sub": sub_id, "limit": limit},
            ).all()
        return [_delivery(r) for r in rows]

    def attempts(self, delivery_ids: Sequence[int]) -> dict[int, list[Attempt]]:
        found: dict[int, list[Attempt]] = {i: [] for i in delivery_ids}
        if not delivery_ids:
            return found
        marks = ", ".join(f":d{n}" for n in range(len(delivery_ids)))
        with self._begin("listing webhook attempts") as conn:
            rows = conn.execute(
                text(
                    "SELECT delivery_id, attempt, at, status_code, error, duration_ms"
                    f" FROM webhook_attempts WHERE delivery_id IN ({marks})"
                    " ORDER BY delivery_id, attempt"
                ),
                {f"d{n}": i for n, i in enumerate(delivery_ids)},
            ).all()
        for r in rows:
            found[int(r.delivery_id)].append(
                Attempt(
                    delivery_id=int(r.delivery_id),
                    attempt=int(r.attempt),
                    at=r.at,
                    status_code=r.status_code,
                    error=r.error,
                    duration_ms=int(r.duration_ms),
                )
            )
        return found


class _Lost(Exception):
    """Rolls a transaction back: the row changed since it was read."""


class _Tx:
    """engine.begin() whose driver errors become StoreErrors naming what was being done."""

    def __init__(self, engine: Engine, doing: str) -> None:
        self._engine = engine
        self._doing = doing
        self._cm: Any = None

    def __enter__(self) -> Connection:
        try:
            self._cm = self._engine.begin()
            conn: Connection = self._cm.__enter__()
        except DBAPIError as exc:
            raise translate(exc, self._doing) from exc
        return conn

    def __exit__(self, *exc: Any) -> None:
        try:
            self._cm.__exit__(*exc)
        except DBAPIError as error:
            raise translate(error, self._doing) from error
