"""The push queue: auto-push through a durable, ordered retry queue.

When the policy says `auto_push = true`, each auto-commit enqueues a push of its commit
(`<sha>:refs/heads/<branch>` to the branch's remote) as one file under
`.git/flowloom/push-queue/`, named by time so the queue keeps its order. The detached
drainer that every hook run starts then pushes the queue in order:

- pushed: the entry is deleted;
- the remote is unreachable (network down, remote moved, auth prompt refused): the entry
  stays, with its attempt count and last error, and nothing after it is tried; a later
  hook run retries;
- the remote rejected it (non-fast-forward, a protected branch): retrying cannot help,
  so the entry moves to `failed/`, a capture.error is recorded, and the queue goes on.

Git runs with prompts disabled, so a push never waits for a password in the background.
Data model, one JSON file per entry::

    {"v": 1, "top": "/repo", "remote": "origin", "branch": "main", "sha": "<commit>",
     "created": "<ts>", "attempts": 0, "last_error": "..."}
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from flowloom.events.durable import private_dirs

__all__ = ["PushOutcome", "enqueue", "pending", "process", "push_target"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from flowloom.ledger.log import Ledger

_PUSH_TIMEOUT_S = 120
_REJECTED = ("[rejected]", "[remote rejected]", "non-fast-forward", "fetch first")


def _queue_dir(state_dir: str) -> str:
    return os.path.join(state_dir, "push-queue")


def _git_env() -> dict[str, str]:
    env = dict(os.environ)
    env["GIT_TERMINAL_PROMPT"] = "0"
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=15")
    return env


def _git(top: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=top,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_git_env(),
        check=False,
    )


def push_target(top: str) -> tuple[str, str] | None:
    """(remote, branch) the current branch pushes to: its upstream, else `origin`."""
    branch = _git(top, "symbolic-ref", "--quiet", "--short", "HEAD").stdout.strip()
    if not branch:
        return None  # detached HEAD: nothing to push to
    remote = _git(top, "config", "--get", f"branch.{branch}.remote").stdout.strip()
    merge = _git(top, "config", "--get", f"branch.{branch}.merge").stdout.strip()
    if remote and remote != ".":
        target = merge[len("refs/heads/") :] if merge.startswith("refs/heads/") else branch
        return remote, target
    remotes = _git(top, "remote").stdout.split()
    if "origin" in remotes:
        return "origin", branch
    return None


def enqueue(state_dir: str, top: str, remote: str, branch: str, sha: str, created: str) -> str:
    """Add a push to the end of the queue, durably; returns the entry's file name."""
    directory = _queue_dir(state_dir)
    private_dirs(directory)
    name = f"{time.time_ns():020d}-{os.getpid():07d}.json"
    entry = {
        "v": 1,
        "top": top,
        "remote": remote,
        "branch": branch,
        "sha": sha,
        "created": created,
        "attempts": 0,
    }
    _write_entry(os.path.join(directory, name), entry)
    return name


def _write_entry(path: str, entry: dict[str, object]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(entry, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def pending(state_dir: str) -> list[str]:
    """Queued pushes, oldest first."""
    try:
        names = os.listdir(_queue_dir(state_dir))
    except OSError:
        return []
    return sorted(n for n in names if n.endswith(".json") and not n.startswith("."))


class PushOutcome:
    """What one pass over the queue did."""

    __slots__ = ("failed", "pushed", "waiting")

    def __init__(self) -> None:
        self.pushed: list[str] = []
        self.failed: list[str] = []
        self.waiting: list[str] = []


def process(state_dir: str, ledger: Ledger | None = None) -> PushOutcome:
    """Push the queue in order until it is empty or the remote is unreachable."""
    from flowloom.events.outbox import SpoolLock

    outcome = PushOutcome()
    directory = _queue_dir(state_dir)
    while True:
        with SpoolLock(directory) as lock:
            if not lock.acquired:
                return outcome  # another process is pushing this queue
            stopped = _process_locked(directory, ledger, outcome)
        if stopped or not pending(state_dir):
            return outcome


def _process_locked(directory: str, ledger: Ledger | None, outcome: PushOutcome) -> bool:
    """One pass; True when it stopped at an unreachable remote."""
    for name in pending(os.path.dirname(directory)):
        path = os.path.join(directory, name)
        try:
            with open(path, encoding="utf-8") as fh:
                entry = json.load(fh)
            top, remote = str(entry["top"]), str(entry["remote"])
            branch, sha = str(entry["branch"]), str(entry["sha"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _fail(directory, name, ledger, f"unreadable push-queue entry: {exc}")
            outcome.failed.append(name)
            continue
        try:
            result = _git(
                top, "push", remote, f"{sha}:refs/heads/{branch}", timeout=_PUSH_TIMEOUT_S
            )
            error = " ".join((result.stderr or result.stdout).split())[-500:]
            ok = result.returncode == 0
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        if ok:
            os.unlink(path)
            outcome.pushed.append(name)
            continue
        if any(marker in error for marker in _REJECTED):
            _fail(
                directory,
                name,
                ledger,
                f"push of {sha[:12]} to {remote}/{branch} rejected: {error}",
            )
            outcome.failed.append(name)
            continue
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        entry["last_error"] = error
        _write_entry(path, entry)
        outcome.waiting = pending(os.path.dirname(directory))
        return True
    return False


def _fail(directory: str, name: str, ledger: Ledger | None, error: str) -> None:
    failed = os.path.join(directory, "failed")
    os.makedirs(failed, mode=0o700, exist_ok=True)
    os.replace(os.path.join(directory, name), os.path.join(failed, name))
    if ledger is not None:
        refs = {"error": error[:2000], "queue_entry": name}
        ledger.record("capture.error", meta={"subject": "auto-push", "refs": refs})
