"""PostgreSQL going away while the server runs: 503 with a clear error, then recovery.

A small TCP relay sits between the server and PostgreSQL; closing it cuts every
connection and refuses new ones, which is what a database restart or a network
partition looks like from the server.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

import flowloom.store.postgres as postgres_store
from tests.server.support import OWN, live_server, make_world

L = f"/api/v1/projects/{OWN}/ledger"


class Relay:
    """Forwards TCP connections from a local port to `target`, until closed."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while self.running:
                for key, _ in selector.select(timeout=0.2):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()

    def cut(self) -> None:
        """Close every connection and stop accepting: the database is 'down'."""
        self.running = False
        with contextlib.suppress(OSError):
            self.listener.close()
        with self.lock:
            for sock in self.sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.fixture
def relay(pg_url: str) -> Iterator[Relay]:
    parts = urlsplit(pg_url)
    running = Relay((parts.hostname or "127.0.0.1", parts.port or 5432))
    yield running
    running.cut()


@pytest.mark.postgres
def test_database_lost_mid_run_gives_503(
    pg_url: str, relay: Relay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_store, "POOL_TIMEOUT_S", 3.0)
    world = make_world(_via(pg_url, relay.port), tmp_path / "home")
    try:
        with live_server(world.server) as base:
            headers = world.headers("developer")
            ok = httpx.post(f"{base}{L}/entries", json={"kind": "agent.prompt"}, headers=headers)
            assert ok.status_code == 201
            relay.cut()
            for method, path in [
                ("POST", f"{L}/entries"),
                ("GET", f"{L}/entries"),
                ("GET", "/readyz"),
            ]:
                response = httpx.request(
                    method,
                    base + path,
                    json={"kind": "agent.prompt"} if method == "POST" else None,
                    headers=headers,
                    timeout=60,
                )
                assert response.status_code == 503, (path, response.status_code, response.text)
                error = response.json()["error"]
                assert error["code"] == "unavailable"
                assert "password" not in error["message"].lower()
            assert httpx.get(base + "/healthz").status_code == 200
    finally:
        world.close()
