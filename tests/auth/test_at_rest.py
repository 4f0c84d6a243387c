"""No secret reaches the database: keys, session tokens, CSRF tokens and passwords are
absent from the raw bytes of the SQLite file (and its WAL) and from every PostgreSQL row."""

from __future__ import annotations

import contextlib
from pathlib import Path

import psycopg
from psycopg import sql

from flowloom.auth.directory import Directory
from flowloom.errors import AuthError
from tests.auth.conftest import PASSWORD, AuditLog, DirectoryFactory
from tests.conftest import PG_URL


def _make_secrets(directory: Directory) -> list[str]:
    directory.create_project("alpha")
    ann = directory.create_user("ann@example.org", "Ann", password=PASSWORD)
    directory.set_password(ann.id, PASSWORD + " v2")
    directory.grant(ann.id, "alpha", "developer")
    _, key = directory.create_key(ann.id, name="k", scopes=["ledger.read"])
    old, rotated_from = directory.create_key(ann.id, name="r")
    from datetime import timedelta

    _, rotated = directory.rotate_key(old.id, overlap=timedelta(hours=1))
    directory.principal_for_key(key)
    directory.check_password("ann@example.org", PASSWORD + " v2", client="10.1.1.1")
    with contextlib.suppress(AuthError):
        directory.check_password("ann@example.org", "a-wrong-guess-123", client="10.1.1.1")
    _, token, csrf = directory.create_session(ann.id, via="password")
    directory.principal_for_session(token)
    directory.put_oidc_state("oidc-state-value-xyz", "verifier", "nonce", "/")
    secrets = [key, rotated_from, rotated, token, csrf, PASSWORD, PASSWORD + " v2"]
    secrets += ["a-wrong-guess-123", "oidc-state-value-xyz"]
    # The secret part of each key on its own, too (the visible prefix is not secret).
    secrets += [k.split("_", 2)[2] for k in (key, rotated_from, rotated)]
    return secrets


def _assert_absent(blob: bytes, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret.encode() not in blob, "a secret was found in the database"


def test_sqlite_file_holds_no_secret(tmp_path: Path, make_directory: DirectoryFactory) -> None:
    path = tmp_path / "at-rest.db"
    directory = make_directory(database=str(path))
    secrets = _make_secrets(directory)
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("at-rest.db*"))
    assert b"directory_api_keys" in blob  # the scan does see the database
    _assert_absent(blob, secrets)
    directory.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.glob("at-rest.db*"))
    _assert_absent(blob, secrets)


def test_postgres_rows_hold_no_secret(pg_url: str, make_directory: DirectoryFactory) -> None:
    directory = make_directory(database=pg_url)
    secrets = _make_secrets(directory)
    schema = pg_url.rsplit("search_path%3D", 1)[1]
    dump: list[str] = []
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        assert len(tables) >= 10
        for (table,) in tables:
            rows = conn.execute(
                sql.SQL("SELECT t::text FROM {}.{} t").format(
                    sql.Identifier(schema), sql.Identifier(table)
                )
            ).fetchall()
            dump.extend(r[0] for r in rows)
    blob = "\n".join(dump).encode()
    assert b"argon2id" in blob  # the scan sees the rows
    _assert_absent(blob, secrets)


def test_audit_events_hold_no_secret(directory: Directory, audit: AuditLog) -> None:
    secrets = _make_secrets(directory)
    assert {"auth.key_created", "auth.key_rotated", "auth.login", "auth.login_failed"} <= set(
        audit.kinds()
    )
    dumped = repr(audit.events)
    _assert_absent(dumped.encode(), secrets)
    assert "argon2" not in dumped
    for _kind, _project, meta in audit.events:
        assert set(meta) <= {"actor", "subject", "refs"}
        assert meta["actor"]["type"] in ("human", "service", "agent")
