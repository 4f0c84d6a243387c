"""Auto-commit: after the agent writes a file, commit it, linked to its decision.

Policy (`.flowloom/config.toml`, `[policy]`, read by `flowloom.repo.policy`):
`auto_commit` (default true) and `auto_push` (default false). When a PostToolUse (or
Cursor afterFileEdit) records an artifact.write inside a repository and auto-commit is
on, the agent does not wait for the commit:

0. the hook writes its events to the outbox (durable at once), then a commit request
   naming them (`enqueue`, `<state>/commits/`, durable too), and starts the detached
   drainer; the drainer, under the outbox lock, records the outbox and then makes the
   waiting commits (`commit_waiting`), each so:
1. the request's events have their ledger indices (the outbox journal);
2. finds the decision for this exchange: the one already recorded for the current
   prompt, or a pending link (`flowloom.capture.state`) of this session recorded after
   the prompt (an explicit `flowloom decide`), or else records a new `decision.record`
   (`D-` + 10 hex; title: the prompt's first line; refs per docs/capture.md);
3. writes the pending link (decision, session, entry = the artifact.write) for the git
   hooks, then `git add` + `git commit --only` of exactly the files the agent wrote,
   so unrelated staged work stays staged and uncommitted; the message is the prompt's
   first line (at most 72 characters) with FlowLoom-Decision / FlowLoom-Session /
   FlowLoom-Entry trailers;
4. with auto-push on, enqueues the push (`flowloom.capture.pushqueue`).

The next prompt, the turn's end (Stop) and the session's end first finish any commit
still waiting (`finish`), so every commit is made under its own turn's prompt and the
turn's reply amends the decision it produced.

Files git ignores are not committed, nor is a file whose diff held something that looks
like a secret (that one is reported: git history cannot be redacted afterwards). A
commit that cannot be made (a merge in progress, a failing pre-commit hook, no git
identity) is recorded as capture.error and the agent goes on; its user is told in
the answer of the hook that gave the commit up, or, when that ran off the agent's path
(the drainer, a deferred turn's end), in the next hook of the session
(`leave_notice`): a commit is never given up silently.
"""

from __future__ import annotations

import contextlib
import os
import subprocess

from flowloom.capture.agents.common import (
    AGENT_NAMES,
    Capture,
    Event,
    Place,
    agent_actor,
    capture_error,
    git_context,
    leave_notice,
    load_session,
    now_ts,
    save_session,
    tickets_in,
)

__all__ = [
    "DEFAULT_POLICY",
    "SUBJECT_LIMIT",
    "commit_message",
    "commit_notice",
    "commit_waiting",
    "defer",
    "defer_if_busy",
    "enqueue",
    "finish",
    "jobs_dir",
    "jobs_ready",
    "jobs_waiting",
    "ledger_unwritable",
    "new_decision_id",
    "read_policy",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flowloom.ledger.log import Ledger

DEFAULT_POLICY: dict[str, Any] = {"auto_commit": True, "auto_push": False}
SUBJECT_LIMIT = 72
_LOCK_WAIT_S = 15.0
_GIT_TIMEOUT_S = 120


def read_policy(repo_top: str | None) -> dict[str, Any]:
    """`auto_commit` and `auto_push` from the repository's policy (`flowloom.repo.policy`).

    A policy file that cannot be read switches auto-commit off (and says why under
    `error`): committing past a broken policy could bypass what it enforces.
    """
    policy = dict(DEFAULT_POLICY)
    if repo_top is None:
        return policy
    from pathlib import Path

    from flowloom.errors import FlowLoomError
    from flowloom.repo.policy import load_policy

    try:
        loaded = load_policy(Path(repo_top))
    except FlowLoomError as exc:
        return {"auto_commit": False, "auto_push": False, "error": exc.diagnostics()}
    return {"auto_commit": loaded.auto_commit, "auto_push": loaded.auto_push}


def new_decision_id() -> str:
    """`D-` and 10 lowercase hex characters."""
    import secrets  # not at the top: it loads hashlib, which prompt hooks do without

    return "D-" + secrets.token_hex(5)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        line = " ".join(line.split())
        if line:
            return line
    return ""


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def commit_message(prompt: str | None, files: list[str], agent: str) -> tuple[str, str]:
    """(subject, body): the prompt's first line (≤ 72 chars) and what was written."""
    subject = _shorten(_first_line(prompt or ""), SUBJECT_LIMIT)
    if not subject:
        subject = _shorten(f"Update {', '.join(files)}", SUBJECT_LIMIT)
    who = AGENT_NAMES.get(agent, agent)
    body = f"Written by {who}: {', '.join(files)}\nAuto-committed by FlowLoom."
    return subject, body


OUTBOX_HELD = "FLOWLOOM_OUTBOX_HELD"


def _git(top: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    # This process holds the outbox lock and drains after the commit: the post-commit
    # hook only makes its commit.link durable (`flowloom.capture.githooks.hookmain`).
    env[OUTBOX_HELD] = "1"
    return subprocess.run(
        ["git", *args],
        cwd=top,
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        env=env,
        check=False,
    )


def _git_error(result: subprocess.CompletedProcess[str]) -> str:
    text = " ".join((result.stderr or result.stdout or "").split())
    return text[-600:] or f"git exited with {result.returncode}"


def _human(top: str) -> str | None:
    """Who asked: the email git commits under here (GIT_AUTHOR_EMAIL, else user.email)."""
    ident = _git(top, "var", "GIT_AUTHOR_IDENT").stdout
    start, end = ident.find("<"), ident.find(">")
    email = ident[start + 1 : end].strip() if 0 <= start < end else ""
    return email or None


def _busy(place: Place) -> str | None:
    """Why committing now would disturb the user's git operation, if it would."""
    assert place.git_dir is not None
    for name, what in (
        ("MERGE_HEAD", "a merge"),
        ("rebase-merge", "a rebase"),
        ("rebase-apply", "a rebase or am"),
        ("CHERRY_PICK_HEAD", "a cherry-pick"),
        ("REVERT_HEAD", "a revert"),
        ("BISECT_LOG", "a bisect"),
    ):
        if os.path.exists(os.path.join(place.git_dir, name)):
            return what
    return None


_JOBS = "commits"


def jobs_dir(state_dir: str) -> str:
    """Where commit requests wait for the committer (`<state>/commits/`)."""
    return os.path.join(state_dir, _JOBS)


def jobs_waiting(state_dir: str) -> bool:
    """Whether a commit request is still waiting (a cheap listdir: hooks call it)."""
    from flowloom.events import outbox

    return bool(outbox.pending(jobs_dir(state_dir)))


def enqueue(place: Place, agent: str, capture: Capture, written: Any, raw: bytes) -> str:
    """Ask the committer to commit what `capture` wrote; the request's file name.

    The events are already durable in outbox file `written` (`outbox.Written`); the
    request names them by position, and is itself one durable outbox-format file under
    `<state>/commits/`, so a request survives a crash like an event does.
    """
    from flowloom.events import outbox
    from flowloom.events.model import digest

    positions = {id(event): i for i, event in enumerate(capture.events)}
    job = {
        "agent": agent,
        "session": capture.session,
        "cwd": place.cwd,
        "dir": written.directory,
        "spool": written.name,
        "offset": written.offset,
        "writes": [
            {
                "path": write.path,
                "pos": positions[id(event)],
                "secrets": sorted(event.redactions),
                "after": event.meta.get("refs", {}).get("after"),
            }
            for write, event in capture.writes
            if id(event) in positions
        ],
        "payload": {"payload_digest": digest(raw), "payload_bytes": len(raw)},
    }
    return outbox.write(jobs_dir(place.state_dir), agent, [job], now_ts())


def defer(place: Place, agent: str, capture: Capture, amend_at: int | None) -> str:
    """Queue a turn's (or session's) end behind the commits still waiting; the request's
    file name.

    Its events (redacted) are durable in the request; the drainer, once the commits
    before it are made, asks for the amendment of the turn's decision by the reply at
    `amend_at`, writes the events to the outbox, and drops the session's scratch when
    the capture ended the session (`commit_waiting`).
    """
    from flowloom.events import outbox

    job = {
        "type": "events",
        "agent": agent,
        "session": capture.session,
        "cwd": place.cwd,
        "events": [event.to_json() for event in capture.events],
        "amend_at": amend_at,
        "ends_session": capture.ends_session,
    }
    return outbox.write(jobs_dir(place.state_dir), agent, [job], now_ts())


def defer_if_busy(place: Place, agent: str, capture: Capture, amend_at: int | None) -> bool:
    """`defer` the capture when a drainer is at work on the queue (it holds the outbox
    lock, and goes round again for what is queued meanwhile); True when deferred.

    When no drainer is at work, the one started earlier has ended without making the
    commits (the ledger could not be opened, say): the hook then finishes them itself
    (`finish`), which tells the agent's user what went wrong. So it does when the
    drainer at work is bound to fail (a drain failure is logged, the ledger cannot be
    written): deferring would give the commit up after this hook's answer, unseen.
    """
    from flowloom.events import outbox

    if _drain_failed_since(place.state_dir):
        return False
    lock = outbox.drain_lock(place.spool_dir)
    try:
        if lock.acquired or ledger_unwritable(place.state_dir):
            return False
        defer(place, agent, capture, amend_at)
        return True
    except OSError:
        return False  # the queue cannot be written: wait for the commits instead
    finally:
        lock.__exit__()


def _drain_failed_since(state_dir: str) -> bool:
    """Whether a drainer logged a failure (`capture.log`) after the oldest waiting
    request was made: then the drainer at work may fail the same way, and the hook
    finishes the commits itself, to tell the user."""
    from flowloom.events import outbox

    names = outbox.pending(jobs_dir(state_dir))
    if not names:
        return False
    try:
        logged = os.stat(os.path.join(state_dir, "capture.log")).st_mtime_ns
    except OSError:
        return False
    return logged >= int(names[0].split("-", 1)[0])  # names start with time_ns


def ledger_unwritable(state_dir: str) -> bool:
    """Whether the local SQLite ledger visibly cannot be written: a file of it, or its
    directory, is not writable to this process (`os.access` also sees an immutable file,
    for root). The ledger `flowloom init` makes (`<state>/ledger.db`, or
    FLOWLOOM_DATABASE's file); a server's record is not checked (it is not local)."""
    database = os.environ.get("FLOWLOOM_DATABASE") or os.path.join(state_dir, "ledger.db")
    if "://" in database or database == ":memory:" or not os.path.exists(database):
        return False
    directory = os.path.dirname(os.path.abspath(database))
    if not os.access(directory, os.W_OK):
        return True
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = database + suffix
        if os.path.exists(path) and not os.access(path, os.W_OK):
            return True
    return False


def commit_notice(error: str) -> str:
    """What the agent's user is told of a commit given up or not made (`error`)."""
    if "cannot open the ledger" in error:
        return (
            f"{error}. The events are kept in the spool and recorded once the "
            "ledger can be written; the files are not committed. Run "
            "`flowloom status`."
        )
    return f"{error.rstrip('.')}. Run `flowloom status`."


def jobs_ready(state_dir: str) -> bool:
    """Whether the oldest waiting request can be handled now: events to pass on, or a
    commit whose outbox file is gone (recorded, or lost). A drainer goes round again
    for one that became ready meanwhile."""
    from flowloom.events import outbox

    directory = jobs_dir(state_dir)
    for name in outbox.pending(directory):
        job = _read_job(os.path.join(directory, name))
        return job is None or _ready(job)
    return False


def _ready(job: dict[str, Any]) -> bool:
    if job.get("type") == "events":
        return True
    return not os.path.exists(os.path.join(str(job.get("dir", "")), str(job.get("spool", ""))))


def _pass_on(job: dict[str, Any], created: str) -> None:
    """A deferred turn's end: amend request set now that its decision is known, events to
    the outbox, the session's scratch dropped when it ended the session."""
    from flowloom.capture.agents.common import drop_session, locate
    from flowloom.capture.agents.hookmain import amend_request
    from flowloom.events import outbox

    place = locate(str(job.get("cwd") or "."))
    session = job["session"] if isinstance(job.get("session"), str) else None
    events = [e for e in job.get("events") or [] if isinstance(e, dict)]
    at = job.get("amend_at")
    if isinstance(at, int) and 0 <= at < len(events):
        request = amend_request(place, session)
        if request is not None:
            events[at]["amend"] = request
    if events:
        outbox.write_durably(place.spool_dir, str(job.get("agent", "")), events, created)
    if job.get("ends_session") is True:
        drop_session(place, session)


def _unchanged_since(place: Place, write: dict[str, Any]) -> bool:
    """Whether the file is still as the write left it. When it is not, it was written
    again (that write's request commits it) or edited past the hooks (Stop records and
    commits that): committing it now would name this write for content it did not make.
    """
    from flowloom.capture.agents.worktree import state_of

    after = write.get("after")
    if not isinstance(after, str) or not after.startswith("sha256:"):
        return True  # nothing to compare with: commit what is there, as before
    try:
        with open(place.absolute(str(write.get("path", ""))), "rb") as fh:
            content: bytes | None = fh.read()
    except FileNotFoundError:
        content = None
    except OSError:
        return True
    return state_of(content) == after


def _paths_written(place: Place, jobs: list[dict[str, Any] | None]) -> set[str]:
    paths: set[str] = set()
    for job in jobs:
        writes = job.get("writes") if job is not None else None
        if isinstance(writes, list):
            paths.update(place.relative(str(w.get("path", ""))) for w in writes)
    return paths


def _created(path: str) -> str:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            created = json.load(fh).get("created")
    except (OSError, ValueError, AttributeError):
        return now_ts()
    return created if isinstance(created, str) else now_ts()


def _read_job(path: str) -> dict[str, Any] | None:
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
        job = record["events"][0]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    return job if isinstance(job, dict) else None


def commit_waiting(state_dir: str, ledger: Ledger) -> int:
    """Handle the waiting requests in order, oldest first; how many are left.

    A commit is made once its events are recorded: the caller holds the outbox lock and
    has drained the outbox just before, so they have their indices; it drains again
    after, for the commit links the post-commit hook spooled and the events passed on.
    A commit whose events are not recorded yet stops the queue there (what is behind it
    waits, in order). A request is removed once handled, however it ended: a failure is
    recorded as capture.error by `_commit`.
    """
    from flowloom.capture.agents.common import locate
    from flowloom.events import outbox

    directory = jobs_dir(state_dir)
    names = outbox.pending(directory)
    jobs = [_read_job(os.path.join(directory, name)) for name in names]
    for done, name in enumerate(names):
        path = os.path.join(directory, name)
        job = jobs[done]
        if job is not None and job.get("type") == "events":
            _pass_on(job, _created(path))
        elif job is not None and isinstance(job.get("writes"), list):
            spool_dir, spool = str(job.get("dir", "")), str(job.get("spool", ""))
            offset = job["offset"] if isinstance(job.get("offset"), int) else 0
            indices = [
                outbox.recorded_index(spool_dir, spool, offset + int(w.get("pos", 0)))
                for w in job["writes"]
            ]
            if any(i is None for i in indices) and not _ready(job):
                return len(names) - done  # not recorded yet: it and those behind it wait
            place = locate(str(job.get("cwd") or "."))
            if place.top is not None and place.common_dir is not None:
                payload = job["payload"] if isinstance(job.get("payload"), dict) else {}
                # A file written again by a request behind this one has only its later
                # content on disk: that request commits it, naming its own write.
                later = _paths_written(place, jobs[done + 1 :])
                writes = [
                    (str(w.get("path", "")), [str(k) for k in w.get("secrets") or []], index)
                    for w, index in zip(job["writes"], indices, strict=True)
                    if place.relative(str(w.get("path", ""))) not in later
                    and _unchanged_since(place, w)
                ]
                agent = str(job.get("agent", ""))
                session = job["session"] if isinstance(job.get("session"), str) else None
                _commit(place, agent, session, writes, ledger, payload)
        with contextlib.suppress(OSError):  # (a hook that gave up waiting dropped it)
            os.unlink(path)  # handled, or unreadable: nothing can be done from it
    return 0


def finish(place: Place, agent: str, raw: bytes) -> list[Event]:
    """Finish any commit still waiting, before this hook goes on; events to spool.

    A hook that starts a new exchange (prompt), ends a turn (its reply amends the
    turn's decision) or ends the session calls this: the turn's commits must be made
    first, under that turn's prompt. Usually the detached committer has made them
    (`flowloom.drainer`) and this is one listdir; else it waits for that committer, or
    commits in-process. A request that cannot be made now is dropped with a
    capture.error (its events stay in the outbox; the files stay uncommitted), so it
    never commits later under another prompt.
    """
    if not jobs_waiting(place.state_dir):
        return []
    from flowloom.events import outbox

    lock = outbox.drain_lock(place.spool_dir, wait_s=_LOCK_WAIT_S)
    try:
        if not jobs_waiting(place.state_dir):
            return []  # the detached committer made them
        if not lock.acquired:
            return _drop_jobs(place, agent, raw, "the spool stayed locked")
        try:
            services = _open_services(place.top or place.cwd, place.state_dir)
        except Exception as exc:
            return _drop_jobs(place, agent, raw, f"cannot open the ledger: {exc}")
        try:
            if services.team:  # this process holds the outbox lock: send without it
                services.ledger.outbox.lock_held = True
            try:
                report = _drain(services, place.spool_dir)
            except Exception as exc:
                report_error: Exception | None = exc
            else:
                report_error = report.error
            if report_error is not None:
                return _drop_jobs(place, agent, raw, f"cannot open the ledger: {report_error}")
            commit_waiting(place.state_dir, services.ledger)
            _drain(services, place.spool_dir)  # the links the post-commit hook spooled
        finally:
            services.close()
    finally:
        lock.__exit__()
    return _drop_jobs(place, agent, raw, "its events were not recorded")


def _drop_jobs(place: Place, agent: str, raw: bytes, why: str) -> list[Event]:
    from flowloom.events import outbox

    directory = jobs_dir(place.state_dir)
    dropped: list[Event] = []
    for name in outbox.pending(directory):
        path = os.path.join(directory, name)
        job = _read_job(path) or {}
        if job.get("type") == "events":  # a deferred turn's end: its events go on
            _pass_on(job, _created(path))
            with contextlib.suppress(OSError):
                os.unlink(path)
            continue
        writes: list[Any] = job["writes"] if isinstance(job.get("writes"), list) else []
        files = [place.relative(str(w.get("path", ""))) for w in writes if isinstance(w, dict)]
        error = f"auto-commit skipped: {why}"
        dropped.append(capture_error(agent, error, raw, files=files))
        # The hook dropping it may not be one its session's user sees (another session's,
        # a session's end after a deferred turn's end): that session's next hook tells.
        session = job["session"] if isinstance(job.get("session"), str) else None
        leave_notice(place.state_dir, session, commit_notice(error))
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
    return dropped


def _prompt_index(spool_dir: str, prompt: dict[str, Any]) -> int | None:
    """The index of the turn's prompt: its outbox file's journal, or the fallback's."""
    from flowloom.events import outbox

    directory = prompt.get("dir") if isinstance(prompt.get("dir"), str) else None
    for candidate in [directory] if directory else outbox.outbox_dirs(spool_dir):
        index = outbox.recorded_index(candidate, prompt["spool"], prompt["pos"])
        if index is not None:
            return index
    return None


def _open_services(top: str, state_dir: str) -> Any:
    """The local ledger, or the team's record when a server is configured (the events
    then go through the outbox to the server: docs/sync.md)."""
    from pathlib import Path

    from flowloom.config import load_settings
    from flowloom.services import build_services, build_team_services

    settings = load_settings(Path(top))
    if settings.server_url is not None:
        return build_team_services(settings, state_dir, agent="auto-commit")
    return build_services(settings)


def _drain(services: Any, spool_dir: str) -> Any:
    """Drain the outbox (the caller holds its lock) into the ledger, or to the server."""
    from flowloom.events import outbox
    from flowloom.events.drain import drain

    if services.team:
        from flowloom.sinks.server import send_outbox

        return send_outbox(services.ledger.link)
    from flowloom.sinks.ledger import LedgerSink

    return drain(outbox.outbox_dirs(spool_dir), LedgerSink(services.ledger))


def _record(ledger: Ledger, event: Event) -> int | None:
    """Record `event`; its index (None: queued for the team server, out of reach now)."""
    from flowloom.capture.agents.hookmain import redact_event

    redact_event(event)  # as every hook event is: paths and ids stay readable
    body = event.body_text()
    ack = ledger.record(
        event.kind,
        body=body.encode("utf-8", "replace") if body is not None else None,
        meta=event.meta,
    )
    return None if ack.queued else ack.index


def _commit(
    place: Place,
    agent: str,
    session: str | None,
    writes: list[tuple[str, list[str], int | None]],
    ledger: Ledger,
    payload: dict[str, Any],
) -> None:
    """Commit the files written (path, kinds of secret found in its diff, index of its
    artifact.write), linked to the exchange's decision."""
    from pathlib import Path

    from flowloom.capture import pushqueue
    from flowloom.capture.state import PendingLink, read_pending, write_pending

    assert place.top is not None and place.common_dir is not None
    common = Path(place.common_dir)

    def error_event(error: str, **refs: Any) -> Event:
        # Made off the agent's path, mostly (the drainer): the session's next hook tells.
        leave_notice(place.state_dir, session, commit_notice(error))
        return capture_error(agent, error, None, **payload, **refs)

    candidates: dict[str, int | None] = {}
    for path, found, index in writes:
        rel = place.relative(path)
        if os.path.isabs(rel):
            continue  # outside the work tree: recorded, not committed
        if found:
            # The diff held something that looks like a secret: committing it would put
            # the secret into git history, which no redaction can take back.
            kinds = ", ".join(sorted(found))
            error = (
                f"auto-commit skipped for {rel}: it contains what looks like a secret "
                f"({kinds}); commit it yourself if that is intended"
            )
            _record(ledger, error_event(error, files=[rel]))
            continue
        candidates[rel] = index
    if candidates:  # files git ignores are recorded, never committed
        ignored = _git(place.top, "check-ignore", "--", *candidates).stdout.splitlines()
        for rel in ignored:
            candidates.pop(rel, None)
    if not candidates:
        return
    files = list(candidates)
    known = [index for index in candidates.values() if index is not None]
    artifact_index = max(known) if known else None
    busy = _busy(place)
    if busy is not None:
        _record(ledger, error_event(f"auto-commit skipped: {busy} is in progress"))
        return

    scratch = load_session(place, session)
    prompt: dict[str, Any] = scratch["prompt"] if isinstance(scratch.get("prompt"), dict) else {}
    prompt_text: str | None = prompt["text"] if isinstance(prompt.get("text"), str) else None
    prompt_entry: int | None = None
    if isinstance(prompt.get("spool"), str) and isinstance(prompt.get("pos"), int):
        prompt_entry = _prompt_index(place.spool_dir, prompt)

    decision = _decision_for(place, agent, session, scratch, prompt, prompt_entry, files, ledger)
    previous = read_pending(common)
    write_pending(
        common,
        PendingLink(decision=decision, session=session, entry=artifact_index, agent=agent),
    )
    subject, body = commit_message(prompt_text, files, agent)
    trailers = [f"FlowLoom-Decision: {decision}"]
    if session:
        trailers.append(f"FlowLoom-Session: {session}")
    if artifact_index is not None:
        trailers.append(f"FlowLoom-Entry: {artifact_index}")

    added = _git(place.top, "add", "--", *files)
    if added.returncode != 0:
        _restore(common, previous)
        error = f"auto-commit skipped: git add failed: {_git_error(added)}"
        _record(ledger, error_event(error, files=files))
        return
    args = ["commit", "--only", "-m", subject, "-m", body]
    for trailer in trailers:
        args += ["--trailer", trailer]
    committed = _git(place.top, *args, "--", *files)
    if committed.returncode != 0:
        _restore(common, previous)
        text = _git_error(committed)
        if "nothing to commit" in text or "no changes added" in text:
            return
        error = f"auto-commit failed: {text}"
        _record(ledger, error_event(error, files=files, decision=decision))
        return
    if not read_policy(place.top).get("auto_push"):
        return
    sha = _git(place.top, "rev-parse", "HEAD").stdout.strip()
    target = pushqueue.push_target(place.top)
    if not sha or target is None:
        error = "auto-push skipped: the branch has no upstream and there is no 'origin' remote"
        _record(ledger, error_event(error))
        return
    pushqueue.enqueue(place.state_dir, place.top, target[0], target[1], sha, now_ts())


def _restore(common: Any, previous: Any) -> None:
    """Put back the pending link that was there before a commit that did not happen."""
    from flowloom.capture.state import clear_pending, write_pending

    if previous is None:
        clear_pending(common)
    else:
        write_pending(common, previous)


def _decision_for(
    place: Place,
    agent: str,
    session: str | None,
    scratch: dict[str, Any],
    prompt: dict[str, Any],
    prompt_entry: int | None,
    files: list[str],
    ledger: Ledger,
) -> str:
    """The decision this exchange belongs to, recording one when there is none yet."""
    from pathlib import Path

    from flowloom.capture.state import read_pending

    assert place.common_dir is not None
    prompt_key = prompt.get("spool")
    known = scratch.get("decision")
    if (
        isinstance(known, dict)
        and isinstance(known.get("id"), str)
        and known.get("prompt") == prompt_key
    ):
        return str(known["id"])
    entry: int | None = None
    pending = read_pending(Path(place.common_dir))
    if (
        pending is not None
        and pending.decision
        and pending.session == session
        and pending.entry is not None
        and prompt_entry is not None
        and pending.entry > prompt_entry
    ):
        decision = pending.decision  # recorded explicitly during this exchange
        entry = pending.entry
    else:
        decision = new_decision_id()
        prompt_text: str = prompt["text"] if isinstance(prompt.get("text"), str) else ""
        refs: dict[str, Any] = {
            "title": _shorten(_first_line(prompt_text), 200) or f"Update {', '.join(files)}",
            "context": _shorten(prompt_text, 2000) if prompt_text else None,
            "requested_by": _human(place.top or place.cwd),
            "session": session,
            "model": scratch.get("model") if isinstance(scratch.get("model"), str) else None,
            "files": files,
            "tickets": tickets_in(prompt_text),
            "prompt_entry": prompt_entry,
        }
        event = Event(
            "decision.record",
            actor=agent_actor(agent),
            session=session,
            git=git_context(place),
            subject=decision,
            refs=refs,
        )
        entry = _record(ledger, event)
    # The turn's final reply amends this decision; `entry` lets the drainer find its
    # record without a search (it is checked, and searched for by id when it is not).
    scratch_decision: dict[str, Any] = {"id": decision, "prompt": prompt_key, "entry": entry}
    save_session(place, session, {"decision": scratch_decision})
    return decision
