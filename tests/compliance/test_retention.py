"""Retention and legal holds: nothing is purged before its time or under a hold.

A real SQLite ledger with encrypted per-subject bodies; each purge is checked against
the store (bodies really gone or really kept), the log (a tombstone before the keys go)
and full verification (the chain still verifies after the purge).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowloom.compliance.history import LedgerView
from flowloom.compliance.retention import holds, place_hold, plan_purge, purge, release_hold
from flowloom.compliance.settings import (
    ComplianceSettings,
    load_compliance_settings,
    record_class,
    settings_from_table,
)
from flowloom.errors import ConfigError, ConflictError, InputError
from flowloom.ledger.body import BodyCipher, subject_pseudonym
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import Trust
from flowloom.ledger.verify import verify_store
from flowloom.store.sqlite import SQLiteStore
from tests.compliance.world import Clock

START = datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
SETTINGS = ComplianceSettings(
    retention_days={"conversation": 30, "record": 365, "security": 365, "other": 365}
)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def ledger(tmp_path: Path, clock: Clock) -> Iterator[Ledger]:
    store = SQLiteStore(tmp_path / "ledger.db")
    keys = KeyStore(tmp_path / "home")
    origin = "flowloom.example.com/retain"
    keys.signer(origin)
    ledger = Ledger(
        store,
        log="retain",
        origin=origin,
        signer=lambda: keys.signer(origin)[0],
        cipher=lambda: BodyCipher(keys.master_key()),
        actor={"type": "human", "id": "dpo"},
        max_body_bytes=1 << 20,
        clock=clock,
    )
    yield ledger
    ledger.writer.close()
    store.close()


def trusting(ledger: Ledger) -> Trust:
    """The log's own key: what FlowLoom's retention commands write counts."""
    return Trust.of_log([ledger.verifier])


def prompt(ledger: Ledger, subject: str | None, text: bytes, kind: str = "agent.prompt") -> str:
    index = ledger.record(kind, body=text, data_subject=subject).index
    event = LedgerView.load(ledger.store, ledger.log, trusting(ledger)).at(index)
    assert event is not None and event.event.body is not None
    return event.event.body


def verifies(ledger: Ledger) -> bool:
    report = verify_store(
        ledger.store,
        ledger.log,
        ledger.verifier,
        decrypt=lambda stored: ledger.read_body(stored.digest),
    )
    return report.ok


def test_nothing_is_purged_before_its_time(ledger: Ledger, clock: Clock) -> None:
    digest = prompt(ledger, "alice", b"alice's prompt")
    alice = subject_pseudonym(ledger.log, "alice")
    clock.advance(days=29)
    result = purge(ledger, SETTINGS, now=clock.now, trust=trusting(ledger))
    assert result.purged == []
    [refused] = result.refused
    assert refused.subject == alice and "retention runs until 2025-02-09" in (refused.blocked or "")
    with pytest.raises(ConflictError, match="refusing to purge"):
        purge(ledger, SETTINGS, now=clock.now, trust=trusting(ledger), subjects=[alice])
    assert ledger.read_body(digest) == b"alice's prompt"
    assert not LedgerView.load(ledger.store, ledger.log, trusting(ledger)).of("erasure.tombstone")


def test_due_bodies_are_purged_through_a_tombstone_and_the_chain_verifies(
    ledger: Ledger, clock: Clock
) -> None:
    digest = prompt(ledger, "alice", b"alice's prompt")
    kept = prompt(ledger, None, b"a plain diff", kind="artifact.write")
    ledger.checkpoint()
    clock.advance(days=31)
    result = purge(
        ledger,
        SETTINGS,
        now=clock.now,
        trust=trusting(ledger),
        actor={"type": "service", "id": "retention"},
    )
    alice = subject_pseudonym(ledger.log, "alice")
    [(subject, tombstone, erased)] = result.purged
    assert subject == alice and erased == (digest,)
    event = ledger.entry(tombstone)
    assert event.kind == "erasure.tombstone"
    tomb = LedgerView.load(ledger.store, ledger.log, trusting(ledger)).at(tombstone)
    assert tomb is not None
    assert tomb.event.refs["purpose"] == "retention" and tomb.event.refs["bodies"] == (digest,)
    assert tomb.event.actor.id == "retention"
    assert ledger.read_body(digest) is None
    assert ledger.store.subject_key(ledger.log, alice) is None
    assert ledger.read_body(kept) == b"a plain diff"  # no data subject: never purged
    assert verifies(ledger)
    ledger.checkpoint()
    assert verifies(ledger)


def test_a_legal_hold_blocks_the_purge_until_released(ledger: Ledger, clock: Clock) -> None:
    prompt(ledger, "bob", b"bob's prompt")
    prompt(ledger, "carol", b"carol's prompt")
    bob = subject_pseudonym(ledger.log, "bob")
    carol = subject_pseudonym(ledger.log, "carol")
    place_hold(ledger, "LH-1", reason="litigation", data_subject="bob")
    clock.advance(days=40)
    with pytest.raises(ConflictError, match="legal hold LH-1"):
        purge(ledger, SETTINGS, now=clock.now, trust=trusting(ledger), subjects=[bob, carol])
    assert ledger.store.body_digests(ledger.log, carol)  # all or nothing
    result = purge(ledger, SETTINGS, now=clock.now, trust=trusting(ledger))
    assert [p[0] for p in result.purged] == [carol]
    assert [r.subject for r in result.refused] == [bob]
    release_hold(ledger, "LH-1", reason="case closed", trust=trusting(ledger))
    clock.advance(minutes=1)
    assert [
        p[0] for p in purge(ledger, SETTINGS, now=clock.now, trust=trusting(ledger)).purged
    ] == [bob]
    [hold] = holds(LedgerView.load(ledger.store, ledger.log, trusting(ledger)))
    assert hold.id == "LH-1" and hold.released_at is not None


def test_a_class_hold_covers_every_subject_of_that_class(ledger: Ledger, clock: Clock) -> None:
    prompt(ledger, "dave", b"dave's prompt")
    place_hold(ledger, "LH-2", reason="regulator inquiry", scope="class:conversation")
    clock.advance(days=400)
    [plan] = plan_purge(ledger, SETTINGS, now=clock.now, trust=trusting(ledger))
    assert plan.blocked == "under legal hold LH-2"
    with pytest.raises(InputError, match="not 'all'"):
        place_hold(ledger, "LH-3", reason="x", scope="class:nonsense")
    with pytest.raises(InputError, match="no legal hold"):
        release_hold(ledger, "LH-9", reason="x", trust=trusting(ledger))
    with pytest.raises(InputError, match="needs a reason"):
        purge(ledger, SETTINGS, now=clock.now, trust=trusting(ledger), reason=" ")


def test_record_classes_and_settings(tmp_path: Path) -> None:
    assert record_class("agent.prompt") == "conversation"
    assert record_class("gateway.exchange") == "conversation"
    assert record_class("decision.approve") == "record"
    assert record_class("auth.login") == "security"
    assert record_class("capture.error") == "other"
    settings = settings_from_table(
        {"override_approval_hours": 24, "retention": {"conversation": 200}}
    )
    assert settings.override_approval_window == timedelta(hours=24)
    assert settings.retention("conversation") == timedelta(days=200)
    assert settings.retention("record") == timedelta(days=2557)
    for bad in (
        {"retention": {"chats": 3}},
        {"retention": {"conversation": 0}},
        {"override_approval_hours": True},
        {"retain": 1},
    ):
        with pytest.raises(ConfigError):
            settings_from_table(bad)
    (tmp_path / ".flowloom").mkdir()
    (tmp_path / ".flowloom" / "config.toml").write_text(
        "[policy]\nenforce = true\n\n[compliance]\nprotected_branches = ['release']\n"
        "[compliance.retention]\nsecurity = 3650\n"
    )
    loaded = load_compliance_settings(tmp_path)
    assert loaded.protected_branches == ("release",)
    assert loaded.retention("security") == timedelta(days=3650)
    assert load_compliance_settings(None) == ComplianceSettings()
