"""Links from commits to decisions: by trailer, or re-linked by patch-id when trailers are lost.

A `LinkIndex` reads which decisions the ledger records (`decision.record`) and which
commits it has linked (`commit.link`, with their patch-ids).
`LinkFinder.find` then answers for one commit, trying in order:

1. its trailers (`FlowLoom-Decision`, or `FlowLoom-Override` with a reason);
2. a `commit.link` event for that very commit;
3. a linked commit with the same `git patch-id --stable` (a rewritten message after
   amend, rebase or cherry-pick);
4. a squash: a linked commit T whose combined change from the fork point (the merge
   base of the commit's parent and T) has the same patch-id, every commit in that
   range being linked itself.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flowloom.repo.git import Commit, GitRepo
from flowloom.repo.trailers import Links
from flowloom.store.interface import Store

__all__ = ["CommitLink", "Link", "LinkFinder", "LinkIndex"]

_KINDS = ("decision.record", "commit.link")
SQUASH_CANDIDATES = 100
"""At most this many linked commits are tried as the tip of a squashed range."""


@dataclass(frozen=True)
class CommitLink:
    """A `commit.link` event."""

    sha: str
    index: int
    decisions: tuple[str, ...]
    patch_id: str | None
    override: str | None  # the override reason, when the commit was let through by one


@dataclass
class LinkIndex:
    """The decisions the ledger records, and the commits linked to them."""

    decisions: set[str] = field(default_factory=set)
    by_commit: dict[str, CommitLink] = field(default_factory=dict)
    by_patch_id: dict[str, list[CommitLink]] = field(default_factory=dict)

    @classmethod
    def from_store(cls, store: Store, log: str) -> LinkIndex:
        index = cls()
        for kind in _KINDS:
            for entry in store.entries(log, kind=kind):
                try:
                    event = json.loads(entry.envelope)
                except ValueError:
                    continue  # `flowloom log verify` reports damaged entries
                if isinstance(event, dict):
                    index.add(entry.index, kind, event)
        return index

    def add(self, position: int, kind: str, event: Mapping[str, Any]) -> None:
        subject = event.get("subject")
        if not isinstance(subject, str):
            return
        if kind == "decision.record":
            self.decisions.add(subject)
            return
        if kind != "commit.link":
            return
        refs = event.get("refs")
        refs = refs if isinstance(refs, Mapping) else {}
        decisions = refs.get("decisions") or (
            [refs["decision"]] if isinstance(refs.get("decision"), str) else []
        )
        override = refs.get("override")
        if isinstance(override, Mapping):
            override = override.get("reason")
        patch_id = refs.get("patch_id")
        link = CommitLink(
            sha=subject,
            index=position,
            decisions=tuple(d for d in decisions if isinstance(d, str)),
            patch_id=patch_id if isinstance(patch_id, str) else None,
            override=override if isinstance(override, str) else None,
        )
        self.by_commit[subject] = link
        if link.patch_id:
            self.by_patch_id.setdefault(link.patch_id, []).append(link)

    def recorded(self, decision: str) -> bool:
        return decision in self.decisions


@dataclass(frozen=True)
class Link:
    """How one commit is linked, as far as FlowLoom can tell."""

    how: str  # trailer, override, ledger, patch-id, squash
    decisions: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()  # named by trailer, not recorded in the ledger
    invalid: tuple[str, ...] = ()  # trailer values that are not decision ids
    override: str | None = None
    approver: str | None = None
    via: tuple[str, ...] = ()  # the linked commits a re-link found

    @property
    def linked(self) -> bool:
        return bool(self.decisions) or (self.override is not None and bool(self.override.strip()))


class LinkFinder:
    """Finds the link of each commit in one repository; caches git answers per run."""

    def __init__(self, repo: GitRepo, index: LinkIndex, *, comment_char: str = "#") -> None:
        self.repo = repo
        self.index = index
        self.comment_char = comment_char
        self._range_ids: dict[tuple[str, str], str | None] = {}
        self._present: list[CommitLink] | None = None

    def find(self, commit: Commit) -> Link | None:
        links = Links.of(commit.message, self.comment_char)
        if links.decisions:
            valid = tuple(dict.fromkeys(links.valid_decisions))
            return Link(
                how="trailer",
                decisions=tuple(d for d in valid if self.index.recorded(d)),
                missing=tuple(d for d in valid if not self.index.recorded(d)),
                invalid=tuple(d for d in links.decisions if d not in valid),
                override=links.override,
                approver=links.approver,
            )
        if links.override is not None:
            return Link(how="override", override=links.override, approver=links.approver)
        recorded = self.index.by_commit.get(commit.sha)
        if recorded is not None and (recorded.decisions or recorded.override):
            return self._from_links("ledger", [recorded])
        if commit.is_merge:
            return None
        patch_id = self.repo.patch_id(commit.sha)
        if patch_id is None:
            return None
        same = [c for c in self.index.by_patch_id.get(patch_id, []) if c.sha != commit.sha]
        if same:
            return self._from_links("patch-id", same)
        return self._squash(commit, patch_id)

    def _from_links(self, how: str, links: list[CommitLink]) -> Link:
        decisions = tuple(dict.fromkeys(d for c in links for d in c.decisions))
        override = next((c.override for c in links if c.override), None)
        return Link(
            how=how,
            decisions=tuple(d for d in decisions if self.index.recorded(d)),
            missing=tuple(d for d in decisions if not self.index.recorded(d)),
            override=override if not decisions else None,
            via=tuple(c.sha for c in links),
        )

    def _present_links(self) -> list[CommitLink]:
        """Linked commits that exist in this clone, newest first."""
        if self._present is None:
            candidates = sorted(self.index.by_commit.values(), key=lambda c: -c.index)
            candidates = [c for c in candidates if c.decisions][: SQUASH_CANDIDATES * 4]
            present: set[str] = set()
            if candidates:
                answer = self.repo.run(
                    "cat-file",
                    "--batch-check=%(objectname) %(objecttype)",
                    input="".join(f"{c.sha}\n" for c in candidates),
                )
                present = {
                    line.split()[0] for line in answer.splitlines() if line.endswith(" commit")
                }
            self._present = [c for c in candidates if c.sha in present][:SQUASH_CANDIDATES]
        return self._present

    def _squash(self, commit: Commit, patch_id: str) -> Link | None:
        if not commit.parents:
            return None
        parent = commit.parents[0]
        for tip in self._present_links():
            if self.repo.is_ancestor(tip.sha, commit.sha):
                continue  # merged the ordinary way: not what this commit squashed
            base = self.repo.merge_base(parent, tip.sha)
            if base is None:
                continue
            key = (base, tip.sha)
            if key not in self._range_ids:
                self._range_ids[key] = self.repo.range_patch_id(base, tip.sha)
            if self._range_ids[key] != patch_id:
                continue
            members = self.repo.rev_list(f"{base}..{tip.sha}", no_merges=True)
            linked = [self.index.by_commit.get(sha) for sha in members]
            if members and all(link is not None and link.decisions for link in linked):
                return self._from_links("squash", [link for link in linked if link is not None])
        return None
