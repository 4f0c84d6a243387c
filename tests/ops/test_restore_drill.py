"""The recovery drill on PostgreSQL: back up, append, anchor with a witness, restore the
older backup (refused, with the reason), restore the newer (verifies), force the older
with a recorded reason. SQLite's drill is docs/operations.md's (test_operations_doc.py).

The commands run as a user runs them (`flowloom …` through click, in this process, with
an isolated home); the witness is a real C2SP tlog-witness on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from flowloom.cli.main import main
from flowloom.ledger.note import Verifier
from flowloom.ops.manifest import Manifest
from flowloom.services import open_store
from tests.support.witness import LocalWitness


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def flowloom(args: tuple[str, ...]) -> None:
    """`flowloom ARGS`, errors turned into exit codes the way the console script does."""
    main(list(args))


class Drill:
    """`flowloom` with its own home and database."""

    def __init__(self, tmp_path: Path, database: str) -> None:
        self.database = database
        self.home = tmp_path / "home"
        self.env = {
            "FLOWLOOM_HOME": str(self.home),
            "FLOWLOOM_DATABASE": database,
            "FLOWLOOM_PROJECT": "proj",
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        }
        self.tmp = tmp_path

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(flowloom, list(args), env=self.env, catch_exceptions=False)

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, result.output
        return result.stdout

    def append(self, count: int, tag: str) -> None:
        for i in range(count):
            self.ok(
                "log", "append", "--kind", "agent.prompt", "--meta", f'{{"subject":"{tag}{i}"}}'
            )

    def size(self) -> int:
        store = open_store(self.database, read_only=True)
        try:
            return store.size("proj")
        finally:
            store.close()


@pytest.fixture
def witness() -> Iterator[LocalWitness]:
    server = LocalWitness(trusted=[]).start()
    yield server
    server.stop()


def _run_drill(drill: Drill, witness: LocalWitness) -> None:
    drill.append(3, "first")
    witness.trusted.append(Verifier.from_vkey(drill.ok("log", "vkey").strip()))
    drill.ok("log", "checkpoint")
    older = drill.tmp / "backup-older"
    manifest = json.loads(drill.ok("admin", "backup", str(older), "--json"))
    assert manifest["logs"]["proj"]["size"] == 4  # key.generated + 3
    assert "keys" in manifest and "not included" in manifest["keys"]
    assert not any("key" in p.name for p in older.iterdir() if p.name != "manifest.json")

    drill.append(3, "second")
    drill.ok("anchor", "witness", "--url", witness.url, "--vkey", witness.vkey)
    anchored = drill.size()
    newer = drill.tmp / "backup-newer"
    drill.ok("admin", "backup", str(newer))

    refused = drill("admin", "restore", str(older))
    assert refused.exit_code == 1, refused.output
    assert "restore refused, nothing was changed" in refused.stderr
    assert "rollback" in refused.stderr and "size 7" in refused.stderr
    assert drill.size() == anchored  # nothing changed

    asked = drill(
        "admin", "restore", str(older), "--witness-url", witness.url, "--witness-vkey", witness.vkey
    )
    assert asked.exit_code == 1 and f"from witness {witness.url}" in asked.stderr

    no_reason = drill("admin", "restore", str(older), "--force")
    assert no_reason.exit_code == 3 and "--force needs --reason" in no_reason.stderr

    out = drill.ok("admin", "restore", str(newer))
    assert "verified" in out
    assert drill.size() == anchored  # the restore is recorded in the instance's log
    out = drill.ok("anchor", "verify", "--offline")
    assert "FAIL" not in out

    # The operator insists on the older one: allowed with a reason, which is recorded.
    forced = drill("admin", "restore", str(older), "--force", "--reason", "drill: known-bad tail")
    assert forced.exit_code == 0, forced.output
    assert "FORCED" in forced.stderr
    assert drill.size() == 4
    shown = drill.ok(
        "--project", "flowloom-instance", "log", "show", "--kind", "database.restore", "--json"
    )
    refs = [json.loads(line)["event"]["refs"] for line in shown.splitlines()]
    # The record of the earlier restore went with the database it was in; this one stays.
    assert [r["forced"] for r in refs] == [True]
    assert refs[-1]["reason"] == "drill: known-bad tail"
    assert refs[-1]["overridden"][0]["anchor"]["size"] == 7


@pytest.mark.postgres
def test_drill_postgres(tmp_path: Path, pg_url: str, witness: LocalWitness) -> None:
    _run_drill(Drill(tmp_path, pg_url), witness)


def test_a_damaged_backup_is_refused(tmp_path: Path) -> None:
    drill = Drill(tmp_path, str(tmp_path / "ledger.db"))
    drill.append(2, "x")
    folder = tmp_path / "b"
    (tmp_path / "b.partial").mkdir()  # left by a backup that was killed
    (tmp_path / "b.partial" / "ledger.sqlite").write_bytes(b"half")
    drill.ok("admin", "backup", str(folder))
    assert not (tmp_path / "b.partial").exists()
    data = folder / Manifest.read(folder).data_file
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 1
    data.write_bytes(bytes(raw))
    result = drill("admin", "restore", str(folder))
    assert result.exit_code == 3 and "does not match its manifest" in result.stderr
    assert drill("admin", "backup", str(folder)).exit_code == 3  # never overwritten


def test_a_lost_database_is_still_protected_by_the_journal(
    tmp_path: Path, witness: LocalWitness
) -> None:
    """The database is gone (the disaster): the anchor journal beside the keys, a record
    kept elsewhere, or the witness asked now still tells the restore that the older backup
    is a rollback."""
    db = tmp_path / "ledger.db"
    drill = Drill(tmp_path, str(db))
    drill.append(2, "a")
    witness.trusted.append(Verifier.from_vkey(drill.ok("log", "vkey").strip()))
    drill.ok("log", "checkpoint")  # a server signs them all the time; the witness needs one
    older = tmp_path / "older"
    drill.ok("admin", "backup", str(older))
    drill.append(2, "b")
    kept = tmp_path / "record.json"
    kept.write_text(
        drill.ok("anchor", "witness", "--url", witness.url, "--vkey", witness.vkey, "--json")
    )
    newer = tmp_path / "newer"
    drill.ok("admin", "backup", str(newer))
    for path in tmp_path.glob("ledger.db*"):
        path.unlink()

    refused = drill("admin", "restore", str(older))
    assert refused.exit_code == 1 and "anchor journal" in refused.stderr
    journal = drill.home / "anchors.jsonl"
    journal.rename(tmp_path / "journal-aside")  # lost too: the record kept elsewhere remains
    refused = drill("admin", "restore", str(older), "--record", str(kept))
    assert refused.exit_code == 1 and str(kept) in refused.stderr
    # Nothing kept at all: the witness itself still knows, when asked.
    ask = ("--witness-url", witness.url, "--witness-vkey", witness.vkey)
    refused = drill("admin", "restore", str(older), *ask)
    assert refused.exit_code == 1, refused.output
    assert f"from witness {witness.url}" in refused.stderr and "rolled back" in refused.stderr
    assert not db.exists()
    assert "verified" in drill.ok("admin", "restore", str(newer), *ask)
    assert drill.size() == 6


@pytest.mark.postgres
def test_a_postgres_restore_that_fails_changes_nothing(tmp_path: Path, pg_url: str) -> None:
    drill = Drill(tmp_path, pg_url)
    drill.append(1, "a")
    drill.ok("admin", "backup", str(tmp_path / "b"))
    drill.append(1, "b")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE from_a_newer_version (x int)")  # in the test's schema
    result = drill("admin", "restore", str(tmp_path / "b"))
    assert result.exit_code == 4, result.output
    assert "nothing was changed (one transaction)" in result.stderr
    assert drill.size() == 3  # key.generated + 2: the newer data is still there
