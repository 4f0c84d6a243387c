"""A git repository, as FlowLoom asks about it: a small typed wrapper around the git CLI.

Everything goes through `git` itself (no libgit2), so worktrees, `core.hooksPath`,
SHA-256 repositories and the user's configuration resolve the way git resolves them.
Failures become `GitError` with git's own first line of complaint.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from flowloom.errors import InputError

__all__ = ["Commit", "GitError", "GitRepo", "Ident"]

_TIMEOUT_S = 120
# Field and record separators for `git log --format`: bytes git never puts in a message.
_FS = "\x1f"
_RS = "\x1e"


class GitError(InputError):
    """A git command failed, or the directory is not inside a git repository."""


@dataclass(frozen=True)
class Ident:
    """A git identity: name and email (as in `Name <email>`)."""

    name: str
    email: str

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


@dataclass(frozen=True)
class Commit:
    """What FlowLoom needs to know about one commit."""

    sha: str
    parents: tuple[str, ...]
    author: Ident
    committer: Ident
    committed_at: int  # unix seconds
    message: str

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0]

    @property
    def is_merge(self) -> bool:
        return len(self.parents) > 1


class GitRepo:
    """The repository containing `cwd`; every method runs one or two git commands."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    @classmethod
    def discover(cls, start: Path) -> GitRepo:
        """The repository containing `start`, rooted at its work tree top."""
        probe = cls(start)
        try:
            top = probe.run("rev-parse", "--show-toplevel").strip()
        except GitError as exc:
            raise GitError(
                f"{start} is not inside a git work tree ({exc.message})",
                hint="run this inside a git repository (git init creates one)",
            ) from None
        return cls(Path(top))

    # -- running git -----------------------------------------------------------------

    def run(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> str:
        """Run `git ARGS` here and return its standard output (text, UTF-8)."""
        return self._run(args, input=input, check=check, env=env).stdout

    def ok(self, *args: str) -> bool:
        """Whether `git ARGS` succeeds (its output is discarded)."""
        return self._run(args, check=False).returncode == 0

    def _run(
        self,
        args: Sequence[str],
        *,
        input: str | None = None,
        check: bool = True,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        try:
            result = subprocess.run(
                ["git", *args],
                cwd=self.cwd,
                input=input,
                capture_output=True,
                text=True,
                encoding="utf-8",
                errors="surrogateescape",
                timeout=_TIMEOUT_S,
                check=False,
                env={**os.environ, **env} if env else None,
            )
        except FileNotFoundError:
            raise GitError("git is not installed or not on PATH") from None
        except subprocess.TimeoutExpired:
            raise GitError(f"git {args[0]} took longer than {_TIMEOUT_S} s") from None
        if check and result.returncode != 0:
            complaint = next(
                (line for line in result.stderr.splitlines() if line.strip()),
                f"exit status {result.returncode}",
            )
            complaint = complaint.removeprefix("fatal: ").removeprefix("error: ")
            raise GitError(f"git {args[0]} failed: {complaint}")
        return result

    # -- where things are --------------------------------------------------------------

    def top(self) -> Path:
        return Path(self.run("rev-parse", "--show-toplevel").strip())

    def git_dir(self) -> Path:
        """This worktree's git directory (holds HEAD, SQUASH_MSG, ...)."""
        return self._path(self.run("rev-parse", "--git-dir").strip())

    def common_dir(self) -> Path:
        """The git directory shared by all worktrees (holds the ledger)."""
        return self._path(self.run("rev-parse", "--git-common-dir").strip())

    def git_path(self, name: str) -> Path:
        """Where git keeps `name` (`hooks` honours core.hooksPath)."""
        return self._path(self.run("rev-parse", "--git-path", name).strip())

    def _path(self, text: str) -> Path:
        path = Path(text)
        return path if path.is_absolute() else (self.cwd / path).resolve()

    def config_get(self, key: str) -> str | None:
        """The effective value of config `key`, or None when unset."""
        result = self._run(["config", "--get", key], check=False)
        if result.returncode == 1:
            return None
        if result.returncode != 0:
            raise GitError(f"git config failed: {result.stderr.strip()}")
        return result.stdout.rstrip("\n")

    # -- commits ---------------------------------------------------------------------

    def head(self) -> str | None:
        """The commit HEAD points at, or None on an unborn branch."""
        result = self._run(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], check=False)
        return result.stdout.strip() or None

    def branch(self) -> str | None:
        """The current branch's short name, or None when HEAD is detached."""
        result = self._run(["symbolic-ref", "--quiet", "--short", "HEAD"], check=False)
        return result.stdout.strip() or None

    def resolve(self, rev: str) -> str | None:
        """The commit `rev` names, or None when it names none."""
        result = self._run(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], check=False)
        return result.stdout.strip() or None

    def has_commit(self, sha: str) -> bool:
        return self.ok("cat-file", "-e", f"{sha}^{{commit}}")

    def rev_list(self, *revs: str, no_merges: bool = False, limit: int | None = None) -> list[str]:
        """Commit ids selected by `revs` (rev-list syntax), newest first."""
        args = ["rev-list"]
        if no_merges:
            args.append("--no-merges")
        if limit is not None:
            args.append(f"--max-count={limit}")
        return self.run(*args, *revs, "--").split()

    def commits(
        self, *revs: str, no_merges: bool = False, limit: int | None = None
    ) -> list[Commit]:
        """The commits `revs` select, oldest first, with authors and full messages."""
        fmt = _FS.join(["%H", "%P", "%an", "%ae", "%cn", "%ce", "%ct", "%B"]) + _RS
        args = ["log", f"--format={fmt}", "--reverse"]
        if no_merges:
            args.append("--no-merges")
        if limit is not None:
            args.append(f"--max-count={limit}")
        return list(_parse_log(self.run(*args, *revs, "--")))

    def commit(self, rev: str) -> Commit:
        """One commit, by any name git accepts."""
        fmt = _FS.join(["%H", "%P", "%an", "%ae", "%cn", "%ce", "%ct", "%B"]) + _RS
        found = list(_parse_log(self.run("log", "-1", "--no-walk", f"--format={fmt}", rev, "--")))
        if not found:
            raise GitError(f"no commit {rev!r}")
        return found[0]

    def message(self, rev: str) -> str:
        return self.commit(rev).message

    def author(self, rev: str) -> Ident:
        return self.commit(rev).author

    def committer(self, rev: str) -> Ident:
        return self.commit(rev).committer

    def tree(self, rev: str) -> str:
        return self.run("rev-parse", f"{rev}^{{tree}}").strip()

    def user(self) -> Ident:
        """Who is committing now: git's committer identity (config and GIT_* variables)."""
        ident = self.run("var", "GIT_COMMITTER_IDENT").strip()
        name, _, rest = ident.partition(" <")
        return Ident(name=name.strip(), email=rest.split(">", 1)[0].strip())

    def merge_base(self, a: str, b: str) -> str | None:
        result = self._run(["merge-base", a, b], check=False)
        return result.stdout.strip() or None

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        return self.ok("merge-base", "--is-ancestor", ancestor, descendant)

    def default_branch(self) -> str | None:
        """The remote's default branch (`origin/HEAD`), else a local main or master."""
        result = self._run(
            ["symbolic-ref", "--quiet", "--short", "refs/remotes/origin/HEAD"], check=False
        )
        if result.stdout.strip():
            return result.stdout.strip()
        for name in ("main", "master"):
            if self.resolve(f"refs/heads/{name}"):
                return name
        return None

    def upstream(self) -> str | None:
        """The current branch's upstream (`@{upstream}`), if it has one."""
        result = self._run(
            ["rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}"], check=False
        )
        return result.stdout.strip() or None

    # -- patch ids -------------------------------------------------------------------

    def patch_id(self, rev: str) -> str | None:
        """`git patch-id --stable` of one commit's change, or None for an empty change."""
        return self._patch_id(["diff-tree", "--patch", "--root", "--no-commit-id", rev])

    def range_patch_id(self, base: str, tip: str) -> str | None:
        """`git patch-id --stable` of the combined change from `base` to `tip`."""
        return self._patch_id(["diff-tree", "--patch", base, tip])

    def _patch_id(self, diff_args: Sequence[str]) -> str | None:
        # diff-tree is plumbing: no diff.renames or other porcelain config alters the
        # diff, so the same change gives the same id on every machine.
        diff = self._run(diff_args).stdout
        if not diff.strip():
            return None
        out = self.run("patch-id", "--stable", input=diff).split()
        return out[0] if out else None


def _parse_log(text: str) -> Iterable[Commit]:
    for record in text.split(_RS):
        record = record.lstrip("\n")
        if not record:
            continue
        sha, parents, an, ae, cn, ce, ct, message = record.split(_FS, 7)
        yield Commit(
            sha=sha,
            parents=tuple(parents.split()),
            author=Ident(an, ae),
            committer=Ident(cn, ce),
            committed_at=int(ct or 0),
            message=message.rstrip("\n") + "\n" if message.strip() else "",
        )
