"""Why is this line here: from a line of code to the decision, prompt and reply behind it.

``git blame --porcelain -L N,N`` names the commit that last changed the line. The
commit leads to its decision through, in order: its ``FlowLoom-Decision`` trailer; the
latest ``commit.link`` event whose subject is the commit; a ``commit.link`` whose
``patch_id`` ref equals the commit's ``git patch-id --stable`` (the link survives a
rebase or cherry-pick that lost the trailer). The decision record names the prompt and
the reply (``prompt_entry``, ``response_entry``); each of those entries and the record
itself is proved against the latest signed checkpoint and its body checked against its
commitment.

Nothing here scans the whole ledger per question. The CLI keeps `LinkIndex`, a small
look-up cache in its own SQLite file beside the ledger, brought up to date from only the
entries appended since the last question; without it, ``commit.link`` and
``decision.*`` entries are read by kind and only envelopes whose bytes name the commit,
patch id or decision are parsed. Two or three git processes per question.

An agent's decision is recorded when its first file is written and gains the turn's
reply and the reasoning drawn from it by a ``decision.amend`` when the turn ends; the
answer shows the decision with its amendments merged, and proves each amendment too.
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowloom.decisions.records import Decision, DecisionBook, check_decision_id
from flowloom.errors import FlowLoomError, InputError, NotFoundError
from flowloom.ledger import merkle
from flowloom.ledger.body import digest_of
from flowloom.ledger.canonical import canonicalize
from flowloom.ledger.event import Event
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import NOBODY, Trust
from flowloom.repo.git import GitRepo
from flowloom.repo.trailers import Links

__all__ = [
    "BlameLine",
    "EntryCheck",
    "LinkIndex",
    "WhyAnswer",
    "blame_line",
    "commit_decisions",
    "explain",
    "index_path",
    "patch_id",
]

_ZERO = re.compile(r"0{40}(?:0{24})?")
_EXCERPT = 400


def index_path(git_common_dir: Path) -> Path:
    """Where `flowloom why` keeps its look-up cache for a repository."""
    return git_common_dir / "flowloom" / "why-index.db"


@dataclass(frozen=True)
class BlameLine:
    """What git blame says about one line."""

    commit: str
    path: str  # the path in that commit (git follows renames)
    line: int
    author: str
    author_time: int
    summary: str
    boundary: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "path": self.path,
            "line": self.line,
            "author": self.author,
            "author_time": self.author_time,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class EntryCheck:
    """One ledger entry behind the answer, proved against the latest checkpoint."""

    role: str  # decision | amendment | prompt | response
    index: int
    kind: str = ""
    excerpt: str | None = None
    body: str = "none"  # none | ok | unavailable | mismatch
    proved: bool = False
    checkpoint_size: int | None = None
    problems: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return self.proved and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "index": self.index,
            "kind": self.kind,
            "excerpt": self.excerpt,
            "body": self.body,
            "proved": self.proved,
            "checkpoint_size": self.checkpoint_size,
            "verified": self.verified,
            "problems": list(self.problems),
        }


@dataclass(frozen=True)
class WhyAnswer:
    """The line, its commit, how the commit links to its decision, and the evidence."""

    file: str
    line: int
    blame: BlameLine
    decision: Decision
    linked_by: str  # trailer | commit.link | patch-id
    link_entry: int | None
    entries: tuple[EntryCheck, ...] = field(default=())

    @property
    def verified(self) -> bool:
        return all(e.verified for e in self.entries)

    def entry(self, role: str) -> EntryCheck | None:
        return next((e for e in self.entries if e.role == role), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "blame": self.blame.to_json(),
            "linked_by": self.linked_by,
            "link_entry": self.link_entry,
            "decision": self.decision.to_json(),
            "entries": [e.to_json() for e in self.entries],
            "verified": self.verified,
        }


# -- git -----------------------------------------------------------------------------------


def blame_line(cwd: Path, path: str, line: int) -> BlameLine:
    """The commit that last changed line `line` of `path` (relative to `cwd`)."""
    if line < 1:
        raise InputError(f"line numbers start at 1, not {line}")
    out = GitRepo(cwd).run("blame", "--porcelain", "-L", f"{line},{line}", "--", path)
    lines = out.split("\n")
    header = lines[0].split()
    if len(header) < 3:
        raise InputError(f"git blame gave no answer for {path}:{line}")
    fields: dict[str, str] = {}
    boundary = False
    for text in lines[1:]:
        if text.startswith("\t"):
            break
        key, _, value = text.partition(" ")
        fields[key] = value
        boundary = boundary or key == "boundary"
    return BlameLine(
        commit=header[0],
        path=fields.get("filename", path),
        line=int(header[2]),
        author=fields.get("author", ""),
        author_time=int(fields.get("author-time", "0") or 0),
        summary=fields.get("summary", ""),
        boundary=boundary,
    )


def commit_decisions(cwd: Path, commit: str) -> list[str]:
    """Decision ids in the commit message's FlowLoom-Decision trailers, in order."""
    return list(dict.fromkeys(Links.of(GitRepo(cwd).message(commit)).valid_decisions))


def patch_id(cwd: Path, commit: str) -> str | None:
    """``git patch-id --stable`` of the commit's change (None for an empty or merge commit)."""
    return GitRepo(cwd).patch_id(commit)


# -- the ledger ----------------------------------------------------------------------------


def _field_needle(name: str, value: str) -> bytes:
    return canonicalize(name) + b":" + canonicalize(value)


def _link_matches(event: Event, name: str, value: str) -> bool:
    actual = event.subject if name == "subject" else event.refs.get(name)
    return event.kind == "commit.link" and actual == value


def _latest_link(ledger: Ledger, name: str, value: str) -> tuple[int, Event] | None:
    """The latest commit.link whose `name` (subject, or a ref) is `value`, by scanning."""
    needle = _field_needle(name, value)
    found: tuple[int, Event] | None = None
    for entry in ledger.store.entries(ledger.log, kind="commit.link"):
        if needle in entry.envelope:
            event = Event.parse(entry.envelope)
            if _link_matches(event, name, value):
                found = (entry.index, event)
    return found


_INDEX_SCHEMA = """
CREATE TABLE IF NOT EXISTS covered (log TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB);
CREATE TABLE IF NOT EXISTS decisions (
    log TEXT NOT NULL, id TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (log, id));
CREATE TABLE IF NOT EXISTS approvals (
    log TEXT NOT NULL, decision TEXT NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (log, decision, idx));
CREATE TABLE IF NOT EXISTS amendments (
    log TEXT NOT NULL, decision TEXT NOT NULL, idx INTEGER NOT NULL,
    PRIMARY KEY (log, decision, idx));
CREATE TABLE IF NOT EXISTS links (
    log TEXT NOT NULL, key TEXT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (log, key));
"""
_INDEXED_KINDS = ("decision.record", "decision.amend", "decision.approve", "commit.link")


class LinkIndex:
    """A look-up cache of decision records, approvals and commit links, beside the ledger.

    Data model (an SQLite file of its own, ``.git/flowloom/why-index.db``; never the
    ledger's append-only tables): ``covered(log, size, root)`` says how much of the log
    the rows describe and the tree root at that size; ``decisions(log, id, idx)``,
    ``amendments(log, decision, idx)``, ``approvals(log, decision, idx)`` and
    ``links(log, key, idx)`` map a decision id, and
    a commit (``c:<sha>``) or patch id (``p:<id>``) to the entry index of its latest
    ``commit.link``. When the log grows only the new entries are read; when the root at
    the covered size no longer matches (a rebuilt or rolled-back ledger) the rows are
    rebuilt. Rows only point: every entry they name is re-read and checked before use,
    so a stale or edited cache costs a scan, never a wrong answer.
    """

    def __init__(self, path: Path, ledger: Ledger) -> None:
        self.path = path
        self.ledger = ledger
        self.log = ledger.log
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=10)
        self._conn.execute("PRAGMA synchronous = OFF")  # a cache: rebuilt when lost
        self._conn.executescript(_INDEX_SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def refresh(self) -> None:
        """Bring the rows up to the ledger's current size."""
        ledger, conn = self.ledger, self._conn
        size = ledger.size()
        row = conn.execute("SELECT size, root FROM covered WHERE log = ?", (self.log,)).fetchone()
        start = 0
        if row is not None:
            covered, root = int(row[0]), row[1]
            if covered == size and self._root(size) == root:
                return
            if covered < size and self._root(covered) == root:
                start = covered
        entries: Iterable[tuple[int, bytes, str]]
        if start == 0:
            entries = sorted(
                (e.index, e.envelope, e.kind)
                for kind in _INDEXED_KINDS
                for e in ledger.store.entries(self.log, 0, size, kind=kind)
            )
        else:
            entries = (
                (e.index, e.envelope, e.kind)
                for e in ledger.store.entries(self.log, start, size)
                if e.kind in _INDEXED_KINDS
            )
        decisions: list[tuple[str, str, int]] = []
        amendments: list[tuple[str, str, int]] = []
        approvals: list[tuple[str, str, int]] = []
        links: dict[str, int] = {}
        for index, envelope, kind in entries:
            try:
                data = json.loads(envelope)
                subject = data.get("subject")
                refs = data.get("refs") or {}
            except (ValueError, AttributeError):
                continue  # not for the cache to judge; verification names it
            if not isinstance(subject, str) or not isinstance(refs, dict):
                continue
            if kind == "decision.record":
                decisions.append((self.log, subject, index))
            elif kind == "decision.amend":
                amendments.append((self.log, subject, index))
            elif kind == "decision.approve":
                approvals.append((self.log, subject, index))
            else:
                links["c:" + subject] = index
                if isinstance(refs.get("patch_id"), str):
                    links["p:" + refs["patch_id"]] = index
        conn.execute("BEGIN IMMEDIATE")
        try:
            if start == 0:
                for table in ("decisions", "amendments", "approvals", "links"):
                    conn.execute(f"DELETE FROM {table} WHERE log = ?", (self.log,))
            # The first record of an id is the decision: later ones do not replace it.
            conn.executemany("INSERT OR IGNORE INTO decisions VALUES (?, ?, ?)", decisions)
            conn.executemany("INSERT OR IGNORE INTO amendments VALUES (?, ?, ?)", amendments)
            conn.executemany("INSERT OR IGNORE INTO approvals VALUES (?, ?, ?)", approvals)
            conn.executemany(
                "INSERT OR REPLACE INTO links VALUES (?, ?, ?)",
                [(self.log, key, index) for key, index in links.items()],
            )
            conn.execute(
                "INSERT OR REPLACE INTO covered VALUES (?, ?, ?)",
                (self.log, size, self._root(size)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _root(self, size: int) -> bytes | None:
        try:
            return merkle.root_at(size, self.ledger.lookup())
        except FlowLoomError:
            return None

    def decision(self, decision_id: str) -> tuple[int, list[int], list[int]] | None:
        """(record entry, approval entries, amendment entries) of a decision id."""
        row = self._conn.execute(
            "SELECT idx FROM decisions WHERE log = ? AND id = ?", (self.log, decision_id)
        ).fetchone()
        if row is None:
            return None
        approvals = self._conn.execute(
            "SELECT idx FROM approvals WHERE log = ? AND decision = ?", (self.log, decision_id)
        ).fetchall()
        amendments = self._conn.execute(
            "SELECT idx FROM amendments WHERE log = ? AND decision = ?", (self.log, decision_id)
        ).fetchall()
        return int(row[0]), [int(a[0]) for a in approvals], [int(a[0]) for a in amendments]

    def link(self, key: str) -> int | None:
        row = self._conn.execute(
            "SELECT idx FROM links WHERE log = ? AND key = ?", (self.log, key)
        ).fetchone()
        return None if row is None else int(row[0])


class _Finder:
    """Decisions and links, through the index when there is one, else by scanning."""

    def __init__(self, ledger: Ledger, index_path: Path | None, trust: Trust) -> None:
        self.ledger = ledger
        self.book = DecisionBook(ledger, trust=trust)
        self.index: LinkIndex | None = None
        if index_path is not None:
            try:
                self.index = LinkIndex(index_path, ledger)
                self.index.refresh()
            except (OSError, sqlite3.Error):
                # A broken or unwritable cache must not stop the answer: scan instead.
                self.close()

    def close(self) -> None:
        if self.index is not None:
            with contextlib.suppress(sqlite3.Error):
                self.index.close()
            self.index = None

    def decision(self, decision_id: str) -> Decision | None:
        if self.index is not None:
            try:
                found = self.index.decision(decision_id)
            except sqlite3.Error:
                found = None
            if found is not None:
                decision = self.book.at(found[0], found[1], found[2])
                if decision is not None and decision.id == decision_id:
                    return decision
        try:
            return self.book.get(decision_id)
        except NotFoundError:
            return None

    def link(self, name: str, value: str) -> tuple[int, Event] | None:
        if self.index is not None:
            key = ("c:" if name == "subject" else "p:") + value
            try:
                index = self.index.link(key)
            except sqlite3.Error:
                index = None
            if index is None:
                return None  # the index covers the whole log
            stored = self.ledger.store.entry(self.ledger.log, index)
            if stored is not None:
                event = Event.parse(stored.envelope)
                if _link_matches(event, name, value):
                    return index, event
        return _latest_link(self.ledger, name, value)


def _content_text(content: Any) -> str:
    """The text of a message's content in any provider's shape (a string, text blocks,
    Gemini parts), tool calls and images left out."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        return _content_text(content.get("parts") or content.get("content"))
    if isinstance(content, list):
        texts = (_content_text(part) for part in content if isinstance(part, str | dict))
        return "\n\n".join(t for t in texts if t)
    return ""


def _typed_text(content: Any) -> str:
    """What a person typed in a user turn: its text parts, not the tool results in it."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return "\n\n".join(
        str(part["text"])
        for part in parts
        if isinstance(part, dict)
        and isinstance(part.get("text"), str)
        and part.get("type", "text") in ("text", "input_text")
    )


def _exchange_text(plain: bytes, role: str) -> str | None:
    """From a ``gateway.exchange`` body (``{"request", "response"}``): the last user message
    of the request (role prompt) or the model's reply (role response); None when the body
    has no such text (a truncated or unknown shape: the raw body is excerpted instead)."""
    try:
        data = json.loads(plain)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if role == "prompt":
        request = data.get("request")
        if not isinstance(request, dict):
            return None
        turns = request.get("messages") or request.get("contents") or request.get("input")
        if isinstance(turns, str):
            return turns
        for turn in reversed(turns if isinstance(turns, list) else []):
            if isinstance(turn, dict) and turn.get("role") == "user":
                text = _typed_text(turn.get("content") or turn.get("parts"))
                if text:  # else a turn of tool results only: the person spoke earlier
                    return text
        return None
    response = data.get("response")
    if not isinstance(response, dict):
        return None
    choices, candidates = response.get("choices"), response.get("candidates")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        found = _content_text((choices[0].get("message") or {}).get("content"))
    elif isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        found = _content_text(candidates[0].get("content"))
    elif isinstance(response.get("output"), list):
        found = _content_text([o for o in response["output"] if isinstance(o, dict)])
    else:
        found = _content_text(response.get("content"))
    return found or None


def _check(ledger: Ledger, role: str, index: int, kinds: tuple[str, ...]) -> EntryCheck:
    from flowloom.ledger.receipt import verify_receipt  # needs OpenSSL: only when proving

    stored = ledger.store.entry(ledger.log, index)
    if stored is None:
        return EntryCheck(role, index, problems=(f"entry {index} is not in the log",))
    problems: list[str] = []
    if stored.kind not in kinds:
        problems.append(f"entry {index} is a {stored.kind!r} entry, not {' or '.join(kinds)}")
    excerpt: str | None = None
    body_state = "none"
    try:
        event = Event.parse(stored.envelope)
    except FlowLoomError as exc:
        event = None
        problems.append(f"entry {index} is not a valid event: {exc.message}")
    if event is not None and event.body is not None:
        held = ledger.store.body(event.body)
        try:
            plain = ledger.read_body(event.body)
        except FlowLoomError:
            plain = None
        if held is None or plain is None:
            body_state = "unavailable"
        elif digest_of(held.salt, plain) != event.body:
            body_state = "mismatch"
            problems.append(f"entry {index}'s body does not match its commitment")
        else:
            body_state = "ok"
        if plain is not None:
            said = _exchange_text(plain, role) if stored.kind == "gateway.exchange" else None
            text = " ".join((said or plain.decode("utf-8", "replace")).split())
            excerpt = text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"
    proved = False
    size: int | None = None
    try:
        receipt = ledger.prove(index)
        size = verify_receipt(receipt, merkle.leaf_hash(stored.envelope), ledger.verifier).size
        proved = True
    except FlowLoomError as exc:
        problems.append(f"entry {index} does not verify: {exc.message}")
    return EntryCheck(role, index, stored.kind, excerpt, body_state, proved, size, tuple(problems))


def explain(
    ledger: Ledger,
    cwd: Path,
    path: str,
    line: int,
    *,
    index_path: Path | None = None,
    trust: Trust = NOBODY,
) -> WhyAnswer:
    """Answer "why is line `line` of `path` here?" from git and the ledger.

    `index_path` names the look-up cache (`LinkIndex`) to use and keep current; without
    it the ledger is read by kind on every question. `trust` decides which approvals
    are shown as proven.
    """
    blame = blame_line(cwd, path, line)
    if _ZERO.fullmatch(blame.commit):
        raise NotFoundError(f"{path}:{line} is not committed yet, so no decision is linked to it")
    named = commit_decisions(cwd, blame.commit)
    finder = _Finder(ledger, index_path, trust)
    try:
        decision, linked_by, link_entry = _find(finder, cwd, blame, named)
    finally:
        finder.close()
    if decision is None:
        if named:
            raise NotFoundError(
                f"commit {blame.commit[:12]} names {', '.join(named)}, which this log does not "
                "hold",
                hint="the decision may have been recorded in another clone's ledger",
            )
        raise NotFoundError(
            f"no decision is linked to commit {blame.commit[:12]} ({blame.summary!r}), which "
            f"last changed {path}:{line}",
            hint="commits made with FlowLoom's hooks carry a FlowLoom-Decision trailer",
        )
    checks = [_check(ledger, "decision", decision.entry or 0, ("decision.record",))]
    checks += [_check(ledger, "amendment", at, ("decision.amend",)) for at in decision.amendments]
    if decision.prompt_entry is not None:
        checks.append(_check(ledger, "prompt", decision.prompt_entry, DecisionBook.PROMPT_KINDS))
    if decision.response_entry is not None:
        checks.append(
            _check(ledger, "response", decision.response_entry, DecisionBook.RESPONSE_KINDS)
        )
    return WhyAnswer(path, line, blame, decision, linked_by, link_entry, tuple(checks))


def _find(
    finder: _Finder, cwd: Path, blame: BlameLine, named: list[str]
) -> tuple[Decision | None, str, int | None]:
    """(decision, how it was linked, the commit.link entry) for the blamed commit."""
    for decision_id in named:
        decision = finder.decision(check_decision_id(decision_id))
        if decision is not None:
            return decision, "trailer", None
    linked_by = "commit.link"
    link = finder.link("subject", blame.commit)
    if link is None:
        linked_by = "patch-id"
        pid = patch_id(cwd, blame.commit)
        link = finder.link("patch_id", pid) if pid else None
    if link is None:
        return None, "", None
    target = link[1].refs.get("decision")
    if not isinstance(target, str) or not target:
        raise NotFoundError(
            f"commit {blame.commit[:12]} is linked (entry {link[0]}) but to no decision",
            hint="record one with 'flowloom decide'",
        )
    decision = finder.decision(check_decision_id(target))
    if decision is None:
        raise NotFoundError(
            f"commit {blame.commit[:12]} is linked (entry {link[0]}) to {target}, which this "
            "log does not hold"
        )
    return decision, linked_by, link[0]
