"""Server-sent events: incremental framing, parsing and serialisation.

The relay path never re-serialises an event it does not have to: `SseSplitter` cuts the
upstream byte stream at event boundaries and hands back each event's exact bytes, so the
caller receives what the provider sent, one event per write, in order. Parsing into
`SseEvent` happens only where needed (translation, reassembly off the hot path).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# SSE ends a line with CRLF, CR or LF only; str.splitlines would also split on U+2028 etc.
_LINE_BREAK = re.compile(r"\r\n|\r|\n")

__all__ = ["SseEvent", "SseSplitter", "iter_events", "parse_event", "serialize"]


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: its `event:` name, joined `data:` lines and `id:`."""

    event: str | None
    data: str
    id: str | None = None


def _boundary(buf: bytes | bytearray, start: int) -> tuple[int, int]:
    """(end of the event, start of the next) for the first blank line at or after `start`."""
    best = -1
    width = 0
    for sep in (b"\n\n", b"\r\n\r\n", b"\r\r"):
        at = buf.find(sep, start)
        if at != -1 and (best == -1 or at < best):
            best, width = at, len(sep)
    if best == -1:
        return -1, -1
    return best, best + width


class SseSplitter:
    """Cuts a byte stream into whole SSE events, keeping each event's exact bytes.

    `feed(chunk)` returns the complete events the chunk finished (each with its
    terminating blank line); a partial event waits for the next chunk. Bounded: an event
    larger than `max_event_bytes` raises ValueError rather than growing without end.
    """

    __slots__ = ("_buf", "_max")

    def __init__(self, max_event_bytes: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._max = max_event_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        buf = self._buf
        if not buf and chunk.endswith(b"\n\n") and chunk.count(b"\n\n") == 1 and b"\r" not in chunk:
            return [chunk]  # the common case: one whole event per chunk
        buf += chunk
        out: list[bytes] = []
        start = 0
        while True:
            end, nxt = _boundary(buf, start)
            if end == -1:
                break
            out.append(bytes(buf[start:nxt]))
            start = nxt
        if start:
            del buf[:start]
        if len(buf) > self._max:
            raise ValueError(f"a server-sent event exceeds {self._max} bytes")
        return out

    def rest(self) -> bytes:
        """Bytes of an unfinished event at the end of the stream (normally empty)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest


def parse_event(raw: bytes | str) -> SseEvent | None:
    """The event in `raw` (one event's bytes); None for a comment-only or empty block."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    event: str | None = None
    ident: str | None = None
    data: list[str] = []
    seen_data = False
    for line in _LINE_BREAK.split(text):
        if not line or line.startswith(":"):
            continue
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
            seen_data = True
        elif name == "event":
            event = value
        elif name == "id":
            ident = value
    if not seen_data and event is None:
        return None
    return SseEvent(event=event, data="\n".join(data), id=ident)


def iter_events(raw_events: Iterable[bytes]) -> Iterator[SseEvent]:
    """Parsed events of a sequence of raw event blocks, skipping comments."""
    for raw in raw_events:
        parsed = parse_event(raw)
        if parsed is not None:
            yield parsed


def serialize(event: SseEvent) -> bytes:
    """`event` as SSE bytes, terminated by a blank line."""
    parts: list[str] = []
    if event.event is not None:
        parts.append(f"event: {event.event}\n")
    if event.id is not None:
        parts.append(f"id: {event.id}\n")
    for line in event.data.split("\n"):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()
