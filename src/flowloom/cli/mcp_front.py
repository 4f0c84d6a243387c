"""`flowloom mcp` over stdio answers `initialize` before it loads the SDK.

An assistant (Claude Code) starts the MCP servers it is configured with and waits for
each one's answer to `initialize`; importing the `mcp` SDK and the CLI takes a second
or more on a loaded machine, and every agent session paid it. So this runs first, from
the light dispatch (`flowloom/__main__.py`), with the standard library only:

1. it reads the client's first message; when it is `initialize`, it answers at once
   with what the SDK server would answer (`flowloom.mcp.handshake`);
2. it puts two pipes between the real stdin/stdout and the process's fds 0 and 1, and
   hands the connection on: the client's messages, starting with that `initialize`,
   go to the SDK server, whose answers come back, except its own answer to that
   `initialize` (already given);
3. it returns None, so the normal command line goes on and serves (`flowloom.cli.mcp`).

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

from flowloom.mcp.handshake import initialize_result

__all__ = ["main"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

_CHUNK = 65536
_DRAIN_WAIT_S = 30.0
_POLL_S = 0.05


def _in_repository(directory: str) -> bool:
    while True:
        if os.path.exists(os.path.join(directory, ".git")):
            return True
        parent = os.path.dirname(directory)
        if parent == directory:
            return False
        directory = parent


def _first_line(fd: int) -> bytes:
    """Bytes from `fd` up to and including the first newline (or all, at end of file)."""
    data = b""
    while b"\n" not in data:
        chunk = os.read(fd, _CHUNK)
        if not chunk:
            break
        data += chunk
    return data


def _initialize_id(line: bytes) -> tuple[bool, Any]:
    """Whether `line` is an `initialize` request, and its id."""
    try:
        message = json.loads(line.split(b"\n", 1)[0])
    except ValueError:
        return False, None
    if not isinstance(message, dict) or message.get("method") != "initialize":
        return False, None
    if message.get("jsonrpc") != "2.0" or not isinstance(message.get("id"), int | str):
        return False, None
    return True, message


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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


def _pump_out(source: int, sink: int, answered: Any, closing: threading.Event) -> None:
    """The SDK server's messages to the client, less its answer to the `initialize`
    already answered; once `closing` is set, until nothing more is there to read (the
    SDK keeps a copy of fd 1 open, so end of file never comes)."""
    import select

    pending = b""
    skipping = True
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
            out = b""
            for line in lines:
                if skipping and _answers(line, answered):
                    skipping = False
                    continue
                out += line + b"\n"
            if out:
                _write_all(sink, out)
        if pending:
            _write_all(sink, pending)
    except OSError:
        pass


def _answers(line: bytes, request_id: Any) -> bool:
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return (
        isinstance(message, dict)
        and message.get("id") == request_id
        and ("result" in message or "error" in message)
    )


def main(argv: Sequence[str]) -> int | None:
    """Answer `initialize`, then let the command line serve (None: go on)."""
    if list(argv) not in ([], ["--transport", "stdio"], ["--transport=stdio"]):
        return None
    if not os.environ.get("FLOWLOOM_DATABASE") and not _in_repository(os.getcwd()):
        return None  # the command line refuses to start here, and says why
    real_in, real_out = os.dup(0), os.dup(1)
    first = _first_line(real_in)
    is_initialize, request = _initialize_id(first)
    if is_initialize:
        answer = {"jsonrpc": "2.0", "id": request["id"]}
        answer["result"] = initialize_result(request.get("params"))
        _write_all(real_out, json.dumps(answer, separators=(",", ":")).encode() + b"\n")
    in_read, in_write = os.pipe()
    out_read, out_write = os.pipe()
    os.dup2(in_read, 0)
    os.dup2(out_write, 1)
    os.close(in_read)
    os.close(out_write)
    threading.Thread(target=_pump_in, args=(real_in, first, in_write), daemon=True).start()
    answered = request["id"] if is_initialize else object()
    closing = threading.Event()
    out = threading.Thread(
        target=_pump_out, args=(out_read, real_out, answered, closing), daemon=True
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
    return None
