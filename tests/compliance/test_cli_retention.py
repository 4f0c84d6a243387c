"""`flowloom retention` end to end: the real CLI over a real SQLite ledger and repository.

Bodies are recorded in the past (a ledger with its own clock over the same database and
keys the CLI uses), then the CLI plans, holds, refuses, releases and purges with the real
time; each purge is checked against the store and full verification.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowloom.cli.main import main
from flowloom.ledger.body import BodyCipher, subject_pseudonym
from flowloom.ledger.event import Event
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.ledger.verify import verify_store
from flowloom.store.sqlite import SQLiteStore
from tests.compliance.world import Clock

PROJECT = "retained"
ORIGIN = f"flowloom.example.com/{PROJECT}"
NOW = datetime.now(UTC)


@dataclass
class Setup:
    root: Path
    database: Path
    home: Path
    digests: dict[str, str]

    def pseudonym(self, person: str) -> str:
        return subject_pseudonym(PROJECT, person)

    def open(self) -> tuple[SQLiteStore, Ledger]:
        store = SQLiteStore(self.database)
        keys = KeyStore(self.home)
        ledger = Ledger(
            store,
            log=PROJECT,
            origin=ORIGIN,
            signer=lambda: keys.signer(ORIGIN)[0],
            cipher=lambda: BodyCipher(keys.master_key()),
            actor={"type": "human", "id": "dpo"},
            max_body_bytes=1 << 20,
        )
        return store, ledger


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    """alice's prompt 400 days old, bob's 40, carol's 5; a checkpoint over them."""
    home = tmp_path / "flowloom-home"
    database = tmp_path / "ledger.db"
    keys = KeyStore(home)
    keys.signer(ORIGIN)
    clock = Clock(NOW - timedelta(days=400))
    store = SQLiteStore(database)
    ledger = Ledger(
        store,
        log=PROJECT,
        origin=ORIGIN,
        signer=lambda: keys.signer(ORIGIN)[0],
        cipher=lambda: BodyCipher(keys.master_key()),
        actor={"type": "human", "id": "dev"},
        max_body_bytes=1 << 20,
        clock=clock,
    )
    digests = {}
    for person, age in (("alice", 400), ("bob", 40), ("carol", 5)):
        clock.set(NOW - timedelta(days=age))
        index = ledger.record(
            "agent.prompt", body=f"{person}'s prompt".encode(), data_subject=person
        ).index
        body = Event.parse(ledger.entry(index).envelope).body
        assert body is not None
        digests[person] = body
    ledger.checkpoint()
    ledger.writer.close()
    store.close()
    for name in ("FLOWLOOM_SERVER", "FLOWLOOM_API_KEY", "FLOWLOOM_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "home" / ".gitconfig"))
    monkeypatch.setenv("FLOWLOOM_HOME", str(home))
    monkeypatch.setenv("FLOWLOOM_DATABASE", str(database))
    monkeypatch.setenv("FLOWLOOM_PROJECT", PROJECT)
    monkeypatch.setenv("FLOWLOOM_ORIGIN", ORIGIN)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield Setup(tmp_path, database, home, digests)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main(["retention", *args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def plan(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    code, out, err = run(capsys, "plan", "--json")
    assert code == 0, err
    return {row["subject"]: row for row in json.loads(out)}


def stored(setup: Setup) -> dict[str, bool]:
    store, ledger = setup.open()
    try:
        return {p: ledger.read_body(d) is not None for p, d in setup.digests.items()}
    finally:
        ledger.writer.close()
        store.close()


def verifies(setup: Setup) -> bool:
    store, ledger = setup.open()
    try:
        ledger.checkpoint()
        report = verify_store(
            store, PROJECT, ledger.verifier, decrypt=lambda s: ledger.read_body(s.digest)
        )
        return report.ok
    finally:
        ledger.writer.close()
        store.close()


def test_hold_blocks_purge_until_released(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    alice, bob = setup.pseudonym("alice"), setup.pseudonym("bob")
    rows = plan(capsys)
    assert rows[alice]["purgeable"] is True and rows[bob]["purgeable"] is False
    assert "retention runs until" in str(rows[bob]["blocked"])

    code, out, err = run(
        capsys, "hold", "--id", "LH-1", "--reason", "Doe v. Acme", "--subject", "alice"
    )
    assert code == 0, err
    assert f"subject:{alice}" in out and "alice" not in out.replace(alice, "")
    code, _, err = run(capsys, "hold", "--id", "LH-1", "--reason", "again")
    assert code == 3 and "already in force" in err
    assert "under legal hold LH-1" in str(plan(capsys)[alice]["blocked"])

    # Outside a repository the committed periods are unknown: no silent defaults.
    code, _, err = run(capsys, "purge", "--reason", "retention ended")
    assert code == 3 and "--default-periods" in err
    assert stored(setup) == {"alice": True, "bob": True, "carol": True}

    # Naming a held subject purges nothing at all; the general purge leaves it alone.
    code, _, err = run(
        capsys, "purge", "--default-periods", "--subject", "alice", "--reason", "retention ended"
    )
    assert code == 3 and "refusing to purge" in err
    code, out, err = run(capsys, "purge", "--default-periods", "--reason", "retention ended")
    assert code == 0, err
    assert "nothing was due" in out
    assert stored(setup) == {"alice": True, "bob": True, "carol": True}

    code, out, _ = run(capsys, "holds", "--json")
    [hold] = json.loads(out)
    assert hold["id"] == "LH-1" and hold["released_at"] is None
    code, _, err = run(capsys, "release", "--id", "LH-2", "--reason", "no such hold")
    assert code == 3 and "no legal hold" in err
    code, out, err = run(capsys, "release", "--id", "LH-1", "--reason", "settled")
    assert code == 0 and "released" in out, err
    code, out, _ = run(capsys, "holds")
    assert "no legal hold is in force" in out

    code, out, err = run(
        capsys, "purge", "--default-periods", "--reason", "retention ended", "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    [purged] = result["purged"]
    assert purged["subject"] == alice and purged["bodies"] == [setup.digests["alice"]]
    assert {k["subject"] for k in result["kept"]} == {bob, setup.pseudonym("carol")}
    assert stored(setup) == {"alice": False, "bob": True, "carol": True}
    store, ledger = setup.open()
    try:
        tomb = Event.parse(ledger.entry(purged["tombstone"]).envelope)
        kinds = [e.kind for e in store.entries(PROJECT) if e.kind == "retention.set"]
    finally:
        ledger.writer.close()
        store.close()
    assert tomb.kind == "erasure.tombstone" and tomb.refs["purpose"] == "retention"
    assert tomb.refs["reason"] == "retention ended"
    assert kinds == ["retention.set", "retention.set"]
    assert verifies(setup)


def test_committed_retention_periods_are_obeyed(
    setup: Setup, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = setup.root / "repo"
    (repo / ".flowloom").mkdir(parents=True)
    (repo / ".flowloom" / "config.toml").write_text(
        "[compliance.retention]\nconversation = 30\n", encoding="utf-8"
    )
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.chdir(repo)
    bob, carol = setup.pseudonym("bob"), setup.pseudonym("carol")
    rows = plan(capsys)
    assert rows[bob]["purgeable"] is True and rows[carol]["purgeable"] is False
    # A subject given by name is purged exactly, with the others left as they are.
    code, out, err = run(capsys, "purge", "--subject", "bob", "--reason", "30-day policy")
    assert code == 0, err
    assert f"purged {bob}: 1 bodies" in out
    assert stored(setup) == {"alice": True, "bob": False, "carol": True}
    code, _, err = run(capsys, "purge", "--subject", carol, "--reason", "too early")
    assert code == 3 and "retention runs until" in err
    code, _, err = run(capsys, "purge", "--subject", "nobody", "--reason", "x")
    assert code == 3 and "no stored bodies" in err
    assert verifies(setup)


def test_class_hold_and_bad_options(setup: Setup, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "hold", "--id", "LH-C", "--reason", "audit", "--class", "conversation", "--json"
    )
    assert code == 0, err
    assert json.loads(out)["scope"] == "class:conversation"
    assert all("LH-C" in str(row["blocked"]) for row in plan(capsys).values())
    code, _, err = run(
        capsys, "hold", "--id", "LH-D", "--reason", "x", "--subject", "a", "--class", "record"
    )
    assert code == 3 and "not both" in err
    code, _, _ = run(capsys, "hold", "--id", "LH-E", "--reason", "x", "--class", "nonsense")
    assert code == 2
