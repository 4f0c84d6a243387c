"""`flowloom demo`: the ledger end to end in a scratch directory.

Appends a small AI-assisted change history, signs a checkpoint, proves an entry,
exports a bundle, verifies the log and the bundle, then shows that an edit made
behind FlowLoom's back is caught and named. Everything lives in a temporary directory
(or --dir), so it touches nothing of the user's.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import click

from flowloom.config import Settings
from flowloom.ledger.bundle import export_bundle, verify_bundle
from flowloom.ledger.checkpoint import open_checkpoint
from flowloom.ledger.merkle import leaf_hash
from flowloom.ledger.receipt import verify_receipt
from flowloom.ledger.verify import verify_store
from flowloom.services import build_services

__all__ = ["demo"]

_STORY: list[tuple[str, bytes | None, dict[str, Any]]] = [
    ("session.start", None, {"session": "s-1", "subject": "claude-code"}),
    ("agent.prompt", b"Add rate limiting to the login endpoint.", {"session": "s-1"}),
    ("agent.response", b"I'll add a token bucket in auth/limits.py ...", {"session": "s-1"}),
    (
        "artifact.write",
        b"--- a/auth/limits.py\n+++ b/auth/limits.py\n+class TokenBucket: ...",
        {"session": "s-1", "subject": "auth/limits.py"},
    ),
    (
        "decision.record",
        b'{"title":"Rate-limit logins with a token bucket"}',
        {"session": "s-1", "subject": "D-1"},
    ),
    (
        "decision.approve",
        None,
        {"subject": "D-1", "actor": {"type": "human", "id": "reviewer@example.com"}},
    ),
]


def _step(text: str) -> None:
    click.secho(f"==> {text}", bold=True)


@click.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False), help="Keep the demo here.")
def demo(directory: str | None) -> None:
    """Show the ledger end to end on the embedded SQLite default."""
    scratch = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="flowloom-demo-"))
    scratch.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        home=scratch / "home",
        database=str(scratch / "ledger.db"),
        project="demo",
        origin="flowloom.local/demo",
    )
    services = build_services(settings)
    ledger = services.ledger
    try:
        _step(f"ledger {settings.database} (SQLite, WAL, synchronous=FULL)")
        for kind, body, meta in _STORY:
            ack = ledger.record(kind, body=body, meta=meta)
            click.echo(f"  appended {ack.index:>2} {kind:<16} leaf {ack.leaf_hash.hex()[:16]}…")
        ack = ledger.record(
            "agent.prompt",
            body=b"My email is jane@example.com, use it in the tests.",
            meta={"session": "s-1"},
            data_subject="jane@example.com",
        )
        click.echo(
            f"  appended {ack.index:>2} agent.prompt     (body encrypted for a data subject)"
        )

        _step("sign a checkpoint (C2SP tlog-checkpoint in a signed note)")
        checkpoint = ledger.checkpoint()
        click.echo(checkpoint.note.rstrip("\n"))
        vkey = ledger.verifier.vkey
        click.echo(f"  verifier key: {vkey}")

        _step("prove entry 3 (C2SP tlog-proof) and check the receipt offline")
        receipt = ledger.prove(3)
        entry = ledger.entry(3)
        verified = verify_receipt(receipt, leaf_hash(entry.envelope), ledger.verifier)
        click.echo(f"  receipt for entry 3 verifies against checkpoint {verified.size}")

        _step("erase the data subject (GDPR): key destroyed, tombstone recorded")
        tomb = ledger.erase("jane@example.com", reason="Art. 17 request #42")
        click.echo(f"  tombstone at {tomb.index}")

        _step("export a bundle (tlog-tiles layout) and verify it with only the vkey")
        bundle = scratch / "bundle"
        if bundle.exists():
            shutil.rmtree(bundle)
        manifest = export_bundle(ledger, bundle)
        report = verify_bundle(bundle, ledger.verifier)
        click.echo(f"  {len(manifest['files'])} files; bundle verifies: {report.ok}")

        _step("verify the whole log")
        report = verify_store(
            ledger.store, ledger.log, ledger.verifier, decrypt=lambda b: ledger.read_body(b.digest)
        )
        click.echo(
            f"  {report.size} entries, {report.checkpoints_checked} checkpoints: ok={report.ok}"
        )
        kept = ledger.store.latest_checkpoint(ledger.log)
        assert kept is not None
        open_checkpoint(kept.note, ledger.verifier)

        _step("tamper with entry 2 behind FlowLoom's back, then verify again")
        services.close()
        _tamper(Path(settings.database))
        services = build_services(settings)
        ledger = services.ledger
        report = verify_store(
            ledger.store, ledger.log, ledger.verifier, decrypt=lambda b: ledger.read_body(b.digest)
        )
        for problem in report.problems:
            click.echo(f"  {problem.line()}")
        click.echo(f"  tampering detected: {not report.ok}")
        click.secho(f"\nDone. Everything is in {scratch}", fg="green")
    finally:
        services.close()


def _tamper(path: Path) -> None:
    """What an insider with database access might do: drop the guard, edit a row."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP TRIGGER entries_append_only_update")
        conn.execute(
            "UPDATE entries SET envelope = CAST(replace(envelope, 's-1', 's-9') AS BLOB) "
            "WHERE idx = 2"
        )
        conn.commit()
    finally:
        conn.close()
