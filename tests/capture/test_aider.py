"""Aider: `flowloom import aider` reads `.aider.chat.history.md` once, and only once."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowloom.capture.agents.aider import parse_history
from tests.capture.agent_sandbox import AgentSandbox

HISTORY = """
# aider chat started at 2026-11-20 09:15:02

> /home/ann/.local/bin/aider --model sonnet
> Aider v0.86.1
> Main model: anthropic/claude-sonnet-4-20250514 with diff edit format, infinite output
> Git repo: .git with 12 files
> Repo-map: using 4096 tokens, auto refresh

#### /add calc.py

> Added calc.py to the chat

#### Make add() handle None inputs<br>
#### and add a test for it (CALC-9)

I'll update `add()` to treat `None` as zero.

calc.py
```python
<<<<<<< SEARCH
def add(a, b):
    return a + b
=======
def add(a, b):
    return (a or 0) + (b or 0)
>>>>>>> REPLACE
```

> Applied edit to calc.py<br>
> Commit 1a2b3c4 fix: Handle None inputs in add()<br>

#### thanks

You're welcome!
""".replace("<br>", "  ")  # Aider ends its lines with two spaces (Markdown line breaks)

MORE = """
#### now subtract()

Added `subtract()` next to `add()`.

> Applied edit to calc.py<br>
""".replace("<br>", "  ")


@pytest.fixture
def box(tmp_path: Path) -> AgentSandbox:
    return AgentSandbox(tmp_path)


def test_the_history_is_read_into_sessions_and_exchanges() -> None:
    blocks = parse_history(HISTORY)
    assert [b.kind for b in blocks] == ["session", "exchange", "exchange", "exchange"]
    session, add, fix, thanks = blocks
    assert session.session == "aider-20261120091502"
    assert "Main model: anthropic/claude-sonnet-4-20250514" in session.tool_text
    assert add.prompt_text == "/add calc.py" and add.tool_text == "Added calc.py to the chat"
    assert fix.prompt_text == "Make add() handle None inputs\nand add a test for it (CALC-9)"
    assert fix.response_text.startswith("I'll update `add()`")
    assert fix.response_text.endswith("```")
    assert fix.tool_text.splitlines()[0] == "Applied edit to calc.py"
    assert thanks.response_text == "You're welcome!"


def test_import_records_each_exchange_once(box: AgentSandbox) -> None:
    history = box.repo / ".aider.chat.history.md"
    history.write_text(HISTORY)
    first = box.ok("import", "aider")
    assert first.startswith("imported 3 exchanges (8 events) from ")
    events = box.events()
    assert box.kinds(events) == [
        "session.start",
        "agent.prompt",
        "agent.tool",
        "agent.prompt",
        "agent.response",
        "agent.tool",
        "agent.prompt",
        "agent.response",
    ]
    start = box.events("session.start")[0]
    assert start["refs"]["model"] == "anthropic/claude-sonnet-4-20250514"
    assert start["refs"]["started"] == "2026-11-20 09:15:02"
    assert all(
        e["session"] == "aider-20261120091502" for e in events if e["kind"] != "key.generated"
    )
    assert all(e["actor"]["id"] == "aider" for e in events if e["kind"] != "key.generated")
    prompts = box.events("agent.prompt")
    assert prompts[0]["refs"]["command"] is True
    assert box.body(prompts[1]) == "Make add() handle None inputs\nand add a test for it (CALC-9)"

    # again: nothing new
    assert box.ok("import", "aider").startswith("nothing new in ")
    assert len(box.events()) == len(events)

    # Aider goes on: only the new exchange is imported, in the same session
    with history.open("a") as fh:
        fh.write(MORE)
    assert box.ok("import", "aider").startswith("imported 1 exchanges (3 events)")
    new = box.events()[len(events) :]
    assert [e["kind"] for e in new] == ["agent.prompt", "agent.response", "agent.tool"]
    assert all(e["session"] == "aider-20261120091502" for e in new)
    assert box.body(new[0]) == "now subtract()"


def test_a_rewritten_history_is_not_imported_twice(box: AgentSandbox) -> None:
    history = box.repo / ".aider.chat.history.md"
    history.write_text(HISTORY)
    box.ok("import", "aider")
    before = len(box.events())
    # the file is rewritten (trimmed by hand, then Aider appends): old exchanges are skipped
    history.write_text(HISTORY.replace("> Aider v0.86.1\n", "") + MORE)
    out = box.ok("import", "aider")
    added = box.events()[before:]
    assert [e["kind"] for e in added] == [
        "session.start",
        "agent.prompt",
        "agent.response",
        "agent.tool",
    ]
    assert "imported 1 exchanges" in out


def test_a_reply_still_being_written_is_completed_later(box: AgentSandbox) -> None:
    history = box.repo / ".aider.chat.history.md"
    history.write_text(HISTORY)
    box.ok("import", "aider")
    with history.open("a") as fh:
        fh.write("And here is a final note.\n")
    box.ok("import", "aider")
    last = box.events()[-1]
    assert last["kind"] == "agent.response"
    assert last["refs"]["continuation"] is True
    assert box.body(last) == "And here is a final note."


def test_import_from_a_subdirectory_finds_the_history_at_the_top(box: AgentSandbox) -> None:
    (box.repo / ".aider.chat.history.md").write_text(HISTORY)
    sub = box.repo / "pkg"
    sub.mkdir()
    import sys

    result = box.run([sys.executable, "-m", "flowloom", "import", "aider"], cwd=sub)
    assert result.returncode == 0, result.stderr
    assert "imported 3 exchanges" in result.stdout


def test_a_missing_history_is_one_clear_error(box: AgentSandbox) -> None:
    result = box.flowloom("import", "aider", "nowhere.md")
    assert result.returncode == 3
    assert result.stderr.startswith("flowloom: error: no Aider chat history at nowhere.md")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_aiders_commits_are_linked_to_the_decision_drawn_from_the_exchange(
    box: AgentSandbox,
) -> None:
    """Aider commits itself, past the git hooks; the import links its commits so `why`
    shows prompt, reply and reasoning for its lines."""
    box.write("calc.py", "def add(a, b):\n    return a + b\n")
    box.git("add", "calc.py")
    box.git("commit", "-q", "-m", "start")
    box.write("calc.py", "def add(a, b):\n    return (a or 0) + (b or 0)\n")
    box.git("add", "calc.py")
    box.git("commit", "-q", "--no-verify", "-m", "fix: Handle None inputs in add()")
    sha = box.head()
    reply = (
        "I'll treat `None` as zero in add(). It keeps callers unchanged.\n\n"
        "- treat None as zero\n- raise TypeError\n"
    )
    history = HISTORY.replace("1a2b3c4", sha[:7]).replace(
        "I'll update `add()` to treat `None` as zero.", reply
    )
    history += "#### and more\n\nDone.\n\n> Commit 0000000 not in this repository\n"
    (box.repo / ".aider.chat.history.md").write_text(history)
    result = box.flowloom("import", "aider")
    assert result.returncode == 0, result.stderr
    assert ", 1 of Aider's commits linked to their decisions" in result.stdout
    assert result.stderr == "note: commit 0000000 named by Aider is not in this repository\n"

    [decision] = box.events("decision.record")
    [link] = box.events("commit.link")
    prompt, response = box.events("agent.prompt")[1], box.events("agent.response")[0]
    assert decision["refs"]["choice"] == "I'll treat None as zero in add()."
    assert decision["refs"]["rationale"] == "It keeps callers unchanged."
    assert decision["refs"]["options"] == ["treat None as zero", "raise TypeError"]
    assert decision["refs"]["tickets"] == ["CALC-9"]
    assert decision["refs"]["files"] == ["calc.py"]
    assert decision["refs"]["requested_by"] == "ann@example.com"
    assert (decision["refs"]["prompt_entry"], decision["refs"]["response_entry"]) == (
        prompt["index"],
        response["index"],
    )
    assert link["subject"] == sha
    assert link["refs"]["decision"] == decision["subject"]
    assert link["refs"]["source"] == "aider-import"
    assert link["refs"]["patch_id"] and link["refs"]["tree"]

    why = box.ok("why", "calc.py:2")
    assert f"decision: {decision['subject']}" in why and "(linked by commit.link entry" in why
    assert "choice:   I'll treat None as zero in add()." in why
    assert f"prompt:   entry {prompt['index']} (agent.prompt), verified" in why
    assert f"reply:    entry {response['index']} (agent.response), verified" in why
    # Imported once: a second import links nothing again.
    assert box.ok("import", "aider").startswith("nothing new in ")
    assert len(box.events("commit.link")) == 1
