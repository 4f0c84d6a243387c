"""ProjectSummary: counts derived from a project's log, kept current incrementally.

The overview and the usage pages need totals over the whole log (events per kind and per
day, commit links, gateway usage and cost). Reading 100,000 envelopes per request is too
slow, so each server process keeps one summary per project and brings it up to date from
only the entries appended since its last look (``consumed``). The summary is a cache: it
holds nothing the ledger does not, and a restarted process rebuilds it on first use.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flowloom.store.interface import Store

__all__ = ["ProjectSummary", "SummaryBook", "Usage", "UsageTotals", "usage_of"]

_MAX_ACTORS = 500
_MAX_FILES = 5000


@dataclass
class Usage:
    """Requests, tokens and cost (USD) of some gateway exchanges."""

    requests: int = 0
    tokens: int = 0
    cost_usd: float = 0.0

    def add(self, tokens: int, cost: float) -> None:
        self.requests += 1
        self.tokens += tokens
        self.cost_usd += cost


@dataclass
class UsageTotals:
    """Gateway usage by provider, model, key and day."""

    total: Usage = field(default_factory=Usage)
    by_provider: dict[str, Usage] = field(default_factory=dict)
    by_model: dict[str, Usage] = field(default_factory=dict)
    by_key: dict[str, Usage] = field(default_factory=dict)
    by_day: dict[str, Usage] = field(default_factory=dict)

    def add(self, refs: Mapping[str, Any], day: str) -> None:
        tokens, cost = usage_of(refs)
        provider = _label(refs.get("provider"))
        model = _label(refs.get("model"))
        key = _label(
            refs.get("key")
            or refs.get("virtual_key")
            or refs.get("key_id")
            or refs.get("key_prefix")
        )
        self.total.add(tokens, cost)
        for table, name in (
            (self.by_provider, provider),
            (self.by_model, model),
            (self.by_key, key),
            (self.by_day, day),
        ):
            table.setdefault(name, Usage()).add(tokens, cost)


def _label(value: object) -> str:
    return str(value) if isinstance(value, str | int) and str(value) else "(unknown)"


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_of(refs: Mapping[str, Any]) -> tuple[int, float]:
    """(tokens, cost in USD) of one ``gateway.exchange``'s refs, whatever the shape.

    Accepts ``tokens`` (a number), a ``usage`` object of token counts, or the separate
    ``input_tokens``/``output_tokens`` fields; ``cost_usd`` is a number or a decimal string.
    """
    tokens = _int(refs.get("tokens"))
    if not tokens:
        usage = refs.get("usage")
        source: Mapping[str, Any] = usage if isinstance(usage, Mapping) else refs
        tokens = sum(
            _int(source.get(name))
            for name in ("input_tokens", "output_tokens", "cache_read", "cache_write")
        )
    raw = refs.get("cost_usd")
    try:
        cost = (
            float(raw) if isinstance(raw, int | float | str) and not isinstance(raw, bool) else 0.0
        )
    except ValueError:
        cost = 0.0
    return tokens, max(cost, 0.0)


@dataclass
class ProjectSummary:
    """What the overview shows, over entries [0, consumed) of one log."""

    consumed: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    days: Counter[str] = field(default_factory=Counter)
    actors: dict[str, str] = field(default_factory=dict)
    """Actor id → printed name, for the timeline's filter (the first few hundred)."""
    files: Counter[str] = field(default_factory=Counter)
    """Paths written by assistants (``artifact.write`` subjects), for the why view."""
    first_ts: str | None = None
    last_ts: str | None = None
    commits: int = 0
    commits_linked: int = 0
    commits_overridden: int = 0
    sessions: int = 0
    usage: UsageTotals = field(default_factory=UsageTotals)

    @property
    def linked_share(self) -> float | None:
        """The share of recorded commits linked to a decision (None: no commits yet)."""
        return self.commits_linked / self.commits if self.commits else None

    def snapshot(self) -> ProjectSummary:
        """A copy that later updates do not change (pages render it without a lock)."""

        def table(source: dict[str, Usage]) -> dict[str, Usage]:
            return {k: Usage(u.requests, u.tokens, u.cost_usd) for k, u in source.items()}

        usage = UsageTotals(
            Usage(self.usage.total.requests, self.usage.total.tokens, self.usage.total.cost_usd),
            table(self.usage.by_provider),
            table(self.usage.by_model),
            table(self.usage.by_key),
            table(self.usage.by_day),
        )
        return ProjectSummary(
            consumed=self.consumed,
            kinds=Counter(self.kinds),
            days=Counter(self.days),
            actors=dict(self.actors),
            files=Counter(self.files),
            first_ts=self.first_ts,
            last_ts=self.last_ts,
            commits=self.commits,
            commits_linked=self.commits_linked,
            commits_overridden=self.commits_overridden,
            sessions=self.sessions,
            usage=usage,
        )

    def consume(self, rows: Iterable[tuple[int, bytes, str]]) -> None:
        for index, envelope, kind in rows:
            self.consumed = index + 1
            self.kinds[kind] += 1
            try:
                event = json.loads(envelope)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            ts = event.get("ts")
            day = ts[:10] if isinstance(ts, str) else "unknown"
            if isinstance(ts, str):
                self.first_ts = self.first_ts or ts
                self.last_ts = ts
            self.days[day] += 1
            actor = event.get("actor")
            if isinstance(actor, dict) and len(self.actors) < _MAX_ACTORS:
                ident = actor.get("id")
                if isinstance(ident, str) and ident not in self.actors:
                    self.actors[ident] = str(actor.get("name") or ident)
            refs = event.get("refs")
            refs = refs if isinstance(refs, dict) else {}
            if kind == "commit.link":
                self.commits += 1
                if refs.get("decision"):
                    self.commits_linked += 1
                elif refs.get("override"):
                    self.commits_overridden += 1
            elif kind == "session.start":
                self.sessions += 1
            elif kind == "artifact.write":
                subject = event.get("subject")
                if isinstance(subject, str) and (
                    subject in self.files or len(self.files) < _MAX_FILES
                ):
                    self.files[subject] += 1
            elif kind == "gateway.exchange":
                self.usage.add(refs, day)


class SummaryBook:
    """One ProjectSummary per project, each updated under its own lock."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._summaries: dict[str, tuple[threading.Lock, ProjectSummary]] = {}
        self._lock = threading.Lock()

    def current(self, project: str) -> ProjectSummary:
        """The summary of `project` brought up to the log's present size."""
        with self._lock:
            slot = self._summaries.get(project)
            if slot is None:
                slot = (threading.Lock(), ProjectSummary())
                self._summaries[project] = slot
        lock, summary = slot
        with lock:
            size = self._store.size(project)
            if summary.consumed < size:
                summary.consume(self._store.rows(project, summary.consumed, size))
            return summary.snapshot()
