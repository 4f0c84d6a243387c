"""`flowloom admin restore`: put a backup back, unless it would roll the log back.

Before anything is replaced the backup is checked: its data file must match the
manifest, and every anchored or witnessed checkpoint known from outside the database
(the anchor journal beside the keys, anchor records kept elsewhere, and the anchor
events of the database about to be replaced) must be extended by the backup. An
SQLite backup is verified in full first (tree, signed checkpoints) and judged on its
data; a PostgreSQL dump is judged on its manifest, then verified and judged again on
the restored data. A refused restore changes nothing; `force` overrides with a reason
the caller records.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from flowloom.compliance.anchors.book import ANCHOR_KIND
from flowloom.compliance.anchors.interface import AnchorRecord
from flowloom.errors import FlowLoomError, InputError, StoreError, VerificationError
from flowloom.ledger import merkle
from flowloom.ledger.verify import verify_store
from flowloom.ops.manifest import LogState, Manifest
from flowloom.ops.pgtools import PgConnection
from flowloom.ops.rollback import Conflict, conflicts, witness_conflicts
from flowloom.store.interface import Store
from flowloom.store.urls import sqlite_path

__all__ = ["RestoreRefusedError", "Restored", "live_anchors", "restore"]

Progress = Callable[[str], None]
Sources = list[tuple[str, AnchorRecord]]


class RestoreRefusedError(VerificationError):
    """The backup is older than (or forks from) a checkpoint anchored outside."""


@dataclass
class Restored:
    """What a restore did: the backup, what it overrode, and the verified result."""

    manifest: Manifest
    overridden: list[Conflict] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def live_anchors(url: str) -> Sources:
    """The anchor records inside the database about to be replaced (none if it is gone)."""
    store = _open_store(url, read_only=True)
    if store is None:
        return []
    found: Sources = []
    try:
        for log in store.logs():
            for entry in store.entries(log, kind=ANCHOR_KIND):
                try:
                    refs = json.loads(entry.envelope).get("refs", {})
                    found.append((f"current database, {log} entry {entry.index}", _record(refs)))
                except (ValueError, AttributeError, FlowLoomError):
                    continue  # an anchor event FlowLoom did not write: not ours to judge
    finally:
        store.close()
    return found


def _record(refs: object) -> AnchorRecord:
    if not isinstance(refs, dict):
        raise InputError("not an anchor record")
    return AnchorRecord.from_refs(refs)


def _open_store(url: str, *, read_only: bool) -> Store | None:
    path = sqlite_path(url)
    if path is None:
        from flowloom.store.postgres import PostgresStore

        return PostgresStore(url, read_only=read_only)
    from flowloom.store.sqlite import SQLiteStore

    if not Path(path).is_file():
        return None
    return SQLiteStore(path, read_only=read_only)


def restore(
    url: str,
    folder: Path,
    anchors: Iterable[tuple[str, AnchorRecord]],
    *,
    force: bool,
    progress: Progress,
    witnesses: Sequence[tuple[str, str]] = (),
    timeout: float = 10.0,
) -> Restored:
    """Restore the backup in ``folder`` over the database at ``url``.

    Raises RestoreRefusedError (nothing changed) when the backup contradicts an
    anchored checkpoint and ``force`` is false.
    """
    manifest = Manifest.read(folder)
    data = manifest.check_data(folder, progress)
    target = sqlite_path(url)
    records = list(anchors)
    if manifest.engine == "sqlite":
        if target is None:
            raise InputError("an SQLite backup restores into an SQLite database, not PostgreSQL")
        found = _judge_sqlite(data, manifest, records, progress, witnesses, timeout)
    else:
        if target is not None:
            raise InputError("a PostgreSQL backup restores into PostgreSQL, not an SQLite file")
        found = conflicts(records, manifest.logs, None)
        for url, vkey in witnesses:
            progress(f"asking the witness at {url}")
            found += witness_conflicts(url, vkey, manifest.logs, None, timeout, _unasked(progress))
    _refuse_unless(found, force)
    if target is not None:
        _apply_sqlite(data, Path(target), progress)
    else:
        _apply_postgres(url, data, progress)
    outcome = Restored(manifest, overridden=found)
    _verify_target(url, records, outcome, progress)
    return outcome


def _refuse_unless(found: list[Conflict], force: bool) -> None:
    if not found or force:
        return
    lines = "; ".join(c.line() for c in found)
    raise RestoreRefusedError(
        f"restore refused, nothing was changed: {lines}",
        hint="restore a newer backup; only if this rollback is intended, repeat with "
        "--force --reason '...' (the reason is recorded)",
    )


def _judge_sqlite(
    data: Path,
    manifest: Manifest,
    records: Sources,
    progress: Progress,
    witnesses: Sequence[tuple[str, str]],
    timeout: float,
) -> list[Conflict]:
    """Verify the copy itself and judge it on its own data (not only its manifest)."""
    from flowloom.store.sqlite import SQLiteStore

    store = SQLiteStore(data, read_only=True)
    try:
        states = _states(store)
        if {k: v.size for k, v in states.items()} != {k: v.size for k, v in manifest.logs.items()}:
            raise InputError(f"{data} does not hold the logs its manifest lists")
        problems = _verify_all(store, progress)
        if problems:
            raise VerificationError(
                f"the backup does not verify, nothing was changed: {'; '.join(problems[:5])}",
                hint="restore from another backup",
            )
        found = conflicts(records, states, _root_at(store))
        for url, vkey in witnesses:
            progress(f"asking the witness at {url}")
            found += witness_conflicts(
                url, vkey, states, _proofs(store), timeout, _unasked(progress)
            )
        return found
    finally:
        store.close()


def _unasked(progress: Progress) -> Callable[[str], None]:
    return lambda log: progress(f"log {log} has no signed checkpoint in the backup: not asked")


def _proofs(store: Store) -> Callable[[str, int, int], list[bytes]]:
    return lambda log, old, new: merkle.consistency_proof(
        old, new, lambda ids: store.nodes(log, ids)
    )


def _states(store: Store) -> dict[str, LogState]:
    from flowloom.compliance.anchors.interface import parse_checkpoint

    found: dict[str, LogState] = {}
    for log in store.logs():
        checkpoints = store.checkpoints(log)
        latest = checkpoints[-1].note if checkpoints else None
        origin = None
        if latest is not None:
            try:
                origin = parse_checkpoint(latest).origin
            except FlowLoomError:
                origin = None
        found[log] = LogState(
            log=log,
            size=store.size(log),
            origin=origin,
            checkpoints={c.size: c.root for c in checkpoints},
            latest_note=latest,
            root=_root_at(store)(log, store.size(log)),
        )
    return found


def _root_at(store: Store) -> Callable[[str, int], bytes]:
    return lambda log, size: merkle.root_at(size, lambda ids: store.nodes(log, ids))


def _verify_all(store: Store, progress: Progress) -> list[str]:
    problems: list[str] = []
    for log in store.logs():
        total = store.size(log)
        progress(f"verifying log {log}: {total} entries")

        def report(done: int, of: int, log: str = log) -> None:
            progress(f"verifying log {log}: {done}/{of}")  # every 65,536 entries

        result = verify_store(store, log, check_bodies=False, progress=report)
        problems.extend(f"log {log}: {p.line()}" for p in result.problems)
    return problems


def _apply_sqlite(data: Path, target: Path, progress: Progress) -> None:
    progress(f"writing {target} with SQLite's backup API")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{quote(str(data.resolve()))}?mode=ro", uri=True)
    try:
        into = sqlite3.connect(target, timeout=30)
        try:
            source.backup(into, pages=-1)  # one step: the target changes all at once
        finally:
            into.close()
    except sqlite3.Error as exc:
        raise StoreError(
            f"restoring into {target} failed: {exc}",
            hint="stop every FlowLoom process using the database first",
        ) from exc
    finally:
        source.close()


def _apply_postgres(url: str, data: Path, progress: Progress) -> None:
    progress("restoring with pg_restore in one transaction")
    try:
        PgConnection(url).run(
            "pg_restore",
            [
                "--clean",
                "--if-exists",
                "--no-owner",
                "--no-privileges",
                "--single-transaction",
                "--exit-on-error",
                str(data),
            ],
        )
    except StoreError as exc:
        raise StoreError(
            f"{exc.message}; nothing was changed (one transaction)",
            hint="if the schema holds objects the backup does not (a newer FlowLoom's "
            "tables), restore into an empty schema or database",
        ) from exc


def _verify_target(url: str, records: Sources, outcome: Restored, progress: Progress) -> None:
    store = _open_store(url, read_only=True)
    if store is None:  # pragma: no cover - the restore just wrote it
        raise StoreError(f"the restored database at {url} cannot be opened")
    try:
        outcome.problems = _verify_all(store, progress)
        states = _states(store)
        outcome.sizes = {log: state.size for log, state in states.items()}
        if outcome.overridden:
            return  # forced: the conflicts are known and recorded
        outcome.problems.extend(c.line() for c in conflicts(records, states, _root_at(store)))
    finally:
        store.close()
