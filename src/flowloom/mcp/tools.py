"""ProjectTools: what each MCP tool does, over the decisions and the memory of one project.

Plain synchronous methods that take checked Python values and return JSON-ready dicts;
`flowloom.mcp.server` adapts them to the protocol and runs them on its worker thread.
Every check a caller can fail (a path outside the repository, a line past the end of
the file, an unknown decision id, an oversize text) raises a `flowloom.errors` error
with a one-line message, which the server turns into a tool error result.

Whatever a tool writes goes through the services that own it: decisions through
`DecisionBook` (a ``decision.record`` ledger event), memory through the memory service
(a ``memory.*`` ledger event each). Free text is redacted before it is recorded, as it
is for the agent hooks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from flowloom.decisions.records import DecisionBook, check_decision_id
from flowloom.errors import InputError, NotFoundError
from flowloom.events.redaction import redact_text
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import NOBODY, Trust

if TYPE_CHECKING:
    from flowloom.memory.interface import MemoryService

__all__ = [
    "MAX_FILE_BYTES",
    "MAX_PATH",
    "Caller",
    "ProjectTools",
    "decision_uri",
]

MAX_PATH: Final = 4096
MAX_FILE_BYTES: Final = 64 * 1024 * 1024
"""`why` refuses files larger than this: blame on them is not an interactive question."""

DECISIONS_URI: Final = "flowloom://decisions"


def decision_uri(decision_id: str) -> str:
    """The resource URI of one decision."""
    return f"{DECISIONS_URI}/{decision_id}"


@dataclass(frozen=True)
class Caller:
    """Who is asking: the ledger actor of what they record, and their user name.

    Over stdio the caller is the assistant working for the local user; over HTTP it is
    the principal of the API key.
    """

    actor: Mapping[str, Any]
    user: str
    session: str | None = None
    authenticated: bool = False
    """The user is the API key's (HTTP): what is recorded is attributed to them alone."""


def _redacted(text: str) -> str:
    return redact_text(text)[0] if text else text


@dataclass
class ProjectTools:
    """The tools' behaviour over one project's ledger, repository and memory.

    `repo_top` is the work tree `why` blames in (None outside a repository);
    `index_path` the look-up cache `why` keeps; `git_common_dir` where the pending
    link for the next commit is written when `link_next_commit` is set (stdio: the
    assistant commits in this repository).
    """

    ledger: Ledger
    memory: MemoryService | None = None
    repo_top: Path | None = None
    index_path: Path | None = None
    git_common_dir: Path | None = None
    link_next_commit: bool = False
    trust: Trust = NOBODY
    """Which approvals are proven (the repository's allowed signers, the log's keys)."""
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for closer in reversed(self.closers):
            closer()
        self.closers.clear()

    # -- decisions -------------------------------------------------------------------

    @property
    def book(self) -> DecisionBook:
        return DecisionBook(self.ledger, trust=self.trust)

    def why(self, file: str, line: int) -> dict[str, Any]:
        """The decision, prompt and reply behind line `line` of `file`, proved."""
        from flowloom.decisions.why import explain

        if self.repo_top is None:
            raise InputError(
                "'why' needs a git repository: this MCP server was not started inside one",
                hint="start `flowloom mcp` from the repository's work tree",
            )
        relative = self._repo_file(file)
        lines = self._line_count(relative)
        if line < 1:
            raise InputError(f"line numbers start at 1, not {line}")
        if line > lines:
            raise InputError(
                f"line {line} is past the end of {relative} ({lines} lines)",
                hint="give a line number within the file",
            )
        answer = explain(
            self.ledger, self.repo_top, relative, line, index_path=self.index_path, trust=self.trust
        )
        return answer.to_json()

    def _repo_file(self, file: str) -> str:
        """`file` as a path relative to the work tree, refused when it leaves it."""
        assert self.repo_top is not None
        if not file.strip():
            raise InputError("file is empty", hint="give a path relative to the repository")
        if "\x00" in file or len(file) > MAX_PATH:
            raise InputError("file is not a usable path", hint="give a path in the repository")
        top = self.repo_top.resolve()
        given = Path(file)
        target = (given if given.is_absolute() else top / given).resolve()
        try:
            relative = target.relative_to(top)
        except ValueError:
            raise InputError(
                f"{file} is outside the repository",
                hint="give a path relative to the repository's top directory",
            ) from None
        if relative.parts and relative.parts[0] == ".git":
            raise InputError(f"{file} is inside .git, not a file of the project")
        if not target.is_file():
            raise NotFoundError(
                f"no file {relative.as_posix()} in the repository",
                hint="give the path of a committed file, relative to the repository",
            )
        return relative.as_posix()

    def _line_count(self, relative: str) -> int:
        assert self.repo_top is not None
        path = self.repo_top / relative
        try:
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise InputError(f"{relative} is too large to blame ({size} bytes)")
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"cannot read {relative}: {exc.strerror or exc}") from exc
        if not data:
            return 0
        return data.count(b"\n") + (0 if data.endswith(b"\n") else 1)

    def get_decision(self, decision_id: str) -> dict[str, Any]:
        """One decision with its approvals and the commits linked to it."""
        check_decision_id(decision_id)
        book = self.book
        found = book.get(decision_id)
        data = found.to_json()
        data["commits"] = [
            {"entry": entry, "commit": sha} for entry, sha in book.commits(decision_id)
        ]
        data["uri"] = decision_uri(found.id)
        return data

    def list_decisions(self) -> list[dict[str, Any]]:
        """Every decision, oldest first, as a short summary with its resource URI."""
        return [
            {
                "id": d.id,
                "title": d.title,
                "status": d.status,
                "risk": d.risk,
                "created": d.created,
                "entry": d.entry,
                "uri": decision_uri(d.id),
            }
            for d in self.book.list()
        ]

    def record_decision(
        self,
        caller: Caller,
        *,
        title: str,
        context: str = "",
        options: Sequence[str] = (),
        choice: str = "",
        rationale: str = "",
        files: Sequence[str] = (),
        tickets: Sequence[str] = (),
        risk: str = "low",
        requested_by: str | None = None,
        session: str | None = None,
        model: str | None = None,
        prompt_entry: int | None = None,
        response_entry: int | None = None,
    ) -> dict[str, Any]:
        """Record a decision as a ``decision.record`` event; returns it as recorded.

        Over HTTP the decision is requested by the key's user: another name is refused
        (an API key speaks for its own user only).
        """
        asked = (requested_by or "").strip()
        if caller.authenticated and asked and asked != caller.user:
            raise InputError(
                f"requested_by {asked!r} is not the API key's user",
                hint="over HTTP a decision is requested by the key's user; leave requested_by out",
            )
        recorded = self.book.record(  # it checks `risk`
            title=_redacted(title),
            context=_redacted(context),
            options=[_redacted(o) for o in options],
            choice=_redacted(choice),
            rationale=_redacted(rationale),
            requested_by=(requested_by or "").strip() or caller.user,
            session=session or caller.session,
            model=model,
            files=list(files),
            tickets=list(tickets),
            risk=risk,
            prompt_entry=prompt_entry,
            response_entry=response_entry,
            actor=caller.actor,
        )
        linked = False
        if self.link_next_commit and self.git_common_dir is not None:
            linked = self._link_next_commit(recorded.id, recorded.session, recorded.entry)
        data = recorded.to_json()
        data["uri"] = decision_uri(recorded.id)
        data["links_next_commit"] = linked
        return data

    def _link_next_commit(self, decision: str, session: str | None, entry: int | None) -> bool:
        """Name the decision in the next commit's trailers, as `flowloom decide` does."""
        from flowloom.capture.state import PendingLink, read_pending, write_pending

        assert self.git_common_dir is not None
        previous = read_pending(self.git_common_dir)
        keep = previous is not None and (session is None or previous.session == session)
        try:
            write_pending(
                self.git_common_dir,
                PendingLink(
                    decision=decision,
                    session=session or (previous.session if previous else None),
                    entry=entry,
                    agent=previous.agent if keep and previous else None,
                ),
            )
        except OSError:
            return False  # recorded all the same; the commit hook will ask for a link
        return True

    # -- memory ----------------------------------------------------------------------

    def _memory(self) -> MemoryService:
        if self.memory is None:
            raise InputError(
                "project memory is not available in this FlowLoom installation",
                hint="the decision tools (why, get_decision, record_decision) still work",
            )
        return self.memory

    def search_memory(
        self,
        query: str,
        *,
        kinds: Sequence[str] | None = None,
        author: str | None = None,
        file: str | None = None,
        since: str | None = None,
        until: str | None = None,
        branch: str | None = None,
        all_branches: bool = False,
        limit: int = 20,
    ) -> dict[str, Any]:
        """Ranked full-text hits over decisions, prompts, replies and observations."""
        from flowloom.memory.interface import HIT_KINDS

        if not query.strip():
            raise InputError("the query is empty", hint="give a few words to search for")
        unknown = [k for k in kinds or () if k not in HIT_KINDS]
        if unknown:
            raise InputError(
                f"unknown kind(s): {', '.join(unknown)}", hint=f"known: {', '.join(HIT_KINDS)}"
            )
        memory = self._memory()
        memory.sync()
        hits = memory.search(
            query,
            kinds=list(kinds) if kinds else None,
            author=author or None,
            file=file or None,
            since=since or None,
            until=until or None,
            branch=branch or None,
            all_branches=all_branches,
            limit=limit,
        )
        return {"query": query, "hits": [h.to_json() for h in hits]}

    def recent_activity(self, *, limit: int = 20, since: str | None = None) -> dict[str, Any]:
        """The latest ledger events, newest first."""
        memory = self._memory()
        memory.sync()
        events = memory.recent_activity(limit=limit, since=since or None)
        return {"events": [e.to_json() for e in events]}

    def _meta(self, caller: Caller) -> dict[str, Any]:
        meta: dict[str, Any] = {"actor": dict(caller.actor)}
        if caller.session:
            meta["session"] = caller.session
        return meta

    def create_entities(
        self, caller: Caller, entities: Sequence[tuple[str, str, Sequence[str]]]
    ) -> list[dict[str, Any]]:
        """Create entities (name, type, observations); existing names are skipped.

        Returns the entities created, as stored (secrets redacted).
        """
        from flowloom.memory.interface import Entity

        memory = self._memory()
        created = memory.create_entities(
            [
                Entity(name, entity_type, tuple(observations))  # Memory redacts them
                for name, entity_type, observations in entities
            ],
            meta=self._meta(caller),
        )
        return [e.to_json() for e in created]

    def create_relations(
        self, caller: Caller, relations: Sequence[tuple[str, str, str]]
    ) -> list[dict[str, Any]]:
        """Create relations (from, to, type); those already known are skipped."""
        from flowloom.memory.interface import Relation

        memory = self._memory()
        created = memory.create_relations(
            [Relation(source, target, kind) for source, target, kind in relations],
            meta=self._meta(caller),
        )
        return [r.to_json() for r in created]

    def add_observations(
        self, caller: Caller, observations: Sequence[tuple[str, Sequence[str]]]
    ) -> list[dict[str, Any]]:
        """Add observation texts to existing entities; per entity, those newly added."""
        from flowloom.memory.interface import Observations

        memory = self._memory()
        added = memory.add_observations(
            [
                Observations(name, tuple(contents))  # Memory redacts them
                for name, contents in observations
            ],
            meta=self._meta(caller),
        )
        return [{"entityName": o.entity_name, "addedObservations": list(o.contents)} for o in added]

    def delete_entities(self, caller: Caller, names: Sequence[str]) -> None:
        """Delete entities with their relations and observations (unknown names: no-op)."""
        self._memory().delete_entities(list(names), meta=self._meta(caller))

    def delete_observations(
        self, caller: Caller, deletions: Sequence[tuple[str, Sequence[str]]]
    ) -> None:
        """Delete observation texts from entities (every copy of each)."""
        from flowloom.memory.interface import Observations

        self._memory().delete_observations(
            [Observations(name, tuple(texts)) for name, texts in deletions],
            meta=self._meta(caller),
        )

    def delete_relations(self, caller: Caller, relations: Sequence[tuple[str, str, str]]) -> None:
        """Delete relations (unknown ones: no-op)."""
        from flowloom.memory.interface import Relation

        self._memory().delete_relations(
            [Relation(source, target, kind) for source, target, kind in relations],
            meta=self._meta(caller),
        )

    def read_graph(self) -> dict[str, Any]:
        """The whole knowledge graph: decisions (with what they say) and explicit entities."""
        return self._memory().read_graph().to_json()

    def search_nodes(self, query: str) -> dict[str, Any]:
        """Entities whose name, type or an observation contains `query`, and their relations."""
        return self._memory().search_nodes(query).to_json()

    def open_nodes(self, names: Sequence[str]) -> dict[str, Any]:
        """The named entities and every relation touching one of them."""
        return self._memory().open_nodes(list(names)).to_json()
