"""Search: ranking, filters, safe queries, and erasure removing indexed text."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowloom.decisions.records import DecisionBook
from flowloom.ledger.event import Event
from flowloom.ledger.log import Ledger
from flowloom.memory.interface import Entity
from flowloom.memory.service import Memory
from flowloom.store.interface import Store

FILLER = " ".join(f"word{i}" for i in range(200))


def ts_of(ledger: Ledger, index: int) -> str:
    return Event.parse(ledger.entry(index).envelope).ts


def test_a_title_match_outranks_a_passing_mention(memory: Memory, ledger: Ledger) -> None:
    ledger.record(
        "agent.response", body=f"{FILLER} postgresql {FILLER}".encode(), meta={"session": "s"}
    )
    DecisionBook(ledger).record(title="Adopt PostgreSQL for the team server", requested_by="a")
    hits = memory.search("postgresql", all_branches=True)
    assert [h.kind for h in hits] == ["decision", "reply"]
    assert hits[0].score > hits[1].score
    assert "«PostgreSQL»" in hits[0].title + hits[0].snippet  # the match is highlighted
    assert "«postgresql»" in hits[1].snippet


def test_all_words_first_then_any_word(memory: Memory, ledger: Ledger) -> None:
    ledger.record("agent.prompt", body=b"kafka retention is seven days", meta={"session": "s"})
    ledger.record("agent.prompt", body=b"kafka consumers lag", meta={"session": "s"})
    assert [h.entry for h in memory.search("kafka retention", all_branches=True)] == [0]
    # No document has both words: any word will do, more matches rank first.
    anyword = memory.search("kafka zebra", all_branches=True)
    assert {h.entry for h in anyword} == {0, 1}
    # Stemming: "consumer" finds "consumers"; stopwords are dropped from questions.
    assert [h.entry for h in memory.search("why is the consumer lagging", all_branches=True)] == [1]


def test_filters(memory: Memory, ledger: Ledger) -> None:
    book = DecisionBook(ledger)
    book.record(title="Cache prices", requested_by="alice", files=["src/shop/prices.py"])
    ledger.record(
        "agent.prompt",
        body=b"cache the prices please",
        meta={"session": "s", "actor": {"type": "human", "id": "bob", "name": "Bob B"}},
    )
    memory.create_entities([Entity("PriceCache", "component", ("caches prices for a day",))])
    everything = {(h.kind, h.entry) for h in memory.search("prices", all_branches=True)}
    assert {k for k, _ in everything} == {"decision", "prompt", "observation"}

    def kinds(**filters: object) -> list[str]:
        hits = memory.search("prices", all_branches=True, **filters)  # type: ignore[arg-type]
        return sorted(h.kind for h in hits)

    assert kinds(kinds=["decision"]) == ["decision"]
    assert kinds(kinds=["prompt", "observation"]) == ["observation", "prompt"]
    assert kinds(author="alice") == ["decision"]  # who asked for the decision
    assert kinds(author="Bob B") == ["prompt"]  # by printed name
    assert kinds(author="bob") == ["prompt"]
    assert kinds(file="src/shop/prices.py") == ["decision"]
    assert kinds(file="src/shop") == ["decision"]  # a folder
    assert kinds(file="src/shop/") == ["decision"]
    assert kinds(file="src/sho") == []  # not a prefix of a path component
    assert kinds(file="./src/shop/prices.py") == ["decision"]
    second = ts_of(ledger, 1)
    assert kinds(since=second) == ["observation", "prompt"]
    assert kinds(until=second) == ["decision"]
    assert kinds(since="2000-01-01", until="2000-01-02") == []
    assert kinds(since="2000-01-01T00:00:00+02:00") == ["decision", "observation", "prompt"]
    assert memory.search("prices", all_branches=True, limit=1)[0].score >= max(
        h.score for h in memory.search("prices", all_branches=True)
    )


def test_ranking_looks_at_the_newest_matches_of_a_common_word(
    memory: Memory, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("flowloom.memory.index.RANK_WINDOW", 3)
    ledger.record("agent.prompt", body=b"heron heron heron", meta={"session": "s"})
    for i in range(4):
        ledger.record(
            "agent.prompt", body=f"heron note {i} {FILLER}".encode(), meta={"session": "s"}
        )
    # The best match is older than the three newest: outside the window.
    assert sorted(h.entry for h in memory.search("heron", all_branches=True)) == [2, 3, 4]
    # With fewer matches than the window, every match is ranked.
    monkeypatch.setattr("flowloom.memory.index.RANK_WINDOW", 10)
    assert memory.search("heron", all_branches=True)[0].entry == 0
    # Filters apply before the window: the window holds matching items only.
    monkeypatch.setattr("flowloom.memory.index.RANK_WINDOW", 1)
    assert [h.entry for h in memory.search("heron", all_branches=True, until=ts_of(ledger, 1))] == [
        0
    ]


SYNTAX = [
    '"',
    '"unbalanced',
    "NEAR(a b",
    "a AND",
    "OR",
    "NOT",
    "*",
    "prefix*",
    "^start",
    "title:prices",
    "col : x",
    "(a OR b",
    "a & b | !c",
    "'quoted'",
    "a <-> b",
    "\x00",
    "",
    "   ",
    "-",
    "__init__",
    "ñandú façade",
    "日本語のテキスト",
    "🔥🔥",
    "²³",
    "x" * 10_000,
    "a " * 500,
]


@pytest.mark.parametrize("query", SYNTAX)
def test_query_syntax_is_never_an_error(memory: Memory, ledger: Ledger, query: str) -> None:
    ledger.record("agent.prompt", body=b"prices title prefix start", meta={"session": "s"})
    assert isinstance(memory.search(query, all_branches=True), list)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(query=st.text(max_size=80))
def test_any_text_is_a_valid_query(memory: Memory, ledger: Ledger, query: str) -> None:
    if ledger.size() == 0:
        ledger.record("agent.prompt", body="prices façade 日本".encode(), meta={"session": "s"})
    hits = memory.search(query, all_branches=True)
    assert isinstance(hits, list)
    # The reference server's search: a substring of a name, a type or an observation.
    for e in memory.search_nodes(query).entities:
        texts = [e.name, e.entity_type, *e.observations]
        assert any(query.lower() in t.lower() for t in texts)


def test_erasure_removes_indexed_text(memory: Memory, ledger: Ledger, db: Store) -> None:
    ledger.record(
        "agent.prompt",
        body=b"my passport number is in zanzibar",
        meta={"session": "s"},
        data_subject="alice@example.com",
    )
    ledger.record("agent.prompt", body=b"zanzibar weather", meta={"session": "s"})
    assert len(memory.search("zanzibar", all_branches=True)) == 2
    ledger.erase("alice@example.com", reason="GDPR request")
    hits = memory.search("zanzibar", all_branches=True)
    assert [h.snippet for h in hits] == ["«zanzibar» weather"]
    assert memory.search("passport", all_branches=True) == []
    _assert_text_gone(db, "passport")
    memory.rebuild()
    assert memory.search("passport", all_branches=True) == []
    assert len(memory.search("zanzibar", all_branches=True)) == 1


def test_erasing_a_memory_body_forgets_its_observations(memory: Memory, ledger: Ledger) -> None:
    body = b'{"entities":[{"name":"Alice","entityType":"person","observations":["born 1970"]}]}'
    ledger.record("memory.add", body=body, data_subject="alice")
    assert memory.search("1970", all_branches=True)
    ledger.erase("alice", reason="GDPR request")
    assert memory.search("1970", all_branches=True) == []


def _assert_text_gone(db: Store, word: str) -> None:
    """Not in the documents, and (SQLite) not in the full-text index's own tables."""
    if db.dialect == "sqlite":
        conn = sqlite3.connect(db.path)  # type: ignore[attr-defined]
        try:
            assert conn.execute(
                "SELECT count(*) FROM memory_docs WHERE body LIKE ?", (f"%{word}%",)
            ).fetchone() == (0,)
            # The index itself: a match through the FTS table (not the content table).
            assert conn.execute(
                "SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?", (word,)
            ).fetchone() == (0,)
            conn.execute("INSERT INTO memory_fts (memory_fts) VALUES ('integrity-check')")
        finally:
            conn.close()
    else:
        import psycopg

        with psycopg.connect(db.url) as pg:  # type: ignore[attr-defined]
            row = pg.execute(
                "SELECT count(*) FROM memory_docs WHERE body ILIKE %s OR tsv @@ to_tsquery(%s)",
                (f"%{word}%", word),
            ).fetchone()
            assert row == (0,)
