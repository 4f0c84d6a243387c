"""Decision records: recorded as ledger events, read back, approved under the policy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.decisions.records import (
    DECISION_ID,
    DecisionBook,
    SelfApprovalError,
    content_digest,
    decision_digest,
    draft_from_exchange,
    extract_tickets,
    reply_amendment,
)
from flowloom.errors import InputError, NotFoundError
from flowloom.ledger.canonical import canonicalize
from flowloom.ledger.log import Ledger
from flowloom.ledger.note import Signer
from flowloom.ledger.provenance import Trust
from flowloom.store.sqlite import SQLiteStore
from tests.support.ledgers import make_ledger


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    store = SQLiteStore(tmp_path / "ledger.db")
    ledger = make_ledger(store, tmp_path / "home")
    yield ledger
    ledger.writer.close()
    store.close()


@pytest.fixture
def book(ledger: Ledger) -> DecisionBook:
    """Read as a team server reads its own log: its attestations prove the approver."""
    return DecisionBook(ledger, trust=Trust.of_server([ledger.verifier]))


def _envelope(ledger: Ledger, index: int) -> dict[str, object]:
    data = json.loads(ledger.entry(index).envelope)
    assert isinstance(data, dict)
    return data


def test_record_is_a_decision_record_event_with_the_contract_refs(
    ledger: Ledger, book: DecisionBook
) -> None:
    prompt = ledger.record("agent.prompt", body=b"cache prices", meta={"session": "s-1"}).index
    reply = ledger.record("agent.response", body=b"use lru", meta={"session": "s-1"}).index
    decision = book.record(
        title="  Cache   price lookups ",
        context="Lookups are slow, see PAY-12.",
        options=["lru_cache", "redis", "lru_cache"],
        choice="lru_cache",
        rationale="Bounded and in the stdlib.",
        requested_by="alice",
        session="s-1",
        model="claude-sonnet-4",
        files=["src/prices.py"],
        tickets=["OPS-7"],
        risk="medium",
        prompt_entry=prompt,
        response_entry=reply,
    )
    assert DECISION_ID.fullmatch(decision.id)
    assert decision.title == "Cache price lookups"
    assert decision.options == ("lru_cache", "redis")
    assert decision.tickets == ("OPS-7", "PAY-12")
    assert decision.entry == ledger.size() - 1
    assert decision.status == "proposed"

    envelope = _envelope(ledger, decision.entry)
    assert envelope["kind"] == "decision.record"
    assert envelope["subject"] == decision.id
    assert envelope["session"] == "s-1"
    assert envelope["refs"] == {
        "title": "Cache price lookups",
        "context": "Lookups are slow, see PAY-12.",
        "options": ["lru_cache", "redis"],
        "choice": "lru_cache",
        "rationale": "Bounded and in the stdlib.",
        "requested_by": "alice",
        "session": "s-1",
        "model": "claude-sonnet-4",
        "files": ["src/prices.py"],
        "tickets": ["OPS-7", "PAY-12"],
        "risk": "medium",
        "prompt_entry": prompt,
        "response_entry": reply,
    }
    again = book.get(decision.id)
    assert again == decision
    assert again.created == envelope["ts"]
    assert (
        again.content_digest
        == "sha256:" + hashlib.sha256(ledger.entry(decision.entry).envelope).hexdigest()
    )


def test_unset_fields_are_left_out_of_the_event(ledger: Ledger, book: DecisionBook) -> None:
    decision = book.record(title="Use tabs", requested_by="bob")
    envelope = _envelope(ledger, decision.entry or 0)
    assert envelope["refs"] == {"title": "Use tabs", "requested_by": "bob", "risk": "low"}
    assert "session" not in envelope
    data = decision.to_json()
    assert data["options"] == [] and data["approvals"] == [] and data["status"] == "proposed"


def test_record_refuses_bad_input_and_stores_nothing(ledger: Ledger, book: DecisionBook) -> None:
    tool = ledger.record("agent.tool").index
    size = ledger.size()
    with pytest.raises(InputError, match="needs a title"):
        book.record(title="  ", requested_by="a")
    with pytest.raises(InputError, match="risk must be one of low, medium, high"):
        book.record(title="t", requested_by="a", risk="severe")
    with pytest.raises(InputError, match="requested it"):
        book.record(title="t", requested_by=" ")
    with pytest.raises(NotFoundError, match="prompt_entry 99 does not exist"):
        book.record(title="t", requested_by="a", prompt_entry=99)
    with pytest.raises(InputError, match=r"response_entry \d+ is a 'agent.tool' entry, not"):
        book.record(title="t", requested_by="a", response_entry=tool)
    with pytest.raises(InputError, match="not a ticket id"):
        book.record(title="t", requested_by="a", tickets=["two words"])
    assert ledger.size() == size


def test_get_and_list(ledger: Ledger, book: DecisionBook) -> None:
    first = book.record(title="One", requested_by="a")
    second = book.record(title="Two", requested_by="a")
    ledger.record("agent.prompt", meta={"subject": first.id})  # mentions the id; not a record
    assert [d.id for d in book.list()] == [first.id, second.id]
    assert book.get(second.id).title == "Two"
    with pytest.raises(NotFoundError, match="no decision D-0000000000"):
        book.get("D-0000000000")
    with pytest.raises(InputError, match="is not a decision id"):
        book.get("D-XYZ")


def test_approval_binds_the_record_content(ledger: Ledger, book: DecisionBook) -> None:
    decision = book.record(title="Ship it", requested_by="alice")
    approval = book.approve(decision.id, "bob", "approved", approver_name="Bob B")
    envelope = _envelope(ledger, approval.entry)
    assert envelope["kind"] == "decision.approve"
    assert envelope["subject"] == decision.id
    assert envelope["actor"] == {"type": "human", "id": "bob", "name": "Bob B"}
    refs = dict(envelope["refs"])
    assert set(refs.pop("attestation")) == {"key", "sig"}
    assert refs == {"meaning": "approved", "content_digest": decision.content_digest}
    reviewed = book.approve(decision.id, "carol", "reviewed")
    again = book.get(decision.id)
    assert [(a.approver, a.meaning, a.matches) for a in again.approvals] == [
        ("bob", "approved", True),
        ("carol", "reviewed", True),
    ]
    assert again.status == "accepted"
    assert reviewed.entry == approval.entry + 1
    assert [d.status for d in book.list()] == ["accepted"]
    with pytest.raises(InputError, match="bob already approved"):
        book.approve(decision.id, "bob")
    with pytest.raises(InputError, match="meaning must be one of approved, reviewed"):
        book.approve(decision.id, "dave", "signed")
    with pytest.raises(NotFoundError):
        book.approve("D-0123456789", "dave")


def test_an_approval_counts_only_under_a_trust_that_proves_the_approver(
    ledger: Ledger, book: DecisionBook
) -> None:
    decision = book.record(title="Ship it", requested_by="alice")
    book.approve(decision.id, "bob")
    assert book.get(decision.id).status == "accepted"
    # Trusting nobody, or only the log's own key (which anyone at this machine holds):
    # the approval is shown, labelled, and does not count.
    for trust in (Trust(), Trust.of_log([ledger.verifier])):
        again = DecisionBook(ledger, trust=trust).get(decision.id)
        [approval] = again.approvals
        assert again.status == "proposed"
        assert not approval.verified and not approval.counts
        assert approval.describe() == "unverified approval by bob"
        assert approval.unverified_reason
    # Under another server's key, this server's attestation proves nothing.
    foreign_key = Signer.generate(ledger.origin)  # same name, another key
    trust = Trust.of_server([foreign_key.verifier()])
    foreign = DecisionBook(ledger, trust=trust).get(decision.id)
    assert foreign.status == "proposed"
    assert foreign.approvals[0].unverified_reason == "attested by a key this reader does not trust"


def test_an_approval_of_other_content_does_not_count(ledger: Ledger, book: DecisionBook) -> None:
    decision = book.record(title="Ship it", requested_by="alice")
    ledger.record(
        "decision.approve",
        meta={
            "actor": {"type": "human", "id": "mallory"},
            "subject": decision.id,
            "refs": {"meaning": "approved", "content_digest": "sha256:" + "0" * 64},
        },
    )
    again = book.get(decision.id)
    assert [a.matches for a in again.approvals] == [False]
    assert again.status == "proposed"


def test_self_approval_is_refused_by_default(ledger: Ledger, book: DecisionBook) -> None:
    ledger.record(
        "session.start",
        meta={"actor": {"type": "human", "id": "olga"}, "session": "s-9"},
    )
    ledger.record(
        "session.start",
        meta={
            "actor": {"type": "agent", "id": "claude-code"},
            "session": "s-9",
            "refs": {"operator": "oscar"},
        },
    )
    ledger.record("session.start", meta={"actor": {"type": "human", "id": "zed"}, "session": "x"})
    decision = book.record(
        title="Drop the cache",
        requested_by="alice",
        session="s-9",
        actor={"type": "human", "id": "rita"},
    )
    size = ledger.size()
    for person, why in [
        ("alice", "requested it"),
        ("olga", "operated the AI session s-9"),
        ("oscar", "operated the AI session s-9"),
        ("rita", "recorded it"),
    ]:
        with pytest.raises(SelfApprovalError, match=f"{person} cannot approve .*: they {why}"):
            book.approve(decision.id, person)
    assert ledger.size() == size
    assert book.approve(decision.id, "zed").approver == "zed"
    lenient = DecisionBook(ledger, forbid_self_approval=False)
    assert lenient.approve(decision.id, "alice").approver == "alice"


def test_commits_linked_to_a_decision(ledger: Ledger, book: DecisionBook) -> None:
    decision = book.record(title="Ship it", requested_by="alice")
    other = book.record(title="Other", requested_by="alice")
    for sha, target in [("a" * 40, decision.id), ("b" * 40, other.id), ("c" * 40, decision.id)]:
        at = ledger.record("commit.link", meta={"subject": sha, "refs": {"decision": target}})
    assert book.commits(decision.id) == [(at.index - 2, "a" * 40), (at.index, "c" * 40)]


def test_extract_tickets() -> None:
    text = (
        "Fixes ABC-123 and PAY-9; see SHA-256, UTF-8, ISO-27001, GPT-4, RFC-8785, CVE-2024-1, "
        "abc-12, ABC-12x, X-1, ABC-123 again, (OPS-42)."
    )
    assert extract_tickets(text, "and JIRA-7") == ("ABC-123", "PAY-9", "OPS-42", "JIRA-7")


REPLY = """I'll use `functools.lru_cache` on the lookup. It is bounded, thread-safe and
needs no new dependency, so memory stays flat.

Options I weighed:
- **lru_cache**: simplest
- Redis: shared between workers, but needs a server
  - nested detail that is not an option
1. A plain dict

```python
# - not an option either
@lru_cache(maxsize=1024)
def price(sku): ...
```
"""


def test_draft_from_exchange() -> None:
    draft = draft_from_exchange(
        "Add a cache to the price lookup. It takes 300 ms (PAY-12)!\n\nKeep it simple.",
        REPLY,
    )
    assert draft.title == "Add a cache to the price lookup"
    assert draft.context.startswith("Add a cache to the price lookup. It takes 300 ms")
    assert draft.choice == "I'll use functools.lru_cache on the lookup."
    assert draft.rationale == (
        "It is bounded, thread-safe and needs no new dependency, so memory stays flat."
    )
    assert draft.options == (
        "lru_cache: simplest",
        "Redis: shared between workers, but needs a server",
        "A plain dict",
    )
    assert draft.tickets == ("PAY-12",)
    assert draft.risk == "low"


def test_draft_risk_and_fallbacks() -> None:
    risky = draft_from_exchange("Rotate the database password", "Done.")
    assert risky.risk == "high"
    assert risky.choice == "Done." and risky.rationale == "" and risky.options == ()
    wide = draft_from_exchange("Rename the helper", "Renamed it.\n\nEvery caller updated.", files=6)
    assert wide.risk == "medium"
    assert wide.rationale == "Every caller updated."
    long_title = draft_from_exchange("x" * 300, "")
    assert len(long_title.title) == 120 and long_title.title.endswith("…")
    assert draft_from_exchange("", "").title == "Untitled decision"


def test_from_exchange_records_the_decision(ledger: Ledger, book: DecisionBook) -> None:
    prompt_text = "Add a cache to the price lookup. It is slow."
    prompt = ledger.record("agent.prompt", body=prompt_text.encode(), meta={"session": "s"})
    reply = ledger.record("agent.response", body=REPLY.encode(), meta={"session": "s"})
    decision = book.from_exchange(
        prompt_text,
        REPLY,
        requested_by="alice",
        session="s",
        model="m-1",
        files=["prices.py"],
        prompt_entry=prompt.index,
        response_entry=reply.index,
        actor={"type": "agent", "id": "claude-code"},
    )
    assert decision.title == "Add a cache to the price lookup"
    assert decision.choice.startswith("I'll use functools.lru_cache")
    assert len(decision.options) == 3
    assert (decision.prompt_entry, decision.response_entry) == (prompt.index, reply.index)
    assert decision.recorded_by == {"type": "agent", "id": "claude-code"}
    assert book.get(decision.id) == decision


# -- amendments: the reply and reasoning a decision gains when its turn ends ----------------


def _amend(ledger: Ledger, decision_id: str, **refs: object) -> int:
    meta = {"actor": {"type": "agent", "id": "claude-code"}, "subject": decision_id, "refs": refs}
    return ledger.record("decision.amend", meta=meta).index


def test_a_reply_amendment_fills_what_the_record_left_empty(
    ledger: Ledger, book: DecisionBook
) -> None:
    prompt = "Add a cache to the price lookup. It is slow."
    plain = book.record(title="Add a cache", context=prompt, requested_by="a", files=["p.py"])
    reply = ledger.record("agent.response", body=REPLY.encode()).index
    refs = reply_amendment(plain, REPLY, reply)
    draft = draft_from_exchange(prompt, REPLY, files=1)
    assert refs == {
        "record": plain.entry,
        "source": "reply",
        "response_entry": reply,
        "options": list(draft.options),
        "choice": draft.choice,
        "rationale": draft.rationale,
    }
    # A decision recorded by hand keeps its own choice, rationale and reply; risk only rises.
    explicit = book.record(
        title="Add a cache",
        context=prompt,
        requested_by="a",
        options=["mine"],
        choice="Use redis",
        rationale="Shared between workers.",
        risk="medium",
        response_entry=reply,
    )
    assert reply_amendment(explicit, REPLY, reply) == {"record": explicit.entry, "source": "reply"}
    risky = reply_amendment(explicit, "Rotate the production credentials first.", reply)
    assert risky == {"record": explicit.entry, "source": "reply", "risk": "high"}


def test_amendments_merge_in_log_order_and_only_amendable_fields(
    ledger: Ledger, book: DecisionBook
) -> None:
    decision = book.record(title="Cache prices", requested_by="alice", session="s-1")
    reply = ledger.record("agent.response", body=b"first").index
    first = _amend(
        ledger,
        decision.id,
        record=decision.entry,
        response_entry=reply,
        choice="lru_cache",
        options=["lru_cache", "redis"],
    )
    later = ledger.record("agent.response", body=b"second").index
    second = _amend(
        ledger,
        decision.id,
        record=decision.entry,
        response_entry=later,
        choice="functools.cache",
        rationale="Unbounded is fine here.",
        risk="high",
        title="Something else",  # never amendable
        requested_by="mallory",
    )
    merged = book.get(decision.id)
    assert merged.amendments == (first, second)
    assert (merged.choice, merged.rationale, merged.risk) == (
        "functools.cache",
        "Unbounded is fine here.",
        "high",
    )
    assert merged.options == ("lru_cache", "redis")
    assert merged.response_entry == later
    assert (merged.title, merged.requested_by) == ("Cache prices", "alice")
    assert merged.to_json()["amendments"] == [first, second]
    assert book.list() == [merged]
    assert book.at(decision.entry or 0, amendments=[second, first]) == merged
    assert book.at(decision.entry or 0) == decision  # what the record alone says
    # The content an approval names covers the record and both amendments, in order.
    digests = [content_digest(ledger.entry(i).envelope) for i in (decision.entry, first, second)]
    expected = "sha256:" + hashlib.sha256(canonicalize(digests)).hexdigest()
    assert merged.content_digest == decision_digest(digests) == expected
    assert decision.content_digest == digests[0]  # unamended: the record's digest, as before


def test_amendments_of_another_record_or_before_it_are_not_merged(
    ledger: Ledger, book: DecisionBook
) -> None:
    decision = book.record(title="One", requested_by="a")
    assert decision.entry is not None
    _amend(ledger, decision.id, record=decision.entry + 5, choice="not this record")
    _amend(ledger, decision.id, choice="names no record")
    _amend(ledger, decision.id, record=True, choice="a bool is no entry")
    other = book.record(title="Two", requested_by="a")
    _amend(ledger, other.id, record=decision.entry, choice="another decision")
    again = book.get(decision.id)
    assert (again.choice, again.amendments) == ("", ())
    with pytest.raises(InputError, match="not an amendment"):
        decision.amended(decision.entry, ledger.entry(decision.entry).envelope)


def test_a_malformed_amendment_is_refused_like_a_malformed_record(
    ledger: Ledger, book: DecisionBook
) -> None:
    decision = book.record(title="One", requested_by="a")
    _amend(ledger, decision.id, record=decision.entry, options="not a list")
    with pytest.raises(InputError, match=r"decision amendment at entry \d+: options"):
        book.get(decision.id)


def test_an_amendment_after_an_approval_is_not_covered_by_it(
    ledger: Ledger, book: DecisionBook
) -> None:
    decision = book.record(title="Ship it", requested_by="alice")
    _amend(ledger, decision.id, record=decision.entry, choice="ship on Friday")
    before = book.approve(decision.id, "bob")
    assert before.matches and book.get(decision.id).status == "accepted"
    # The approval named the record and the amendment it saw; a later amendment is new
    # content: that approval stops counting until someone approves again.
    _amend(ledger, decision.id, record=decision.entry, choice="ship on Saturday")
    changed = book.get(decision.id)
    assert changed.choice == "ship on Saturday"
    assert [a.matches for a in changed.approvals] == [False]
    assert changed.status == "proposed"
    again = book.approve(decision.id, "bob")  # bob may approve what he has not approved yet
    assert again.matches and book.get(decision.id).status == "accepted"
    with pytest.raises(InputError, match="bob already approved"):
        book.approve(decision.id, "bob")
