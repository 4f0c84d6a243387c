"""The drainer and the ledger sink on a real SQLite ledger: order, time, follow-ups,
unreadable files, and no event recorded twice after a crash at the worst moment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.events import model, outbox
from flowloom.events.drain import drain
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.services import open_ledger
from flowloom.sinks.ledger import LedgerSink, record_events
from flowloom.store.sqlite import SQLiteStore

TS = "2026-01-02T03:04:05.000006Z"


@pytest.fixture
def ledger(sqlite_store: SQLiteStore, tmp_path: Path) -> Iterator[Ledger]:
    yield open_ledger(
        sqlite_store,
        KeyStore(tmp_path / "home"),
        log="events",
        origin="flowloom.test/events",
        actor={"type": "human", "id": "tester"},
        max_body_bytes=1 << 20,
    )


def prompt(text: str, **extra: object) -> dict[str, object]:
    return {"kind": "agent.prompt", "ts": TS, "body": text, "meta": {"session": "s"}, **extra}


def recorded(ledger: Ledger) -> list[dict[str, object]]:
    return [
        {"index": e.index, **json.loads(e.envelope)}
        for e in ledger.store.entries(ledger.log)
        if e.kind != "key.generated"
    ]


def test_files_go_in_order_with_their_time_and_follow_ups(ledger: Ledger, tmp_path: Path) -> None:
    spool = str(tmp_path / "spool")
    outbox.write(spool, "cli", [prompt("one", redactions={"aws_key": 2})], TS)
    outbox.write(spool, "cli", [prompt("two")], "2026-01-02T03:04:06.000000Z")
    report = drain([spool], LedgerSink(ledger))
    assert report.error is None and report.files == 2 and report.remaining == 0
    entries = recorded(ledger)
    assert [e["kind"] for e in entries] == ["agent.prompt", "redaction.apply", "agent.prompt"]
    assert entries[0]["ts"] == TS and entries[2]["ts"] == TS  # the event's own time
    notice = entries[1]
    assert notice["refs"] == {
        "entry": entries[0]["index"],
        "kind": "agent.prompt",
        "counts": {"aws_key": 2},
        "total": 2,
    }
    assert outbox.pending(spool) == []


def test_an_unreadable_file_is_set_aside_and_reported(ledger: Ledger, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    outbox.write(str(spool), "cli", [prompt("before")], TS)
    (spool / "00000000000000000001-0000001-001.json").write_text("{not json")
    report = drain([str(spool)], LedgerSink(ledger))
    assert report.replaced == 1 and report.error is None
    kinds = [e["kind"] for e in recorded(ledger)]
    assert kinds == ["capture.error", "agent.prompt"]  # in name (time) order
    assert (spool / "bad" / "00000000000000000001-0000001-001.json").exists()


def test_a_refused_event_is_replaced_by_a_capture_error(ledger: Ledger, tmp_path: Path) -> None:
    spool = str(tmp_path / "spool")
    forged = {"kind": "decision.approve", "meta": {"subject": "D-1"}, "body": "yes"}
    outbox.write(spool, "claude-code", [forged, prompt("after")], TS)
    drain([spool], LedgerSink(ledger))
    entries = recorded(ledger)
    assert [e["kind"] for e in entries] == ["capture.error", "agent.prompt"]
    assert "could not record a decision.approve event" in str(entries[0]["refs"])


def test_a_drainer_killed_after_the_commit_does_not_record_twice(
    ledger: Ledger, tmp_path: Path
) -> None:
    """The worst moment: the ledger committed, the journal line was never written."""
    spool = str(tmp_path / "spool")
    name = outbox.write(spool, "cli", [prompt("once"), prompt("twice?")], TS)
    sink = LedgerSink(ledger)
    first = sink.record([outbox.read_file(spool, name)])  # ... and the drainer dies here
    ledger.record("agent.tool", meta={"subject": "someone else wrote meanwhile"})
    report = drain([spool], sink)
    assert report.indices == first[0]
    kinds = [e["kind"] for e in recorded(ledger)]
    assert kinds == ["agent.prompt", "agent.prompt", "agent.tool"]
    assert outbox.recorded_index(spool, name, 1) == first[0][1]


def test_follow_ups_are_in_the_same_transaction_and_never_repeated(
    ledger: Ledger, tmp_path: Path
) -> None:
    """A file with a redacted event: its notice goes in with it, so a drainer killed
    after the commit finds both and records neither again."""
    spool = str(tmp_path / "spool")
    name = outbox.write(spool, "cli", [prompt("secret", redactions={"aws_key": 1})], TS)
    sink = LedgerSink(ledger)
    first = sink.record([outbox.read_file(spool, name)])  # ... and the drainer dies here
    assert [e["kind"] for e in recorded(ledger)] == ["agent.prompt", "redaction.apply"]
    report = drain([spool], sink)
    assert report.indices == first[0]
    entries = recorded(ledger)
    assert [e["kind"] for e in entries] == ["agent.prompt", "redaction.apply"]
    assert entries[1]["refs"]["entry"] == entries[0]["index"]


def test_a_batch_is_prepared_again_when_another_writer_appends_first(
    ledger: Ledger, tmp_path: Path
) -> None:
    """Follow-ups name their event's index: when the log moves between preparing and
    appending, nothing is appended and the batch is prepared for the new size."""
    spool = str(tmp_path / "spool")
    name = outbox.write(spool, "cli", [prompt("secret", redactions={"aws_key": 1})], TS)
    item = outbox.read_file(spool, name)
    sizes: list[int] = []

    def intent(size: int, entries: object, follow_ups: object) -> None:
        sizes.append(size)
        if len(sizes) == 1:  # another process appends just before our transaction
            ledger.record("agent.tool", meta={"subject": "someone else"})

    indices = record_events(ledger, item.events, "cli", intent=intent)
    assert len(sizes) == 2 and sizes[1] > sizes[0]
    entries = recorded(ledger)
    assert [e["kind"] for e in entries] == ["agent.tool", "agent.prompt", "redaction.apply"]
    assert indices == [entries[1]["index"]]
    assert entries[2]["refs"]["entry"] == entries[1]["index"]


def test_the_outbox_and_its_fallback_drain_merged_in_time_order(
    ledger: Ledger, tmp_path: Path
) -> None:
    spool, fallback = str(tmp_path / "spool"), str(tmp_path / "fallback")
    outbox.write(spool, "cli", [prompt("1")], TS)
    outbox.write(fallback, "cli", [prompt("2")], TS)
    outbox.write(spool, "cli", [prompt("3")], TS)
    drain([spool, fallback], LedgerSink(ledger))
    bodies = [ledger.read_body(str(e["body"])) for e in recorded(ledger)]
    assert bodies == [b"1", b"2", b"3"]


def test_the_follow_ups_are_written_once_for_every_sink() -> None:
    event = {"kind": "agent.prompt", "meta": {"actor": {"type": "agent", "id": "a"}}, "body": "x"}
    notice = model.redaction_notice("agent.prompt", {"k": 1, "bad": "x"}, 7, event["meta"])
    assert notice == {
        "kind": "redaction.apply",
        "meta": {
            "subject": "agent.prompt",
            "refs": {"entry": 7, "kind": "agent.prompt", "counts": {"k": 1}, "total": 1},
            "actor": {"type": "agent", "id": "a"},
        },
    }
    error = model.refused_event(event, "codex", "too big")
    assert error["kind"] == "capture.error"
    assert error["meta"]["refs"]["error"] == "could not record a agent.prompt event: too big"
    assert error["meta"]["refs"]["payload_digest"] == model.digest(b"x")
