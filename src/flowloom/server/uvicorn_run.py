"""Running a uvicorn server so that SIGTERM ends in a clean exit.

uvicorn shuts down gracefully on SIGTERM, then raises the signal again; this turns that
into SystemExit(0) rather than death by signal, so the caller's cleanup runs (flushing
the writers, closing the pools) and the exit status says "clean stop".
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["run_until_stopped", "sigterm_exits_cleanly"]


def run_until_stopped(config: Any) -> None:
    """Serve `config` (a uvicorn.Config) until it is stopped."""
    import uvicorn

    with sigterm_exits_cleanly():
        uvicorn.Server(config).run()


@contextlib.contextmanager
def sigterm_exits_cleanly() -> Iterator[None]:
    """Around a uvicorn server however it is run: SIGTERM becomes SystemExit(0)."""
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
