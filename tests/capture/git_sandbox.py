"""A real git repository in a temporary directory, with FlowLoom run as a user runs it.

Git and `python -m flowloom` run in subprocesses with an isolated HOME, git config and
FLOWLOOM_HOME; decisions and approvals are recorded in-process through the same ledger
the hooks write to (`.git/flowloom/ledger.db`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowloom.config import load_settings
from flowloom.decisions.records import DecisionBook
from flowloom.repo.git import GitRepo
from flowloom.repo.signers import ALLOWED_SIGNERS_PATH, GitKeyApprover
from flowloom.services import Services, build_services
from tests.support.sshkeys import SshKey, make_key

DECISION = "D-0123456789"
OTHER_DECISION = "D-abcdef0123"

_DROP = (
    "FLOWLOOM_SERVER",
    "FLOWLOOM_API_KEY",
    "FLOWLOOM_API_KEY_FILE",
    "FLOWLOOM_SERVER_VKEY",
    "FLOWLOOM_DATABASE",
    "FLOWLOOM_PROJECT",
    "FLOWLOOM_ORIGIN",
    "FLOWLOOM_OVERRIDE",
    "FLOWLOOM_OVERRIDE_APPROVER",
    "FLOWLOOM_DEBUG",
    "FLOWLOOM_BRANCH",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GITHUB_BASE_REF",
    "GITHUB_REF_NAME",
    "CI_COMMIT_BRANCH",
    "CI_MERGE_REQUEST_TARGET_BRANCH_NAME",
)


class Sandbox:
    """One repository (`self.repo`) and the environment its commands run in."""

    def __init__(self, tmp_path: Path, name: str = "repo") -> None:
        self.root = tmp_path
        self.repo = tmp_path / name
        self.repo.mkdir(parents=True, exist_ok=True)
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k not in _DROP}
        env.update(
            {
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "FLOWLOOM_HOME": str(tmp_path / "flowloom-home"),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
                "GIT_AUTHOR_NAME": "Ann Author",
                "GIT_AUTHOR_EMAIL": "ann@example.com",
                "GIT_COMMITTER_NAME": "Ann Author",
                "GIT_COMMITTER_EMAIL": "ann@example.com",
                "GIT_EDITOR": "true",
            }
        )
        # FlowLoom as an installation puts it on PATH: a `flowloom` command (the hooks
        # find it there; they name no interpreter).
        self.bin_dir = tmp_path / "flowloom-bin"
        self.bin_dir.mkdir(exist_ok=True)
        launcher = self.bin_dir / "flowloom"
        launcher.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m flowloom "$@"\n')
        launcher.chmod(0o755)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', os.defpath)}"
        self.env = env
        if not (self.repo / ".git").exists():
            self.git("init", "-q", "-b", "main")

    # -- processes ---------------------------------------------------------------------

    def run(
        self,
        args: list[str],
        *,
        env: Mapping[str, str] | None = None,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            cwd=cwd or self.repo,
            env={**self.env, **(env or {})},
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def git(self, *args: str, env: Mapping[str, str] | None = None, check: bool = True) -> str:
        result = self.run(["git", *args], env=env)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def flowloom(
        self, *args: str, env: Mapping[str, str] | None = None, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "flowloom", *args], env=env, input=input)

    def ok(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        result = self.flowloom(*args, env=env)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return result.stdout

    def warned(self, *args: str) -> str:
        """`flowloom status …` that finds something wrong: exit 1, WARNING lines."""
        result = self.flowloom("status", *args)
        assert result.returncode == 1, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        assert "WARNING: " in result.stdout or '"warnings"' in result.stdout
        return result.stdout

    # -- commits -----------------------------------------------------------------------

    def write(self, name: str, text: str) -> None:
        path = self.repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(
        self,
        message: str,
        *,
        file: str = "work.txt",
        line: str | None = None,
        env: Mapping[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess[str]:
        """Append a line to `file` and `git commit -m message` (the hooks run)."""
        path = self.repo / file
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as fh:
            fh.write((line or message) + "\n")
        self.git("add", file)
        return self.run(["git", "commit", "-q", "-m", message, *extra], env=env)

    def commit_ok(self, message: str, **kwargs: Any) -> str:
        result = self.commit(message, **kwargs)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        return self.head()

    def commit_without_hooks(self, message: str, **kwargs: Any) -> str:
        """A commit no FlowLoom hook sees (a server-side squash, a tool that skips hooks)."""
        extra = tuple(kwargs.pop("extra", ()))
        result = self.commit(message, extra=("--no-verify", *extra), **kwargs)
        assert result.returncode == 0, result.stderr
        return self.head()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def message(self, rev: str = "HEAD") -> str:
        return self.git("log", "-1", "--format=%B", rev)

    def trailers(self, rev: str = "HEAD") -> list[tuple[str, str]]:
        """The trailers of `rev`'s message as git itself parses them."""
        out = self.run(["git", "interpret-trailers", "--parse"], input=self.message(rev)).stdout
        return [tuple(line.split(": ", 1)) for line in out.splitlines()]  # type: ignore[misc]

    # -- FlowLoom set-up and ledger ----------------------------------------------------

    def init(self, *args: str, commit: bool = True) -> str:
        """`flowloom init`, then commit the policy file under an override (adoption)."""
        out = self.ok("init", *args)
        if commit:
            self.git("add", ".flowloom")
            result = self.run(
                ["git", "commit", "-q", "-m", "Adopt FlowLoom"],
                env={"FLOWLOOM_OVERRIDE": "adopt FlowLoom"},
            )
            assert result.returncode == 0, result.stderr
        return out

    def set_policy(self, **values: object) -> None:
        """Rewrite keys of the [policy] table in place."""
        path = self.repo / ".flowloom" / "config.toml"
        lines = path.read_text().splitlines()
        for key, value in values.items():
            rendered = json.dumps(value) if not isinstance(value, bool) else str(value).lower()
            lines = [f"{key} = {rendered}" if ln.startswith(f"{key} =") else ln for ln in lines]
        path.write_text("\n".join(lines) + "\n")

    @contextmanager
    def services(self) -> Iterator[Services]:
        services = build_services(load_settings(self.repo, self.env))
        try:
            yield services
        finally:
            services.close()

    def record_decision(
        self, decision: str = DECISION, *, requested_by: str = "bob", session: str = "s-1"
    ) -> int:
        """A `decision.record` event, recorded directly through the Ledger."""
        with self.services() as services:
            return services.ledger.record(
                "decision.record",
                meta={
                    "actor": {"type": "agent", "id": "claude-code"},
                    "session": session,
                    "subject": decision,
                    "refs": {"title": f"decision {decision}", "requested_by": requested_by},
                },
            ).index

    def ssh_key(self, person: str) -> SshKey:
        """`person`'s own SSH signing key (made once, with the real ssh-keygen)."""
        directory = self.root / "sshkeys"
        key = directory / person.replace("@", "_at_")
        if key.exists():
            return SshKey(key, key.with_name(key.name + ".pub"))
        return make_key(directory, key.name)

    def allow_signers(self, *people: str) -> None:
        """Commit `.flowloom/allowed_signers` listing each person's key (as `person` or
        `person@example.com`), on the current branch (a governed commit, overridden here)."""
        lines = []
        for person in people:
            principal = person if "@" in person else f"{person}@example.com"
            lines.append(f'{principal} namespaces="flowloom" {self.ssh_key(person).public_line}')
        path = self.repo / ALLOWED_SIGNERS_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        self.git("add", ALLOWED_SIGNERS_PATH)
        self.git("commit", "-q", "-m", "allowed signers", env={"FLOWLOOM_OVERRIDE": "signers"})

    def approve(self, decision: str, approver: str) -> None:
        """`approver` approves with their own SSH key (listed by `allow_signers`)."""
        signer = GitKeyApprover(GitRepo(self.repo), key=self.ssh_key(approver).private)
        with self.services() as services:
            DecisionBook(services.ledger, forbid_self_approval=False).approve(
                decision, signer.identity(), sign=signer.sign
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.services() as services:
            ledger = services.ledger
            return [
                {"index": e.index, **json.loads(e.envelope)}
                for e in ledger.store.entries(ledger.log, kind=kind)
            ]

    def common_dir(self) -> Path:
        return self.repo / ".git"


class SandboxTemplate:
    """A sandbox set up once (per test module) and laid down afresh for each test.

    Setting up a governed repository takes a dozen git and `flowloom` processes; tests
    that all start from the same one copy it instead. The copy is laid at the very path
    the template was built at, so every absolute path inside it (git config, hooks, HOME,
    keys) stays true, and each test still starts from untouched files.
    """

    def __init__(self, root: Path, setup: Callable[[Sandbox], None]) -> None:
        self.work = root / "box"
        self.saved = root / "template"
        setup(Sandbox(self.work))
        shutil.copytree(self.work, self.saved, symlinks=True)

    def fresh(self) -> Sandbox:
        """The set-up sandbox, as it was right after set-up."""
        shutil.rmtree(self.work)
        shutil.copytree(self.saved, self.work, symlinks=True)
        return Sandbox(self.work)
