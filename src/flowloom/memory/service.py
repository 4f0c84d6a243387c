"""The project memory service: a knowledge graph and search, projected from the ledger.

`Memory` is what the CLI and the MCP server call. Every change to memory is first a
ledger event (``memory.add`` / ``memory.forget``, body = the change as JSON) and only
then projected into the index, so the index is a cache: `rebuild` (or dropping its
tables) derives the same graph from the ledger alone. Readers call `sync` first, which
projects only the entries appended since the last call.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import InputError, KeyMissingError
from flowloom.ledger import merkle
from flowloom.ledger.event import Event, format_ts
from flowloom.ledger.log import Ledger
from flowloom.memory.branches import BranchScope
from flowloom.memory.index import MemoryIndex, SearchSpec
from flowloom.memory.interface import (
    HIT_KINDS,
    Activity,
    Entity,
    Graph,
    Hit,
    ImportResult,
    Observations,
    Relation,
    TimeBound,
)
from flowloom.memory.jsonl import Problem, dump_lines, parse_lines, split_lines
from flowloom.memory.projector import Projector
from flowloom.memory.query import parse_terms

if TYPE_CHECKING:
    from collections.abc import Sequence

    from flowloom.memory.semantic import Embedder, VectorIndex

__all__ = ["MAX_LIMIT", "Memory"]

MAX_LIMIT: Final = 1000
_SYNC_CHUNK: Final = 2000  # entries per index transaction: short write locks
_PROJECTED: Final = frozenset(
    {
        "decision.record",
        "decision.approve",
        "commit.link",
        "session.start",
        "agent.prompt",
        "agent.response",
        "artifact.write",
        "erasure.tombstone",
        "memory.add",
        "memory.forget",
    }
)
_SUMMARY_CHARS: Final = 120


def _bound(value: TimeBound | None, name: str) -> str | None:
    """A time filter as the index compares it: the ledger's fixed-width ts text."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            moment = datetime.fromisoformat(text.replace("z", "Z"))
        except ValueError:
            raise InputError(
                f"--{name} {value!r} is not a date or time",
                hint="use ISO 8601, for example 2026-11-01 or 2026-11-01T12:00:00Z",
            ) from None
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_ts(moment)


def _names(values: Iterable[str], what: str) -> list[str]:
    """Names as the index keys them: any string but one with NUL (PostgreSQL has no NUL)."""
    found = []
    for value in values:
        if not isinstance(value, str) or "\x00" in value:
            raise InputError(f"{what} must be strings without NUL, got {value!r}")
        found.append(value)
    return found


def _not_found(name: str) -> InputError:
    # The reference memory server's words, so callers that match on them still do.
    return InputError(f"Entity with name {name} not found", hint="create the entity first")


_DECISION_FIELDS: Final = (("Context", "context"), ("Choice", "choice"), ("Rationale", "rationale"))


def _decode_lines(data: bytes, problems: list[Problem]) -> list[str]:
    """A file's lines (split on ``\\n`` only); a line that is not UTF-8 becomes a problem."""
    lines: list[str] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            lines.append(raw.decode("utf-8").removesuffix("\r"))
        except UnicodeDecodeError as exc:
            problems.append(Problem(number, f"not UTF-8 text (byte {exc.start}); line skipped"))
            lines.append("")
    return lines


class Memory:
    """The project memory of one log (project), over the ledger's own database."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        repo: Path | None = None,
        session: str | None = None,
        index: MemoryIndex | None = None,
        semantic: bool = False,
        embedder: Embedder | None = None,
    ) -> None:
        """`repo`: the work tree whose HEAD scopes searches (None: no branch scope).

        `session`: the asking session, whose items stay visible before they are merged.
        `semantic`: searches are semantic unless asked otherwise, and `sync` embeds new
        documents; `embedder` (default: the ``semantic`` extra's model, loaded on first
        use) makes the vectors. See `flowloom.memory.semantic`.
        """
        self.ledger = ledger
        self.session = session
        self._index = index or MemoryIndex(ledger.store, ledger.log)
        self._scope = BranchScope(repo) if repo is not None else None
        self._projector = Projector(ledger.read_body)
        self._semantic = semantic
        self._embedder = embedder
        self._vectors: VectorIndex | None = None

    @classmethod
    def configured(
        cls,
        ledger: Ledger,
        config_sources: Sequence[str],
        *,
        repo: Path | None = None,
        session: str | None = None,
    ) -> Memory:
        """The memory of `ledger`, with ``[memory] semantic`` of the config files it was
        set up from (`Settings.sources`) applied."""
        from flowloom.memory.semantic import enabled_in_config

        semantic = enabled_in_config(config_sources)
        return cls(ledger, repo=repo, session=session, semantic=semantic)

    def _vector_index(self) -> VectorIndex:
        """The embeddings, with the embedder loaded now (an error names the missing extra)."""
        if self._vectors is None:
            from flowloom.memory.semantic import VectorIndex, load_embedder

            self._vectors = VectorIndex(self._index, self._embedder or load_embedder())
        return self._vectors

    def close(self) -> None:
        self._index.close()

    def __enter__(self) -> Memory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- projection --------------------------------------------------------------------

    def sync(self) -> int:
        """Project ledger entries appended since the last call; return how many.

        A ledger that no longer holds the last projected entry (rolled back, replaced)
        is projected again from the start.
        """
        done = self._project()
        if self._semantic or self._vectors is not None:
            self._vector_index().update()
        return done

    def _project(self) -> int:
        store, log = self.ledger.store, self.ledger.log
        if self._up_to_date():
            return 0
        done = 0
        # A body this home cannot decrypt (no master key here) ends the projection just
        # before its entry, so a reader holding the key projects it in full later.
        stop: int | None = None
        while True:
            size = store.size(log) if stop is None else stop
            try:
                with self._index.write() as w:
                    consumed, last_leaf = w.consumed()
                    if consumed > 0:
                        entry = store.entry(log, consumed - 1) if consumed <= size else None
                        if entry is None or merkle.leaf_hash(entry.envelope) != last_leaf:
                            if stop is not None:
                                return done
                            w.reset()
                            consumed = 0
                    if consumed >= size:
                        return done
                    end = min(size, consumed + _SYNC_CHUNK)
                    leaf = last_leaf
                    for index, envelope, kind in store.rows(log, consumed, end):
                        leaf = merkle.leaf_hash(envelope)
                        if kind not in _PROJECTED:
                            continue
                        try:
                            event = Event.parse(envelope)
                        except InputError:
                            continue  # verification reports it; memory just skips it
                        try:
                            self._projector.apply(w, index, event)
                        except KeyMissingError:
                            stop = index
                            raise
                    w.set_consumed(end, leaf)
                    done += end - consumed
            except KeyMissingError:
                if stop is None:
                    raise
                continue  # the chunk was rolled back: project it again, up to `stop`

    def _up_to_date(self) -> bool:
        """The common case, checked without the write lock: nothing new to project."""
        store, log = self.ledger.store, self.ledger.log
        consumed, last_leaf = self._index.consumed()
        if consumed != store.size(log):
            return False
        if consumed == 0:
            return True
        entry = store.entry(log, consumed - 1)
        return entry is not None and merkle.leaf_hash(entry.envelope) == last_leaf

    def rebuild(self) -> int:
        """Forget this log's index and project the whole ledger again."""
        with self._index.write() as w:
            w.reset()
        count = self.sync()
        self._index.rebuild_text_index()
        return count

    # -- recording ---------------------------------------------------------------------

    def _meta(self, meta: Mapping[str, Any] | None, refs: Mapping[str, Any]) -> dict[str, Any]:
        merged = dict(meta or {})
        merged["refs"] = {**dict(merged.get("refs") or {}), **refs}
        if "git" not in merged and self._scope is not None:
            branch, head = self._scope.current()
            git = {k: v for k, v in (("branch", branch), ("head", head)) if v is not None}
            if git:
                merged["git"] = git
        if "session" not in merged and self.session is not None:
            merged["session"] = self.session
        return merged

    def _record(
        self,
        kind: str,
        payload: Mapping[str, Any],
        meta: Mapping[str, Any] | None,
        refs: Mapping[str, Any],
    ) -> int:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        ack = self.ledger.record(kind, body=body, meta=self._meta(meta, refs))
        self.sync()
        return int(ack.index)

    @staticmethod
    def _redact(texts: Iterable[str]) -> tuple[str, ...]:
        """The texts with known secret shapes redacted, otherwise exactly as given
        (blank ones and repeats too, as the reference memory server keeps them)."""
        from flowloom.events.redaction import Redactor

        redactor = Redactor()
        # Known secret shapes only: observations often quote commit ids and digests.
        return tuple(redactor.text(t, entropy=False) if t.strip() else t for t in texts)

    def _existing(self, names: Iterable[str]) -> set[str]:
        return {name for name, _ in self._index.entities(list(dict.fromkeys(names)))}

    def create_entities(
        self, entities: Sequence[Entity], *, meta: Mapping[str, Any] | None = None
    ) -> list[Entity]:
        """Create entities; names that already exist are skipped. Returns the new ones."""
        _names([e.name for e in entities], "entity names")
        _names([e.entity_type for e in entities], "entity types")
        self.sync()
        existing = self._existing(e.name for e in entities)
        new: dict[str, Entity] = {}
        for e in entities:
            if e.name not in existing and e.name not in new:
                new[e.name] = Entity(e.name, e.entity_type, self._redact(e.observations))
        if new:
            self._record(
                "memory.add",
                {"exact": True, "entities": [e.to_json() for e in new.values()]},
                meta,
                {"op": "create_entities", "entities": len(new)},
            )
        return list(new.values())

    def create_relations(
        self, relations: Sequence[Relation], *, meta: Mapping[str, Any] | None = None
    ) -> list[Relation]:
        """Create relations; those already known are skipped; the new ones are returned.

        As in the MCP reference server, the entities need not exist (yet).
        """
        for r in relations:
            _names([r.source, r.target, r.relation_type], "relation members")
        self.sync()
        known = set(self._index.relations(list({r.source for r in relations})))
        new: dict[tuple[str, str, str], Relation] = {}
        for r in relations:
            key = (r.source, r.target, r.relation_type)
            if key not in known:
                new.setdefault(key, r)
        if new:
            self._record(
                "memory.add",
                {"exact": True, "relations": [r.to_json() for r in new.values()]},
                meta,
                {"op": "create_relations", "relations": len(new)},
            )
        return list(new.values())

    def add_observations(
        self, observations: Sequence[Observations], *, meta: Mapping[str, Any] | None = None
    ) -> list[Observations]:
        """Add observations to existing entities; returns, per entity, those newly added.

        As in the MCP reference server: a text the entity already has is skipped, the
        others are added as given (a blank one, or one twice in the same list, too).
        """
        _names([o.entity_name for o in observations], "entity names")
        self.sync()
        names = [o.entity_name for o in observations]
        existing = self._existing(names)
        for name in names:
            if name not in existing:
                raise _not_found(name)
        current = self._index.observations(names)
        added: list[Observations] = []
        seen = {name: set(current.get(name, [])) for name in names}
        for o in observations:
            fresh = tuple(c for c in self._redact(o.contents) if c not in seen[o.entity_name])
            seen[o.entity_name].update(fresh)
            added.append(Observations(o.entity_name, fresh))
        if any(a.contents for a in added):
            self._record(
                "memory.add",
                {"exact": True, "observations": [a.to_json() for a in added if a.contents]},
                meta,
                {"op": "add_observations", "observations": sum(len(a.contents) for a in added)},
            )
        return added

    def delete_entities(
        self, names: Sequence[str], *, meta: Mapping[str, Any] | None = None
    ) -> list[str]:
        """Delete entities with their relations and observations; returns those deleted."""
        _names(names, "entity names")
        self.sync()
        existing = self._existing(names)
        deleted = [n for n in dict.fromkeys(names) if n in existing]
        if deleted:
            self._record(
                "memory.forget",
                {"entities": deleted},
                meta,
                {"op": "delete_entities", "entities": len(deleted)},
            )
        return deleted

    def delete_relations(
        self, relations: Sequence[Relation], *, meta: Mapping[str, Any] | None = None
    ) -> int:
        """Delete relations; returns how many existed."""
        self.sync()
        known = set(self._index.relations(list({r.source for r in relations})))
        doomed = {
            (r.source, r.target, r.relation_type): r
            for r in relations
            if (r.source, r.target, r.relation_type) in known
        }
        if doomed:
            self._record(
                "memory.forget",
                {"relations": [r.to_json() for r in doomed.values()]},
                meta,
                {"op": "delete_relations", "relations": len(doomed)},
            )
        return len(doomed)

    def delete_observations(
        self, deletions: Sequence[Observations], *, meta: Mapping[str, Any] | None = None
    ) -> int:
        """Delete observations; returns how many existed."""
        self.sync()
        current = self._index.observations([d.entity_name for d in deletions])
        doomed: list[Observations] = []
        count = 0
        for d in deletions:
            present = set(current.get(d.entity_name, []))
            hit = tuple(dict.fromkeys(c for c in d.contents if c in present))
            if hit:
                doomed.append(Observations(d.entity_name, hit))
                count += len(hit)
        if doomed:
            self._record(
                "memory.forget",
                {"observations": [d.to_json() for d in doomed]},
                meta,
                {"op": "delete_observations", "observations": count},
            )
        return count

    # -- reading the graph -------------------------------------------------------------

    def _graph(self, names: Sequence[str] | None) -> Graph:
        self.sync()
        entities = self._index.entities(names)
        observations = self._index.observations(None if names is None else names)
        relations = self._index.relations(None if names is None else [n for n, _ in entities])
        decided = self._decision_observations([n for n, kind in entities if kind == "decision"])
        return Graph(
            entities=tuple(
                Entity(name, kind, (*decided.get(name, ()), *observations.get(name, [])))
                for name, kind in entities
            ),
            relations=tuple(Relation(s, t, k) for s, t, k in relations),
        )

    def _decision_observations(self, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """What each named decision says (title, context, options, choice, rationale),
        as observations: a graph read or exported elsewhere carries the decisions
        themselves, not bare ids. Read from the decision records, amendments merged."""
        if not names:
            return {}
        from flowloom.decisions.records import DecisionBook

        wanted = set(names)
        found: dict[str, tuple[str, ...]] = {}
        for d in DecisionBook(self.ledger).list():
            if d.id not in wanted:
                continue
            texts = [f"Title: {d.title}"]
            texts += [f"Option: {o}" for o in d.options if o]
            texts += [
                f"{label}: {getattr(d, name)}"
                for label, name in _DECISION_FIELDS
                if getattr(d, name)
            ]
            found[d.id] = tuple(texts)
        return found

    def read_graph(self) -> Graph:
        """The whole graph (every branch), entities in creation order."""
        return self._graph(None)

    def open_nodes(self, names: Sequence[str]) -> Graph:
        """The named entities and every relation touching one of them."""
        return self._graph(list(names))

    def search_nodes(self, query: str) -> Graph:
        """The MCP reference server's search: entities whose name, type or an observation
        contains `query` (ignoring case), and every relation touching one of them."""
        graph = self.read_graph()
        needle = query.lower()
        entities = tuple(
            e
            for e in graph.entities
            if needle in e.name.lower()
            or needle in e.entity_type.lower()
            or any(needle in o.lower() for o in e.observations)
        )
        names = {e.name for e in entities}
        relations = tuple(r for r in graph.relations if r.source in names or r.target in names)
        return Graph(entities, relations)

    # -- search ------------------------------------------------------------------------

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
        """Ranked full-text hits; any text is a valid query (it is cut into words).

        All words must match; when that finds nothing, any word may (ranked by how
        many and how well). Ranking looks at the newest `RANK_WINDOW` matches (after
        the filters). Branch scope: see `flowloom.memory.branches`.

        `semantic` (default: as the memory was opened) fuses this ranking with the
        documents' similarity to the query (`flowloom.memory.semantic`); without the
        ``semantic`` extra it raises `SemanticUnavailableError` (a `ConfigError`).
        """
        if semantic is None:
            semantic = self._semantic
        vectors = self._vector_index() if semantic else None
        if not 1 <= limit <= MAX_LIMIT:
            raise InputError(f"the limit must be between 1 and {MAX_LIMIT}, got {limit}")
        for name, value in (("author", author), ("file", file)):
            if value is not None and "\x00" in value:
                raise InputError(f"--{name} must not contain a NUL character")
        if kinds is not None:
            kinds = tuple(dict.fromkeys(kinds))
            unknown = sorted(set(kinds) - set(HIT_KINDS))
            if unknown:
                raise InputError(
                    f"unknown kind {', '.join(unknown)}", hint=f"use {', '.join(HIT_KINDS)}"
                )
        hidden: tuple[str, ...] | None = None
        if not all_branches:
            if self._scope is None:
                if branch is not None:
                    raise InputError(
                        "--branch needs a git repository", hint="run it inside the repository"
                    )
            else:
                self.sync()
                hidden = self._scope.hidden(self._index.known_commits(), branch)
        terms = parse_terms(query)
        if not terms:
            return []
        self.sync()
        spec = SearchSpec(
            terms=terms,
            kinds=tuple(kinds) if kinds is not None else None,
            author=author or None,
            file=file.strip().removeprefix("./") if file else None,
            since=_bound(since, "since"),
            until=_bound(until, "until"),
            hidden_commits=hidden,
            session=self.session,
            limit=limit,
        )
        if vectors is not None:
            from flowloom.memory.semantic import semantic_search

            return semantic_search(vectors, query, spec)
        hits = self._index.search(spec)
        if not hits and len(terms.words) > 1:
            hits = self._index.search(SearchSpec(**{**spec.__dict__, "any_word": True}))
        return hits

    # -- activity ----------------------------------------------------------------------

    def recent_activity(self, *, limit: int = 20, since: TimeBound | None = None) -> list[Activity]:
        """The latest ledger events, newest first (reads only the end of the ledger)."""
        if not 1 <= limit <= MAX_LIMIT:
            raise InputError(f"the limit must be between 1 and {MAX_LIMIT}, got {limit}")
        floor = _bound(since, "since")
        store, log = self.ledger.store, self.ledger.log
        end = store.size(log)
        found: list[Activity] = []
        while end > 0 and len(found) < limit:
            start = max(0, end - 256)
            rows = list(store.rows(log, start, end))
            for index, envelope, _kind in reversed(rows):
                try:
                    event = Event.parse(envelope)
                except InputError:
                    continue
                if floor is not None and event.ts < floor:
                    return found
                found.append(self._activity(index, event))
                if len(found) >= limit:
                    break
            end = start
        return found

    def _activity(self, index: int, event: Event) -> Activity:
        refs = event.refs
        summary = event.subject or event.kind
        if event.kind == "decision.record" and isinstance(refs.get("title"), str):
            summary = f"{event.subject}: {refs['title']}"
        elif event.kind == "commit.link" and event.subject:
            decision = refs.get("decision")
            summary = f"commit {event.subject[:12]}" + (
                f" linked to {decision}" if isinstance(decision, str) else ""
            )
        elif event.kind in ("agent.prompt", "agent.response") and event.body:
            try:
                body = self.ledger.read_body(event.body)
            except KeyMissingError:
                body, summary = None, "(body encrypted; the master key is not here)"
            if body is None:
                summary = summary if summary.startswith("(") else "(body erased)"
            else:
                text = " ".join(body.decode("utf-8", errors="replace").split())
                summary = text[:_SUMMARY_CHARS] + ("…" if len(text) > _SUMMARY_CHARS else "")
        elif event.kind.startswith("memory.") and isinstance(refs.get("op"), str):
            counts = ", ".join(
                f"{refs[k]} {k}"
                for k in ("entities", "relations", "observations")
                if isinstance(refs.get(k), int)
            )
            summary = f"{refs['op']} ({counts})" if counts else str(refs["op"])
        return Activity(
            entry=index,
            kind=event.kind,
            ts=event.ts,
            actor=event.actor.name or event.actor.id,
            summary=summary,
            subject=event.subject,
            session=event.session,
            commit=event.git.head if event.git is not None else None,
        )

    # -- import and export -------------------------------------------------------------

    def import_jsonl(
        self,
        source: Path | bytes | str | Iterable[str],
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> ImportResult:
        """Import an MCP memory server JSONL file: a path, its bytes or text, or its lines.

        Everything the reference server writes is taken as it is: empty types, blank
        and repeated observations, relations naming no entity, NUL inside observations,
        U+2028/U+2029/U+0085 inside strings (text is split on ``\\n`` only). A line
        that cannot be taken is skipped and named in ``problems``, with anything taken
        differently (an entity named twice is merged into the first, a relation given
        twice is kept once, a known entity keeps its type, a secret is redacted); the
        rest of the file is imported all the same, as one ``memory.add`` event.
        """
        label = "lines"
        problems: list[Problem] = []
        if isinstance(source, Path):
            label = source.name
            try:
                data = source.read_bytes()
            except FileNotFoundError:
                raise InputError(f"no file {source}") from None
            except OSError as exc:
                raise InputError(f"cannot read {source}: {exc.strerror}") from None
            lines = _decode_lines(data, problems)
        elif isinstance(source, bytes):
            lines = _decode_lines(source, problems)
        elif isinstance(source, str):
            lines = split_lines(source)
        else:
            lines = list(source)
        parsed = parse_lines(lines)
        problems.extend(parsed.problems)
        self.sync()
        names = [e.name for e in parsed.entities]
        existing = {name: kind for name, kind in self._index.entities(list(dict.fromkeys(names)))}
        current = {
            name: set(texts)
            for name, texts in self._index.observations([n for n in existing]).items()
        }
        new: dict[str, Entity] = {}
        first_line: dict[str, int] = {}
        additions: dict[str, list[str]] = {}
        for e, number in zip(parsed.entities, parsed.entity_lines, strict=True):
            observations = self._redact(e.observations)
            if observations != e.observations:
                problems.append(
                    Problem(number, f"entity {e.name!r}: a secret in an observation was redacted")
                )
            if e.name in existing:
                if e.entity_type != existing[e.name]:
                    problems.append(
                        Problem(
                            number,
                            f"entity {e.name!r} is already in memory as {existing[e.name]!r}; "
                            f"its type stays (not {e.entity_type!r})",
                        )
                    )
                known = current.setdefault(e.name, set())
                fresh = [o for o in observations if o not in known]
                known.update(fresh)
                additions.setdefault(e.name, []).extend(fresh)
            elif e.name in new:
                prior = new[e.name]
                fresh = [o for o in observations if o not in prior.observations]
                problems.append(
                    Problem(
                        number,
                        f"entity {e.name!r} is also on line {first_line[e.name]}: merged into it"
                        + (
                            f" (type {e.entity_type!r} dropped)"
                            if e.entity_type != prior.entity_type
                            else ""
                        ),
                    )
                )
                new[e.name] = Entity(e.name, prior.entity_type, (*prior.observations, *fresh))
            else:
                new[e.name] = Entity(e.name, e.entity_type, observations)
                first_line[e.name] = number
        known_relations = set(self._index.relations(list({r.source for r in parsed.relations})))
        relations: dict[tuple[str, str, str], int] = {}
        for r, number in zip(parsed.relations, parsed.relation_lines, strict=True):
            key = (r.source, r.target, r.relation_type)
            if key in relations:
                problems.append(
                    Problem(
                        number,
                        f"relation {r.source!r} {r.relation_type!r} {r.target!r} is "
                        f"also on line {relations[key]}: kept once",
                    )
                )
            elif key not in known_relations:
                relations[key] = number
        added = [Observations(n, tuple(t)) for n, t in additions.items() if t]
        count = sum(len(e.observations) for e in new.values()) + sum(len(a.contents) for a in added)
        if not (new or added or relations):
            return ImportResult(0, 0, 0, problems=tuple(problems))
        entry = self._record(
            "memory.add",
            {
                "exact": True,
                "entities": [e.to_json() for e in new.values()],
                "relations": [Relation(*key).to_json() for key in relations],
                "observations": [a.to_json() for a in added],
            },
            meta,
            {
                "op": "import",
                "source": label,
                "entities": len(new),
                "relations": len(relations),
                "observations": count,
            },
        )
        return ImportResult(len(new), len(relations), count, (entry,), tuple(problems))

    def export_jsonl(self) -> Iterator[str]:
        """The graph as MCP memory server JSONL lines (no trailing newline on each)."""
        return dump_lines(self.read_graph())
