"""Outbound webhooks: ledger events pushed to subscribers as signed CloudEvents.

A subscription (per project, per event kind) names a URL and holds a signing secret,
sealed at rest like the gateway's provider keys. A dispatcher reads each project's
ledger from the subscription's durable cursor into a delivery queue in the server
database, and sends each queued message in order, retrying with backoff and jitter,
until it is delivered or dead-lettered (docs/integrations.md, "Webhooks").
"""

from __future__ import annotations

__all__: list[str] = []
