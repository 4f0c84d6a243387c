"""The ``test.result`` event: test results bound to the tree that was tested and to the run.

A passing gate (`flowloom check`) says every commit is linked and approved; it says
nothing about tests. ``test.result`` is the evidence that tests ran and how they came
out: the JUnit files' cases (the body), their counts and digests (refs), the commit and
*tree* that was tested — the tree, because a merge or a rebase makes a new commit with
the same content, and a change is judged by what it contains — and the CI run's
identity (`flowloom.ci.identity`), proven or only claimed. It is an authority-bearing
kind (`flowloom.ledger.attest`): only `flowloom ci record` writes it, attested by the
log's key; the generic append refuses it.

The results are of the tree only if the working tree is HEAD's: a run whose tracked files
differ from HEAD (a test that rewrote a snapshot, a step that patched a file) is refused.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from flowloom.ci.identity import CIIdentity, CIIdentityError
from flowloom.ci.junit import JUnitError, JUnitFile, Outcome
from flowloom.errors import InputError
from flowloom.repo.git import GitRepo

__all__ = ["KIND", "TestEvidence", "tested_tree"]

KIND: Final = "test.result"
FAILING_LISTED: Final = 20
FILES_LISTED: Final = 50


def tested_tree(repo: GitRepo) -> tuple[str, str]:
    """(commit, tree) of HEAD, once the working tree is shown to be HEAD's (InputError)."""
    head = repo.head()
    if head is None:
        raise InputError("this repository has no commit yet: there is no tree that was tested")
    if not repo.ok("diff", "--quiet", "HEAD", "--"):
        changed = repo.run("diff", "--name-only", "HEAD", "--").split()
        raise InputError(
            f"tracked files differ from HEAD ({', '.join(changed[:5])}): the results would "
            "not be those of HEAD's tree; nothing was recorded",
            hint="commit or undo the changes the job made before recording",
        )
    return head, repo.tree(head)


@dataclass(frozen=True)
class TestEvidence:
    """JUnit files, the tree they tested, and who ran them: one ``test.result``."""

    __test__ = False  # not a pytest class

    files: tuple[JUnitFile, ...]
    commit: str
    tree: str
    identity: CIIdentity
    branch: str | None = None
    name: str | None = None

    @classmethod
    def of(
        cls,
        files: Sequence[JUnitFile],
        commit: str,
        tree: str,
        identity: CIIdentity,
        *,
        branch: str | None = None,
        name: str | None = None,
    ) -> TestEvidence:
        """Checked evidence: at least one test case; a verified run that built this commit."""
        if not files:
            raise JUnitError("no JUnit files given: nothing to record")
        if not any(f.cases for f in files):
            raise JUnitError(
                f"no test cases in {', '.join(f.name for f in files)}: nothing was recorded",
                hint="the test runner wrote no results; check its JUnit output path",
            )
        if identity.verified and identity.sha and identity.sha != commit:
            raise CIIdentityError(
                f"the CI run's verified token is for commit {identity.sha[:12]}, but HEAD is "
                f"{commit[:12]}: these results are not that run's; nothing was recorded"
            )
        return cls(tuple(files), commit, tree, identity, branch, name)

    def count(self, outcome: Outcome) -> int:
        return sum(f.count(outcome) for f in self.files)

    @property
    def tests(self) -> int:
        return sum(len(f.cases) for f in self.files)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files)

    def failing(self) -> list[str]:
        return [c.id for f in self.files for c in f.cases if c.outcome in ("failed", "error")]

    def actor(self) -> dict[str, Any]:
        claims = self.identity.claims
        where = next(
            (
                str(claims[k])
                for k in (
                    "repository", "project_path", "GITHUB_REPOSITORY", "CI_PROJECT_PATH",
                    "BITBUCKET_REPO_FULL_NAME", "JOB_NAME",
                )
                if claims.get(k)
            ),
            "",
        )  # fmt: skip
        ident = f"ci:{self.identity.platform}" + (f":{where}" if where else "")
        return {"type": "service", "id": ident[:200]}

    def meta(self) -> dict[str, Any]:
        failing = self.failing()
        refs: dict[str, Any] = {
            "ok": self.ok,
            "commit": self.commit,
            "tree": self.tree,
            "tests": self.tests,
            "passed": self.count("passed"),
            "failed": self.count("failed"),
            "errors": self.count("error"),
            "skipped": self.count("skipped"),
            "files": [f.summary() for f in self.files[:FILES_LISTED]],
            "failing": [name[:200] for name in failing[:FAILING_LISTED]],
            "ci": self.identity.to_json(),
        }
        if self.name:
            refs["name"] = self.name
        git: dict[str, Any] = {"head": self.commit}
        if self.branch:
            git["branch"] = self.branch
        return {
            "actor": self.actor(),
            "subject": self.commit,
            "git": git,
            "refs": refs,
        }

    def body(self, limit: int) -> bytes:
        """Every case as JSON; when that is over `limit` bytes, the passing ones are left
        out (their count stays in refs) and the body says so."""
        cases = [{**c.to_json(), "file": f.name} for f in self.files for c in f.cases]
        data: dict[str, Any] = {"files": [f.summary() for f in self.files], "cases": cases}
        text = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
        if len(text) <= limit:
            return text
        data["cases"] = [c for c in cases if c["outcome"] != "passed"]
        data["passed_cases_omitted"] = True
        text = json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
        if len(text) <= limit:
            return text
        data["cases"], data["cases_omitted"] = [], True
        return json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")
