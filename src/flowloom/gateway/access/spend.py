"""Spend accounting: usage and cost per day, key, project, provider and model.

settle() adds to an in-memory aggregate (one row per day/key/project/provider/model);
a writer flushes the aggregate in one transaction of upserts, so the hot path never
waits on the database and the number of pending rows is bounded by the distinct
combinations seen between flushes. A failed flush keeps the rows for the next one;
close() flushes what is left, so a clean shutdown loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

__all__ = ["SpendKey", "SpendRow", "merge", "write_rows"]

SpendKey = tuple[str, str, str, str, str]
"""(day, key_id, project or '', provider, model)."""


@dataclass
class SpendRow:
    """Counters to add to one usage row."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: SpendRow) -> None:
        self.requests += other.requests
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.cost_usd += other.cost_usd


def merge(into: dict[SpendKey, SpendRow], rows: Iterable[tuple[SpendKey, SpendRow]]) -> None:
    """Add `rows` into the aggregate `into`."""
    for key, row in rows:
        have = into.get(key)
        if have is None:
            into[key] = SpendRow(
                row.requests,
                row.input_tokens,
                row.output_tokens,
                row.cache_read_tokens,
                row.cache_write_tokens,
                row.cost_usd,
            )
        else:
            have.add(row)


_UPSERT = text(
    "INSERT INTO gateway_usage (day, key_id, project, provider, model, requests, input_tokens,"
    " output_tokens, cache_read_tokens, cache_write_tokens, cost_usd)"
    " VALUES (:day, :key_id, :project, :provider, :model, :requests, :input_tokens,"
    " :output_tokens, :cache_read_tokens, :cache_write_tokens, :cost_usd)"
    " ON CONFLICT (day, key_id, project, provider, model) DO UPDATE SET"
    " requests = gateway_usage.requests + excluded.requests,"
    " input_tokens = gateway_usage.input_tokens + excluded.input_tokens,"
    " output_tokens = gateway_usage.output_tokens + excluded.output_tokens,"
    " cache_read_tokens = gateway_usage.cache_read_tokens + excluded.cache_read_tokens,"
    " cache_write_tokens = gateway_usage.cache_write_tokens + excluded.cache_write_tokens,"
    " cost_usd = gateway_usage.cost_usd + excluded.cost_usd"
)


def write_rows(conn: Connection, rows: dict[SpendKey, SpendRow]) -> None:
    """Upsert the aggregate `rows` (inside the caller's transaction)."""
    if not rows:
        return
    conn.execute(
        _UPSERT,
        [
            {
                "day": day,
                "key_id": key_id,
                "project": project,
                "provider": provider,
                "model": model,
                "requests": row.requests,
                "input_tokens": row.input_tokens,
                "output_tokens": row.output_tokens,
                "cache_read_tokens": row.cache_read_tokens,
                "cache_write_tokens": row.cache_write_tokens,
                "cost_usd": row.cost_usd,
            }
            # sorted: concurrent flushes from several processes lock rows in one order
            for (day, key_id, project, provider, model), row in sorted(rows.items())
        ],
    )
