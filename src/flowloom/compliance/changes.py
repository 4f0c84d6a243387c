"""The change population: first-parent commits of the protected branches in a period.

Each first-parent commit is one change as it reached the branch: a merge brings in
the commits of its second parent, a fast-forward or squash is its own change. For each
change this module gathers what the checks judge — the links of the commits it
brings (decisions, sessions, overrides), the approvals of those decisions and any
signature over the merged tree, the people who may not approve it, and when the branch
moved to it according to the reflog (when the reflog is there).

Only proven approvals are gathered: a decision approval whose approver the book's
`Trust` proves (`Approval.verified`), a signature whose signer it proves. The others
are kept as notes (`Change.unverified`) so a report shows them for what they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flowloom.compliance.history import Entry, LedgerView, Period
from flowloom.decisions.records import Decision, DecisionBook
from flowloom.errors import NotFoundError
from flowloom.ledger.identity import names_of
from flowloom.repo.git import Commit, GitError, GitRepo
from flowloom.repo.links import Link, LinkFinder, LinkIndex
from flowloom.repo.trailers import Links

__all__ = [
    "Change",
    "ChangeApproval",
    "Population",
    "ReflogMove",
    "branch_moves",
    "git_object_digest",
    "session_operators",
]


@dataclass(frozen=True)
class ReflogMove:
    """One update of a branch as its reflog recorded it."""

    old: str
    new: str
    at: datetime
    message: str
    who: str = ""  # "Name <email>" of the reflog entry: who moved the branch


@dataclass(frozen=True)
class ChangeApproval:
    """An approval of a change: a decision approval, or a signature over its tree/commit."""

    approver: str
    identities: frozenset[str]
    printed_name: str | None
    meaning: str
    ts: str
    at: datetime
    entry: int
    signature: int | None
    decision: str | None
    matches: bool  # the approval names the decision's exact recorded content
    bound_to_tree: bool

    @property
    def counts(self) -> bool:
        """An approval (not a review) of the exact content; its person is proven."""
        return self.meaning == "approved" and self.matches


@dataclass
class Change:
    """One first-parent commit of a protected branch and everything known about it."""

    commit: Commit
    branch: str
    tree: str
    members: list[Commit]  # the non-merge commits it brought to the branch (itself if not a merge)
    links: dict[str, Link | None] = field(default_factory=dict)  # sha -> link
    link_entries: dict[str, Entry] = field(default_factory=dict)  # sha -> commit.link entry
    decisions: list[Decision] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)
    excluded: dict[str, str] = field(default_factory=dict)  # identity -> why they may not approve
    approvals: list[ChangeApproval] = field(default_factory=list)  # proven ones only
    unverified: list[tuple[int, str]] = field(default_factory=list)
    """(entry, "unverified approval by bob at entry 12: not counted (why)")."""
    reached_at: datetime | None = None  # when the branch moved to it (reflog)
    reached_by: str | None = None  # who moved the branch to it ("Name <email>", reflog)

    @property
    def committed_at(self) -> datetime:
        return datetime.fromtimestamp(self.commit.committed_at, UTC)

    @property
    def overrides(self) -> list[str]:
        return [
            link.override
            for link in self.links.values()
            if link is not None and link.override is not None and not link.decisions
        ]

    @property
    def linked(self) -> bool:
        return all(link is not None and link.linked for link in self.links.values())


def branch_moves(repo: GitRepo, branch: str) -> list[ReflogMove]:
    """The reflog of `branch`, oldest first; empty when git keeps none (bare servers)."""
    fmt = "%H%x1f%gd%x1f%gn <%ge>%x1f%gs"
    try:
        text = repo.run("log", "-g", "--date=unix", f"--format={fmt}", f"refs/heads/{branch}", "--")
    except GitError:
        return []
    moves: list[ReflogMove] = []
    records = [line.split("\x1f", 3) for line in text.splitlines() if line.count("\x1f") >= 3]
    records.reverse()
    previous = "0" * 40
    for sha, selector, who, message in records:
        stamp = selector.rsplit("{", 1)[-1].rstrip("}")
        if not stamp.isdigit():
            continue
        at = datetime.fromtimestamp(int(stamp), UTC)
        moves.append(ReflogMove(previous, sha, at, message, who.strip()))
        previous = sha
    return moves


class Population:
    """Builds the change population of one repository for one period."""

    def __init__(
        self,
        repo: GitRepo,
        view: LedgerView,
        book: DecisionBook,
        *,
        branches: Iterable[str],
        period: Period,
        baseline: datetime | None = None,
    ) -> None:
        self.repo = repo
        self.baseline = baseline
        """Commits before it predate FlowLoom's adoption: outside the population."""
        self.view = view
        self.book = book
        self.period = period
        self.branches = [b for b in branches if repo.resolve(f"refs/heads/{b}")]
        index = LinkIndex.from_store(book.ledger.store, book.ledger.log)
        comment_char = repo.config_get("core.commentChar") or "#"
        self.finder = LinkFinder(
            repo, index, comment_char=comment_char if len(comment_char) == 1 else "#"
        )
        self.comment_char = self.finder.comment_char
        self._decisions: dict[str, Decision | None] = {}
        self._trees: dict[str, str | None] = {}
        self.link_entries: dict[str, Entry] = {}
        for entry in view.of("commit.link"):
            if entry.event.subject:
                self.link_entries.setdefault(entry.event.subject, entry)
        self.moves = {b: branch_moves(repo, b) for b in self.branches}
        # Only signatures whose signer is proven; the others are noted per change.
        self.signatures = {e.index: e for e in view.of("signature.apply")}
        self.unproven_signatures = view.unverified("signature.apply")
        # tree -> decision -> the commit.link entries that linked that exact tree to it
        self.tree_links: dict[str, dict[str, list[int]]] = {}
        for entry in view.of("commit.link"):
            refs = entry.event.refs
            tree = refs.get("tree")
            if not isinstance(tree, str):
                continue
            by_decision = self.tree_links.setdefault(tree, {})
            for decision_id in [refs.get("decision"), *(refs.get("decisions") or ())]:
                if isinstance(decision_id, str):
                    by_decision.setdefault(decision_id, []).append(entry.index)

    # -- git helpers ------------------------------------------------------------------

    def tree_of(self, sha: str) -> str | None:
        if sha not in self._trees:
            try:
                self._trees[sha] = self.repo.tree(sha) if self.repo.has_commit(sha) else None
            except GitError:
                self._trees[sha] = None
        return self._trees[sha]

    def decision(self, decision_id: str) -> Decision | None:
        if decision_id not in self._decisions:
            try:
                self._decisions[decision_id] = self.book.get(decision_id)
            except NotFoundError:
                self._decisions[decision_id] = None
        return self._decisions[decision_id]

    def in_period(self, commit: Commit) -> bool:
        """In the period, and not before the baseline (`pre_adoption` lists those)."""
        when = self.repo_time(commit)
        return when in self.period and (self.baseline is None or when >= self.baseline)

    def pre_adoption(self) -> list[tuple[str, Commit]]:
        """(branch, commit) of the period's first-parent commits before the baseline."""
        if self.baseline is None:
            return []
        found: list[tuple[str, Commit]] = []
        for branch in self.branches:
            for commit in self.repo.commits("--first-parent", f"refs/heads/{branch}"):
                when = self.repo_time(commit)
                if when in self.period and when < self.baseline:
                    found.append((branch, commit))
        return found

    @staticmethod
    def repo_time(commit: Commit) -> datetime:
        """When the commit was committed, as git records it (UTC)."""
        return datetime.fromtimestamp(commit.committed_at, UTC)

    def branch_commits(self, branch: str, *, first_parent: bool) -> list[Commit]:
        """Commits of `branch` committed in the period, oldest first."""
        args = ["--first-parent"] if first_parent else []
        commits = self.repo.commits(*args, f"refs/heads/{branch}")
        return [c for c in commits if self.in_period(c)]

    # -- the population ----------------------------------------------------------------

    def changes(self) -> list[Change]:
        found: list[Change] = []
        for branch in self.branches:
            reached: dict[str, datetime] = {}
            for move in self.moves[branch]:
                reached.setdefault(move.new, move.at)
            movers = self._movers(branch)
            for commit in self.branch_commits(branch, first_parent=True):
                change = self._change(commit, branch, reached.get(commit.sha))
                change.reached_by = movers.get(commit.sha)
                found.append(change)
        return found

    def _movers(self, branch: str) -> dict[str, str]:
        """Who (reflog identity) first brought each first-parent commit onto `branch`.

        A move brings every first-parent commit between its old and new tip (a
        fast-forward of several commits is one move). Only moves from the period's start
        on are read: an earlier move cannot bring a commit of the period."""
        movers: dict[str, str] = {}
        for move in self.moves[branch]:
            if move.at < self.period.start or not move.who:
                continue
            if set(move.old) == {"0"}:
                brought = [move.new]
            else:
                try:
                    brought = self.repo.rev_list("--first-parent", f"{move.old}..{move.new}")
                except GitError:
                    brought = [move.new]
            for sha in brought:
                movers.setdefault(sha, move.who)
        return movers

    def _change(self, commit: Commit, branch: str, reached: datetime | None) -> Change:
        if commit.is_merge:
            shas = self.repo.rev_list(f"{commit.parents[0]}..{commit.sha}", no_merges=True)
            members = [self.repo.commit(sha) for sha in reversed(shas)]
        else:
            members = [commit]
        change = Change(
            commit=commit,
            branch=branch,
            tree=self.repo.tree(commit.sha),
            members=members,
            reached_at=reached,
        )
        decision_ids: list[str] = []
        sessions: list[str] = []
        linked_commits = [*members, commit] if commit.is_merge else members
        for member in linked_commits:
            link = self.finder.find(member)
            if member is commit and commit.is_merge and link is None:
                continue  # a merge commit carries no change of its own
            change.links[member.sha] = link
            if member.sha in self.link_entries:
                entry = self.link_entries[member.sha]
                change.link_entries[member.sha] = entry
                session = entry.event.session or entry.event.refs.get("session")
                if isinstance(session, str):
                    sessions.append(session)
            sessions.extend(Links.of(member.message, self.comment_char).sessions)
            if link is not None:
                decision_ids.extend(link.decisions)
        for decision_id in dict.fromkeys(decision_ids):
            decision = self.decision(decision_id)
            if decision is not None:
                change.decisions.append(decision)
                if decision.session:
                    sessions.append(decision.session)
        change.sessions = list(dict.fromkeys(sessions))
        change.excluded = self._excluded(change)
        change.approvals = self._approvals(change)
        return change

    def _excluded(self, change: Change) -> dict[str, str]:
        """Who may not approve the change: author, committer, AI operators, requesters."""
        excluded: dict[str, str] = {}

        def add(ident: str, why: str) -> None:
            for name in names_of(ident):
                excluded.setdefault(name, why)

        add(str(change.commit.author), "authored it")
        add(str(change.commit.committer), "committed it")
        for member in change.members:
            add(str(member.author), "authored it")
            add(str(member.committer), "committed it")
        for decision in change.decisions:
            for person, why in self.book.involved(decision).items():
                add(person, why)
        for session in change.sessions:
            for person in session_operators(self.view, session):
                add(person, f"operated the AI session {session}")
        return excluded

    def _approvals(self, change: Change) -> list[ChangeApproval]:
        approvals: list[ChangeApproval] = []
        signatures = self.signatures
        link_trees = self.tree_links.get(change.tree, {})
        for decision in change.decisions:
            for approval in decision.approvals:
                if not approval.verified:
                    change.unverified.append(
                        (
                            approval.entry,
                            f"{approval.describe()} of {decision.id} at entry {approval.entry}: "
                            f"not counted ({approval.unverified_reason or 'origin unproven'})",
                        )
                    )
                    continue
                signature = (
                    signatures.get(approval.signature) if approval.signature is not None else None
                )
                identities = names_of(approval.approver)
                printed = None
                if signature is not None:
                    printed = (
                        _text(signature.event.refs.get("printed_name"))
                        or signature.event.actor.name
                    )
                    for key in ("printed_name", "email", "signer"):
                        value = _text(signature.event.refs.get(key))
                        if value:
                            identities |= names_of(value)
                approve = self.view.at(approval.entry)
                at = approve.at if approve is not None else datetime.min.replace(tzinfo=UTC)
                approve_refs = approve.event.refs if approve is not None else {}
                bound = approve_refs.get("tree") == change.tree or any(
                    link < approval.entry for link in link_trees.get(decision.id, ())
                )
                approvals.append(
                    ChangeApproval(
                        approver=approval.approver,
                        identities=frozenset(identities),
                        printed_name=printed,
                        meaning=approval.meaning,
                        ts=approval.ts,
                        at=at,
                        entry=approval.entry,
                        signature=approval.signature,
                        decision=decision.id,
                        matches=approval.matches,
                        bound_to_tree=bound,
                    )
                )
        # Signatures over the merged content itself: tree:<id> or commit:<sha>.
        for entry in self.unproven_signatures:
            if self._signs(entry, change):
                change.unverified.append((entry.index, self.view.note(entry)))
        for entry in signatures.values():
            if not self._signs(entry, change):
                continue
            refs = entry.event.refs
            identities = names_of(entry.event.actor.id)
            for key in ("printed_name", "email", "signer"):
                value = _text(refs.get(key))
                if value:
                    identities |= names_of(value)
            approvals.append(
                ChangeApproval(
                    approver=_text(refs.get("signer")) or entry.event.actor.id,
                    identities=frozenset(identities),
                    printed_name=_text(refs.get("printed_name")) or entry.event.actor.name,
                    meaning=_text(refs.get("meaning")) or "",
                    ts=entry.ts,
                    at=entry.at,
                    entry=entry.index,
                    signature=entry.index,
                    decision=None,
                    # the signed digest must be the one of the object it names
                    matches=refs.get("content_digest")
                    == git_object_digest((entry.event.subject or "").partition(":")[2]),
                    bound_to_tree=True,
                )
            )
        return approvals

    def _signs(self, entry: Entry, change: Change) -> bool:
        """Whether a signature names the change's merged content (tree:<id>, commit:<sha>)."""
        kind, _, ref = (entry.event.subject or "").partition(":")
        if kind == "tree":
            return ref == change.tree
        if kind == "commit":
            return ref == change.commit.sha or self.tree_of(ref) == change.tree
        return False


def git_object_digest(object_id: str) -> str:
    """The content digest a signature over ``tree:<id>`` or ``commit:<sha>`` carries.

    The git object id already binds the content; the signed digest is SHA-256 of the id
    text, so the signature event keeps the usual ``sha256:<hex>`` form.
    """
    return "sha256:" + hashlib.sha256(object_id.encode("ascii")).hexdigest()


def session_operators(view: LedgerView, session: str) -> set[str]:
    """The people who ran `session`: its session.start operator or human actor."""
    operators: set[str] = set()
    for entry in view.of("session.start"):
        if entry.event.session != session:
            continue
        operator = entry.event.refs.get("operator")
        if isinstance(operator, str) and operator:
            operators.add(operator)
        if entry.event.actor.type == "human":
            operators.add(entry.event.actor.id)
    return operators


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
