"""What every agent adapter shares: where capture state lives, events, diffs, scratch.

A hook run turns one agent payload into a `Capture`: the events to record, the files
the agent wrote (for auto-commit), and what to print back to the agent. Adapters build
captures from payloads; `hookmain` redacts, spools or commits them.

Capture state lives beside the ledger in the git common dir, `.git/flowloom/` (or in
FLOWLOOM_HOME outside a repository): `spool/` (events not yet in the ledger),
`sessions/` (per-session scratch: the current prompt, the decision, the before-state of
files about to be written), `notices/` (what a session's user has still to be told),
`push-queue/`.

This module runs inside agent hooks on every prompt: standard library only, and no
`dataclasses`/`typing` at run time, nor `hashlib` until a digest is needed (each costs
more to import than the hook's budget allows).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time

from flowloom.events.durable import private_dirs

__all__ = [
    "AGENT_NAMES",
    "MAX_BODY_CHARS",
    "Capture",
    "Event",
    "FileWrite",
    "PayloadError",
    "Place",
    "agent_actor",
    "capture_error",
    "clip",
    "digest",
    "drop_session",
    "file_write_event",
    "git_context",
    "leave_notice",
    "load_session",
    "locate",
    "make_private",
    "now_ts",
    "read_file_state",
    "save_session",
    "session_dir",
    "take_notices",
    "tickets_in",
    "tool_event",
    "transcript_reply",
    "unified_diff",
    "write_atomic",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

AGENT_NAMES = {
    "claude-code": "Claude Code",
    "codex": "Codex CLI",
    "cursor": "Cursor",
    "aider": "Aider",
}

MAX_BODY_CHARS = 4 * 1024 * 1024
"""Bodies longer than this are cut (and say so): a diff or tool output, not a dump."""

MAX_SNAPSHOT_BYTES = 16 * 1024 * 1024
"""Files larger than this are not kept for diffing; their digests still are."""

_MAX_STRING_IN_TOOL_BODY = 64 * 1024


class PayloadError(Exception):
    """The agent sent something this adapter cannot read; recorded as capture.error."""


class Event:
    """One event to record: kind, optional text body, envelope meta (refs, subject, …).

    `data` is a structured body (a tool's input and output): it is redacted as data,
    each string on its own, and only then written out as JSON text into `body`, so a
    secret is never hidden from the patterns behind JSON escapes.
    """

    __slots__ = ("amend", "body", "data", "kind", "meta", "redactions", "ts")

    def __init__(
        self, kind: str, body: str | None = None, *, data: Any = None, **meta: Any
    ) -> None:
        self.kind = kind
        self.body = body
        self.data = data
        self.ts = now_ts()  # when it happened: the ledger keeps this, not the drain time
        self.amend: dict[str, Any] | None = None  # a reply's decision to amend (spool.py)
        self.meta: dict[str, Any] = {k: v for k, v in meta.items() if v is not None}
        refs = self.meta.get("refs")
        if isinstance(refs, dict):  # no nulls in the record: an unknown value is left out
            self.meta["refs"] = {k: v for k, v in refs.items() if v is not None}
        self.redactions: dict[str, int] = {}

    def body_text(self) -> str | None:
        """The body as stored: the text, or the structured body as indented JSON."""
        if self.data is not None:
            return json.dumps(self.data, ensure_ascii=False, indent=1, default=str)
        return self.body

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": self.kind, "ts": self.ts, "meta": self.meta}
        body = self.body_text()
        if body is not None:
            record["body"] = body
        if self.redactions:
            record["redactions"] = self.redactions
        if self.amend:
            record["amend"] = self.amend
        return record


class FileWrite:
    """A file the agent wrote: its path and its content before and after (None: absent)."""

    __slots__ = ("after", "before", "before_known", "path", "tool")

    def __init__(
        self,
        path: str,
        *,
        tool: str,
        before: bytes | None,
        after: bytes | None,
        before_known: bool = True,
    ) -> None:
        self.path = path
        self.tool = tool
        self.before = before
        self.after = after
        self.before_known = before_known


class Capture:
    """What one hook run produced."""

    __slots__ = (
        "ends_session",
        "events",
        "prompt_at",
        "reply_at",
        "session",
        "session_updates",
        "stdout",
        "writes",
    )

    def __init__(self, session: str | None) -> None:
        self.session = session
        self.events: list[Event] = []
        self.writes: list[tuple[FileWrite, Event]] = []  # each with its artifact.write
        self.stdout = ""
        self.prompt_at: int | None = None  # position of the agent.prompt in `events`
        self.reply_at: int | None = None  # position of the turn's final agent.response
        self.session_updates: dict[str, Any] = {}
        self.ends_session = False  # the session's scratch is dropped once this is delivered

    def add(self, event: Event) -> Event:
        self.events.append(event)
        return event


# --------------------------------------------------------------------------- places


class Place:
    """Where a hook runs: the work tree, git dirs and the capture state directory."""

    __slots__ = ("common_dir", "cwd", "git_dir", "state_dir", "top")

    def __init__(
        self,
        cwd: str,
        top: str | None,
        git_dir: str | None,
        common_dir: str | None,
        state_dir: str,
    ) -> None:
        self.cwd = cwd
        self.top = top
        self.git_dir = git_dir
        self.common_dir = common_dir
        self.state_dir = state_dir

    @property
    def spool_dir(self) -> str:
        return os.path.join(self.state_dir, "spool")

    @property
    def sessions_dir(self) -> str:
        return os.path.join(self.state_dir, "sessions")

    def relative(self, path: str) -> str:
        """`path` relative to the work tree when inside it, else absolute."""
        full = os.path.normpath(os.path.join(self.cwd, path))
        if self.top is not None:
            rel = os.path.relpath(full, self.top)
            if not rel.startswith(os.pardir + os.sep) and rel != os.pardir:
                return rel.replace(os.sep, "/")
        return full

    def absolute(self, path: str) -> str:
        return os.path.normpath(os.path.join(self.cwd, path))


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError):
        return None


def locate(cwd: str, env: dict[str, str] | os._Environ[str] | None = None) -> Place:
    """Find the repository around `cwd` the way git does, without running git.

    Handles plain repositories, worktrees and submodules (a `.git` file naming the git
    dir, whose `commondir` names the shared one).
    """
    env = os.environ if env is None else env
    cwd = os.path.abspath(cwd)
    directory = cwd
    while True:
        dotgit = os.path.join(directory, ".git")
        git_dir: str | None = None
        if os.path.isdir(dotgit):
            git_dir = dotgit
        elif os.path.isfile(dotgit):
            text = _read_text(dotgit) or ""
            if text.startswith("gitdir:"):
                git_dir = os.path.normpath(os.path.join(directory, text[7:].strip()))
        if git_dir is not None:
            common = git_dir
            pointer = _read_text(os.path.join(git_dir, "commondir"))
            if pointer and pointer.strip():
                common = os.path.normpath(os.path.join(git_dir, pointer.strip()))
            return Place(cwd, directory, git_dir, common, os.path.join(common, "flowloom"))
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    home = env.get("FLOWLOOM_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "share", "flowloom"
    )
    return Place(cwd, None, None, None, home)


_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")


def git_context(place: Place) -> dict[str, str] | None:
    """The envelope's `git` member (branch, HEAD commit) read from the git files."""
    if place.git_dir is None or place.common_dir is None:
        return None
    head = (_read_text(os.path.join(place.git_dir, "HEAD")) or "").strip()
    if not head:
        return None
    if _SHA.fullmatch(head):
        return {"head": head}
    if not head.startswith("ref: "):
        return None
    ref = head[5:].strip()
    result: dict[str, str] = {}
    if ref.startswith("refs/heads/"):
        result["branch"] = ref[len("refs/heads/") :]
    sha = (_read_text(os.path.join(place.common_dir, ref)) or "").strip()
    if not _SHA.fullmatch(sha):
        sha = ""
        packed = _read_text(os.path.join(place.common_dir, "packed-refs")) or ""
        for line in packed.splitlines():
            if line.endswith(" " + ref) and _SHA.fullmatch(line.split(" ", 1)[0]):
                sha = line.split(" ", 1)[0]
                break
    if sha:
        result["head"] = sha
    return result or None


# --------------------------------------------------------------------------- helpers


def now_ts() -> str:
    """The current time as an event timestamp (UTC, six fractional digits, Z)."""
    now = time.time()
    seconds = int(now)
    micros = int((now - seconds) * 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def _sha256_hex(data: bytes) -> str:
    # Imported on first use: hashlib loads OpenSSL, which a plain prompt does not need.
    import hashlib

    return hashlib.sha256(data).hexdigest()


def digest(data: bytes) -> str:
    """Plain SHA-256 of `data`, as `sha256:<hex>`."""
    return "sha256:" + _sha256_hex(data)


def agent_actor(agent: str) -> dict[str, str]:
    return {"type": "agent", "id": agent, "name": AGENT_NAMES.get(agent, agent)}


def capture_error(agent: str, error: str, raw: bytes | None, **refs: Any) -> Event:
    """A capture.error event: what failed, and the digest (never the content) of the input."""
    details: dict[str, Any] = {"error": error[:2000]}
    if raw is not None:
        details["payload_digest"] = digest(raw)
        details["payload_bytes"] = len(raw)
    details.update({k: v for k, v in refs.items() if v is not None})
    return Event(
        "capture.error", actor=agent_actor(agent), subject=agent or "unknown", refs=details
    )


_TICKET = re.compile(r"\b[A-Z][A-Z0-9]{1,9}-[0-9]{1,7}\b")
_NOT_TICKETS = ("UTF-", "ISO-", "SHA-", "RFC-", "TLS-", "PEP-", "AES-", "RSA-", "GPT-", "CVE-")


def tickets_in(text: str) -> list[str]:
    """Issue ids like ABC-123 mentioned in `text`, in order, without repeats."""
    found: list[str] = []
    for match in _TICKET.findall(text):
        if match.startswith(_NOT_TICKETS) or match in found:
            continue
        found.append(match)
    return found


def clip(value: Any, limit: int = _MAX_STRING_IN_TOOL_BODY) -> Any:
    """JSON-like data with long strings and lists shortened (tool inputs and outputs)."""
    if isinstance(value, str):
        if len(value) > limit:
            return value[:limit] + f"\n[… {len(value) - limit} more characters not recorded]"
        return value
    if isinstance(value, dict):
        return {str(k): clip(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [clip(v, limit) for v in value[:500]]
        if len(value) > 500:
            items.append(f"[… {len(value) - 500} more items not recorded]")
        return items
    return value


def tool_event(
    agent: str,
    session: str | None,
    tool: str,
    tool_input: Any,
    tool_response: Any,
    *,
    git: dict[str, str] | None,
    **refs: Any,
) -> Event:
    """An agent.tool event: tool name as subject, input and result as the body."""
    body = {"tool": tool, "input": clip(tool_input), "response": clip(tool_response)}
    details = {"tool": tool, **{k: v for k, v in refs.items() if v is not None}}
    return Event(
        "agent.tool",
        data=body,
        actor=agent_actor(agent),
        session=session,
        git=git,
        subject=tool or "tool",
        refs=details,
    )


# --------------------------------------------------------------------------- diffs


def read_file_state(path: str) -> bytes | None:
    """The file's content, or None when it does not exist (or is not a regular file)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_SNAPSHOT_BYTES + 1)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    except OSError:
        return None


def _decode(data: bytes) -> str | None:
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def unified_diff(rel: str, before: bytes | None, after: bytes | None) -> tuple[str, int, int]:
    """A git-style unified diff of one file, with the counts of added and removed lines."""
    old = b"" if before is None else before
    new = b"" if after is None else after
    old_text, new_text = _decode(old), _decode(new)
    header_old = "/dev/null" if before is None else f"a/{rel}"
    header_new = "/dev/null" if after is None else f"b/{rel}"
    if old_text is None or new_text is None:
        return f"Binary files {header_old} and {header_new} differ\n", 0, 0
    import difflib

    lines = list(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=header_old,
            tofile=header_new,
        )
    )
    added = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    return text, added, removed


def file_write_event(
    agent: str,
    session: str | None,
    place: Place,
    write: FileWrite,
    *,
    git: dict[str, str] | None,
    **refs: Any,
) -> Event:
    """An artifact.write event: the path as subject, the unified diff as body."""
    rel = place.relative(write.path)
    details: dict[str, Any] = {"path": rel, "tool": write.tool}
    if write.before_known:
        details["before"] = digest(write.before) if write.before is not None else "absent"
    else:
        details["before"] = "unknown"
    details["after"] = digest(write.after) if write.after is not None else "absent"
    if write.before is None and write.before_known:
        details["change"] = "create"
    elif write.after is None:
        details["change"] = "delete"
    else:
        details["change"] = "modify"
    too_large = any(
        content is not None and len(content) > MAX_SNAPSHOT_BYTES
        for content in (write.before, write.after)
    )
    if too_large:
        body = f"{rel}: too large to diff (over {MAX_SNAPSHOT_BYTES} bytes); see the digests\n"
    elif not write.before_known:
        text, added, removed = unified_diff(rel, None, write.after)
        details.update(added=added, removed=removed)
        body = "(the content before this write was not captured; the new content follows)\n"
        body += text
    else:
        body, added, removed = unified_diff(rel, write.before, write.after)
        details.update(added=added, removed=removed)
    if len(body) > MAX_BODY_CHARS:
        body = body[:MAX_BODY_CHARS] + "\n[… diff cut here; see the digests]\n"
        details["truncated"] = True
    details.update({k: v for k, v in refs.items() if v is not None})
    return Event(
        "artifact.write",
        body,
        actor=agent_actor(agent),
        session=session,
        git=git,
        subject=rel,
        refs=details,
    )


# --------------------------------------------------------------------------- scratch


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name)[:64].strip(".") or "_"
    if cleaned != name:
        cleaned += "-" + _sha256_hex(name.encode("utf-8", "replace"))[:12]
    return cleaned


def make_private(state_dir: str) -> list[str]:
    """Tighten capture state an older version left readable to others: the state
    directory and its subdirectories to 0700, the ledger's files to 0600 (only what this
    user owns). Returns the paths changed."""
    changed: list[str] = []

    def tighten(path: str, wanted: int) -> None:
        try:
            info = os.lstat(path)
        except OSError:
            return
        if info.st_uid != os.getuid() or info.st_mode & 0o077 == 0:
            return
        os.chmod(path, wanted)
        changed.append(path)

    if not os.path.isdir(state_dir):
        return changed
    tighten(state_dir, 0o700)
    for name in sorted(os.listdir(state_dir)):
        path = os.path.join(state_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            tighten(path, 0o700)
        elif name.startswith("ledger.db"):
            tighten(path, 0o600)
    return changed


def write_atomic(path: str, data: bytes) -> None:
    """Write a private file (0600) whole, or not at all, in a private directory."""
    directory = os.path.dirname(path)
    private_dirs(directory)
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def session_dir(place: Place, session: str) -> str:
    """The directory of a session's scratch."""
    return os.path.join(place.sessions_dir, _safe(session))


def load_session(place: Place, session: str | None) -> dict[str, Any]:
    """The session's scratch (current prompt, decision, model); empty when none."""
    if not session:
        return {}
    text = _read_text(os.path.join(session_dir(place, session), "session.json"))
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def save_session(place: Place, session: str | None, updates: dict[str, Any]) -> None:
    """Merge `updates` into the session's scratch (a key set to None is removed)."""
    if not session or not updates:
        return
    import fcntl

    directory = session_dir(place, session)
    path = os.path.join(directory, "session.json")
    private_dirs(directory)
    # The detached committer saves the turn's decision while the agent's next hooks
    # save theirs: the read-modify-write is serialised, so neither loses the other's.
    fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        data = load_session(place, session)
        for key, value in updates.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value
        write_atomic(path, json.dumps(data, ensure_ascii=False).encode("utf-8"))
    finally:
        os.close(fd)  # closing releases the lock


def drop_session(place: Place, session: str | None) -> None:
    """Forget a session's scratch (at session end), its before-images' key shredded."""
    if not session:
        return
    import shutil

    from flowloom.capture.agents.snapshots import forget_before

    forget_before(place, session)
    shutil.rmtree(session_dir(place, session), ignore_errors=True)


def _notice_path(state_dir: str, session: str | None) -> str:
    return os.path.join(state_dir, "notices", _safe(session or "_"))


def leave_notice(state_dir: str, session: str | None, text: str) -> None:
    """Keep `text` for the next hook of `session` to show its user (`take_notices`).

    Work done off the agent's path (a commit given up after the turn's end returned)
    has no answer of its own to carry a notice: the session's next hook carries it.
    """
    path = _notice_path(state_dir, session)
    try:
        private_dirs(os.path.dirname(path))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError:
        return  # the capture.error is recorded all the same; `flowloom status` shows it
    try:
        os.write(fd, json.dumps(text, ensure_ascii=False).encode("utf-8") + b"\n")
    except OSError:
        pass
    finally:
        os.close(fd)


def take_notices(state_dir: str, session: str | None) -> list[str]:
    """The notices left for `session`, each once, removed as they are taken (one failed
    open when there are none: every hook calls this)."""
    path = _notice_path(state_dir, session)
    taken = f"{path}.{os.getpid()}.taken"
    try:
        os.rename(path, taken)  # atomic: a notice left meanwhile goes to a new file
    except OSError:
        return []
    try:
        with open(taken, "rb") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    finally:
        with contextlib.suppress(OSError):
            os.unlink(taken)
    notices: list[str] = []
    for line in lines:
        try:
            text = json.loads(line)
        except ValueError:
            continue
        if isinstance(text, str) and text not in notices:
            notices.append(text)
    return notices


# --------------------------------------------------------------------------- transcripts


def _tail_lines(path: str, max_bytes: int = 8 * 1024 * 1024) -> list[bytes]:
    """The last lines of a file, newest first, reading at most `max_bytes` from the end."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        start = max(0, size - max_bytes)
        fh.seek(start)
        data = fh.read()
    lines = data.split(b"\n")
    if start > 0:
        lines = lines[1:]  # the first line is cut
    return [line for line in reversed(lines) if line.strip()]


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") in ("text", "output_text"):
                text = block.get("text")
                if isinstance(text, str):
                    texts.append(text)
    return texts


def _is_user_prompt(entry: dict[str, Any]) -> bool:
    message = entry.get("message") if isinstance(entry.get("message"), dict) else entry
    if not isinstance(message, dict) or message.get("role") != "user":
        return False
    content = message.get("content")
    if isinstance(content, str):
        return True
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") in ("text", "input_text") for b in content
    )


def transcript_reply(path: str) -> tuple[str | None, str | None]:
    """The assistant's final reply in a transcript (JSONL) and the model that wrote it.

    Claude Code lines are ``{"type": "assistant", "message": {"id", "model", "content":
    [{"type": "text", "text": …}, …]}}``; one message may span several lines sharing an
    id. Codex lines are ``{"type": "response_item", "payload": {"type": "message",
    "role": "assistant", "content": [{"type": "output_text", …}]}}``. The reply is the
    text of the last assistant message that has text, after the last user prompt.
    Raises OSError when the file cannot be read.
    """
    message_id: str | None = None
    parts: list[str] = []
    model: str | None = None
    for raw in _tail_lines(path):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("type") == "response_item" and isinstance(entry.get("payload"), dict):
            entry = entry["payload"]
        message = entry.get("message") if isinstance(entry.get("message"), dict) else entry
        if not isinstance(message, dict):
            continue
        if _is_user_prompt(entry):
            break
        if message.get("role") != "assistant" and entry.get("type") != "assistant":
            continue
        texts = _texts(message.get("content"))
        this_id = message.get("id") if isinstance(message.get("id"), str) else None
        if parts and (this_id is None or this_id != message_id):
            break  # an earlier message: the last one is complete
        if texts:
            parts[:0] = texts
            message_id = this_id
            if model is None and isinstance(message.get("model"), str):
                model = message["model"]
    if not parts:
        return None, model
    return "\n\n".join(parts), model
