"""The projection: how each kind of ledger event shapes the knowledge graph and the index.

Automatic (from what capture and decisions record):

- ``decision.record`` → entity *decision* (its id); a ``decision`` document (title;
  context, options, choice, rationale); relations decision ``touches`` file, file
  ``part_of`` component (its folder), person ``requested`` decision, decision
  ``made_in`` session, decision ``refs`` ticket.
- ``decision.approve`` → person ``approved`` decision.
- ``commit.link`` → entity *commit*; commit ``implements`` decision (each), commit
  ``made_in`` session, person ``committed`` commit.
- ``session.start`` → entity *session*; a human actor ``started`` it.
- ``agent.prompt`` / ``agent.response`` → a ``prompt`` / ``reply`` document with the
  body's text (read through the ledger: an erased body is never indexed).
- ``artifact.write`` → session ``wrote`` file, file ``part_of`` component.
- ``erasure.tombstone`` → the documents read from the erased bodies are deleted.

Explicit (recorded by `flowloom.memory.service.Memory`): ``memory.add`` and
``memory.forget``, whose body is a JSON object ``{"entities": [...], "relations":
[...], "observations": [...]}`` in the MCP memory server's shapes (``forget`` lists
entity names, relations, and ``{"entityName", "contents"}`` to delete); ``"exact":
true`` marks a payload to be taken as it is (see `_memory_add`).

Projection is deterministic: the same ledger gives the same graph, in the same order.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

from flowloom.ledger.event import Event
from flowloom.memory.index import DocRow, ItemContext, Writer

__all__ = ["PAYLOAD_KINDS", "Projector"]

PAYLOAD_KINDS: Final = ("memory.add", "memory.forget")

BodyReader = Callable[[str], bytes | None]


def _texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, str) and v]
    return []


def _component(path: str) -> str | None:
    folder = posixpath.dirname(path.strip("/"))
    return folder or None


class Projector:
    """Applies ledger events to the index, one transaction's `Writer` at a time."""

    def __init__(self, read_body: BodyReader) -> None:
        self._read_body = read_body

    def apply(self, w: Writer, index: int, event: Event) -> None:
        handler = _HANDLERS.get(event.kind)
        if handler is None:
            return
        ctx = ItemContext(
            entry=index,
            ts=event.ts,
            commit=event.git.head if event.git is not None else None,
            session=event.session,
            author=event.actor.id,
            author_alt=event.actor.name,
        )
        _Apply(w, index, event, ctx, self._read_body).run(handler)


class _Apply:
    """One event's projection; numbers the graph rows it creates in order."""

    def __init__(
        self, w: Writer, index: int, event: Event, ctx: ItemContext, read_body: BodyReader
    ) -> None:
        self.w = w
        self.event = event
        self.ctx = ctx
        self.refs: Mapping[str, Any] = event.refs
        self._read_body = read_body
        self._seq = index * 65536

    def run(self, handler: Callable[[_Apply], None]) -> None:
        handler(self)

    def seq(self) -> int:
        self._seq += 1
        return self._seq

    def entity(self, name: str | None, entity_type: str) -> str | None:
        if not name:
            return None
        self.w.add_entity(name, entity_type, self.seq(), self.ctx)
        return name

    def relate(self, source: str | None, relation_type: str, target: str | None) -> None:
        if source and target:
            self.w.add_relation(source, target, relation_type, self.seq(), self.ctx)

    def person(self) -> str | None:
        if self.event.actor.type != "human":
            return None
        return self.entity(self.event.actor.id, "person")

    def session(self, name: str | None = None) -> str | None:
        return self.entity(name or self.event.session, "session")

    def file(self, path: str) -> str | None:
        name = self.entity(path, "file")
        component = _component(path)
        if component is not None:
            self.relate(name, "part_of", self.entity(component, "component"))
        return name

    def body_text(self) -> str | None:
        if self.event.body is None:
            return None
        raw = self._read_body(self.event.body)
        if raw is None:
            return None
        return raw.decode("utf-8", errors="replace")

    def payload(self) -> dict[str, Any]:
        text = self.body_text()
        if text is None:
            return {}
        try:
            data = json.loads(text)
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}


def _decision_record(a: _Apply) -> None:
    decision = a.entity(a.event.subject, "decision")
    if decision is None:
        return
    refs = a.refs
    files = _texts(refs.get("files"))
    requested = refs.get("requested_by") if isinstance(refs.get("requested_by"), str) else None
    parts = [
        *(_texts(refs.get("context"))),
        *(f"Option: {o}" for o in _texts(refs.get("options"))),
        *(f"Choice: {c}" for c in _texts(refs.get("choice"))),
        *(_texts(refs.get("rationale"))),
    ]
    title = _texts(refs.get("title"))
    ctx = a.ctx
    if requested:
        ctx = ItemContext(
            ctx.entry, ctx.ts, ctx.commit, ctx.session, author=requested, author_alt=ctx.author
        )
    a.w.add_doc(
        DocRow(
            kind="decision",
            ref=decision,
            title=title[0] if title else decision,
            body="\n".join(parts),
            files=tuple(files),
        ),
        ctx,
    )
    for path in files:
        a.relate(decision, "touches", a.file(path))
    if requested:
        a.relate(a.entity(requested, "person"), "requested", decision)
    session = refs.get("session") if isinstance(refs.get("session"), str) else None
    a.relate(decision, "made_in", a.session(session))
    for ticket in _texts(refs.get("tickets")):
        a.relate(decision, "refs", a.entity(ticket, "ticket"))


def _decision_approve(a: _Apply) -> None:
    decision = a.entity(a.event.subject, "decision")
    a.relate(a.entity(a.event.actor.id, "person"), "approved", decision)


def _commit_link(a: _Apply) -> None:
    commit = a.entity(a.event.subject, "commit")
    if commit is None:
        return
    decisions = dict.fromkeys(_texts(a.refs.get("decision")) + _texts(a.refs.get("decisions")))
    for decision in decisions:
        a.relate(commit, "implements", a.entity(decision, "decision"))
    session = a.refs.get("session") if isinstance(a.refs.get("session"), str) else None
    a.relate(commit, "made_in", a.session(session))
    a.relate(a.person(), "committed", commit)


def _session_start(a: _Apply) -> None:
    session = a.session(a.event.session or a.refs.get("session"))
    a.relate(a.person(), "started", session)


def _text_doc(kind: str) -> Callable[[_Apply], None]:
    def apply(a: _Apply) -> None:
        a.session()
        text = a.body_text()
        if text is None or not text.strip():
            return
        a.w.add_doc(
            DocRow(
                kind=kind,
                ref=str(a.ctx.entry),
                # No title: the text would count twice in ranking; hits show its first line.
                title="",
                body=text,
                digest=a.event.body,
            ),
            a.ctx,
        )

    return apply


def _artifact_write(a: _Apply) -> None:
    path = a.event.subject or (a.refs.get("path") if isinstance(a.refs.get("path"), str) else None)
    if path:
        a.relate(a.session(), "wrote", a.file(path))


def _erasure(a: _Apply) -> None:
    a.w.delete_docs_with_bodies(_texts(a.refs.get("bodies")))


def _strings(value: object) -> list[str]:
    """Every string of a list, empty ones and repeats included (exact payloads)."""
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _memory_add(a: _Apply) -> None:
    """Add a payload's entities, relations and observations.

    An ``exact`` payload (what `Memory` records now) is taken as it is, like the MCP
    reference server keeps it: empty types, blank and repeated observations, relations
    naming no entity. Older payloads keep their original projection (blank and known
    observations skipped, relations only between known entities).
    """
    data = a.payload()
    exact = data.get("exact") is True
    digest = a.event.body
    for item in data.get("entities", []):
        if not isinstance(item, dict):
            continue
        name, entity_type = item.get("name"), item.get("entityType")
        if not isinstance(name, str) or not isinstance(entity_type, str):
            continue
        if not name and not exact:
            continue
        if a.w.add_entity(name, entity_type, a.seq(), a.ctx):
            a.w.add_doc(
                DocRow(kind="entity", ref=name, title=name, body=entity_type, digest=digest),
                a.ctx,
            )
        _observe(a, name, item.get("observations"), exact)
    for item in data.get("relations", []):
        if not isinstance(item, dict):
            continue
        source, target, kind = item.get("from"), item.get("to"), item.get("relationType")
        if not (isinstance(source, str) and isinstance(target, str) and isinstance(kind, str)):
            continue
        if exact or (
            source
            and target
            and kind
            and a.w.entity_type(source) is not None
            and a.w.entity_type(target) is not None
        ):
            a.w.add_relation(source, target, kind, a.seq(), a.ctx)
    for item in data.get("observations", []):
        if isinstance(item, dict) and isinstance(item.get("entityName"), str):
            name = item["entityName"]
            if a.w.entity_type(name) is not None:
                _observe(a, name, item.get("contents"), exact)


def _observe(a: _Apply, name: str, contents: object, exact: bool) -> None:
    if exact:
        for text in _strings(contents):
            a.w.add_doc(
                DocRow(kind="observation", ref=name, title=name, body=text, digest=a.event.body),
                a.ctx,
            )
        return
    for text in _texts(contents):
        if not a.w.has_observation(name, text):
            a.w.add_doc(
                DocRow(kind="observation", ref=name, title=name, body=text, digest=a.event.body),
                a.ctx,
            )


def _memory_forget(a: _Apply) -> None:
    data = a.payload()
    for name in _strings(data.get("entities")):
        a.w.delete_entity(name)
    for item in data.get("relations", []):
        if isinstance(item, dict):
            source, target, kind = item.get("from"), item.get("to"), item.get("relationType")
            if isinstance(source, str) and isinstance(target, str) and isinstance(kind, str):
                a.w.delete_relation(source, target, kind)
    for item in data.get("observations", []):
        if isinstance(item, dict) and isinstance(item.get("entityName"), str):
            for text in _strings(item.get("contents")):
                a.w.delete_observation(item["entityName"], text)


_HANDLERS: Final[Mapping[str, Callable[[_Apply], None]]] = MappingProxyType(
    {
        "decision.record": _decision_record,
        "decision.approve": _decision_approve,
        "commit.link": _commit_link,
        "session.start": _session_start,
        "agent.prompt": _text_doc("prompt"),
        "agent.response": _text_doc("reply"),
        "artifact.write": _artifact_write,
        "erasure.tombstone": _erasure,
        "memory.add": _memory_add,
        "memory.forget": _memory_forget,
    }
)
