"""A server's own LDAP sync schedule: `LdapDirectory.sync` every few minutes, in a thread.

Sessions and keys issued before someone left the directory are cut off by a sync
(flowloom.auth.ldap says why not per request); a server runs it by itself so that
nobody has to remember a cron job, and a failed run (the directory server down) is
logged and retried at the next tick, never fatal to the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

__all__ = ["PeriodicSync"]

_log = logging.getLogger(__name__)


class PeriodicSync:
    """Calls `run` every `interval_s` seconds until `close`."""

    def __init__(self, run: Callable[[], object], interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("the sync interval must be positive")
        self._run = run
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flowloom-ldap-sync", daemon=True)

    def start(self) -> PeriodicSync:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._run()
            except Exception:  # the next tick tries again; the server goes on
                _log.exception("LDAP sync failed; retrying in %s s", self._interval)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=60)
