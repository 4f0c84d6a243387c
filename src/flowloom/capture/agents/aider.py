"""Aider: import its chat history (`.aider.chat.history.md`) as events.

Aider has no hooks (and skips git hooks by default), so its conversations are imported
after the fact with `flowloom import aider [PATH]`. The history file is Markdown that
Aider appends to:

- ``# aider chat started at 2024-05-01 10:00:00`` opens a session → session.start
  (Aider's start-up notes, the ``>`` lines before the first prompt, are its body; the
  model named there goes into refs);
- ``#### `` lines are what the user typed (one prompt may span several) → agent.prompt;
- ``>`` lines are Aider's tool output (applied edits, commits, lint) → agent.tool;
- plain lines after a prompt are the assistant's reply → agent.response.

Aider commits each edit itself (``> Commit 1a2b3c4 <message>``), skipping git hooks, so
its commits carry no FlowLoom trailer. For each exchange whose edits Aider committed, the
import records the decision drawn from the prompt and reply
(`flowloom.decisions.records.DecisionBook.from_exchange`: options, choice, rationale)
and a ``commit.link`` per commit present in the repository (`link_commits`), so `flowloom
why` shows prompt, reply and reasoning for Aider's lines too.

Importing is idempotent. A marker beside the ledger (`aider-import.json` in
`.git/flowloom/`) keeps, per history file, how many bytes were imported and a digest of
them, plus the digests of the exchanges imported. The next import reads only what was
appended; if the file was rewritten (the digest of its first bytes changed) it is read
again from the start and exchanges already imported are skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from flowloom.capture.agents.common import (
    Event,
    Place,
    agent_actor,
    git_context,
)
from flowloom.events.durable import private_dirs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flowloom.ledger.log import Ledger

__all__ = [
    "AGENT",
    "HISTORY_FILE",
    "AiderImport",
    "Block",
    "Committed",
    "link_commits",
    "parse_history",
]

AGENT = "aider"
HISTORY_FILE = ".aider.chat.history.md"
MARKER_FILE = "aider-import.json"
_HEADER = "# aider chat started at "
_MODEL = re.compile(r"^(?:Main model|Model):\s*(\S+)")
_COMMIT = re.compile(r"^Commit ([0-9a-f]{7,64})\b")
_MAX_SEEN = 20000


class Block:
    """One piece of a history: a session start, an exchange, or text continuing a reply."""

    __slots__ = ("kind", "prompt", "response", "session", "started", "tool")

    def __init__(self, kind: str, session: str | None, started: str | None = None) -> None:
        self.kind = kind  # "session", "exchange" or "continuation"
        self.session = session
        self.started = started
        self.prompt: list[str] = []
        self.response: list[str] = []
        self.tool: list[str] = []

    @staticmethod
    def _join(lines: list[str]) -> str:
        return "\n".join(lines).strip("\n")

    @property
    def prompt_text(self) -> str:
        return self._join(self.prompt)

    @property
    def response_text(self) -> str:
        return self._join(self.response).strip()

    @property
    def tool_text(self) -> str:
        return self._join(self.tool).strip()

    def commits(self) -> list[str]:
        """The (abbreviated) commit ids Aider reports having made for this exchange."""
        found = (_COMMIT.match(line.strip()) for line in self.tool)
        return list(dict.fromkeys(m.group(1) for m in found if m))

    def digest(self) -> str:
        parts = [self.kind, self.session or "", self.started or "", self.prompt_text]
        parts += [self.response_text, self.tool_text]
        return hashlib.sha256("\0".join(parts).encode("utf-8", "replace")).hexdigest()


def _session_id(started: str) -> str:
    return "aider-" + re.sub(r"[^0-9A-Za-z]+", "", started)


def parse_history(text: str, session: str | None = None) -> list[Block]:
    """The blocks of (a part of) a history file; `session` is the one already open.

    Inside a fenced code block of a reply every line is the reply's, so a diff's
    ``>>>>>>> REPLACE`` is not taken for Aider's ``> `` tool output.
    """
    blocks: list[Block] = []
    current: Block | None = None
    fenced = False
    for raw in text.splitlines():
        if fenced and current is not None:
            current.response.append(raw.rstrip())
            fenced = not raw.lstrip().startswith("```")
            continue
        if raw.startswith(_HEADER):
            started = raw[len(_HEADER) :].strip()
            session = _session_id(started)
            current = Block("session", session, started)
            blocks.append(current)
            continue
        if raw.startswith("####"):
            content = raw[4:].removeprefix(" ").rstrip()
            if current is None or current.kind != "exchange" or current.response or current.tool:
                current = Block("exchange", session)
                blocks.append(current)
            current.prompt.append("" if content == "<blank>" else content)
            continue
        if raw == ">" or raw.startswith("> "):
            content = raw[2:].rstrip()
            if current is None:
                current = Block("continuation", session)
                blocks.append(current)
            current.tool.append(content)
            continue
        line = raw.rstrip()
        if current is None:
            if not line:
                continue
            current = Block("continuation", session)
            blocks.append(current)
        if current.kind == "session":
            continue  # blank lines between the header and the first prompt
        current.response.append(line)
        if line.lstrip().startswith("```"):
            fenced = True
    return [b for b in blocks if b.kind == "session" or b.prompt or b.response or b.tool]


def _events(block: Block, place: Place, history: str) -> list[Event]:
    actor = agent_actor(AGENT)
    git = git_context(place)
    base = {"source": "aider-history", "history": history}
    if block.kind == "session":
        model = None
        for line in block.tool:
            found = _MODEL.match(line)
            if found:
                model = found.group(1)
                break
        refs = {**base, "started": block.started, "model": model}
        return [
            Event(
                "session.start",
                block.tool_text or None,
                actor=actor,
                session=block.session,
                git=git,
                subject=AGENT,
                refs=refs,
            )
        ]
    events = []
    if block.prompt:
        prompt = block.prompt_text
        refs = {**base, "chars": len(prompt), "command": prompt.startswith("/") or None}
        events.append(
            Event("agent.prompt", prompt, actor=actor, session=block.session, git=git, refs=refs)
        )
    if block.response_text:
        refs = {**base, "chars": len(block.response_text)}
        if block.kind == "continuation":
            refs["continuation"] = True
        events.append(
            Event(
                "agent.response",
                block.response_text,
                actor=actor,
                session=block.session,
                git=git,
                refs=refs,
            )
        )
    if block.tool:  # Aider reports applied edits and commits after the reply
        events.append(
            Event(
                "agent.tool",
                block.tool_text,
                actor=actor,
                session=block.session,
                git=git,
                subject=AGENT,
                refs={**base, "tool": "aider"},
            )
        )
    return events


class Committed:
    """An exchange whose edits Aider committed: its events (redacted in place before they
    are recorded) and the commit ids it reported."""

    __slots__ = ("commits", "prompt", "reply", "session")

    def __init__(self, prompt: Event, reply: Event, session: str | None, commits: list[str]):
        self.prompt = prompt
        self.reply = reply
        self.session = session
        self.commits = commits


class AiderImport:
    """One import of one history file: what is new, and the marker to save after it."""

    def __init__(self, history: Path, state_dir: Path) -> None:
        self.history = history.resolve()
        self.marker_path = state_dir / MARKER_FILE
        self.marker = self._load_marker()
        self.exchanges = 0
        self.committed: list[Committed] = []
        self._update: dict[str, Any] | None = None
        self._new_seen: list[str] = []

    def _load_marker(self) -> dict[str, Any]:
        try:
            data = json.loads(self.marker_path.read_text("utf-8"))
        except (OSError, ValueError):
            return {"v": 1, "files": {}, "seen": []}
        if not isinstance(data, dict):
            return {"v": 1, "files": {}, "seen": []}
        data.setdefault("files", {})
        data.setdefault("seen", [])
        return data

    def events(self, place: Place) -> list[Event]:
        """The events for everything not imported yet (reads the file)."""
        data = self.history.read_bytes()
        state = self.marker["files"].get(str(self.history))
        start, session = 0, None
        if isinstance(state, dict) and isinstance(state.get("offset"), int):
            offset = state["offset"]
            prefix = hashlib.sha256(data[:offset]).hexdigest()
            if offset <= len(data) and prefix == state.get("prefix"):
                start = offset
                session = state.get("session") if isinstance(state.get("session"), str) else None
        blocks = parse_history(data[start:].decode("utf-8", "replace"), session)
        # Reading on from the marker, everything is new. Reading from the start (a new or
        # rewritten file), skip what an earlier import recorded; the occurrence number
        # keeps a prompt typed twice with the same answer from counting once.
        seen = set(self.marker["seen"]) if start == 0 else set()
        occurrences: dict[str, int] = {}
        history = place.relative(str(self.history))
        events: list[Event] = []
        for block in blocks:
            digest = block.digest()
            occurrences[digest] = occurrences.get(digest, 0) + 1
            key = f"{digest}#{occurrences[digest]}"
            if key in seen:
                continue
            self._new_seen.append(key)
            produced = _events(block, place, history)
            events.extend(produced)
            if block.kind == "exchange":
                self.exchanges += 1
                kinds = [e.kind for e in produced]
                if block.commits() and "agent.prompt" in kinds and "agent.response" in kinds:
                    prompt = produced[kinds.index("agent.prompt")]
                    reply = produced[kinds.index("agent.response")]
                    self.committed.append(Committed(prompt, reply, block.session, block.commits()))
            if block.session:
                session = block.session
        self._update = {
            "offset": len(data),
            "prefix": hashlib.sha256(data).hexdigest(),
            "session": session,
        }
        return events

    def save(self) -> None:
        """Remember what was imported; call after the events are in the ledger."""
        if self._update is None:
            return
        self.marker["files"][str(self.history)] = self._update
        self.marker["seen"] = (list(self.marker["seen"]) + self._new_seen)[-_MAX_SEEN:]
        private_dirs(str(self.marker_path.parent))
        tmp = self.marker_path.with_name(self.marker_path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.marker), "utf-8")
        tmp.replace(self.marker_path)


def link_commits(
    ledger: Ledger, top: Path, job: AiderImport, events: list[Event], indices: list[int]
) -> tuple[int, list[str]]:
    """Record the decision and ``commit.link``s of each exchange Aider committed.

    `events` are the recorded events and `indices` their entries. Returns how many
    commits were linked and a note per commit that could not be (not in this repository,
    or already linked by its own trailer).
    """
    from flowloom.decisions.records import DecisionBook
    from flowloom.errors import FlowLoomError
    from flowloom.repo.git import GitRepo
    from flowloom.repo.trailers import Links

    entry_of = {id(event): index for event, index in zip(events, indices, strict=True)}
    repo = GitRepo(top)
    book = DecisionBook(ledger)
    linked, notes = 0, []
    for exchange in job.committed:
        commits = []
        for short in exchange.commits:
            sha = repo.resolve(short)
            if sha is None:
                notes.append(f"commit {short} named by Aider is not in this repository")
                continue
            commit = repo.commit(sha)
            if Links.of(commit.message).decisions:
                notes.append(f"commit {short} already names its decision")
                continue
            commits.append(commit)
        if not commits:
            continue
        files: list[str] = []
        for commit in commits:
            changed = repo.run(
                "diff-tree", "--no-commit-id", "--name-only", "-r", "--root", commit.sha
            )
            files += [f for f in changed.splitlines() if f and f not in files]
        author = commits[0].author
        try:
            decision = book.from_exchange(
                exchange.prompt.body or "",
                exchange.reply.body or "",
                requested_by=author.email or author.name,
                session=exchange.session,
                files=files,
                prompt_entry=entry_of.get(id(exchange.prompt)),
                response_entry=entry_of.get(id(exchange.reply)),
                actor=agent_actor(AGENT),
            )
        except FlowLoomError as exc:  # say, the prompt was refused and is a capture.error
            shorts = ", ".join(c.sha[:7] for c in commits)
            notes.append(f"commits {shorts} not linked: {exc.message}")
            continue
        for commit in commits:
            refs: dict[str, Any] = {
                "decision": decision.id,
                "session": exchange.session,
                "patch_id": None if commit.is_merge else repo.patch_id(commit.sha),
                "tree": repo.tree(commit.sha),
                "source": "aider-import",
            }
            meta: dict[str, Any] = {
                "actor": agent_actor(AGENT),
                "subject": commit.sha,
                "refs": {k: v for k, v in refs.items() if v is not None},
            }
            if exchange.session:
                meta["session"] = exchange.session
            ledger.record("commit.link", meta=meta)
            linked += 1
    return linked, notes
