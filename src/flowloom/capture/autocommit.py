"""Auto-commit: after the agent writes a file, commit it, linked to its decision.

Policy (`.flowloom/config.toml`, `[policy]`, read by `flowloom.repo.policy`):
`auto_commit` (default true) and `auto_push` (default false). When a PostToolUse (or
Cursor afterFileEdit) records an artifact.write inside a repository and auto-commit is
on, the hook, in its own process:

1. drains the spool (everything captured earlier goes into the ledger first, in order)
   and records this run's events, so their ledger indices are known;
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

Files git ignores are not committed, nor is a file whose diff held something that looks
like a secret (that one is reported: git history cannot be redacted afterwards). A
commit that cannot be made (a merge in progress, a failing pre-commit hook, no git
identity) is recorded as capture.error and the agent goes on.
"""

from __future__ import annotations

import os
import secrets
import subprocess

from flowloom.capture.agents.common import (
    AGENT_NAMES,
    Capture,
    Event,
    Place,
    agent_actor,
    capture_error,
    git_context,
    load_session,
    now_ts,
    save_session,
    tickets_in,
)

__all__ = [
    "DEFAULT_POLICY",
    "SUBJECT_LIMIT",
    "commit_message",
    "new_decision_id",
    "read_policy",
    "run",
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


class _Recorded:
    """Ledger indices of this run's events, once recorded."""

    __slots__ = ("indices", "spool_name")

    def __init__(self, spool_name: str, indices: list[int | None]) -> None:
        self.spool_name = spool_name
        self.indices = indices


def run(place: Place, agent: str, capture: Capture, raw: bytes) -> list[Event]:
    """Record `capture` and commit the files it wrote; returns events left to spool.

    Everything this run captured is recorded before it returns, except when the ledger
    cannot be opened or the spool stays locked: then the events come back to the caller,
    which spools them (nothing is lost; the commit waits for the next write).
    """
    from flowloom.events import outbox

    assert place.top is not None and place.common_dir is not None
    events = [e.to_json() for e in capture.events]
    try:
        services = _open_services(place.top, os.path.dirname(place.spool_dir))
    except Exception as exc:
        note = capture_error(agent, f"auto-commit skipped: cannot open the ledger: {exc}", raw)
        return [*capture.events, note]
    try:
        lock = outbox.SpoolLock(place.spool_dir, wait_s=_LOCK_WAIT_S)
        try:
            lock.__enter__()
        except OSError as exc:  # the outbox is unusable: the hook keeps them elsewhere
            note = capture_error(agent, f"auto-commit skipped: the spool is unusable: {exc}", raw)
            return [*capture.events, note]
        try:
            if not lock.acquired:
                note = capture_error(agent, "auto-commit skipped: the spool stayed locked", raw)
                return [*capture.events, note]
            name = outbox.write(place.spool_dir, agent, events, now_ts())
            if services.team:
                services.ledger.outbox.lock_held = True
            try:
                report = _drain(services, place.spool_dir)
            except Exception as exc:  # the events wait in the spool; nothing to commit with
                report_error: Exception | None = exc
            else:
                report_error = report.error
            if report_error is not None:
                error = f"auto-commit skipped: cannot open the ledger: {report_error}"
                return [capture_error(agent, error, raw)]
            recorded = _Recorded(
                name,
                [outbox.recorded_index(place.spool_dir, name, i) for i in range(len(events))],
            )
            _commit(place, agent, capture, recorded, services.ledger, raw)
            _drain(services, place.spool_dir)  # the link
        finally:
            lock.__exit__()
    finally:
        services.close()
    return []


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


def _record(ledger: Ledger, event: Event) -> int:
    from flowloom.capture.agents.hookmain import redact_event

    redact_event(event)  # as every hook event is: paths and ids stay readable
    body = event.body_text()
    ack = ledger.record(
        event.kind,
        body=body.encode("utf-8", "replace") if body is not None else None,
        meta=event.meta,
    )
    return ack.index


def _commit(
    place: Place,
    agent: str,
    capture: Capture,
    recorded: _Recorded,
    ledger: Ledger,
    raw: bytes,
) -> None:
    from pathlib import Path

    from flowloom.capture import pushqueue
    from flowloom.capture.state import PendingLink, read_pending, write_pending

    assert place.top is not None and place.common_dir is not None
    common = Path(place.common_dir)
    positions = {id(event): i for i, event in enumerate(capture.events)}
    candidates: dict[str, int | None] = {}
    for write, event in capture.writes:
        rel = place.relative(write.path)
        if os.path.isabs(rel):
            continue  # outside the work tree: recorded, not committed
        if event.redactions:
            # The diff held something that looks like a secret: committing it would put
            # the secret into git history, which no redaction can take back.
            kinds = ", ".join(sorted(event.redactions))
            error = (
                f"auto-commit skipped for {rel}: it contains what looks like a secret "
                f"({kinds}); commit it yourself if that is intended"
            )
            _record(ledger, capture_error(agent, error, raw, files=[rel]))
            continue
        candidates[rel] = recorded.indices[positions[id(event)]]
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
        _record(ledger, capture_error(agent, f"auto-commit skipped: {busy} is in progress", raw))
        return

    session = capture.session
    scratch = load_session(place, session)
    prompt: dict[str, Any] = scratch["prompt"] if isinstance(scratch.get("prompt"), dict) else {}
    prompt_text: str | None = prompt["text"] if isinstance(prompt.get("text"), str) else None
    prompt_entry: int | None = None
    if isinstance(prompt.get("spool"), str) and isinstance(prompt.get("pos"), int):
        prompt_entry = _prompt_index(place.spool_dir, prompt)

    decision = _decision_for(place, agent, capture, scratch, prompt, prompt_entry, files, ledger)
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
        _record(ledger, capture_error(agent, error, raw, files=files))
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
        _record(ledger, capture_error(agent, error, raw, files=files, decision=decision))
        return
    if not read_policy(place.top).get("auto_push"):
        return
    sha = _git(place.top, "rev-parse", "HEAD").stdout.strip()
    target = pushqueue.push_target(place.top)
    if not sha or target is None:
        error = "auto-push skipped: the branch has no upstream and there is no 'origin' remote"
        _record(ledger, capture_error(agent, error, raw))
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
    capture: Capture,
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
        and pending.session == capture.session
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
            "session": capture.session,
            "model": scratch.get("model") if isinstance(scratch.get("model"), str) else None,
            "files": files,
            "tickets": tickets_in(prompt_text),
            "prompt_entry": prompt_entry,
        }
        event = Event(
            "decision.record",
            actor=agent_actor(agent),
            session=capture.session,
            git=git_context(place),
            subject=decision,
            refs=refs,
        )
        entry = _record(ledger, event)
    # The turn's final reply amends this decision; `entry` lets the drainer find its
    # record without a search (it is checked, and searched for by id when it is not).
    scratch_decision: dict[str, Any] = {"id": decision, "prompt": prompt_key, "entry": entry}
    save_session(place, capture.session, {"decision": scratch_decision})
    return decision
