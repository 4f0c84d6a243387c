"""Run a real gateway over uvicorn on a loopback port, and read what it recorded."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowloom.gateway.app import Gateway, GatewaySettings
from flowloom.gateway.ports import AccessPort, OpenAccess, RouterPort, SingleProviderRouter
from flowloom.gateway.providers.interface import ProviderConfig
from flowloom.gateway.recorder import Recorder, RecordMode
from flowloom.gateway.settlement import Settlement
from flowloom.gateway.upstream import Upstream
from flowloom.ledger.body import BodyCipher
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.services import open_store
from flowloom.store.interface import Store
from tests.gateway.processes import recorded_exchanges


class LedgerSwitch:
    """The ledgers a recorder writes to, over a store a test may break and mend."""

    def __init__(self, database: Path, home: Path) -> None:
        self.database = database
        self.keys = KeyStore(home)
        self.store: Store = open_store(str(database))
        self._ledgers: dict[str, Ledger] = {}
        self._lock = threading.Lock()
        self.broken = False

    def get(self, project: str) -> Ledger:
        with self._lock:
            if self.broken:
                from flowloom.errors import StoreUnavailableError

                raise StoreUnavailableError("the test made the ledger unavailable")
            ledger = self._ledgers.get(project)
            if ledger is None:
                origin = f"flowloom.local/{project}"
                keys = self.keys
                ledger = Ledger(
                    self.store,
                    log=project,
                    origin=origin,
                    signer=lambda: keys.signer(origin)[0],
                    cipher=lambda: BodyCipher(keys.master_key()),
                    actor={"type": "service", "id": "test"},
                    max_body_bytes=16 * 1024 * 1024,
                )
                self._ledgers[project] = ledger
            return ledger

    def break_store(self) -> None:
        """Close the store under the recorder (the database goes away)."""
        with self._lock:
            self.store.close()
            self._ledgers.clear()

    def mend(self) -> None:
        with self._lock:
            self.store = open_store(str(self.database))
            self._ledgers.clear()
            self.broken = False

    def close(self) -> None:
        self.store.close()


@dataclass
class RunningGateway:
    url: str
    gateway: Gateway
    ledgers: LedgerSwitch
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)

    def flush(self) -> None:
        assert self.gateway.recorder.flush(60), "the recorder did not catch up"

    def events(self, project: str = "gw") -> list[dict[str, Any]]:
        """Every gateway.exchange event of `project`, with its body parsed as "_body"."""
        self.flush()
        return recorded_exchanges(self.ledgers.database, logs=[project], bodies=True)


def start_gateway(
    gateway: Gateway, ledgers: LedgerSwitch, *, host: str = "127.0.0.1"
) -> RunningGateway:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        gateway,  # type: ignore[arg-type]
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="gateway", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the gateway did not start")
        time.sleep(0.005)
    return RunningGateway(f"http://{host}:{port}", gateway, ledgers, server, thread)


def make_gateway(
    tmp_path: Path,
    *,
    router: RouterPort | None = None,
    provider: ProviderConfig | None = None,
    access: AccessPort | None = None,
    mode: RecordMode = "fail_closed",
    settings: GatewaySettings | None = None,
    spool_max_bytes: int = 64 * 1024 * 1024,
    ledgers: LedgerSwitch | None = None,
    upstream: Upstream | None = None,
) -> tuple[Gateway, LedgerSwitch]:
    ledgers = ledgers or LedgerSwitch(tmp_path / "ledger.db", tmp_path / "home")
    access = access or OpenAccess()
    if router is None:
        assert provider is not None
        router = SingleProviderRouter(provider)
    recorder = Recorder(
        ledgers.get,
        default_project="gw",
        mode=mode,
        spool_path=tmp_path / "outbox",
        spool_max_bytes=spool_max_bytes,
        retry_interval_s=0.1,
        settle=Settlement(access),
    )
    gateway = Gateway(
        router=router,
        access=access,
        recorder=recorder,
        settings=settings or GatewaySettings(default_project="gw", reload_interval_s=0),
        upstream=upstream,
    )
    return gateway, ledgers


def running(tmp_path: Path, **kwargs: Any) -> Iterator[RunningGateway]:
    gateway, ledgers = make_gateway(tmp_path, **kwargs)
    run = start_gateway(gateway, ledgers)
    try:
        yield run
    finally:
        run.stop()
        ledgers.close()


run_gateway = contextmanager(running)
"""`with run_gateway(tmp_path, provider=...) as run:` — a started gateway, stopped after."""
