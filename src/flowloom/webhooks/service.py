"""Webhooks: what the API, the web pages and the CLI (through the API) ask for.

Creating, changing, deleting, testing and redelivering are recorded in the project's
ledger (``auth.webhook_*``: who, which subscription, which URL and kinds; never the
secret). The secret is made here, sealed before it is stored, and returned once.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowloom.auth.principals import Principal
from flowloom.errors import InputError
from flowloom.outbound import OutboundGuard
from flowloom.webhooks.chat import CHAT_FORMATS, EMAIL, FORMATS, shown_url
from flowloom.webhooks.digest import DIGEST
from flowloom.webhooks.dispatcher import Dispatcher
from flowloom.webhooks.message import new_secret, test_event
from flowloom.webhooks.records import (
    Attempt,
    Delivery,
    Subscription,
    check_kinds,
    check_url,
)
from flowloom.webhooks.secrets import SecretVault
from flowloom.webhooks.store import WebhookStore

__all__ = ["AuditHook", "Created", "Webhooks"]

AuditHook = Callable[[str, str | None, Mapping[str, Any]], None]
"""(kind, project, meta): records a security event (ServerState.audit)."""

_MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class Created:
    """A new subscription and its secret, which is never shown again."""

    subscription: Subscription
    secret: str


class Webhooks:
    """Subscriptions of every project, their queue, and the dispatcher that sends it."""

    def __init__(
        self,
        store: WebhookStore,
        vault: SecretVault,
        dispatcher: Dispatcher,
        *,
        audit: AuditHook,
        size_of: Callable[[str], int],
        source_of: Callable[[str], str],
        clock: Callable[[], float],
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._outbound = outbound or OutboundGuard()
        """Where subscriptions may point (flowloom.outbound); the dispatcher checks again."""
        self.store = store
        self.dispatcher = dispatcher
        self._vault = vault
        self._audit = audit
        self._size_of = size_of
        self._source_of = source_of
        self._clock = clock

    def _record(
        self, kind: str, project: str, by: Principal, sub: Subscription, **extra: Any
    ) -> None:
        refs: dict[str, Any] = {
            "webhook": sub.id,
            "url": sub.url,
            "kinds": list(sub.kinds),
            "auth_via": by.via,
            **extra,
        }
        if by.key_id:
            refs["key_id"] = by.key_id
        self._audit(kind, project, {"actor": by.actor(), "subject": sub.id, "refs": refs})

    def _checked(self, url: str) -> str:
        """A well-formed URL whose host the outbound guard lets the server reach."""
        target = check_url(url)
        self._outbound.check_url(target)
        return target

    def create(
        self,
        project: str,
        *,
        url: str,
        kinds: Sequence[str],
        by: Principal,
        description: str = "",
        include_bodies: bool = False,
        format: str = "cloudevents",
    ) -> Created:
        now = _now_text()
        if format not in FORMATS:
            raise InputError(f"unknown webhook format {format!r}", hint=f"one of {FORMATS}")
        if format in CHAT_FORMATS and include_bodies:
            raise InputError("chat targets never receive bodies", hint="drop include_bodies")
        sub_id = "wh_" + secrets.token_hex(8)
        target = self._checked(url)
        sealed_url = self._vault.seal(sub_id + "/url", target) if format in CHAT_FORMATS else None
        sub = Subscription(
            id=sub_id,
            project=project,
            url=shown_url(target) if format in CHAT_FORMATS else target,
            kinds=check_kinds(kinds),
            description=_description(description),
            include_bodies=include_bodies,
            enabled=True,
            cursor=0,
            created_by=by.user_id,
            created_at=now,
            updated_at=now,
            format=format,
        )
        secret = new_secret()
        # Only what is recorded from now on is sent, its own creation included.
        sub = _with_cursor(sub, self._size_of(project))
        # Recorded first: a subscription that exists was always in the record.
        self._record("auth.webhook_created", project, by, sub)
        self.store.add(sub, self._vault.seal(sub.id, secret), sealed_url)
        self.dispatcher.wake()
        return Created(sub, secret)

    def email_subscription(
        self, project: str, user_id: str, format: str = EMAIL
    ) -> Subscription | None:
        """`user_id`'s own email notifications (or digest) on `project`, if asked for."""
        mine = [
            s
            for s in self.store.subscriptions(project)
            if s.format == format and s.url == "mailto:" + user_id
        ]
        return mine[0] if mine else None

    def set_approval_emails(
        self, project: str, *, by: Principal, enabled: bool, format: str = EMAIL
    ) -> bool:
        """Turn the caller's own approval-request emails (or digest) on `project` on or off.

        A person's preference is a subscription of theirs (format "email", kinds
        decision.record; or "email-digest") on the same durable queue: in order,
        retried, never lost. The address is looked up when each message is sent.
        """
        current = self.email_subscription(project, by.user_id, format)
        if enabled and current is None:
            now = _now_text()
            digest = format == DIGEST
            period = self.dispatcher.settings.digest_period_s
            sub = Subscription(
                id="wh_" + secrets.token_hex(8),
                project=project,
                url="mailto:" + by.user_id,
                kinds=("*",) if digest else ("decision.record",),
                description=f"{'digest' if digest else 'approval requests'} for {by.user_id}",
                include_bodies=False,
                enabled=True,
                cursor=self._size_of(project),
                created_by=by.user_id,
                created_at=now,
                updated_at=now,
                format=format,
                next_digest_at=self._clock() + period if digest else 0.0,
            )
            self._record("auth.webhook_created", project, by, sub)
            self.store.add(sub, self._vault.seal(sub.id, new_secret()))
            self.dispatcher.wake()
        elif not enabled and current is not None:
            self._record("auth.webhook_deleted", project, by, current)
            self.store.delete(project, current.id)
        return enabled

    def secret(self, sub_id: str) -> str:
        return self._vault.open(sub_id, self.store.sealed_secret(sub_id))

    def subscriptions(self, project: str) -> list[Subscription]:
        return self.store.subscriptions(project)

    def get(self, project: str, sub_id: str) -> Subscription:
        return self.store.get(project, sub_id)

    def update(
        self,
        project: str,
        sub_id: str,
        *,
        by: Principal,
        url: str | None = None,
        kinds: Sequence[str] | None = None,
        description: str | None = None,
        include_bodies: bool | None = None,
        enabled: bool | None = None,
        rotate_secret: bool = False,
    ) -> Created | Subscription:
        """Change a subscription; with `rotate_secret` the new secret comes back (once)."""
        changes: dict[str, Any] = {}
        current = self.store.get(project, sub_id)
        if url is not None:
            changes["url"] = self._checked(url)
            if current.format in CHAT_FORMATS:
                changes["sealed_url"] = self._vault.seal(sub_id + "/url", changes["url"])
                changes["url"] = shown_url(changes["url"])
        if kinds is not None:
            changes["kinds"] = check_kinds(kinds)
        if description is not None:
            changes["description"] = _description(description)
        if include_bodies is not None:
            if include_bodies and current.format in CHAT_FORMATS:
                raise InputError("chat targets never receive bodies")
            changes["include_bodies"] = include_bodies
        if enabled is not None:
            changes["enabled"] = enabled
        secret = new_secret() if rotate_secret else None
        if secret is not None:
            changes["sealed_secret"] = self._vault.seal(sub_id, secret)
        if not changes:
            raise InputError("nothing to change", hint="give url, kinds, enabled, ...")
        changed = sorted({k.removeprefix("sealed_") for k in changes})
        self._record("auth.webhook_updated", project, by, current, changed=changed)
        after = self.store.update(project, sub_id, changes)
        self.dispatcher.wake()
        return Created(after, secret) if secret is not None else after

    def delete(self, project: str, sub_id: str, *, by: Principal) -> None:
        sub = self.store.get(project, sub_id)
        self._record("auth.webhook_deleted", project, by, sub)
        self.store.delete(project, sub_id)

    def send_test(self, project: str, sub_id: str, *, by: Principal) -> Delivery:
        """Queue a test event (no ledger content) behind the subscription's queue."""
        sub = self.store.get(project, sub_id)
        message_id = f"msg_{uuid.uuid4().hex}"
        payload = test_event(
            source=self._source_of(project),
            project=project,
            message_id=message_id,
            subscription_id=sub.id,
        ).decode("utf-8")
        self._record("auth.webhook_tested", project, by, sub)
        delivery = self.store.enqueue(sub, (message_id, "webhook.test", None, payload), 0.0)
        self.dispatcher.wake()
        return delivery

    def redeliver(self, project: str, delivery_id: int, *, by: Principal) -> Delivery:
        """Queue a delivered or dead message again (same message id), at the queue's end."""
        old = self.store.delivery(project, delivery_id)
        if old.status == "pending":
            raise InputError(
                f"delivery {delivery_id} is still pending: it will be sent anyway",
                hint="redeliver messages that were delivered or dead-lettered",
            )
        sub = self.store.get(project, old.subscription_id)
        self._record("auth.webhook_redelivered", project, by, sub, delivery=delivery_id)
        new = self.store.redeliver(project, delivery_id, self._clock())
        self.dispatcher.wake()
        return new

    def deliveries(
        self, project: str, sub_id: str | None = None, *, limit: int = 100
    ) -> list[tuple[Delivery, list[Attempt]]]:
        found = self.store.deliveries(project, sub_id, limit=limit)
        attempts = self.store.attempts([d.id for d in found])
        return [(d, attempts[d.id]) for d in found]

    def close(self) -> None:
        self.dispatcher.close()


def _with_cursor(sub: Subscription, cursor: int) -> Subscription:
    from dataclasses import replace

    return replace(sub, cursor=cursor)


def _description(text: str) -> str:
    if len(text) > _MAX_DESCRIPTION:
        raise InputError(f"a webhook description is at most {_MAX_DESCRIPTION} characters")
    return text


def _now_text() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
