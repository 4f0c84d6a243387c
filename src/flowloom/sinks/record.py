"""Recording from a command when a server is configured: outbox first, then send now.

`flowloom record` (and any command that records for the user) must not lose an event
because the server is down, and must not append it twice because an answer was lost. So
the event goes into the outbox (the spool, fsynced) pinned to its project, and the
outbox is flushed at once under the spool lock; the server's index comes back from the
journal. When the server cannot be reached the event simply stays queued: the next hook
run, drainer or `flowloom sync` sends it, in order.
"""

from __future__ import annotations

from flowloom.client.http import ServerFailedError, ServerUnreachableError
from flowloom.client.link import ServerLink
from flowloom.events import outbox as spool
from flowloom.sinks.server import outbox_depth, send_outbox

__all__ = ["Recorded", "record_via_server"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from flowloom.errors import FlowLoomError

_LOCK_WAIT_S = 10.0


class Recorded:
    """The server indices of the events (None: still queued) and why they wait, if so."""

    __slots__ = ("indices", "refused", "waiting", "why")

    def __init__(
        self,
        indices: list[int | None],
        waiting: int,
        why: FlowLoomError | None,
        refused: list[str] | None = None,
    ):
        self.indices = indices
        self.waiting = waiting
        self.why = why
        self.refused = refused or []
        """Why the server refused events of this flush (each replaced by a capture.error)."""

    @property
    def queued(self) -> bool:
        return any(index is None for index in self.indices)


def record_via_server(
    link: ServerLink,
    events: Sequence[dict[str, Any]],
    agent: str,
    *,
    project: str | None = None,
    created: str,
    lock_held: bool = False,
) -> Recorded:
    """Spool `events` (spool shape, already redacted) for `project`, then flush.

    `lock_held`: the caller holds the spool lock already (an auto-commit).
    Returns the indices once the server acked them. A server that is down or failing
    leaves them queued (`Recorded.queued`, `why`); any other failure — a refused key,
    a missing project, a history alarm — is raised after the events are safely queued.
    """
    written = spool.write_durably(
        link.spool_dir, agent, list(events), created, project=project or link.project
    )
    why: FlowLoomError | None = None
    refused: list[str] = []

    def observe(line: str) -> None:
        if line.startswith(("the server refused", "not synced:")):
            refused.append(line)
        if link.observer is not None:
            link.observer(line)

    if lock_held:
        why = send_outbox(link, observer=observe).error
    else:
        with spool.SpoolLock(link.spool_dir, wait_s=_LOCK_WAIT_S) as lock:
            if lock.acquired:
                report = send_outbox(link, observer=observe)
                why = report.error
    indices = [
        spool.recorded_index(written.directory, written.name, written.offset + i)
        for i in range(len(events))
    ]
    waiting = outbox_depth(link)
    transient = isinstance(why, ServerUnreachableError | ServerFailedError)
    if why is not None and not transient and any(index is None for index in indices):
        why.message = (
            f"{why.message}; the event is kept in the outbox and "
            "'flowloom sync' sends it once this is fixed"
        )
        why.args = (why.message,)
        raise why
    return Recorded(indices, waiting, why, refused)
