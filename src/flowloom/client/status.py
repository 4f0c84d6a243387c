"""What `flowloom status` should say about the server link: queued events, errors, alarms.

Silent capture failure is the complaint FlowLoom answers; with a server, "silent" means
events piling up in the outbox, a key the server refuses, or a history alarm. This reads
only local state (the spool and the trust file), so status stays fast and offline.
"""

from __future__ import annotations

import os
import time

from flowloom.client.trust import ServerTrust
from flowloom.events import outbox

__all__ = ["STALE_OUTBOX_S", "server_warnings"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flowloom.config import Settings

STALE_OUTBOX_S = 600.0
"""An event queued longer than this means delivery is not working."""


def _oldest_age_s(waiting: list[tuple[str, str]]) -> float | None:
    if not waiting:
        return None
    name, directory = waiting[0]
    try:
        return max(0.0, time.time() - os.path.getmtime(os.path.join(directory, name)))
    except OSError:
        return None


def server_warnings(settings: Settings, state_dir: str) -> list[str]:
    """Warning lines for the server link; none when no server is configured or all is well."""
    if settings.server_url is None:
        return []
    warnings: list[str] = []
    spool_dir = os.path.join(state_dir, "spool")
    waiting = sorted((n, d) for d in outbox.outbox_dirs(spool_dir) for n in outbox.waiting(d))
    state = ServerTrust(state_dir, settings.server_url, settings.project).load()
    if state.alarm is not None:
        warnings.append(
            f"the server {settings.server_url} rewrote history: {state.alarm}; "
            "nothing is sent to it (see docs/sync.md)"
        )
    age = _oldest_age_s(waiting)
    if age is not None and age > STALE_OUTBOX_S:
        why = f": {state.last_error}" if state.last_error else ""
        warnings.append(
            f"{len(waiting)} spool file(s) have waited {int(age // 60)} min for "
            f"{settings.server_url}{why}; run 'flowloom sync'"
        )
    return warnings
