"""Running the simulator: under uvicorn (httptools + uvloop when installed), foreground or thread.

`serve()` is what `flowloom dev mock-provider` runs. `start_in_thread()` is for tests and
benchmarks in the same process: it binds a loopback port first (port 0 = any free port),
so the URL is known before the server starts, and stops cleanly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from flowloom.gateway.mock.app import MockConfig, MockDisconnect, MockProvider
from flowloom.gateway.mock.faults import FaultRule, parse_fault_spec

__all__ = ["MockServer", "serve", "start_in_thread"]


class _QuietDisconnects(logging.Filter):
    """The disconnect fault raises on purpose; do not log it as an application error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, MockDisconnect)


def _install_filter() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDisconnects) for f in logger.filters):
        logger.addFilter(_QuietDisconnects())


def _uvicorn_config(app: MockProvider, *, host: str, port: int, log_level: str) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="auto",  # uvloop when installed (a dependency where it builds), else asyncio
        http="auto",  # httptools when installed, else h11
        lifespan="off",
        log_level=log_level,
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=60,
        backlog=4096,
    )


def serve(
    config: MockConfig, *, host: str = "127.0.0.1", port: int = 8090, log_level: str = "info"
) -> None:
    """Serve the simulator until interrupted (one process, one event loop)."""
    import uvicorn

    _install_filter()
    uvicorn.Server(
        _uvicorn_config(MockProvider(config), host=host, port=port, log_level=log_level)
    ).run()


@dataclass
class MockServer:
    """A simulator running in a background thread, with direct access to its state."""

    url: str
    app: MockProvider
    _server: Any
    _thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def requests(self, path: str | None = None) -> list[dict[str, Any]]:
        """Logged requests, oldest first (headers, parsed body, model, fault, status)."""
        return self.app.requests(path)

    def last_request(self, path: str | None = None) -> dict[str, Any]:
        rows = self.app.requests(path)
        if not rows:
            raise AssertionError(f"the mock provider has no request for {path or 'any path'}")
        return rows[-1]

    def reset(self) -> None:
        self.app.reset()

    def set_faults(self, spec: str | None, *, seed: int = 0) -> None:
        """Replace the server-wide rules, e.g. "429:0.1,500:0.05,claude-*@529:1"."""
        self.app.faults.set(parse_fault_spec(spec), seed=seed)

    def add_fault(
        self,
        kind: str | int,
        *,
        model: str = "*",
        probability: float = 1.0,
        times: int | None = None,
        **params: float,
    ) -> None:
        """Add one rule; `times=1` fails only the next matching request."""
        rule = parse_fault_spec(f"{kind}")[0]
        self.app.faults.add(
            FaultRule(
                kind=rule.kind,
                model=model,
                probability=probability,
                params={**rule.params, **{k: float(v) for k, v in params.items()}},
                times=times,
            )
        )

    def clear_faults(self) -> None:
        self.app.faults.clear()

    def set_region(self, region: str | None) -> None:
        self.app.settings.region = region

    def set_latency(self, latency_ms: float) -> None:
        self.app.settings.latency_ms = latency_ms

    def set_context_window(self, tokens: int | None) -> None:
        self.app.settings.context_window = tokens

    def stop(self, timeout: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)


def start_in_thread(
    config: MockConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    timeout: float = 10.0,
) -> MockServer:
    """Start the simulator in a daemon thread and wait until it accepts connections."""
    import uvicorn

    _install_filter()
    app = MockProvider(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(
        _uvicorn_config(app, host=host, port=bound_port, log_level=log_level)
    )  # uvicorn installs no signal handlers outside the main thread
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="mock-provider", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the mock provider did not start within {timeout}s")
        time.sleep(0.005)
    return MockServer(url=f"http://{host}:{bound_port}", app=app, _server=server, _thread=thread)
