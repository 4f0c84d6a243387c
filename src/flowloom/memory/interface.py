"""The project memory's public vocabulary: entities, relations, observations and hits.

These are the values `flowloom.memory.service.Memory` takes and returns, shaped like the
MCP reference memory server's data (an entity has a name, an ``entityType`` and a list
of observation strings; a relation joins two entity names with a ``relationType``), so
that a graph moves between the two through JSONL without loss. `MemoryService` is the
protocol the MCP server and the CLI program against.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol

__all__ = [
    "ENTITY_TYPES",
    "HIT_KINDS",
    "Activity",
    "Entity",
    "Graph",
    "Hit",
    "ImportResult",
    "MemoryService",
    "Observations",
    "Problem",
    "Relation",
    "TimeBound",
]

HIT_KINDS: Final = ("decision", "prompt", "reply", "observation", "entity")
"""What a search hit can be: a decision record, a prompt, an assistant's reply, an
observation on an entity, or an explicitly created entity (matched by name or type)."""

ENTITY_TYPES: Final = (
    "decision",
    "file",
    "component",
    "commit",
    "session",
    "person",
    "ticket",
)
"""Entity types the ledger projection creates by itself; explicit entities may use any."""

TimeBound = datetime | str
"""A time filter: an aware datetime, or an RFC 3339 / ISO 8601 string (UTC if naive)."""


@dataclass(frozen=True)
class Entity:
    """A node of the graph: a unique name, a type, and what is known about it."""

    name: str
    entity_type: str
    observations: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The MCP memory server's shape (without its JSONL ``type`` member)."""
        return {
            "name": self.name,
            "entityType": self.entity_type,
            "observations": list(self.observations),
        }


@dataclass(frozen=True)
class Relation:
    """A directed edge, in active voice: ``source`` --relation_type--> ``target``."""

    source: str
    target: str
    relation_type: str

    def to_json(self) -> dict[str, Any]:
        """The MCP memory server's shape: ``from``, ``to``, ``relationType``."""
        return {"from": self.source, "to": self.target, "relationType": self.relation_type}


@dataclass(frozen=True)
class Observations:
    """Observation texts about one entity: to add, to delete, or the ones added."""

    entity_name: str
    contents: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"entityName": self.entity_name, "contents": list(self.contents)}


@dataclass(frozen=True)
class Graph:
    """A set of entities and the relations among or around them."""

    entities: tuple[Entity, ...] = ()
    relations: tuple[Relation, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "entities": [e.to_json() for e in self.entities],
            "relations": [r.to_json() for r in self.relations],
        }


@dataclass(frozen=True)
class Hit:
    """One ranked search result.

    ``id`` is the decision id for a decision, the entity name for an observation or an
    entity, and the ledger index (as text) for a prompt or a reply. ``entry`` is the
    ledger entry the item came from, so a caller can prove it. ``snippet`` marks the
    matched words with « and ». ``score``: higher is better, comparable within one
    result list only.
    """

    kind: str
    id: str
    title: str
    snippet: str
    score: float
    entry: int
    ts: str
    commit: str | None = None
    author: str | None = None
    session: str | None = None
    files: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "title": self.title,
            "snippet": self.snippet,
            "score": self.score,
            "entry": self.entry,
            "ts": self.ts,
            "commit": self.commit,
            "author": self.author,
            "session": self.session,
            "files": list(self.files),
        }


@dataclass(frozen=True)
class Activity:
    """One recent ledger event, summarised for a reader catching up."""

    entry: int
    kind: str
    ts: str
    actor: str
    summary: str
    subject: str | None = None
    session: str | None = None
    commit: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "entry": self.entry,
            "kind": self.kind,
            "ts": self.ts,
            "actor": self.actor,
            "summary": self.summary,
            "subject": self.subject,
            "session": self.session,
            "commit": self.commit,
        }


@dataclass(frozen=True)
class Problem:
    """A line (or an item of one) that an import did not take as it was, and why."""

    line: int
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class ImportResult:
    """What an import added; ``entries`` are the ``memory.add`` ledger entries written,
    ``problems`` the lines skipped or taken differently, each with its reason."""

    entities: int
    relations: int
    observations: int
    entries: tuple[int, ...] = ()
    problems: tuple[Problem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "entities": self.entities,
            "relations": self.relations,
            "observations": self.observations,
            "entries": list(self.entries),
            "problems": [p.to_json() for p in self.problems],
        }


class MemoryService(Protocol):
    """What `flowloom.memory.service.Memory` offers; the MCP server uses only this.

    Every method that changes memory records a ``memory.add`` or ``memory.forget`` event
    in the ledger first and then projects it; ``meta`` carries envelope fields for that
    event (``actor``, ``session``, ``git``, ``refs``), ``git`` defaulting to the
    repository's branch and HEAD. Readers bring the index up to date first (`sync`).
    Errors: `flowloom.errors.InputError` for bad input (unknown entity, malformed JSONL
    line, with its line number), `flowloom.errors.StoreError` for the database.
    """

    def sync(self) -> int:
        """Project ledger entries appended since the last call; return how many."""
        ...

    def rebuild(self) -> int:
        """Forget the index of this log and project the whole ledger again."""
        ...

    def search(
        self,
        query: str,
        *,
        kinds: Collection[str] | None = None,
        author: str | None = None,
        file: str | None = None,
        since: TimeBound | None = None,
        until: TimeBound | None = None,
        branch: str | None = None,
        all_branches: bool = False,
        limit: int = 20,
        semantic: bool | None = None,
    ) -> list[Hit]:
        """Ranked full-text hits (fused with vector similarity when `semantic`, the
        optional extra; None: as configured); any text is accepted as a query (no syntax errors).

        Branch scope: items whose commit is reachable from ``branch`` (a branch name or
        any revision; default the repository's HEAD), plus the current session's items,
        plus items made outside git; ``all_branches`` turns the scope off. Without a
        repository there is no scope.
        """
        ...

    def search_nodes(self, query: str) -> Graph:
        """The MCP reference server's search: entities whose name, type or an observation
        contains `query` (ignoring case), and the relations touching them."""
        ...

    def create_entities(
        self, entities: Sequence[Entity], *, meta: Mapping[str, Any] | None = None
    ) -> list[Entity]:
        """Create entities; names that already exist are skipped. Returns the new ones."""
        ...

    def create_relations(
        self, relations: Sequence[Relation], *, meta: Mapping[str, Any] | None = None
    ) -> list[Relation]:
        """Create relations (the entities need not exist); known ones skipped; new returned."""
        ...

    def add_observations(
        self, observations: Sequence[Observations], *, meta: Mapping[str, Any] | None = None
    ) -> list[Observations]:
        """Add observations to existing entities; returns, per entity, those newly added."""
        ...

    def delete_entities(
        self, names: Sequence[str], *, meta: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Delete entities with their relations and observations; returns those deleted."""
        ...

    def delete_relations(
        self, relations: Sequence[Relation], *, meta: Mapping[str, Any] | None = None
    ) -> int:
        """Delete relations; returns how many existed."""
        ...

    def delete_observations(
        self, deletions: Sequence[Observations], *, meta: Mapping[str, Any] | None = None
    ) -> int:
        """Delete observations; returns how many existed."""
        ...

    def read_graph(self) -> Graph:
        """The whole graph (every branch), entities in creation order."""
        ...

    def open_nodes(self, names: Sequence[str]) -> Graph:
        """The named entities and every relation touching one of them."""
        ...

    def recent_activity(self, *, limit: int = 20, since: TimeBound | None = None) -> list[Activity]:
        """The latest ledger events, newest first."""
        ...

    def import_jsonl(
        self,
        source: Path | bytes | str | Iterable[str],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> ImportResult:
        """Import an MCP memory server JSONL file (a path, its bytes or text, or its
        lines); lines it cannot take are skipped and reported, never the whole file."""
        ...

    def export_jsonl(self) -> Iterator[str]:
        """The graph as MCP memory server JSONL lines (no trailing newline on each)."""
        ...

    def close(self) -> None: ...
