"""Branch scope: which memory items a query on a branch may see.

Every item carries the commit HEAD pointed at when it was made (the event's
``git.head``). Seen from a tip commit, an item is visible when that commit is
reachable from the tip (``git rev-list <tip>``), when it was made outside git (no
commit), or when it belongs to the asking session (its unmerged work). After a merge
the branch's commits are reachable from the target, so its items appear there too.

The reachable set is computed once per tip commit and cached on the instance; what the
index needs is the complement, the *hidden* commits: known commits not reachable.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Final

from flowloom.errors import InputError
from flowloom.repo.git import GitError, GitRepo

__all__ = ["BranchScope"]

_CACHED_TIPS: Final = 4


class BranchScope:
    """Reachability questions about one repository, with a small per-tip cache."""

    def __init__(self, repo: Path) -> None:
        self._git = GitRepo(repo)
        self._reachable: OrderedDict[str, frozenset[str]] = OrderedDict()

    def tip(self, rev: str | None) -> str | None:
        """The commit `rev` names (HEAD when None); None on an unborn branch."""
        if rev is None:
            return self._git.head()
        found = self._git.resolve(rev)
        if found is None:
            raise InputError(
                f"{rev!r} names no commit in this repository",
                hint="give a branch name or commit, or --all-branches",
            )
        return found

    def reachable(self, tip: str) -> frozenset[str]:
        cached = self._reachable.get(tip)
        if cached is not None:
            self._reachable.move_to_end(tip)
            return cached
        try:
            found = frozenset(self._git.rev_list(tip))
        except GitError as exc:
            raise InputError(f"cannot list the commits of {tip[:12]}: {exc.message}") from exc
        self._reachable[tip] = found
        while len(self._reachable) > _CACHED_TIPS:
            self._reachable.popitem(last=False)
        return found

    def hidden(self, known: list[str], rev: str | None) -> tuple[str, ...]:
        """The known commits not reachable from `rev` (HEAD when None)."""
        tip = self.tip(rev)
        if tip is None:
            return tuple(sorted(known))
        visible = self.reachable(tip)
        return tuple(sorted(sha for sha in known if sha not in visible))

    def current(self) -> tuple[str | None, str | None]:
        """(branch, head) of the work tree, for the git context of new memory events."""
        return self._git.branch(), self._git.head()
