"""MADR 4 export of decision records."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.decisions.madr import to_madr
from flowloom.decisions.records import Decision, DecisionBook
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import Trust
from flowloom.store.sqlite import SQLiteStore
from tests.support.ledgers import make_ledger

MADR_SECTIONS = [
    "## Context and Problem Statement",
    "## Considered Options",
    "## Decision Outcome",
    "### Consequences",
    "### Confirmation",
    "## More Information",
]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    store = SQLiteStore(tmp_path / "ledger.db")
    ledger = make_ledger(store, tmp_path / "home")
    yield ledger
    ledger.writer.close()
    store.close()


def _front_matter(text: str) -> dict[str, str]:
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, text
    pairs = (line.split(": ", 1) for line in match.group(1).splitlines())
    return {key: value for key, value in pairs}


def _full_decision(ledger: Ledger) -> tuple[DecisionBook, Decision]:
    prompt = ledger.record("agent.prompt", body=b"cache it").index
    reply = ledger.record("agent.response", body=b"lru").index
    book = DecisionBook(ledger, trust=Trust.of_server([ledger.verifier]))
    decision = book.record(
        title="Cache price lookups",
        context="Lookups take 300 ms.\nSee PAY-12.",
        options=["lru_cache", "Redis"],
        choice="lru_cache",
        rationale="it is bounded and needs no server",
        requested_by="alice: the lead",
        session="s-1",
        model="claude-sonnet-4",
        files=["src/prices.py"],
        risk="high",
        prompt_entry=prompt,
        response_entry=reply,
    )
    return book, decision


def test_madr_layout(ledger: Ledger) -> None:
    book, decision = _full_decision(ledger)
    book.approve(decision.id, "bob")
    book.approve(decision.id, "carol", "reviewed")
    decision = book.get(decision.id)
    text = to_madr(decision, origin="flowloom.test/proj", commits=[(9, "ab" * 20)])

    meta = _front_matter(text)
    assert meta["status"] == "accepted"
    assert meta["date"] == decision.created[:10]
    assert meta["decision-makers"] == '["alice: the lead", "bob"]'
    assert meta["consulted"] == '["carol"]'
    assert meta["flowloom-decision"] == decision.id
    assert "\n# Cache price lookups\n" in text
    positions = [text.index(section) for section in MADR_SECTIONS]
    assert positions == sorted(positions)
    assert "Lookups take 300 ms.\nSee PAY-12.\n\nTickets: PAY-12." in text
    assert "* lru_cache\n* Redis\n" in text
    assert 'Chosen option: "lru_cache", because it is bounded and needs no server.' in text
    assert "* Risk assessed as high." in text
    assert "* Changes `src/prices.py`." in text
    assert f"* Implemented in commit `{'ab' * 6}`." in text
    assert "* Approved by bob on" in text and "* Reviewed by carol on" in text
    assert f"* Decision record: entry {decision.entry} of `flowloom.test/proj`" in text
    assert f"(`flowloom log prove {decision.prompt_entry}`)" in text
    assert f"* AI reply: entry {decision.response_entry} of" in text
    assert f"* Commit `{'ab' * 20}`: linked at entry 9" in text
    assert decision.content_digest in text


def test_madr_links_and_minimal_record(ledger: Ledger) -> None:
    book = DecisionBook(ledger)
    decision = book.record(title="Use tabs", requested_by="bob")
    text = to_madr(decision, origin="o/p", link_base="https://flowloom.example/p/")
    assert _front_matter(text)["status"] == "proposed"
    assert "No context was recorded." in text
    assert "No options were recorded." in text
    assert "No option was recorded as chosen." in text
    assert f"Not yet approved (`flowloom decision approve {decision.id}`)" in text
    link = f"[entry {decision.entry}](https://flowloom.example/p/entries/{decision.entry})"
    assert link in text
    assert "Prompt:" not in text


def test_chosen_option_is_listed_even_when_not_among_the_options(ledger: Ledger) -> None:
    decision = DecisionBook(ledger).record(
        title='Quote "things"', requested_by='x"y', options=["a"], choice="b"
    )
    text = to_madr(decision, origin="o/p")
    assert "* a\n* b\n" in text
    assert 'Chosen option: "b".' in text
    assert _front_matter(text)["decision-makers"] == '["x\\"y"]'
