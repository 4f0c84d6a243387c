"""FlowLoom's trailer reader agrees with `git interpret-trailers --parse`."""

from __future__ import annotations

import subprocess

import pytest

from flowloom.repo.trailers import Links, has_title, is_decision_id, parse_trailers

MESSAGES = [
    "title only\n",
    "fix: a title shaped like a trailer\n",
    "title\n\nFlowLoom-Decision: D-0123456789\n",
    "title\n\nbody text\n\nFlowLoom-Decision: D-0123456789\nFlowLoom-Session: s-1\n",
    "title\n\nFlowLoom-Decision: D-0123456789\n(cherry picked from commit abc123)\n",
    "title\n\nFlowLoom-Decision: D-0123456789\nSigned-off-by: A <a@x>\nfree text\n",
    "title\n\nFlowLoom-Decision: D-0123456789\nfree text\nmore free text\n",
    "title\n\nFlowLoom-Decision: D-0123456789\n# a comment\n# another\n",
    "title\n\nFlowLoom-Decision: D-0123456789\n"
    "# ------------------------ >8 ------------------------\n"
    "diff --git a/x b/x\nKey: not a trailer\n",
    "title\n\nFlowLoom-Override: a long reason\n  that continues here\n",
    "title\r\n\r\nFlowLoom-Decision: D-0123456789\r\n",
    "title\n\nbody\n\nFlowLoom-Override:\n",
    "\n\nFlowLoom-Decision: D-0123456789\n",
    "title\n\nNot a trailer line\nFlowLoom-Decision: D-0123456789\n",
]


def git_parse(message: str) -> list[tuple[str, str]]:
    out = subprocess.run(
        ["git", "-c", "core.commentChar=#", "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    pairs = []
    for line in out.splitlines():
        key, _, value = line.partition(":")
        pairs.append((key.strip(), value.strip()))
    return pairs


@pytest.mark.parametrize("message", MESSAGES)
def test_same_trailers_as_git(message: str) -> None:
    assert parse_trailers(message) == git_parse(message)


def test_links_and_titles() -> None:
    links = Links.of(MESSAGES[3])
    assert links.decisions == ["D-0123456789"]
    assert links.sessions == ["s-1"]
    assert links.override is None
    assert Links.of(MESSAGES[11]).override == ""
    assert Links.of(MESSAGES[9]).override == "a long reason that continues here"
    assert not has_title("\n\nFlowLoom-Decision: D-0123456789\n# comment\n")
    assert has_title(MESSAGES[1])
    assert has_title("\n\nFlowLoom-Decision: D-0123456789\n\nthe title came later\n")


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("D-0123456789", True),
        ("D-abcdef0123", True),
        ("D-ABCDEF0123", False),
        ("D-012345678", False),
        ("X-0123456789", False),
        ("D-01234567890", False),
    ],
)
def test_decision_ids(text: str, valid: bool) -> None:
    assert is_decision_id(text) is valid
