"""The web's why view of a file, from the ledger alone (the server holds no work tree).

The server cannot run ``git blame``, so it answers from what the ledger recorded about
the file: every ``artifact.write`` whose subject is the path (its body is the unified
diff the assistant applied), the decision each write belongs to, and the decisions
that name the file. When the recorded writes start with the file's creation, replaying
their diffs rebuilds the file as the assistants left it, each line annotated with the
write — and so the decision — that last changed it. Edits made outside an assistant
are not in the ledger, so the rebuilt text can differ from the repository; the page
says so, and ``flowloom why FILE:LINE`` in a clone gives the git-exact answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from flowloom.decisions.records import Decision
from flowloom.ledger.event import Event
from flowloom.ledger.log import Ledger

__all__ = ["AnnotatedLine", "FileWhy", "Write", "apply_diff", "file_why"]

_LINK_ENTRY = re.compile(rb'"entry":(\d+)')
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_MAX_WRITES = 500


@dataclass(frozen=True)
class Write:
    index: int
    ts: str
    actor: str
    change: str
    session: str | None
    decision: str | None
    added: tuple[str, ...]


@dataclass(frozen=True)
class AnnotatedLine:
    number: int
    text: str
    write: int | None
    """The artifact.write entry that last changed the line (None: not known)."""
    decision: str | None
    first_of_run: bool


@dataclass(frozen=True)
class FileWhy:
    path: str
    writes: tuple[Write, ...]
    decisions: tuple[Decision, ...]
    lines: tuple[AnnotatedLine, ...] | None
    """The file rebuilt from the recorded diffs; None when they cannot rebuild it."""
    why_not: str


class DiffError(ValueError):
    """A recorded diff does not apply to the text rebuilt so far."""


def apply_diff(
    lines: list[tuple[str, int | None]], diff: str, origin: int
) -> list[tuple[str, int | None]]:
    """Apply a unified diff to `lines` ((text, origin) pairs); added lines get `origin`."""
    result: list[tuple[str, int | None]] = []
    position = 0  # next line of `lines` not yet copied
    hunk_lines: list[str] = []
    hunks: list[tuple[int, list[str]]] = []
    for raw in diff.splitlines():
        match = _HUNK.match(raw)
        if match:
            hunk_lines = []
            hunks.append((int(match.group(1)), hunk_lines))
        elif hunks and raw[:1] in (" ", "+", "-"):
            hunk_lines.append(raw)
        elif hunks and raw == "":
            hunk_lines.append(" ")
    if not hunks:
        raise DiffError("no hunks")
    for old_start, body in hunks:
        first = max(old_start - 1, 0) if old_start else 0
        if first < position or first > len(lines):
            raise DiffError("hunk out of order")
        result.extend(lines[position:first])
        position = first
        for line in body:
            tag, text = line[:1], line[1:]
            if tag == "+":
                result.append((text, origin))
                continue
            if position >= len(lines) or lines[position][0] != text:
                raise DiffError("context does not match")
            if tag == " ":
                result.append(lines[position])
            position += 1
    result.extend(lines[position:])
    return result


def _decision_for(
    write: Event, index: int, decisions: list[Decision], links: dict[int, str]
) -> str | None:
    if index in links:
        return links[index]
    path = write.subject or ""
    candidates = [
        d for d in decisions if path in d.files and write.session and d.session == write.session
    ]
    return candidates[0].id if candidates else None


def _needle(path: str) -> bytes:
    return b'"subject":' + json.dumps(path, ensure_ascii=False).encode()


def file_why(ledger: Ledger, path: str) -> FileWhy:
    """What the ledger knows about `path`: its writes, decisions and rebuilt lines."""
    needle = _needle(path)
    file_needle = json.dumps(path, ensure_ascii=False).encode()
    decisions: list[Decision] = []
    for entry in ledger.store.entries(ledger.log, kind="decision.record"):
        if file_needle in entry.envelope:
            found = Decision.from_envelope(entry.index, entry.envelope)
            if path in found.files:
                decisions.append(found)
    events: list[tuple[int, Event]] = []
    for entry in ledger.store.entries(ledger.log, kind="artifact.write"):
        if needle in entry.envelope:
            event = Event.parse(entry.envelope)
            if event.subject == path:
                events.append((entry.index, event))
    events = events[-_MAX_WRITES:]
    wanted = {index for index, _ in events}
    links: dict[int, str] = {}
    if wanted:
        for entry in ledger.store.entries(ledger.log, kind="commit.link"):
            at = _LINK_ENTRY.search(entry.envelope)
            if at is None or int(at.group(1)) not in wanted:
                continue
            link = Event.parse(entry.envelope)
            target, index = link.refs.get("decision"), link.refs.get("entry")
            if isinstance(index, int) and index in wanted and isinstance(target, str):
                links[index] = target
    writes: list[Write] = []
    diffs: list[tuple[int, str, str]] = []
    for index, event in events:
        body = ledger.read_body(event.body) if event.body else None
        diff = body.decode("utf-8", "replace") if body is not None else ""
        change = str(event.refs.get("change") or "")
        added = tuple(
            line[1:]
            for line in diff.splitlines()
            if line.startswith("+") and not line.startswith("+++")
        )
        writes.append(
            Write(
                index=index,
                ts=event.ts,
                actor=event.actor.name or event.actor.id,
                change=change,
                session=event.session,
                decision=_decision_for(event, index, decisions, links),
                added=added,
            )
        )
        diffs.append((index, change, diff))
    lines, why_not = _rebuild(path, writes, diffs)
    return FileWhy(path, tuple(writes), tuple(decisions), lines, why_not)


def _rebuild(
    path: str, writes: list[Write], diffs: list[tuple[int, str, str]]
) -> tuple[tuple[AnnotatedLine, ...] | None, str]:
    if not diffs:
        return None, f"no assistant wrote {path} in this log"
    creation = diffs[0][1] == "create" or "@@ -0,0 " in diffs[0][2]
    if not creation:
        return (
            None,
            "the first recorded write is not the file's creation: its earlier text is unknown",
        )
    decision_of = {w.index: w.decision for w in writes}
    lines: list[tuple[str, int | None]] = []
    for index, change, diff in diffs:
        if change == "delete":
            lines = []
            continue
        if not diff:
            return None, f"the diff of entry {index} is erased or not stored"
        try:
            lines = apply_diff(lines, diff, index)
        except DiffError:
            return (
                None,
                f"the diff of entry {index} does not apply (the file was edited by other means)",
            )
    annotated = []
    previous: int | None = -1
    for number, (text, origin) in enumerate(lines, start=1):
        annotated.append(
            AnnotatedLine(
                number,
                text,
                origin,
                decision_of.get(origin) if origin is not None else None,
                origin != previous,
            )
        )
        previous = origin
    return tuple(annotated), ""
