"""The knowledge graph: explicit changes are ledger events; the rest is projected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowloom.decisions.records import DecisionBook
from flowloom.errors import InputError
from flowloom.ledger.event import Event
from flowloom.ledger.log import Ledger
from flowloom.memory.interface import Entity, Graph, Observations, Relation
from flowloom.memory.service import Memory
from flowloom.store.interface import Store

SHA = "9fceb02d0ae598e95dc970b74767f19372d61af8"


def kinds(ledger: Ledger) -> list[str]:
    return [e.kind for e in ledger.store.entries(ledger.log)]


def test_explicit_changes_follow_the_reference_server(memory: Memory, ledger: Ledger) -> None:
    created = memory.create_entities(
        [
            Entity("Alice", "person", ("likes tea",)),
            Entity("Alice", "robot"),  # same batch, same name: skipped
            Entity("Billing", "component"),
        ]
    )
    assert [e.name for e in created] == ["Alice", "Billing"]
    assert memory.create_entities([Entity("Alice", "person")]) == []
    assert memory.create_relations(
        [Relation("Alice", "Billing", "owns"), Relation("Alice", "Billing", "owns")]
    ) == [Relation("Alice", "Billing", "owns")]
    assert memory.create_relations([Relation("Alice", "Billing", "owns")]) == []
    # As in the reference server, a relation may name an entity not (yet) in memory.
    assert memory.create_relations([Relation("Alice", "Nobody", "knows")]) == [
        Relation("Alice", "Nobody", "knows")
    ]
    added = memory.add_observations([Observations("Alice", ("likes tea", "works remotely"))])
    assert added == [Observations("Alice", ("works remotely",))]
    with pytest.raises(InputError, match="Entity with name Nobody not found"):
        memory.add_observations([Observations("Nobody", ("x",))])

    graph = memory.read_graph()
    assert graph.entities == (
        Entity("Alice", "person", ("likes tea", "works remotely")),
        Entity("Billing", "component"),
    )
    assert graph.relations == (
        Relation("Alice", "Billing", "owns"),
        Relation("Alice", "Nobody", "knows"),
    )
    # Every change is a ledger event; refused and empty changes record nothing.
    assert kinds(ledger) == ["memory.add"] * 4

    assert memory.delete_observations([Observations("Alice", ("likes tea", "absent"))]) == 1
    assert memory.delete_relations([Relation("Alice", "Billing", "owns")]) == 1
    assert memory.delete_relations([Relation("Alice", "Billing", "owns")]) == 0
    assert memory.delete_entities(["Billing", "Nobody"]) == ["Billing"]
    assert memory.read_graph() == Graph(
        entities=(Entity("Alice", "person", ("works remotely",)),),
        relations=(Relation("Alice", "Nobody", "knows"),),
    )
    assert kinds(ledger)[4:] == ["memory.forget"] * 3
    last = Event.parse(ledger.entry(ledger.size() - 1).envelope)
    assert last.refs["op"] == "delete_entities"


def test_deleting_an_entity_takes_its_relations_and_observations(memory: Memory) -> None:
    memory.create_entities([Entity("A", "t", ("alpha fact",)), Entity("B", "t"), Entity("C", "t")])
    memory.create_relations([Relation("A", "B", "r"), Relation("B", "C", "r")])
    memory.delete_entities(["A"])
    assert memory.read_graph().relations == (Relation("B", "C", "r"),)
    assert memory.search("alpha", all_branches=True) == []


def test_open_nodes_includes_relations_touching_either_end(memory: Memory) -> None:
    memory.create_entities([Entity("A", "t"), Entity("B", "t"), Entity("C", "t")])
    memory.create_relations(
        [Relation("A", "B", "r"), Relation("C", "A", "r"), Relation("B", "C", "r")]
    )
    graph = memory.open_nodes(["A", "missing"])
    assert [e.name for e in graph.entities] == ["A"]
    assert set(graph.relations) == {Relation("A", "B", "r"), Relation("C", "A", "r")}


def test_search_nodes_finds_entities_by_observation_and_name(memory: Memory) -> None:
    memory.create_entities(
        [Entity("PaymentsTeam", "team", ("maintains the refunds service",)), Entity("X", "t")]
    )
    memory.create_relations([Relation("PaymentsTeam", "X", "uses")])
    graph = memory.search_nodes("refunds")
    assert [e.name for e in graph.entities] == ["PaymentsTeam"]
    assert graph.relations == (Relation("PaymentsTeam", "X", "uses"),)
    assert [e.name for e in memory.search_nodes("paymentsteam").entities] == ["PaymentsTeam"]


def test_secrets_in_observations_are_redacted_before_recording(
    memory: Memory, ledger: Ledger
) -> None:
    key = "AKIA" + "IOSFODNN7EXAMPLE"
    memory.create_entities([Entity("Deploy", "runbook", (f"uses key {key} for S3",))])
    (observation,) = memory.read_graph().entities[0].observations
    assert key not in observation and "REDACTED" in observation
    body = ledger.read_body(str(Event.parse(ledger.entry(0).envelope).body))
    assert body is not None and key.encode() not in body


def test_ledger_events_become_a_graph(memory: Memory, ledger: Ledger) -> None:
    book = DecisionBook(ledger)
    prompt = ledger.record("agent.prompt", body=b"cache the price lookups", meta={"session": "s1"})
    decision = book.record(
        title="Cache price lookups",
        requested_by="alice",
        session="s1",
        choice="lru_cache",
        rationale="prices change daily",
        files=["src/shop/prices.py"],
        tickets=["SHOP-12"],
        prompt_entry=prompt.index,
    )
    ledger.record("artifact.write", meta={"session": "s1", "subject": "src/shop/prices.py"})
    book.approve(decision.id, "bob")
    ledger.record(
        "commit.link",
        meta={
            "actor": {"type": "human", "id": "carol"},
            "subject": SHA,
            "session": "s1",
            "refs": {"decision": decision.id, "session": "s1"},
        },
    )
    graph = memory.read_graph()
    types = {e.name: e.entity_type for e in graph.entities}
    assert types[decision.id] == "decision"
    assert types["src/shop/prices.py"] == "file"
    assert types["src/shop"] == "component"
    assert types["s1"] == "session"
    assert types["alice"] == "person"
    assert types["carol"] == "person"
    assert types["SHOP-12"] == "ticket"
    assert types[SHA] == "commit"
    assert {
        Relation(decision.id, "src/shop/prices.py", "touches"),
        Relation("src/shop/prices.py", "src/shop", "part_of"),
        Relation("alice", decision.id, "requested"),
        Relation("bob", decision.id, "approved"),
        Relation(decision.id, "s1", "made_in"),
        Relation(decision.id, "SHOP-12", "refs"),
        Relation(SHA, decision.id, "implements"),
        Relation(SHA, "s1", "made_in"),
        Relation("carol", SHA, "committed"),
        Relation("s1", "src/shop/prices.py", "wrote"),
    } <= set(graph.relations)
    hits = memory.search("price lookups", all_branches=True)
    assert hits[0].kind == "decision" and hits[0].id == decision.id
    assert hits[0].files == ("src/shop/prices.py",)
    assert hits[0].author == "alice"
    assert {h.kind for h in hits} == {"decision", "prompt"}


def test_the_index_is_rebuilt_from_the_ledger_alone(
    memory: Memory, ledger: Ledger, db: Store
) -> None:
    DecisionBook(ledger).record(
        title="Use FTS5 for search", requested_by="ann", rationale="fast", files=["a/b.py"]
    )
    ledger.record("agent.response", body=b"FTS5 with bm25 ranking", meta={"session": "s"})
    memory.create_entities([Entity("Search", "component", ("FTS5 external content",))])
    memory.create_relations([Relation("Search", "a/b.py", "contains")])
    memory.add_observations([Observations("Search", ("bm25 ranks titles higher",))])
    memory.delete_observations([Observations("Search", ("FTS5 external content",))])
    before = memory.read_graph()
    hits = memory.search("fts5", all_branches=True)
    exported = list(memory.export_jsonl())
    memory.close()

    _drop_index_tables(db)
    again = Memory(ledger)
    try:
        assert again.read_graph() == before
        assert again.search("fts5", all_branches=True) == hits
        assert list(again.export_jsonl()) == exported
        assert again.rebuild() == ledger.size()
        assert again.read_graph() == before
    finally:
        again.close()


def _drop_index_tables(db: Store) -> None:
    if db.dialect == "sqlite":
        import sqlite3

        conn = sqlite3.connect(db.path)  # type: ignore[attr-defined]
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'memory%'"
                " AND name NOT LIKE 'memory_fts_%'"
            )
        ]
        for name in names:
            conn.execute(f"DROP TABLE IF EXISTS {name}")
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(db.url, autocommit=True) as pg:  # type: ignore[attr-defined]
            names = [
                r[0]
                for r in pg.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
                    " AND tablename LIKE 'memory%%'"
                )
            ]
            for name in names:
                pg.execute(f"DROP TABLE IF EXISTS {name} CASCADE")


def test_sync_is_incremental_and_survives_a_replaced_ledger(
    memory: Memory, ledger: Ledger, tmp_path: Path
) -> None:
    ledger.record("agent.prompt", body=b"first prompt about kafka", meta={"session": "s"})
    assert memory.sync() == 1
    assert memory.sync() == 0
    ledger.record("agent.prompt", body=b"second prompt about kafka", meta={"session": "s"})
    assert memory.sync() == 1
    assert len(memory.search("kafka", all_branches=True)) == 2


def test_memory_events_carry_the_given_meta(memory: Memory, ledger: Ledger) -> None:
    meta = {"actor": {"type": "agent", "id": "claude"}, "session": "s9", "refs": {"via": "mcp"}}
    memory.create_entities([Entity("N", "t", ("note",))], meta=meta)
    event = Event.parse(ledger.entry(0).envelope)
    assert event.actor.id == "claude" and event.session == "s9"
    assert event.refs["via"] == "mcp" and event.refs["op"] == "create_entities"
    body = ledger.read_body(str(event.body))
    assert body is not None
    assert json.loads(body) == {
        "exact": True,
        "entities": [{"name": "N", "entityType": "t", "observations": ["note"]}],
    }
    (hit,) = memory.search("note", all_branches=True)
    assert hit.session == "s9" and hit.author == "claude"


def test_bad_input_is_refused(memory: Memory) -> None:
    # Names are any text (the reference server's are) but NUL, which PostgreSQL cannot hold.
    with pytest.raises(InputError, match="NUL"):
        memory.create_entities([Entity("a\x00b", "t")])
    with pytest.raises(InputError, match="NUL"):
        memory.create_relations([Relation("a", "b", "r\x00")])
    with pytest.raises(InputError, match="limit"):
        memory.search("x", limit=0)
    with pytest.raises(InputError, match="unknown kind"):
        memory.search("x", kinds=["tweet"])
    with pytest.raises(InputError, match="not a date"):
        memory.search("x", since="yesterday-ish")
    with pytest.raises(InputError, match="git repository"):
        memory.search("x", branch="main")


def test_recent_activity_is_newest_first(memory: Memory, ledger: Ledger) -> None:
    ledger.record("agent.prompt", body=b"first   prompt\ntext", meta={"session": "s"})
    DecisionBook(ledger).record(title="Queue with SQS", requested_by="ann")
    memory.create_entities([Entity("Q", "component")])
    activity = memory.recent_activity(limit=10)
    assert [a.entry for a in activity] == [2, 1, 0]
    assert activity[0].summary == "create_entities (1 entities)"
    assert activity[1].summary.endswith(": Queue with SQS")
    assert activity[2].summary == "first prompt text"
    assert [a.entry for a in memory.recent_activity(limit=2)] == [2, 1]
    since = Event.parse(ledger.entry(1).envelope).ts
    assert [a.entry for a in memory.recent_activity(since=since)] == [2, 1]
    with pytest.raises(InputError):
        memory.recent_activity(limit=0)


def test_the_in_memory_store_gets_an_in_memory_index(tmp_path: Path) -> None:
    from flowloom.store.memory import MemoryStore
    from tests.support.ledgers import make_ledger

    store = MemoryStore()
    with Memory(make_ledger(store, tmp_path)) as mem:
        mem.create_entities([Entity("Ephemeral", "note", ("kept in RAM",))])
        assert [h.id for h in mem.search("ram", all_branches=True)] == ["Ephemeral"]
    store.close()


def test_concurrent_syncs_project_each_entry_once(ledger: Ledger) -> None:
    import threading

    for i in range(60):
        ledger.record("agent.prompt", body=f"gannet number {i}".encode(), meta={"session": "s"})
    memories = [Memory(ledger) for _ in range(3)]
    try:
        threads = [threading.Thread(target=m.sync) for m in memories]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        hits = memories[0].search("gannet", all_branches=True, limit=100)
        assert sorted(h.entry for h in hits) == list(range(60))
    finally:
        for m in memories:
            m.close()


def test_a_rolled_back_ledger_is_projected_again(memory: Memory, ledger: Ledger) -> None:
    for word in ("osprey", "puffin", "grebe"):
        ledger.record("agent.prompt", body=word.encode(), meta={"session": "s"})
    assert memory.search("grebe", all_branches=True)
    # An insider rolls the database back to one entry, and the log grows differently.
    _roll_back_to_one(ledger)
    ledger.record("agent.prompt", body=b"cormorant", meta={"session": "s"})
    assert memory.search("grebe", all_branches=True) == []
    assert memory.search("puffin", all_branches=True) == []
    assert [h.entry for h in memory.search("cormorant", all_branches=True)] == [1]
    assert [h.entry for h in memory.search("osprey", all_branches=True)] == [0]


def _roll_back_to_one(ledger: Ledger) -> None:
    """Delete all but the first entry, around the ledger's append-only guards only."""
    statements = [
        ("DELETE FROM entries WHERE log = ? AND idx >= 1", [ledger.log]),
        ("DELETE FROM nodes WHERE log = ? AND NOT (level = 0 AND idx = 0)", [ledger.log]),
    ]
    if ledger.store.dialect != "sqlite":
        from tests.support.ledgers import raw_sql

        raw_sql(ledger.store, statements)
        return
    import sqlite3

    conn = sqlite3.connect(ledger.store.path)  # type: ignore[attr-defined]
    try:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
            "('entries', 'nodes')"
        ).fetchall():
            conn.execute(f"DROP TRIGGER {name}")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()
