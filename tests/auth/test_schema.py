"""The directory shares the ledger's database: migrations, ownership marks, URL forms."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from flowloom.auth.directory import Directory
from flowloom.auth.schema import load_directory_migrations, make_engine
from flowloom.errors import ForeignDatabaseError, InputError
from flowloom.services import open_store


def test_migrations_are_numbered() -> None:
    for dialect in ("sqlite", "postgres"):
        migrations = load_directory_migrations(dialect)
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))


def directory_dialect(url: str) -> str:
    return "postgres" if url.startswith("postgresql") else "sqlite"


def test_reopening_applies_nothing_twice(db_url: str) -> None:
    Directory(db_url).close()
    directory = Directory(db_url)
    with directory.engine.connect() as conn:
        rows = conn.execute(text("SELECT version, name FROM directory_migrations")).all()
    directory.close()
    expected = [(m.version, m.name) for m in load_directory_migrations(directory_dialect(db_url))]
    assert [tuple(r) for r in rows] == expected and expected[0] == (1, "directory")


@pytest.mark.parametrize("directory_first", [True, False])
def test_shares_the_database_with_the_ledger(db_url: str, directory_first: bool) -> None:
    if directory_first:
        directory = Directory(db_url)
        store = open_store(db_url)
    else:
        store = open_store(db_url)
        directory = Directory(db_url)
    try:
        directory.create_project("alpha")
        assert store.size("alpha") == 0
        assert [p.name for p in directory.list_projects()] == ["alpha"]
    finally:
        directory.close()
        store.close()


def test_sqlite_pragmas(tmp_path: Path) -> None:
    directory = Directory(str(tmp_path / "x.db"))
    with directory.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0) >= 10_000
    directory.close()


def test_url_forms(tmp_path: Path) -> None:
    for url in (str(tmp_path / "a.db"), f"sqlite:///{tmp_path / 'b.db'}"):
        Directory(url).close()
    assert (tmp_path / "a.db").exists() and (tmp_path / "b.db").exists()
    with pytest.raises(InputError, match="unsupported"):
        make_engine("mysql://x/y")


def test_refuses_a_foreign_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE mine (x)")
    with pytest.raises(ForeignDatabaseError):
        Directory(str(path))
