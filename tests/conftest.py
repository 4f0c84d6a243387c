"""Shared fixtures: one store of each kind, and a fresh PostgreSQL schema per test.

PostgreSQL tests use the server at FLOWLOOM_TEST_PG_URL (default
postgresql://postgres@127.0.0.1:5432/test). When it cannot be reached they are skipped,
except under CI (the CI environment variable set), where they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, settings
from psycopg import sql

from flowloom.store.interface import Store
from flowloom.store.memory import MemoryStore
from flowloom.store.postgres import PostgresStore
from flowloom.store.sqlite import SQLiteStore

PG_URL = os.environ.get("FLOWLOOM_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
STORE_KINDS = ("sqlite", "postgres", "memory")

# The machine may be busy (CI shares it): property tests judge results, never speed.
settings.register_profile("flowloom", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("flowloom")

# The machine may be busy: a loopback request can take longer than httpx's 5 s default.
# Tests bound HTTP calls generously instead (a slow machine must not fail a test).
_GENEROUS = httpx.Timeout(120.0)
for _client in (httpx.Client, httpx.AsyncClient):
    assert _client.__init__.__kwdefaults__ is not None
    _client.__init__.__kwdefaults__["timeout"] = _GENEROUS
for _call in (
    httpx.request,
    httpx.get,
    httpx.post,
    httpx.put,
    httpx.patch,
    httpx.delete,
    httpx.head,
    httpx.options,
):
    assert _call.__kwdefaults__ is not None
    _call.__kwdefaults__["timeout"] = _GENEROUS

# The real agent CLIs (`claude_code`, `codex`) and the SAML IdP (`saml_idp`), started when used.
pytest_plugins = ["tests.support.clis", "tests.support.simplesamlphp"]

_pg_problem: list[str] = []  # cached reason the server is unreachable, once known
_pg_checked: list[bool] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def require_postgres() -> None:
    """Skip (or, under CI, fail) the calling test when the server is unreachable."""
    if not _pg_checked:
        try:
            with psycopg.connect(PG_URL, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            _pg_problem.append(" ".join(str(exc).split()))
        _pg_checked.append(True)
    if _pg_problem:
        message = f"PostgreSQL is not reachable at {_redacted(PG_URL)}: {_pg_problem[0]}"
        if in_ci():
            pytest.fail(f"{message} (CI is set, so PostgreSQL tests must run)", pytrace=False)
        pytest.skip(message)


def url_with_schema(url: str, schema: str) -> str:
    """`url`, with connections using `schema` first (search_path via options)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "options"]
    options = dict(parse_qsl(parts.query)).get("options", "")
    query.append(("options", f"{options} -csearch_path={schema}".strip()))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


@pytest.fixture
def pg_server_url() -> str:
    """The server's URL (no schema of its own), once it is known to be reachable."""
    require_postgres()
    return PG_URL


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A URL whose connections use a fresh, empty schema, dropped after the test."""
    require_postgres()
    schema = f"flowloom_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield url_with_schema(PG_URL, schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "ledger.db")
    yield store
    store.close()


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[PostgresStore]:
    store = PostgresStore(pg_url)
    yield store
    store.close()


@pytest.fixture
def memory_store() -> Iterator[MemoryStore]:
    store = MemoryStore()
    yield store
    store.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
        pytest.param("memory", id="memory"),
    ]
)
def store(request: pytest.FixtureRequest) -> Store:
    """The same test against every Store implementation."""
    fixture = {"sqlite": "sqlite_store", "postgres": "pg_store", "memory": "memory_store"}
    result: Store = request.getfixturevalue(fixture[request.param])
    return result


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL: an SQLite file path, or a PostgreSQL URL with its own schema."""
    if request.param == "sqlite":
        return str(tmp_path / "test.db")
    url: str = request.getfixturevalue("pg_url")
    return url
