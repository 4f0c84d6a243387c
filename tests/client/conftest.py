"""A real FlowLoom server on loopback (`python -m flowloom serve` subprocess) for the client.

`LiveServer` prepares the directory in-process (a project, a developer with an API key)
through `build_server`, then runs the server as a subprocess on a free port, so a test
can stop it (the server is down), start it again, or start it on another database at
the same address with the same signing keys (a server that rewrote its history).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowloom.client.link import ServerLink

PROJECT = "acme"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """One server: database URL, key home, address; started and stopped by the test."""

    def __init__(self, tmp: Path, database: str, *, port: int | None = None) -> None:
        self.tmp = tmp
        self.database = database
        self.home = tmp / "server-home"
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp / f"server-{self.port}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("FLOWLOOM_")},
            "HOME": str(tmp / "server-user"),
            "XDG_CONFIG_HOME": str(tmp / "server-user" / ".config"),
            "FLOWLOOM_HOME": str(self.home),
        }

    def _settings(self) -> object:
        from flowloom.server.settings import ServerSettings

        return ServerSettings(
            database=self.database, home=self.home, host="127.0.0.1", port=self.port
        )

    def provision(self, project: str = PROJECT, role: str = "developer") -> tuple[str, str]:
        """Create `project` (if new) and a user with `role` on it; (user id, API key)."""
        from flowloom.errors import ConflictError
        from flowloom.server.build import build_server
        from flowloom.server.settings import ServerSettings

        settings = self._settings()
        assert isinstance(settings, ServerSettings)
        server = build_server(settings)
        try:
            with contextlib.suppress(ConflictError):
                server.directory.create_project(project)
            number = len(server.directory.list_users())
            user = server.directory.create_user(f"dev{number}@example.com", f"Dev {number}")
            server.directory.grant(user.id, project, role)
            _, secret = server.directory.create_key(user.id, name="laptop")
        finally:
            server.close()
        return user.id, secret

    def revoke_keys(self, user_id: str) -> None:
        from flowloom.server.build import build_server
        from flowloom.server.settings import ServerSettings

        settings = self._settings()
        assert isinstance(settings, ServerSettings)
        server = build_server(settings)
        try:
            for key in server.directory.list_keys(user_id):
                server.directory.revoke_key(key.id)
        finally:
            server.close()

    def start(self) -> None:
        assert self.process is None
        self.home.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "flowloom",
                    "serve",
                    "--database",
                    self.database,
                    "--home",
                    str(self.home),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--log-level",
                    "warning",
                ],
                cwd=self.tmp,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.log.read_text()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        raise AssertionError(f"the server did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def body(self, key: str, index: int, project: str = PROJECT) -> str:
        from flowloom.client.http import HttpClient

        path = f"/api/v1/projects/{project}/ledger/entries/{index}/body"
        return HttpClient(self.url, key).request("GET", path, accept="*/*").decode()

    def entries(self, key: str, project: str = PROJECT) -> list[dict[str, Any]]:
        """Every entry of `project`, read back through the API."""
        from flowloom.client.http import HttpClient

        http = HttpClient(self.url, key)
        found: list[dict[str, Any]] = []
        start = 0
        while True:
            page = http.get_json(
                f"/api/v1/projects/{project}/ledger/entries", {"start": start, "limit": 500}
            )
            found.extend(page["entries"])
            if page.get("next") is None:
                return found
            start = page["next"]


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The server's database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "server.db")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def other_database(database: str, tmp_path: Path) -> Iterator[str]:
    """A second, empty database of the same kind (another server history)."""
    if not database.startswith("postgresql://"):
        yield str(tmp_path / "other-server.db")
        return
    import uuid

    import psycopg
    from psycopg import sql

    from tests.conftest import PG_URL, url_with_schema

    schema = f"flowloom_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield url_with_schema(PG_URL, schema)
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def server(tmp_path: Path, database: str) -> Iterator[LiveServer]:
    """A server on SQLite and on PostgreSQL (not started: provision first)."""
    live = LiveServer(tmp_path, database)
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[LiveServer]:
    """A server on SQLite only, for tests whose point is not the database."""
    live = LiveServer(tmp_path, str(tmp_path / "server.db"))
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture
def link_factory(tmp_path: Path) -> Callable[..., ServerLink]:
    """A ServerLink for a clone whose capture state lives in tmp_path/state."""

    def make(
        server: LiveServer, key: str, *, project: str = PROJECT, vkey: str | None = None
    ) -> ServerLink:
        return ServerLink(
            server_url=server.url,
            api_key=key,
            project=project,
            state_dir=str(tmp_path / "state"),
            given_vkey=vkey,
            timeout=10,
        )

    return make
