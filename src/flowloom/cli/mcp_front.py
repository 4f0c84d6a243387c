"""`flowloom mcp` over stdio opens the connection without the SDK.

An assistant starts the MCP servers it is configured with and waits, before its first
prompt, for each one's opening answers; importing the `mcp` SDK and the CLI takes a
second or more on a loaded machine (2.5 s here), and every agent session paid it. So
this runs first, from the light dispatch (`flowloom/__main__.py`), with the standard
library only:

1. it answers what opens a connection from `flowloom.mcp.handshake`, exactly as the
   SDK server would: `initialize` (protocol up to 2025-11-25); `server/discover` and
   `subscriptions/listen` (2026-07-28, what Claude Code 2.1.3xx sends); the prompt,
   resource and tool lists. Notifications are kept, not answered;
2. at the first request it cannot answer (a tool call, a resource read, a ping, any
   request out of the ordinary), it puts two pipes between the real stdin/stdout and
   the process's fds 0 and 1 and hands the connection on: the SDK server first gets
   what it must have seen (the `initialize`, the notifications, the listen requests),
   then that request and everything after; its answers come back, less those to what
   was already answered here;
3. it returns None, so the normal command line goes on and serves (`flowloom.cli.mcp`).

A session that never calls a FlowLoom tool never loads the SDK: when the client closes
stdin first, this returns 0 and the process ends.

It steps aside (nothing is read) for any option or when the server would refuse to
start (outside a repository without FLOWLOOM_DATABASE): the command line then speaks
for itself.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import threading

from flowloom.mcp import handshake

__all__ = ["main"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_CHUNK = 65536
_DRAIN_WAIT_S = 30.0
_POLL_S = 0.05
_ACK = "notifications/subscriptions/acknowledged"
_SUBSCRIPTION = "io.modelcontextprotocol/subscriptionId"


def _in_repository(directory: str) -> bool:
    while True:
        if os.path.exists(os.path.join(directory, ".git")):
            return True
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent


class _Lines:
    """The client's messages, one line at a time, and what was read past the last."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self.pending = b""

    def next(self) -> bytes | None:
        """The next line with its newline (the last may lack it); None at end of file."""
        while b"\n" not in self.pending:
            chunk = os.read(self._fd, _CHUNK)
            if not chunk:
                line, self.pending = self.pending, b""
                return line or None
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        return line + b"\n"


class _Decisions:
    """The project's decisions as resources, read from the ledger on a thread started
    with the process: the client asks for `resources/list` only after a few round trips
    (Claude Code: discovery, listen, discovery again), and waits for it before its first
    prompt, so the read overlaps them instead of following them."""

    def __init__(self, cwd: str) -> None:
        self._found: list[dict[str, Any]] | None = None
        self._thread = threading.Thread(target=self._read, args=(cwd,), daemon=True)
        self._thread.start()

    def _read(self, cwd: str) -> None:
        from pathlib import Path

        from flowloom.mcp.listing import project_decision_resources

        try:
            self._found = project_decision_resources(Path(cwd))
        except Exception:  # the SDK server opens the ledger again, and says what failed
            self._found = None

    def result(self) -> list[dict[str, Any]] | None:
        """The decisions, or None when they could not be read (the SDK then answers)."""
        self._thread.join()
        return self._found


class _Opening:
    """The connection's opening, answered here; what the SDK must replay if it takes over."""

    def __init__(self, catalog: handshake.Catalog, decisions: _Decisions) -> None:
        self._catalog = catalog
        self._decisions = decisions
        self.era: str | None = None
        self._newest = False  # `initialize` agreed on the version the catalog's lists are of
        self.replay: list[bytes] = []
        self.answered: set[Any] = set()  # ids of replayed requests: the SDK's answer is dropped
        self.acknowledged: set[Any] = set()  # listen ids: the SDK's acknowledgement is dropped

    def answer(self, line: bytes) -> list[dict[str, Any]] | None:
        """What to send back for `line` (possibly nothing); None: the SDK must answer."""
        try:
            message = json.loads(line)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return None
        method, params = message.get("method"), message.get("params")
        if not isinstance(method, str):
            return None  # a response to the server: only the SDK sends requests
        if "id" not in message:
            self.replay.append(line)  # a notification: the SDK will have seen it
            return []
        request_id = message["id"]
        if isinstance(request_id, bool) or not isinstance(request_id, int | str):
            return None
        result = self._result(method, params, request_id, line)
        if result is None:
            return None
        if isinstance(result, list):
            return result
        return [{"jsonrpc": "2.0", "id": request_id, "result": result}]

    def _result(
        self, method: str, params: Any, request_id: Any, line: bytes
    ) -> dict[str, Any] | list[dict[str, Any]] | None:
        if method == "initialize":
            if self.era is not None:
                return None
            self.era = handshake.LEGACY
            self._replayed(request_id, line)
            answer = handshake.initialize_result(params)
            self._newest = answer["protocolVersion"] == handshake.HANDSHAKE_VERSIONS[-1]
            return answer
        if self.era == handshake.LEGACY:
            if self._newest and method in handshake.LIST_METHODS and params in (None, {}):
                return self._list(handshake.LEGACY, method)
            return None
        if method == "subscriptions/listen":
            honored = handshake.listen_filter(params)
            if honored is None:
                return None
            self.era = handshake.MODERN
            self._replayed(request_id, line)
            self.acknowledged.add(request_id)
            return [handshake.listen_acknowledgement(request_id, honored)]
        if method == "server/discover" or method in handshake.LIST_METHODS:
            if not handshake.modern_envelope(params):
                return None
            found = self._list(handshake.MODERN, method)
            if found is not None:
                self.era = handshake.MODERN
            return found
        return None

    def _list(self, era: str, method: str) -> dict[str, Any] | None:
        """The catalog's answer; for `resources/list`, with the project's decisions read
        from the ledger (no SDK; None, so the SDK answers, when that cannot be done)."""
        found = self._catalog.result(era, method)
        if found is None or method != "resources/list":
            return found
        decisions = self._decisions.result()
        if decisions is None:
            return None
        return {**found, "resources": [*found["resources"], *decisions]}

    def _replayed(self, request_id: Any, line: bytes) -> None:
        self.replay.append(line)
        self.answered.add(request_id)

    def muffles(self, line: bytes) -> bool:
        """Whether the SDK's `line` answers what was answered here (dropped, once)."""
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict):
            return False
        request_id = message.get("id")
        if ("result" in message or "error" in message) and _hashable(request_id):
            if request_id in self.answered:
                self.answered.discard(request_id)
                return True
            return False
        if message.get("method") == _ACK:
            params = message.get("params")
            meta = params.get("_meta") if isinstance(params, dict) else None
            subscription = meta.get(_SUBSCRIPTION) if isinstance(meta, dict) else None
            if _hashable(subscription) and subscription in self.acknowledged:
                self.acknowledged.discard(subscription)
                return True
        return False


def _hashable(value: Any) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _send(fd: int, messages: list[dict[str, Any]]) -> None:
    out = b"".join(json.dumps(m, separators=(",", ":")).encode() + b"\n" for m in messages)
    if out:
        _write_all(fd, out)


def _pump_in(source: int, first: bytes, sink: int) -> None:
    """The client's messages to the SDK server, until the client closes its end."""
    try:
        _write_all(sink, first)
        while chunk := os.read(source, _CHUNK):
            _write_all(sink, chunk)
    except OSError:
        pass
    finally:
        os.close(sink)  # the server sees end of file and stops, as with the real stdin


def _pump_out(source: int, sink: int, opening: _Opening, closing: threading.Event) -> None:
    """The SDK server's messages to the client, less its answers to what was answered
    here; once `closing` is set, until nothing more is there to read (the SDK keeps a
    copy of fd 1 open, so end of file never comes)."""
    import select

    pending = b""
    try:
        while True:
            ready, _, _ = select.select([source], [], [], _POLL_S)
            if not ready:
                if closing.is_set():
                    break
                continue
            chunk = os.read(source, _CHUNK)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            out = b"".join(line + b"\n" for line in lines if not opening.muffles(line))
            if out:
                _write_all(sink, out)
        if pending:
            _write_all(sink, pending)
    except OSError:
        pass


def _hand_over(real_in: int, real_out: int, first: bytes, opening: _Opening) -> None:
    """Put the SDK server behind pipes on fds 0 and 1; it starts with `first`."""
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    os.dup2(in_read, 0)
    os.dup2(out_write, 1)
    os.close(in_read)
    os.close(out_write)
    threading.Thread(target=_pump_in, args=(real_in, first, in_write), daemon=True).start()
    closing = threading.Event()
    out = threading.Thread(
        target=_pump_out, args=(out_read, real_out, opening, closing), daemon=True
    )
    out.start()

    def deliver_the_rest() -> None:
        """At exit: everything the server wrote reaches the client before the process ends."""
        import sys

        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        closing.set()  # the server is done writing: the pump empties the pipe and stops
        out.join(_DRAIN_WAIT_S)

    atexit.register(deliver_the_rest)


def main(argv: Sequence[str]) -> int | None:
    """Open the connection; 0 when the client left before needing the SDK, None when
    the command line must go on and serve."""
    if list(argv) not in ([], ["--transport", "stdio"], ["--transport=stdio"]):
        return None
    if not os.environ.get("FLOWLOOM_DATABASE") and not _in_repository(os.getcwd()):
        return None  # the command line refuses to start here, and says why
    real_in, real_out = os.dup(0), os.dup(1)
    decisions = _Decisions(os.getcwd())
    opening = _Opening(handshake.Catalog.load(), decisions)
    lines = _Lines(real_in)
    while True:
        line = lines.next()
        if line is None:
            decisions.result()  # the read ends before the process does
            return 0  # the client closed the connection: nothing needed the SDK
        answers = opening.answer(line)
        if answers is None:
            break
        _send(real_out, answers)
    _hand_over(real_in, real_out, b"".join(opening.replay) + line + lines.pending, opening)
    return None
