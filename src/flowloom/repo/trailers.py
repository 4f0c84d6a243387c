"""Commit-message trailers that link a commit to its decision (docs/capture.md).

`FlowLoom-Decision: D-…`, `FlowLoom-Session: <id>`, `FlowLoom-Entry: <index>`, and for
an override `FlowLoom-Override: <reason>` (with `FlowLoom-Override-Approver: <name>`).
Reading follows git's trailer rules (the last paragraph, never the title; comment lines
and everything below the scissors line ignored) in plain Python, because the commit-msg
hook reads trailers on every commit; adding goes through `git interpret-trailers`.
This module imports only `os` at load time.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "DECISION",
    "ENTRY",
    "OVERRIDE",
    "OVERRIDE_APPROVER",
    "SESSION",
    "Links",
    "add_trailers",
    "has_title",
    "is_decision_id",
    "parse_trailers",
    "strip_comments",
]

DECISION = "FlowLoom-Decision"
SESSION = "FlowLoom-Session"
ENTRY = "FlowLoom-Entry"
OVERRIDE = "FlowLoom-Override"
OVERRIDE_APPROVER = "FlowLoom-Override-Approver"

_SCISSORS = " ------------------------ >8 ------------------------"
# Lines git itself writes into a trailer block (trailer.c: git_generated_prefixes).
_GIT_GENERATED = ("signed-off-by: ", "(cherry picked from commit ")
_HEX = frozenset("0123456789abcdef")
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")


def is_decision_id(text: str) -> bool:
    """Whether `text` is a decision id: `D-` and 10 lowercase hex digits."""
    return len(text) == 12 and text.startswith("D-") and _HEX.issuperset(text[2:])


def strip_comments(message: str, comment_char: str = "#") -> list[str]:
    """The message's lines as git keeps them: no comments, nothing below the scissors."""
    lines: list[str] = []
    scissors = comment_char + _SCISSORS
    for raw in message.replace("\r\n", "\n").split("\n"):
        if raw == scissors:
            break
        if comment_char and raw.startswith(comment_char):
            continue
        lines.append(raw.rstrip())
    return lines


def _split_trailer(line: str) -> tuple[str, str] | None:
    key, sep, value = line.partition(":")
    if not sep or not key or not _TOKEN_CHARS.issuperset(key) or key.startswith("-"):
        return None
    return key, value.strip()


def parse_trailers(message: str, comment_char: str = "#") -> list[tuple[str, str]]:
    """The trailers of `message` as (key, value) pairs, in order.

    The trailer block is the last paragraph, unless that paragraph is the title. It
    counts when all its lines are trailers, or when a quarter of them are and one is a
    line git generates (Signed-off-by, "(cherry picked from …)"): git's own rule, so
    FlowLoom and `git interpret-trailers --parse` agree on what a message links to.
    """
    lines = strip_comments(message, comment_char)
    while lines and not lines[-1].strip():
        lines.pop()
    start = len(lines)
    while start > 0 and lines[start - 1].strip():
        start -= 1
    # As in git, the title runs to the first blank line (an empty title ends at once).
    end_of_title = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    if start < end_of_title or start == len(lines):
        return []
    block = lines[start:]
    trailers: list[tuple[str, str]] = []
    recognised = False
    trailer_lines = 0
    for line in block:
        if line[:1] in (" ", "\t") and trailers:
            key, value = trailers[-1]
            trailers[-1] = (key, f"{value} {line.strip()}".strip())
            continue
        found = _split_trailer(line)
        if found is None:
            if line.lower().startswith(_GIT_GENERATED):
                recognised = True
                trailer_lines += 1
            continue
        trailer_lines += 1
        trailers.append(found)
        if line.lower().startswith(_GIT_GENERATED):
            recognised = True
    non_continuation = sum(1 for line in block if line[:1] not in (" ", "\t"))
    if trailer_lines == non_continuation or (recognised and trailer_lines * 4 >= non_continuation):
        return trailers
    return []


def has_title(message: str, comment_char: str = "#") -> bool:
    """Whether the message says anything besides FlowLoom's own trailers.

    A message made only of `FlowLoom-*` lines is what prepare-commit-msg leaves when the
    user writes nothing: git would have aborted that commit as empty. A title shaped
    like a trailer ("fix: a typo") is still a title.
    """
    for line in strip_comments(message, comment_char):
        if not line.strip():
            continue
        found = _split_trailer(line)
        ours = found is not None and found[0].lower().startswith("flowloom-")
        if not ours and line[:1] not in (" ", "\t"):
            return True
    return False


class Links:
    """The FlowLoom trailers of one message."""

    __slots__ = ("approver", "decisions", "entries", "override", "sessions")

    def __init__(self, trailers: Sequence[tuple[str, str]]) -> None:
        def values(name: str) -> list[str]:
            wanted = name.lower()
            return [value for key, value in trailers if key.lower() == wanted]

        self.decisions: list[str] = values(DECISION)
        self.sessions: list[str] = values(SESSION)
        self.entries: list[int] = [int(v) for v in values(ENTRY) if v.isdigit()]
        overrides = values(OVERRIDE)
        # None: no override trailer; "": an override trailer without a reason.
        self.override: str | None = overrides[0] if overrides else None
        approvers = [v for v in values(OVERRIDE_APPROVER) if v]
        self.approver: str | None = approvers[0] if approvers else None

    @classmethod
    def of(cls, message: str, comment_char: str = "#") -> Links:
        return cls(parse_trailers(message, comment_char))

    @property
    def valid_decisions(self) -> list[str]:
        return [d for d in self.decisions if is_decision_id(d)]


def add_trailers(
    message_file: str, trailers: Sequence[tuple[str, str]], *, cwd: str | None = None
) -> None:
    """Add `trailers` to the message in `message_file` with `git interpret-trailers`.

    A message with no text yet (an editor is about to open) gets them below two empty
    lines instead, so the title the user types on the first line stays a title:
    `git interpret-trailers` would put them on the second line, glued to it.
    """
    with open(message_file, encoding="utf-8", errors="surrogateescape") as fh:
        text = fh.read()
    if not any(line.strip() for line in strip_comments(text)):
        lines = "".join(f"{key}: {value}\n" for key, value in trailers)
        with open(message_file, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write("\n\n" + lines + text.lstrip("\n"))
        return
    import subprocess

    args = ["git", "interpret-trailers", "--in-place", "--if-exists", "addIfDifferent"]
    for key, value in trailers:
        args += ["--trailer", f"{key}: {value}"]
    args.append(message_file)
    result = subprocess.run(
        args, cwd=cwd or os.getcwd(), capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        from flowloom.repo.git import GitError

        raise GitError(f"git interpret-trailers failed: {result.stderr.strip()}")
