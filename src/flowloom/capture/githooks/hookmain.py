"""`flowloom git-hook NAME ARGS…`: what FlowLoom does inside each git hook.

`flowloom/__main__.py` dispatches here before click is imported. The hooks:

- prepare-commit-msg: adds the pending link's trailers (or, after `git merge --squash`,
  the trailers of the squashed commits) to a message that has no decision yet;
- commit-msg: under an enforcing policy, refuses a message without a recorded decision
  unless an override with a reason is given, which it records as `override.grant`;
- post-commit: records `commit.link` for a linked or overridden commit and clears the
  pending link it consumed;
- pre-push: publishes the log to `refs/flowloom/log` when replication is available.

commit-msg runs on every commit, so its common case (a message naming a decision that
a SQLite ledger records) imports only `os`, `json` and `sqlite3`: the resolved settings
and policy are cached in `.git/flowloom/hook-cache.json`, keyed by the stat of the files
they came from and the environment variables that steer them, and the decision is
looked up with one read-only query. Anything else takes the full path through
`flowloom.config`, the policy and the Store.

A hook never prints a traceback. prepare-commit-msg, post-commit and pre-push never
stop git: a failure records nothing and leaves one warning line. commit-msg fails
closed under an enforcing policy, with a message that says how to link or override.
"""

from __future__ import annotations

import os
import sys

from flowloom.repo.trailers import (
    OVERRIDE,
    OVERRIDE_APPROVER,
    Links,
    has_title,
    is_decision_id,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path
    from typing import Any

    from flowloom.config import Settings
    from flowloom.repo.git import GitRepo
    from flowloom.repo.policy import Override, Policy
    from flowloom.services import Services

__all__ = ["CACHE_FILE", "HOOK_NAMES", "main", "refresh_cache"]

HOOK_NAMES = ("prepare-commit-msg", "commit-msg", "post-commit", "pre-push")
CACHE_FILE = "hook-cache.json"
_CACHE_VERSION = 1
# What load_settings and the policy depend on besides the files recorded in the cache.
_ENV_INPUTS = (
    "FLOWLOOM_HOME",
    "FLOWLOOM_DATABASE",
    "FLOWLOOM_PROJECT",
    "FLOWLOOM_ORIGIN",
    "HOME",
    "XDG_CONFIG_HOME",
)


class Refused(Exception):
    """commit-msg says no; the message is printed as is."""


def main(argv: Sequence[str]) -> int:
    """Run hook `argv[0]` with git's arguments `argv[1:]`; returns the exit status."""
    if not argv or argv[0] not in _HANDLERS:
        sys.stderr.write(
            f"flowloom: error: usage: flowloom git-hook {{{'|'.join(HOOK_NAMES)}}} [ARGS]...\n"
        )
        return 2
    name, args = argv[0], list(argv[1:])
    try:
        return _HANDLERS[name](args)
    except Refused as refusal:
        sys.stderr.write(f"{refusal}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _failed(name, exc, blocking=name == "commit-msg")


def _failed(name: str, exc: BaseException, *, blocking: bool) -> int:
    from flowloom.errors import FlowLoomError

    if isinstance(exc, FlowLoomError):
        what = exc.diagnostics()
    else:
        what = f"internal error: {type(exc).__name__}: {exc} (set FLOWLOOM_DEBUG=1 for details)"
        if os.environ.get("FLOWLOOM_DEBUG"):
            import traceback

            traceback.print_exc()
    if blocking:
        sys.stderr.write(
            f"flowloom: commit refused: FlowLoom could not check the decision link: {what}\n"
            "  fix the problem, or commit with --no-verify (the CI gate still checks it)\n"
        )
        return 1
    sys.stderr.write(f"flowloom: warning: {name} hook: {what}; nothing was recorded\n")
    return 0


# -- where the hook runs -------------------------------------------------------------


def _locate() -> tuple[str, str, str] | None:
    """(work tree top, git dir, common dir) without running git, or None if unsure.

    Git runs hooks at the top of the work tree; GIT_DIR is honoured when git set it.
    """
    cwd = os.getcwd()
    git_dir = os.environ.get("GIT_DIR")
    if git_dir:
        if os.environ.get("GIT_WORK_TREE"):
            return None
        git_dir = os.path.abspath(git_dir)
    else:
        dotgit = os.path.join(cwd, ".git")
        if os.path.isdir(dotgit):
            git_dir = dotgit
        elif os.path.isfile(dotgit):
            try:
                with open(dotgit, encoding="utf-8") as fh:
                    line = fh.readline().strip()
            except OSError:
                return None
            if not line.startswith("gitdir:"):
                return None
            git_dir = os.path.normpath(os.path.join(cwd, line[len("gitdir:") :].strip()))
        else:
            return None
    common = git_dir
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as fh:
            common = os.path.normpath(os.path.join(git_dir, fh.read().strip()))
    except OSError:
        pass
    return cwd, git_dir, common


def _stat_key(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_mtime_ns, st.st_size, st.st_ino]


def _environment() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in _ENV_INPUTS}


def _read_cache(top: str, common: str) -> dict[str, Any] | None:
    """The cached settings and policy for `top`, if every input is unchanged."""
    import json

    try:
        with open(os.path.join(common, "flowloom", CACHE_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("v") != _CACHE_VERSION:
        return None
    entry = data.get("repos", {}).get(top)
    if not isinstance(entry, dict) or entry.get("env") != _environment():
        return None
    files = entry.get("files")
    if not isinstance(files, dict):
        return None
    for path, key in files.items():
        if _stat_key(path) != key:
            return None
    return entry


def refresh_cache(repo_top: Path, common_dir: Path, settings: Settings, policy: Policy) -> None:
    """Record the resolved settings and policy for the fast path (best effort)."""
    import json
    import tempfile

    env = os.environ
    user_home = env.get("HOME") or os.path.expanduser("~")
    user_config = os.path.join(
        env.get("XDG_CONFIG_HOME") or os.path.join(user_home, ".config"), "flowloom", "config.toml"
    )
    comment_char = "#"
    try:
        from flowloom.repo.git import GitRepo

        configured = GitRepo(repo_top).config_get("core.commentChar")
        if configured and len(configured) == 1:
            comment_char = configured
    except Exception:
        return  # without knowing it, the fast path must not be used
    inputs = [
        str(repo_top / ".flowloom" / "config.toml"),
        user_config,
        str(common_dir / "config"),
        os.path.join(user_home, ".gitconfig"),
    ]
    entry = {
        "env": _environment(),
        "files": {path: _stat_key(path) for path in inputs},
        "configured": policy.configured,
        "enforce": policy.enforce,
        "database": settings.database,
        "log": settings.project,
        "comment_char": comment_char,
    }
    path = common_dir / "flowloom" / CACHE_FILE
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
        if not isinstance(data, dict) or data.get("v") != _CACHE_VERSION:
            data = {}
    except (OSError, ValueError):
        data = {}
    found = data.get("repos")
    repos: dict[str, Any] = found if isinstance(found, dict) else {}
    repos[str(repo_top)] = entry
    try:
        from flowloom.events.durable import private_dirs

        private_dirs(str(path.parent))
        fd, tmp = tempfile.mkstemp(prefix=".hook-cache-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"v": _CACHE_VERSION, "repos": repos}, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache: the next hook takes the full path again


def _recorded_in_sqlite(database: str, log: str, decisions: Sequence[str]) -> bool | None:
    """Whether a SQLite ledger records every decision; None when it cannot tell."""
    from flowloom.store.urls import sqlite_path

    try:
        path = sqlite_path(database)
    except ValueError:
        return None
    if path is None or not os.path.isfile(path):
        return None
    database = path
    import json
    import sqlite3

    # Canonical envelopes (RFC 8785) spell the subject exactly so: a safe prefilter.
    uri = "file:" + database.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    try:
        conn = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=10)
    except sqlite3.Error:
        return None
    try:
        for decision in decisions:
            rows = conn.execute(
                "SELECT envelope FROM entries WHERE log = ? AND kind = 'decision.record'"
                " AND instr(envelope, ?) > 0",
                (log, f'"subject":"{decision}"'.encode()),
            ).fetchall()
            if not any(json.loads(row[0]).get("subject") == decision for row in rows):
                return False
        return True
    except (sqlite3.Error, ValueError, AttributeError):
        return None
    finally:
        conn.close()


# -- commit-msg ------------------------------------------------------------------------


def _commit_msg_fast(args: Sequence[str]) -> int | None:
    """The common case, answered from the cache; None sends it down the full path."""
    if not args or "FLOWLOOM_OVERRIDE" in os.environ:
        return None
    where = _locate()
    if where is None:
        return None
    top, git_dir, common = where
    entry = _read_cache(top, common)
    if entry is None:
        return None
    if not entry.get("configured"):
        return 0
    if os.path.exists(os.path.join(git_dir, "MERGE_HEAD")):
        return 0
    try:
        with open(args[0], encoding="utf-8", errors="replace") as fh:
            message = fh.read()
    except OSError:
        return None
    comment_char = str(entry.get("comment_char") or "#")
    if not has_title(message, comment_char):
        return None
    if not entry.get("enforce"):
        return 0
    links = Links.of(message, comment_char)
    if links.override is not None or not links.decisions:
        return None
    if not all(is_decision_id(d) for d in links.decisions):
        return None
    found = _recorded_in_sqlite(str(entry.get("database")), str(entry.get("log")), links.decisions)
    return 0 if found else None


def _how_to(policy: Policy) -> str:
    approver = ' FLOWLOOM_OVERRIDE_APPROVER="<name>"' if policy.override_requires_approver else ""
    approver_opt = ' --approver "<name>"' if policy.override_requires_approver else ""
    return (
        "  link it:     record the decision (flowloom decide, or let your agent record it),"
        " then commit again\n"
        f'  override it: FLOWLOOM_OVERRIDE="<reason>"{approver} git commit ...'
        f'   or   flowloom override "<reason>"{approver_opt}, then commit again'
    )


class _Context:
    """The repository a hook runs in, located by git itself."""

    def __init__(self) -> None:
        from pathlib import Path

        from flowloom.repo.git import GitRepo

        self.repo: GitRepo = GitRepo.discover(Path.cwd())
        self.top: Path = self.repo.cwd
        self.git_dir: Path = self.repo.git_dir()
        self.common_dir: Path = self.repo.common_dir()

    def policy(self) -> Policy:
        from flowloom.repo.policy import load_policy

        return load_policy(self.top)

    def settings(self) -> Settings:
        from flowloom.config import load_settings

        return load_settings(self.top)

    def comment_char(self) -> str:
        configured = self.repo.config_get("core.commentChar")
        return configured if configured and len(configured) == 1 else "#"

    def actor(self) -> dict[str, str]:
        user = self.repo.user()
        return {"type": "human", "id": user.email or user.name, "name": user.name or user.email}

    def git_meta(self, head: str | None) -> dict[str, str]:
        meta = {"branch": self.repo.branch(), "head": head}
        return {key: value for key, value in meta.items() if value}


def _commit_msg(args: list[str]) -> int:
    fast = _commit_msg_fast(args)
    if fast is not None:
        return fast
    if not args:
        raise Refused("flowloom: error: commit-msg needs the message file")
    ctx = _Context()
    policy = ctx.policy()
    if not policy.configured:
        return 0
    settings = ctx.settings()
    refresh_cache(ctx.top, ctx.common_dir, settings, policy)
    if (ctx.git_dir / "MERGE_HEAD").exists():
        return 0  # a merge commit carries no change of its own
    try:
        return _commit_msg_full(ctx, policy, settings, args[0])
    except (Refused, KeyboardInterrupt):
        raise
    except Exception as exc:
        if policy.enforce:
            raise
        return _failed("commit-msg", exc, blocking=False)  # nothing to enforce: let it pass


def _commit_msg_full(ctx: _Context, policy: Policy, settings: Settings, message_file: str) -> int:
    from pathlib import Path

    from flowloom.repo.policy import Override, read_pending_override
    from flowloom.services import build_services

    message = Path(message_file).read_text("utf-8", errors="replace")
    comment_char = ctx.comment_char()
    links = Links.of(message, comment_char)
    if not has_title(message, comment_char):
        raise Refused("Aborting commit due to empty commit message.")
    if not policy.enforce:
        return 0

    if settings.server_url is not None:  # the team's record: docs/sync.md
        from flowloom.services import build_team_services

        services = build_team_services(settings, str(ctx.common_dir / "flowloom"), agent="git")
    else:
        services = build_services(settings)
    try:
        invalid = [d for d in links.decisions if not is_decision_id(d)]
        missing: list[str] = []
        if links.decisions and not invalid:
            missing = _unrecorded(services, links.valid_decisions)
            if missing and services.team:  # yours, still queued for the server, count too
                from flowloom.sinks.team import queued_subjects

                queued = queued_subjects(str(ctx.common_dir / "flowloom" / "spool"))
                missing = [d for d in missing if d not in queued.get("decision.record", ())]
            if not missing:
                return 0

        # Not linked: an override with a reason is the only way through.
        source = "trailer"
        override: Override | None = None
        if "FLOWLOOM_OVERRIDE" in os.environ:
            source = "environment"
            override = Override(
                os.environ["FLOWLOOM_OVERRIDE"],
                os.environ.get("FLOWLOOM_OVERRIDE_APPROVER") or None,
            )
        elif (pending := read_pending_override(ctx.common_dir)) is not None:
            source = "flowloom override"
            override = pending
        elif links.override is not None:
            override = Override(links.override, links.approver)

        if override is None:
            if invalid:
                why = f"FlowLoom-Decision {invalid[0]!r} is not a decision id (D- + 10 hex)"
            elif missing:
                why = f"decision {', '.join(missing)} is not recorded in this repository's ledger"
            else:
                why = "no FlowLoom-Decision trailer links it to a decision"
            raise Refused(
                f"flowloom: commit refused: {why} (policy: enforce = true in .flowloom/config.toml)"
                "\n" + _how_to(policy)
            )
        problem = override.problem(policy, str(ctx.repo.user()))
        if problem:
            raise Refused(f"flowloom: commit refused: {problem}\n" + _how_to(policy))
        _grant(ctx, services, override, source, missing + invalid, message_file, links)
        return 0
    finally:
        services.close()


def _unrecorded(services: Services, decisions: Sequence[str]) -> list[str]:
    """The decisions the ledger has no `decision.record` for."""
    from flowloom.decisions.records import DecisionBook
    from flowloom.errors import NotFoundError

    book = DecisionBook(services.ledger)
    missing = []
    for decision in decisions:
        try:
            book.get(decision)
        except NotFoundError:
            missing.append(decision)
    return missing


def _grant(
    ctx: _Context,
    services: Services,
    override: Override,
    source: str,
    unlinked: list[str],
    message_file: str,
    links: Links,
) -> None:
    """Record the override, mark the message with it, and keep it for post-commit."""
    import time
    from dataclasses import replace

    from flowloom.repo.policy import write_pending_override
    from flowloom.repo.trailers import add_trailers

    grant = override.grant  # set when a commit it was granted for did not complete
    if grant is None:
        branch = ctx.repo.branch()
        refs: dict[str, Any] = {"reason": override.reason, "source": source}
        if override.approver:
            refs["approver"] = override.approver
        if branch:
            refs["branch"] = branch
        if unlinked:
            refs["decisions"] = unlinked
        meta: dict[str, Any] = {"actor": ctx.actor(), "subject": "pending", "refs": refs}
        git = ctx.git_meta(ctx.repo.head())
        if git:
            meta["git"] = git
        ack = services.ledger.record("override.grant", meta=meta)
        grant = None if ack.queued else ack.index
    trailers = []
    if links.override != override.reason:
        trailers.append((OVERRIDE, override.reason))
    if override.approver and links.approver != override.approver:
        trailers.append((OVERRIDE_APPROVER, override.approver))
    if trailers:
        add_trailers(message_file, trailers, cwd=str(ctx.top))
    created = override.created or time.time()
    write_pending_override(ctx.common_dir, replace(override, grant=grant, created=created))
    where = "queued for the team server" if grant is None else f"ledger entry {grant}"
    sys.stderr.write(f"flowloom: override recorded ({where}): {override.reason}\n")


# -- prepare-commit-msg ----------------------------------------------------------------


def _prepare_commit_msg(args: list[str]) -> int:
    if not args:
        return 0
    source = args[1] if len(args) > 1 else ""
    if source == "merge":
        return 0
    ctx = _Context()
    policy = ctx.policy()
    if not policy.configured:
        return 0
    from pathlib import Path

    from flowloom.capture.state import read_pending
    from flowloom.repo.trailers import DECISION, ENTRY, SESSION, add_trailers

    message = Path(args[0]).read_text("utf-8", errors="replace")
    if Links.of(message, ctx.comment_char()).decisions:
        return 0
    trailers: list[tuple[str, str]] = []
    squash_msg = ctx.git_dir / "SQUASH_MSG"
    if squash_msg.exists():
        trailers = _squashed_trailers(ctx, squash_msg)
    replaying = any((ctx.git_dir / d).exists() for d in ("rebase-merge", "rebase-apply"))
    if not trailers and not replaying:  # a rebase replays old commits: not the pending work
        pending = read_pending(ctx.common_dir)
        if pending is not None and pending.decision and is_decision_id(pending.decision):
            trailers.append((DECISION, pending.decision))
            if pending.session:
                trailers.append((SESSION, pending.session))
            if pending.entry is not None:
                trailers.append((ENTRY, str(pending.entry)))
    if trailers:
        add_trailers(args[0], trailers, cwd=str(ctx.top))
    return 0


def _squashed_trailers(ctx: _Context, squash_msg: Path) -> list[tuple[str, str]]:
    """The decisions and sessions of the commits `git merge --squash` combined."""
    from flowloom.repo.trailers import DECISION, SESSION

    shas = [
        line.split()[1]
        for line in squash_msg.read_text("utf-8", errors="replace").splitlines()
        if line.startswith("commit ") and len(line.split()) == 2
    ]
    decisions: dict[str, None] = {}
    sessions: dict[str, None] = {}
    comment_char = ctx.comment_char()
    for sha in shas:
        if not ctx.repo.has_commit(sha):
            continue
        links = Links.of(ctx.repo.message(sha), comment_char)
        decisions.update(dict.fromkeys(links.valid_decisions))
        sessions.update(dict.fromkeys(links.sessions))
    return [(DECISION, d) for d in decisions] + [(SESSION, s) for s in sessions]


# -- post-commit -----------------------------------------------------------------------


def _post_commit(args: list[str]) -> int:
    ctx = _Context()
    policy = ctx.policy()
    if not policy.configured:
        return 0
    from flowloom.capture.state import clear_pending, read_pending
    from flowloom.repo.policy import clear_pending_override, read_pending_override

    head = ctx.repo.head()
    if head is None:
        return 0
    commit = ctx.repo.commit(head)
    links = Links.of(commit.message, ctx.comment_char())
    if not links.decisions and links.override is None:
        if policy.enforce and not commit.is_merge:
            sys.stderr.write(
                f"flowloom: warning: commit {head[:12]} is not linked to a decision; "
                "`flowloom check` (CI) will report it\n"
            )
        return 0
    refs: dict[str, Any] = {"branch": ctx.repo.branch()}
    valid = list(dict.fromkeys(links.valid_decisions))
    if valid:
        refs["decision"] = valid[0]
        if len(valid) > 1:
            refs["decisions"] = valid
    if links.sessions:
        refs["session"] = links.sessions[0]
    if links.entries:
        refs["entry"] = links.entries[0]
    if not commit.is_merge:
        refs["patch_id"] = ctx.repo.patch_id(head)
    refs["tree"] = ctx.repo.tree(head)
    pending_override = read_pending_override(ctx.common_dir)
    if links.override is not None:
        override: dict[str, Any] = {"reason": links.override}
        if links.approver:
            override["approver"] = links.approver
        if (
            pending_override is not None
            and pending_override.grant is not None
            and pending_override.reason == links.override
        ):
            override["grant"] = pending_override.grant
        refs["override"] = override
    meta: dict[str, Any] = {
        "actor": ctx.actor(),
        "git": ctx.git_meta(head),
        "subject": head,
        "refs": {key: value for key, value in refs.items() if value is not None},
    }
    if links.sessions:
        meta["session"] = links.sessions[0]

    _record_through_outbox(ctx, {"kind": "commit.link", "meta": meta})
    pending = read_pending(ctx.common_dir)
    if pending is not None and pending.decision in valid:
        clear_pending(ctx.common_dir)
    if links.override is not None and pending_override is not None:
        clear_pending_override(ctx.common_dir)
    return 0


def _record_through_outbox(ctx: _Context, event: dict[str, Any]) -> None:
    """Make `event` durable in the outbox (`flowloom.events.outbox`), then record it.

    Locally it is drained into the ledger at once, in this process, so the commit's link
    is in the log when git returns; with a server configured the outbox is the server's
    and the detached drainer sends it. Either way a ledger or server that is down loses
    nothing: the event waits in the outbox for the next drainer.
    """
    from flowloom.capture.agents.common import now_ts
    from flowloom.events import outbox

    spool_dir = str(ctx.common_dir / "flowloom" / "spool")
    created = now_ts()
    outbox.write_durably(spool_dir, "git", [{**event, "ts": created}], created)
    if os.environ.get("FLOWLOOM_OUTBOX_HELD"):
        return  # an auto-commit holds the outbox lock and drains right after the commit
    settings = ctx.settings()
    if settings.server_url is None:
        from flowloom.errors import FlowLoomError
        from flowloom.events.drain import drain
        from flowloom.services import build_services
        from flowloom.sinks.ledger import LedgerSink

        try:
            services = build_services(settings)
            try:
                with outbox.drain_lock(spool_dir, wait_s=30.0) as lock:
                    if lock.acquired:
                        sink = LedgerSink(services.ledger)
                        report = drain(outbox.outbox_dirs(spool_dir), sink)
                        if report.error is not None:
                            raise report.error
                        return
            finally:
                services.close()
        except FlowLoomError as exc:
            sys.stderr.write(
                f"flowloom: warning: post-commit hook: {exc.message}; the commit's link is "
                "kept in the outbox and recorded once the ledger works again\n"
            )
    outbox.kick(spool_dir, str(ctx.top))


# -- pre-push --------------------------------------------------------------------------


def _pre_push(args: list[str]) -> int:
    """Extension point: replicate the log through git (refs/flowloom/log) if available."""
    try:
        from flowloom.repo.replicate import (  # type: ignore[import-not-found,unused-ignore]
            LogCollisionError,
            check_publication,
            publish_log,
        )
    except ImportError:
        return 0
    ctx = _Context()
    if not ctx.policy().configured:
        return 0
    from flowloom.services import build_services

    # git passes the remote's name and URL. Git fixed the list of refs to push before
    # this hook ran, so the freshly published log goes out in a push of its own, now,
    # ahead of the branch: CI triggered by the branch then finds the log that links it.
    destination = args[0] if args else None
    settings = ctx.settings()
    if settings.server_url is not None:
        return 0  # the server is the team's one record: nothing to publish through git
    if destination:
        try:
            check_publication(ctx.top, destination)
        except LogCollisionError as exc:
            # The code still goes out; the log does not overwrite (or fail against)
            # another clone's. Said as an error, every push, until it is resolved.
            sys.stderr.write(f"flowloom: error: {exc.message}\n  {exc.hint}\n")
            return 0
    services = build_services(settings)
    try:
        publish_log(ctx.top, services.ledger)
    finally:
        services.close()
    if destination:
        import subprocess

        pushed = subprocess.run(
            [
                "git",
                "push",
                "--no-verify",
                "--quiet",
                destination,
                "refs/flowloom/log:refs/flowloom/log",
            ],
            cwd=ctx.top,
            capture_output=True,
            text=True,
            check=False,
        )
        if pushed.returncode != 0:
            last = (pushed.stderr.strip().splitlines() or ["unknown error"])[-1]
            sys.stderr.write(
                f"flowloom: warning: could not push the log to {destination}: {last}\n"
            )
    return 0


_HANDLERS: Mapping[str, Callable[[list[str]], int]] = {
    "prepare-commit-msg": _prepare_commit_msg,
    "commit-msg": _commit_msg,
    "post-commit": _post_commit,
    "pre-push": _pre_push,
}
