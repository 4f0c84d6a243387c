"""`flowloom why FILE:LINE`: blame → commit → decision → prompt and reply, proved."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowloom.config import load_settings
from flowloom.decisions.records import Decision, DecisionBook
from flowloom.decisions.why import explain
from flowloom.errors import InputError, NotFoundError
from flowloom.ledger.event import Event
from flowloom.repo.git import GitRepo
from flowloom.services import Services, build_services
from tests.support.ledgers import raw_sql

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Alice",
    "GIT_AUTHOR_EMAIL": "alice@example.com",
    "GIT_COMMITTER_NAME": "Alice",
    "GIT_COMMITTER_EMAIL": "alice@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}
PROMPT = "Add a cache to the price lookup. It takes 300 ms on every request."
REPLY = "I'll wrap the lookup in functools.lru_cache. It is bounded and needs no server."


class World:
    """A repository, its ledger (services in this process) and the CLI beside them."""

    def __init__(self, tmp_path: Path) -> None:
        self.top = tmp_path / "repo"
        self.top.mkdir(parents=True)
        self.env = {
            **os.environ,
            **GIT_ENV,
            "HOME": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "FLOWLOOM_HOME": str(tmp_path / "home"),
        }
        for name in ("FLOWLOOM_DATABASE", "FLOWLOOM_PROJECT", "FLOWLOOM_DEBUG"):
            self.env.pop(name, None)
        self.git("init", "-q", "-b", "main")
        self.services: Services = build_services(load_settings(self.top, self.env))
        self.ledger = self.services.ledger
        self.book = DecisionBook(self.ledger)

    def git(self, *args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=self.top, env=self.env, capture_output=True, text=True, check=True
        ).stdout

    def commit(self, path: str, text: str, message: str) -> str:
        (self.top / path).write_text(text)
        self.git("add", path)
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD").strip()

    def decision(self, title: str = "Cache price lookups") -> Decision:
        prompt = self.ledger.record("agent.prompt", body=PROMPT.encode(), meta={"session": "s"})
        reply = self.ledger.record("agent.response", body=REPLY.encode(), meta={"session": "s"})
        return self.book.record(
            title=title,
            requested_by="alice",
            session="s",
            choice="lru_cache",
            rationale="bounded",
            prompt_entry=prompt.index,
            response_entry=reply.index,
        )

    def link(self, sha: str, decision: str, **refs: str) -> int:
        meta = {"subject": sha, "refs": {"decision": decision, **refs}}
        return self.ledger.record("commit.link", meta=meta).index

    def fl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "flowloom", *args],
            cwd=self.top,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.services.close()


def test_trailer_link_with_prompt_and_reply_verified(world: World) -> None:
    world.commit("prices.py", "def price(sku):\n    return db(sku)\n", "initial")
    decision = world.decision()
    sha = world.commit(
        "prices.py",
        "@lru_cache\ndef price(sku):\n    return db(sku)\n",
        f"Cache prices\n\nFlowLoom-Decision: {decision.id}\nFlowLoom-Session: s\n",
    )
    answer = explain(world.ledger, world.top, "prices.py", 1)
    assert answer.blame.commit == sha
    assert answer.blame.summary == "Cache prices"
    assert answer.linked_by == "trailer"
    assert answer.decision.id == decision.id
    assert answer.verified
    prompt, reply = answer.entry("prompt"), answer.entry("response")
    assert prompt is not None and reply is not None
    assert (prompt.index, prompt.kind, prompt.excerpt) == (
        decision.prompt_entry,
        "agent.prompt",
        PROMPT,
    )
    assert (reply.index, reply.excerpt, reply.body) == (decision.response_entry, REPLY, "ok")
    assert prompt.checkpoint_size == world.ledger.size()

    done = world.fl("why", "prices.py:1")
    assert done.returncode == 0, done.stderr
    assert f"commit {sha[:12]}" in done.stdout
    assert f"decision: {decision.id}  Cache price lookups" in done.stdout
    assert f"prompt:   entry {decision.prompt_entry} (agent.prompt), verified" in done.stdout
    assert PROMPT in done.stdout and REPLY in done.stdout
    data = json.loads(world.fl("why", "prices.py:1", "--json").stdout)
    assert data["verified"] is True
    assert data["linked_by"] == "trailer"
    assert data["decision"]["id"] == decision.id
    assert [e["role"] for e in data["entries"]] == ["decision", "prompt", "response"]
    assert all(e["verified"] for e in data["entries"])
    # Line 2 was not changed by the linked commit: no decision behind it.
    assert world.fl("why", "prices.py:2").returncode == 6


def test_commit_link_without_trailer(world: World) -> None:
    decision = world.decision()
    sha = world.commit("a.py", "x = 1\n", "no trailer here")
    other = world.decision("Something else")
    world.link(sha, other.id)
    entry = world.link(sha, decision.id)  # re-linked later: the latest link wins
    answer = explain(world.ledger, world.top, "a.py", 1)
    assert (answer.linked_by, answer.link_entry) == ("commit.link", entry)
    assert answer.decision.id == decision.id
    assert answer.verified


def test_patch_id_finds_a_rebased_commit(world: World) -> None:
    world.commit("base.txt", "base\n", "base")
    world.git("checkout", "-q", "-b", "topic")
    decision = world.decision()
    original = world.commit("b.py", "y = 2\n", f"topic work\n\nFlowLoom-Decision: {decision.id}")
    pid = GitRepo(world.top).patch_id(original)
    assert pid
    world.link(original, decision.id, patch_id=pid)
    world.git("checkout", "-q", "main")
    world.commit("other.txt", "other\n", "main moves on")
    world.git("cherry-pick", original)
    world.git("commit", "-q", "--amend", "-m", "topic work (trailer lost)")
    moved = world.git("rev-parse", "HEAD").strip()
    assert moved != original
    answer = explain(world.ledger, world.top, "b.py", 1)
    assert answer.blame.commit == moved
    assert answer.linked_by == "patch-id"
    assert answer.decision.id == decision.id
    done = world.fl("why", "b.py:1")
    assert done.returncode == 0, done.stderr
    assert "linked by patch-id (commit.link entry" in done.stdout


def test_unlinked_uncommitted_and_bad_locations(world: World) -> None:
    world.commit("c.py", "a\nb\n", "plain commit")
    with pytest.raises(NotFoundError, match="no decision is linked to commit"):
        explain(world.ledger, world.top, "c.py", 1)
    (world.top / "c.py").write_text("a\nchanged\n")
    with pytest.raises(NotFoundError, match="not committed yet"):
        explain(world.ledger, world.top, "c.py", 2)
    with pytest.raises(InputError, match="git blame failed"):
        explain(world.ledger, world.top, "c.py", 40)
    with pytest.raises(InputError, match="git blame failed"):
        explain(world.ledger, world.top, "missing.py", 1)
    world.commit("d.py", "d\n", "names another clone's decision\n\nFlowLoom-Decision: D-0123456789")
    with pytest.raises(NotFoundError, match="names D-0123456789, which this log does not hold"):
        explain(world.ledger, world.top, "d.py", 1)

    for location, code in [("c.py:1", 6), ("c.py", 3), ("c.py:0", 3), ("c.py:99", 3)]:
        done = world.fl("why", location)
        assert done.returncode == code, (location, done.stderr)
        assert done.stderr.startswith("flowloom: error: ") and done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr


def test_tampered_prompt_and_reply_are_reported(world: World) -> None:
    decision = world.decision()
    world.commit("e.py", "e\n", f"e\n\nFlowLoom-Decision: {decision.id}")
    assert explain(world.ledger, world.top, "e.py", 1).verified
    prompt_event = Event.parse(world.ledger.entry(decision.prompt_entry or 0).envelope)
    reply_envelope = world.ledger.entry(decision.response_entry or 0).envelope
    raw_sql(
        world.ledger.store,
        [
            ("UPDATE bodies SET content = ? WHERE digest = ?", (b"rm -rf /", prompt_event.body)),
            (
                "UPDATE entries SET envelope = ? WHERE idx = ?",
                (
                    reply_envelope.replace(b'"session":"s"', b'"session":"t"'),
                    decision.response_entry,
                ),
            ),
        ],
    )
    answer = explain(world.ledger, world.top, "e.py", 1)
    assert not answer.verified
    prompt, reply, record = (
        answer.entry("prompt"),
        answer.entry("response"),
        answer.entry("decision"),
    )
    assert prompt is not None and reply is not None and record is not None
    assert record.verified
    assert prompt.body == "mismatch" and prompt.proved
    assert any("does not match its commitment" in p for p in prompt.problems)
    assert not reply.proved
    assert any(f"entry {decision.response_entry} does not verify" in p for p in reply.problems)

    done = world.fl("why", "e.py:1")
    assert done.returncode == 1
    assert "NOT VERIFIED" in done.stdout and "body altered" in done.stdout
    assert "Traceback" not in done.stderr


def test_why_reads_only_what_names_the_commit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    decisions = [world.decision(f"decision {i}") for i in range(3)]
    batch = [
        world.ledger.prepare(
            "commit.link", meta={"subject": f"{i:040x}", "refs": {"decision": decisions[0].id}}
        ).entry
        for i in range(1, 400)
    ]
    world.ledger.writer.append_many(batch)
    sha = world.commit("f.py", "f\n", "linked by a commit.link only")
    world.link(sha, decisions[2].id)
    parsed: list[int] = []
    real_parse = Event.parse.__func__  # type: ignore[attr-defined]

    def counting(cls: type[Event], data: bytes | str) -> Event:
        parsed.append(1)
        return real_parse(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(Event, "parse", classmethod(counting))
    answer = explain(world.ledger, world.top, "f.py", 1)
    assert answer.decision.id == decisions[2].id
    # The link, the decision, its prompt and reply: a handful, not the 400 links.
    assert len(parsed) < 10


def test_the_look_up_cache_follows_the_ledger(world: World, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "why-index.db"
    first = world.decision("first")
    one = world.commit("g.py", "g\n", "one")
    world.link(one, first.id)
    answer = explain(world.ledger, world.top, "g.py", 1, index_path=cache)
    assert (answer.decision.id, answer.linked_by) == (first.id, "commit.link")
    conn = sqlite3.connect(cache)
    assert conn.execute("SELECT size FROM covered").fetchone() == (world.ledger.size(),)

    # New entries are added to the cache without reading the old ones again.
    second = world.decision("second")
    world.book.approve(second.id, "bob")
    two = world.commit("g.py", "g2\n", "two")
    world.link(two, second.id)
    answer = explain(world.ledger, world.top, "g.py", 1, index_path=cache)
    assert answer.decision.id == second.id
    assert [a.approver for a in answer.decision.approvals] == ["bob"]
    assert conn.execute("SELECT size FROM covered").fetchone() == (world.ledger.size(),)

    # A cache row pointing at the wrong entry costs a scan, not a wrong answer.
    conn.execute("UPDATE links SET idx = ? WHERE key = ?", (first.entry, "c:" + two))
    conn.execute("UPDATE decisions SET idx = 0 WHERE id = ?", (second.id,))
    conn.commit()
    answer = explain(world.ledger, world.top, "g.py", 1, index_path=cache)
    assert answer.decision.id == second.id and answer.verified
    conn.close()

    # Another ledger (a different tree at the covered size) rebuilds the cache.
    other = World(tmp_path / "other")
    try:
        decision = other.decision("elsewhere")
        sha = other.commit("h.py", "h\n", "h")
        other.link(sha, decision.id)
        answer = explain(other.ledger, other.top, "h.py", 1, index_path=cache)
        assert answer.decision.id == decision.id
        rows = sqlite3.connect(cache).execute("SELECT key FROM links").fetchall()
        assert rows == [("c:" + sha,)]
        with pytest.raises(NotFoundError):
            explain(other.ledger, world.top, "g.py", 1, index_path=cache)
    finally:
        other.services.close()


def test_a_broken_cache_file_does_not_stop_the_answer(world: World, tmp_path: Path) -> None:
    decision = world.decision()
    world.commit("k.py", "k\n", f"k\n\nFlowLoom-Decision: {decision.id}")
    cache = tmp_path / "why-index.db"
    cache.write_bytes(b"this is not a database" * 100)
    answer = explain(world.ledger, world.top, "k.py", 1, index_path=cache)
    assert answer.decision.id == decision.id and answer.verified


def test_an_amended_decision_is_shown_merged_and_each_amendment_proved(
    world: World, tmp_path: Path
) -> None:
    """An agent's decision gains its reply when the turn ends (a decision.amend)."""
    cache = tmp_path / "why-index.db"
    prompt = world.ledger.record("agent.prompt", body=PROMPT.encode(), meta={"session": "s"})
    decision = world.book.record(
        title="Cache price lookups", requested_by="alice", session="s", prompt_entry=prompt.index
    )
    world.commit("p.py", "p\n", f"p\n\nFlowLoom-Decision: {decision.id}")
    before = explain(world.ledger, world.top, "p.py", 1, index_path=cache)
    assert before.entry("response") is None and before.decision.choice == ""
    assert world.fl("why", "p.py:1").stdout.count("reasoning: not recorded") == 1

    reply = world.ledger.record("agent.response", body=REPLY.encode(), meta={"session": "s"})
    refs = {"record": decision.entry, "response_entry": reply.index, "choice": "lru_cache"}
    amend = world.ledger.record(
        "decision.amend", meta={"subject": decision.id, "session": "s", "refs": refs}
    ).index
    for index_path in (cache, None):  # the cache picks the amendment up; a scan finds it too
        answer = explain(world.ledger, world.top, "p.py", 1, index_path=index_path)
        assert answer.decision.choice == "lru_cache"
        assert answer.decision.amendments == (amend,)
        assert [(e.role, e.index) for e in answer.entries] == [
            ("decision", decision.entry),
            ("amendment", amend),
            ("prompt", prompt.index),
            ("response", reply.index),
        ]
        assert answer.verified
    shown = world.fl("why", "p.py:1")
    assert shown.returncode == 0, shown.stderr
    assert f"amended:  entry {amend} (decision.amend), verified" in shown.stdout
    assert f"reply:    entry {reply.index} (agent.response), verified" in shown.stdout
    assert "choice:   lru_cache" in shown.stdout and "reasoning: not recorded" not in shown.stdout


@pytest.mark.parametrize(
    ("request_body", "response_body"),
    [
        (  # Anthropic Messages: the last user turn is tool results; the prompt came before
            {
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": PROMPT}]},
                    {"role": "assistant", "content": [{"type": "tool_use", "id": "t"}]},
                    {"role": "user", "content": [{"type": "tool_result", "content": "ok"}]},
                ]
            },
            {"content": [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": REPLY}]},
        ),
        (  # OpenAI Chat Completions
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": PROMPT},
                ]
            },
            {"choices": [{"message": {"role": "assistant", "content": REPLY}}]},
        ),
        (  # OpenAI Responses
            {"input": [{"role": "user", "content": [{"type": "input_text", "text": PROMPT}]}]},
            {
                "output": [
                    {"type": "reasoning", "summary": []},
                    {"type": "message", "content": [{"type": "output_text", "text": REPLY}]},
                ]
            },
        ),
        (  # Gemini
            {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
            {"candidates": [{"content": {"role": "model", "parts": [{"text": REPLY}]}}]},
        ),
    ],
)
def test_a_gateway_exchange_behind_a_decision_shows_what_was_said(
    world: World, request_body: dict[str, object], response_body: dict[str, object]
) -> None:
    """A session captured by the gateway: the prompt and reply are read out of the
    exchange's recorded request and response, whatever the provider's format."""
    body = json.dumps({"request": request_body, "response": response_body}).encode()
    exchange = world.ledger.record(
        "gateway.exchange",
        body=body,
        meta={"actor": {"type": "service", "id": "flowloom-gateway"}, "session": "g"},
    ).index
    decision = world.book.record(
        title="Cache prices",
        requested_by="alice",
        choice="lru_cache",
        prompt_entry=exchange,
        response_entry=exchange,
    )
    world.commit("q.py", "q\n", f"q\n\nFlowLoom-Decision: {decision.id}")
    answer = explain(world.ledger, world.top, "q.py", 1)
    prompt, reply = answer.entry("prompt"), answer.entry("response")
    assert prompt is not None and reply is not None
    assert (prompt.kind, prompt.excerpt) == ("gateway.exchange", PROMPT)
    assert (reply.kind, reply.excerpt) == ("gateway.exchange", REPLY)
    assert answer.verified
