"""PostgresStore failures become flowloom errors: fast, one line, never the password."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from urllib.parse import quote

import psycopg
import pytest

from flowloom.errors import ForeignDatabaseError, StoreError, StoreUnavailableError
from flowloom.store.interface import AppendPlan, NodeLookup, PendingEntry
from flowloom.store.postgres import PostgresStore, _translate

pytestmark = pytest.mark.postgres

SECRET = "s3cret-Pa55word"


def leaf_plan(size: int, lookup: NodeLookup, leaves: Sequence[bytes]) -> AppendPlan:
    return AppendPlan([(0, size + i, leaf) for i, leaf in enumerate(leaves)])


def assert_clean(exc: StoreError) -> None:
    """A one-line message that does not give the password away."""
    for text in (str(exc), exc.message, exc.diagnostics(), repr(exc)):
        assert SECRET not in text
        assert quote(SECRET) not in text
    assert "\n" not in exc.diagnostics()


def _open_expecting_unavailable(url: str) -> StoreUnavailableError:
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as info:
        PostgresStore(url)
    assert time.monotonic() - started < 10
    assert_clean(info.value)
    return info.value


def test_unreachable_server_fails_fast() -> None:
    exc = _open_expecting_unavailable(f"postgresql://flowloom:{SECRET}@127.0.0.1:1/ledger")
    assert "127.0.0.1:1/ledger" in exc.message
    assert "refused" in exc.message.lower()
    assert exc.hint


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and then never says anything."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_silent_server_times_out(silent_port: int) -> None:
    exc = _open_expecting_unavailable(
        f"postgresql://flowloom:{SECRET}@127.0.0.1:{silent_port}/ledger"
    )
    assert f"127.0.0.1:{silent_port}/ledger" in exc.message
    assert "timeout" in exc.message.lower()


def test_unknown_database(pg_server_url: str) -> None:
    name = f"flowloom_missing_{uuid.uuid4().hex[:8]}"
    url = psycopg.conninfo.make_conninfo(pg_server_url, dbname=name, password=SECRET)
    exc = _open_expecting_unavailable(url)
    assert f"/{name}" in exc.message
    assert "does not exist" in exc.message


def test_unknown_user(pg_server_url: str) -> None:
    url = psycopg.conninfo.make_conninfo(
        pg_server_url, user="flowloom_no_such_role", password=SECRET
    )
    exc = _open_expecting_unavailable(url)
    assert "flowloom_no_such_role" in exc.message


def test_malformed_url_does_not_echo_it() -> None:
    exc = _open_expecting_unavailable(f"postgresql://flowloom:{SECRET}@host/db?bogus=1")
    assert "malformed" in exc.message


def test_missing_schema(pg_url: str) -> None:
    schema = pg_url.rpartition("search_path%3D")[2]
    url = pg_url.replace(schema, f"flowloom_absent_{uuid.uuid4().hex[:8]}")
    with pytest.raises(StoreUnavailableError, match="no schema"):
        PostgresStore(url)


def _execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement.encode())


def _tables(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        ).fetchall()
    return {str(r[0]) for r in rows}


def test_foreign_tables_are_refused(pg_url: str) -> None:
    _execute(pg_url, "CREATE TABLE entries (id serial PRIMARY KEY, title text)")
    with pytest.raises(ForeignDatabaseError, match="entries") as info:
        PostgresStore(pg_url)
    assert info.value.hint
    assert _tables(pg_url) == {"entries"}, "nothing may be created in a foreign database"


def test_foreign_schema_migrations_is_refused(pg_url: str) -> None:
    # what Rails (and others) leave behind
    _execute(pg_url, "CREATE TABLE schema_migrations (version varchar PRIMARY KEY)")
    with pytest.raises(ForeignDatabaseError, match="schema_migrations"):
        PostgresStore(pg_url)
    assert _tables(pg_url) == {"schema_migrations"}


def test_unrelated_tables_are_left_alone(pg_url: str) -> None:
    _execute(pg_url, "CREATE TABLE users (id serial PRIMARY KEY)")
    store = PostgresStore(pg_url)
    try:
        assert store.size("log") == 0
    finally:
        store.close()
    assert "users" in _tables(pg_url)
    assert "schema_migrations" in _tables(pg_url)


def test_trigger_refusal_becomes_refused_store_error(pg_store: PostgresStore, pg_url: str) -> None:
    pg_store.append("log", [PendingEntry(b"{}", b"h" * 32, "note")], leaf_plan)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        try:
            conn.execute("UPDATE entries SET kind = 'forged'")
        except psycopg.Error as exc:
            translated = _translate(exc, pg_store.where, "testing")
        else:
            pytest.fail("the UPDATE was not refused")
    assert type(translated) is StoreError
    assert translated.message.startswith("refused: flowloom: entries")
    assert "\n" not in translated.message


def test_killed_connections_are_replaced(pg_url: str, pg_server_url: str) -> None:
    app = f"flowloom-test-{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}&application_name={app}"
    store = PostgresStore(url, min_size=2, max_size=2)
    try:
        store.append("log", [PendingEntry(b"{}", b"h" * 32, "note")], leaf_plan)
        with psycopg.connect(pg_server_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name = %s",
                (app,),
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        time.sleep(0.2)
        # the pool checks connections before lending them: no error reaches the caller
        assert store.size("log") == 1
        assert store.append("log", [PendingEntry(b"{}", b"i" * 32, "note")], leaf_plan) == 1
    finally:
        store.close()


def test_closed_store(pg_store: PostgresStore) -> None:
    pg_store.close()
    with pytest.raises(StoreError, match="closed"):
        pg_store.size("log")
