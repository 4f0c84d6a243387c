"""`flowloom admin backup`: an online, consistent copy of the database and its manifest.

SQLite is copied with its online backup API in one step, so the copy is one
transaction's view while the server goes on writing. PostgreSQL is dumped with
`pg_dump` (custom format, the FlowLoom schema only) from a snapshot exported by a
repeatable-read transaction that also reads the manifest's log states, so dump and
manifest describe the same instant. Keys are never part of it: they live in the key
provider (files under $FLOWLOOM_HOME/keys, an HSM or KMS) and are backed up on their own.
The backup is written to ``DEST.partial`` and renamed when complete: a killed backup
leaves no directory that looks finished.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from flowloom import __version__
from flowloom.errors import InputError, StoreError
from flowloom.ops.manifest import Manifest, file_sha256, read_log_states
from flowloom.ops.pgtools import PgConnection
from flowloom.store.urls import sqlite_path

__all__ = ["Progress", "make_backup"]

Progress = Callable[[str], None]
"""Says what a long step is doing now (printed on standard error by the CLI)."""

SQLITE_FILE = "ledger.sqlite"
PG_FILE = "database.pgdump"


def make_backup(url: str, dest: Path, progress: Progress) -> Manifest:
    """Back up the database at ``url`` into the new directory ``dest``."""
    if dest.exists():
        raise InputError(
            f"{dest} already exists", hint="name a new directory; backups are never overwritten"
        )
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by a backup that was killed: never finished
    partial.mkdir(parents=True)
    try:
        path = _sqlite_file(url)
        if path is None:
            manifest = _backup_postgres(url, partial, progress)
        else:
            manifest = _backup_sqlite(path, partial, progress)
        manifest.write(partial)
        _sync(partial)
        partial.rename(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    progress(f"backup complete: {dest}")
    return manifest


def _sqlite_file(url: str) -> Path | None:
    try:
        path = sqlite_path(url)
    except ValueError:
        raise InputError(f"unsupported database URL {url!r}") from None
    if path is None:
        return None
    if path == ":memory:" or not Path(path).is_file():
        raise InputError(f"no SQLite database at {path}", hint="name the server's database")
    return Path(path)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _backup_sqlite(path: Path, folder: Path, progress: Progress) -> Manifest:
    target = folder / SQLITE_FILE
    source = sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    try:
        pages = int(source.execute("PRAGMA page_count").fetchone()[0])
        progress(f"copying {path.name}: {pages} pages with SQLite's online backup")
        copy = sqlite3.connect(target)
        try:
            # One step (pages=-1): a single read transaction, so writers in between
            # cannot restart the copy and the copy is one consistent view.
            source.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")  # a self-contained file
            states = read_log_states(copy.cursor(), "?")
        finally:
            copy.close()
    except sqlite3.Error as exc:
        raise StoreError(f"backing up {path} failed: {exc}") from exc
    finally:
        source.close()
    created = _now()
    progress(f"hashing {target.name}")
    return Manifest(
        engine="sqlite",
        data_file=target.name,
        data_sha256=file_sha256(target),
        data_bytes=target.stat().st_size,
        created_at=created,
        version=__version__,
        logs=states,
    )


def _backup_postgres(url: str, folder: Path, progress: Progress) -> Manifest:
    target = folder / PG_FILE
    pg = PgConnection(url)
    with pg.connect() as conn:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        row = conn.execute("SELECT pg_export_snapshot(), current_schema()").fetchone()
        snapshot, schema = str(row[0]), str(row[1])
        states = read_log_states(conn.cursor(), "%s")
        created = _now()
        progress(f"dumping schema {schema} with pg_dump (snapshot {snapshot})")
        pg.run(
            "pg_dump",
            [
                "--format=custom",
                "--no-owner",
                "--no-privileges",
                f"--schema={schema}",
                f"--snapshot={snapshot}",
                f"--file={target}",
            ],
        )
        conn.execute("COMMIT")
    progress(f"hashing {target.name}")
    return Manifest(
        engine="postgresql",
        data_file=target.name,
        data_sha256=file_sha256(target),
        data_bytes=target.stat().st_size,
        created_at=created,
        version=__version__,
        logs=states,
        schema=schema,
    )


def _sync(folder: Path) -> None:
    for item in folder.iterdir():
        with item.open("rb") as handle:
            os.fsync(handle.fileno())
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
