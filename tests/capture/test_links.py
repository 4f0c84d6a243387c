"""Links survive amend, rebase, cherry-pick and squash merges (re-linked by patch-id)."""

from __future__ import annotations

import json

import pytest

from tests.capture.git_sandbox import DECISION, OTHER_DECISION, Sandbox, SandboxTemplate


def _set_up(sandbox: Sandbox) -> None:
    sandbox.commit_ok("initial commit", extra=("--no-verify",))
    sandbox.init()
    sandbox.set_policy(protected_branches=[])  # approvals are test_check's subject
    sandbox.git("commit", "-qam", "unprotect", env={"FLOWLOOM_OVERRIDE": "test set-up"})
    sandbox.record_decision(DECISION)
    sandbox.record_decision(OTHER_DECISION)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> SandboxTemplate:
    return SandboxTemplate(tmp_path_factory.mktemp("links"), _set_up)


@pytest.fixture
def box(template: SandboxTemplate) -> Sandbox:
    return template.fresh()


def verdicts(box: Sandbox, *revs: str) -> dict[str, dict[str, object]]:
    result = box.flowloom("check", "--json", *revs)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    return {c["sha"]: c for c in report["commits"]}


def linked(message: str, decision: str = DECISION) -> str:
    return f"{message}\n\nFlowLoom-Decision: {decision}\nFlowLoom-Session: s-1"


def test_amend_keeps_the_trailers(box: Sandbox) -> None:
    first = box.commit_ok(linked("add parser"), file="parser.py")
    box.write("parser.py", "add parser\nand a fix\n")
    box.git("add", "parser.py")
    result = box.run(["git", "commit", "-q", "--amend", "--no-edit"])
    assert result.returncode == 0, result.stderr
    amended = box.head()
    assert amended != first
    assert ("FlowLoom-Decision", DECISION) in box.trailers(amended)
    assert any(e["subject"] == amended for e in box.events("commit.link"))
    verdict = verdicts(box, "HEAD~1..HEAD")[amended]
    assert verdict["ok"] and verdict["how"] == "trailer"


def test_amend_that_rewrites_the_message_is_relinked_by_patch_id(box: Sandbox) -> None:
    first = box.commit_ok(linked("add parser"), file="parser.py")
    # A reworded message without trailers: commit-msg would refuse it, so it is made
    # the way a tool that skips hooks makes it.
    result = box.run(
        ["git", "commit", "-q", "--amend", "--no-verify", "-m", "Add the streaming parser"]
    )
    assert result.returncode == 0, result.stderr
    reworded = box.head()
    assert reworded != first
    assert box.trailers(reworded) == []
    verdict = verdicts(box, "HEAD~1..HEAD")[reworded]
    assert verdict["ok"], verdict
    assert verdict["how"] == "patch-id"
    assert verdict["via"] == [first]
    assert verdict["decisions"] == [DECISION]


def test_rebase_keeps_the_trailers(box: Sandbox) -> None:
    box.git("checkout", "-q", "-b", "feature")
    box.commit_ok(linked("feature one"), file="one.txt")
    box.commit_ok(linked("feature two", OTHER_DECISION), file="two.txt")
    box.git("checkout", "-q", "main")
    box.commit_ok(linked("main moves on"), file="main.txt")
    box.git("checkout", "-q", "feature")
    result = box.run(["git", "rebase", "-q", "main"])
    assert result.returncode == 0, result.stderr
    found = verdicts(box, "main..feature")
    assert len(found) == 2
    assert all(v["ok"] and v["how"] == "trailer" for v in found.values())
    assert sorted(d for v in found.values() for d in v["decisions"]) == sorted(
        [DECISION, OTHER_DECISION]
    )


def test_rebase_that_loses_the_trailers_is_relinked_by_patch_id(box: Sandbox) -> None:
    box.git("checkout", "-q", "-b", "feature")
    original = box.commit_ok(linked("feature one"), file="one.txt")
    box.git("checkout", "-q", "main")
    box.commit_ok(linked("main moves on"), file="main.txt")
    box.git("checkout", "-q", "feature")
    # A rebase whose messages are rewritten (a reword, a tool's own message).
    result = box.run(
        ["git", "rebase", "-q", "--exec", "git commit -q --amend --no-verify -m reworded", "main"]
    )
    assert result.returncode == 0, result.stderr
    rebased = box.head()
    assert box.trailers(rebased) == []
    verdict = verdicts(box, "main..feature")[rebased]
    assert verdict["ok"], verdict
    assert verdict["how"] == "patch-id"
    assert original in verdict["via"]  # (and the picked copy the rebase linked on its way)


@pytest.mark.parametrize("flag", [None, "-x"])
def test_cherry_pick_keeps_the_trailers(box: Sandbox, flag: str | None) -> None:
    box.git("checkout", "-q", "-b", "feature")
    picked = box.commit_ok(linked("the fix"), file="fix.txt")
    box.git("checkout", "-q", "main")
    box.commit_ok(linked("main moves on"), file="main.txt")
    result = box.run(["git", "cherry-pick", *([flag] if flag else []), picked])
    assert result.returncode == 0, result.stderr
    copy = box.head()
    assert copy != picked
    if flag:
        assert "(cherry picked from commit" in box.message(copy)
    verdict = verdicts(box, "HEAD~1..HEAD")[copy]
    assert verdict["ok"] and verdict["how"] == "trailer"
    assert verdict["decisions"] == [DECISION]


def test_squash_merge_carries_the_trailers_over(box: Sandbox) -> None:
    box.git("checkout", "-q", "-b", "feature")
    box.commit_ok(linked("feature one"), file="one.txt")
    box.commit_ok(linked("feature two", OTHER_DECISION), file="two.txt")
    box.git("checkout", "-q", "main")
    box.git("merge", "--squash", "feature")
    result = box.run(["git", "commit", "-q", "--no-edit"])
    assert result.returncode == 0, result.stderr
    squashed = box.head()
    trailers = box.trailers(squashed)
    assert ("FlowLoom-Decision", DECISION) in trailers
    assert ("FlowLoom-Decision", OTHER_DECISION) in trailers
    link = next(e for e in box.events("commit.link") if e["subject"] == squashed)
    assert link["refs"]["decisions"] == [OTHER_DECISION, DECISION]
    verdict = verdicts(box, "HEAD~1..HEAD")[squashed]
    assert verdict["ok"] and verdict["how"] == "trailer"


def test_squash_merge_without_trailers_is_relinked_by_patch_id(box: Sandbox) -> None:
    box.git("checkout", "-q", "-b", "feature")
    box.commit_ok(linked("feature one"), file="one.txt")
    box.commit_ok(linked("feature two", OTHER_DECISION), file="two.txt")
    box.git("checkout", "-q", "main")
    box.git("merge", "--squash", "feature")
    # What a forge's "squash and merge" button does: a new message, no hooks.
    result = box.run(
        ["git", "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "Feature (#12)"]
    )
    assert result.returncode == 0, result.stderr
    squashed = box.head()
    assert box.trailers(squashed) == []
    verdict = verdicts(box, "HEAD~1..HEAD")[squashed]
    assert verdict["ok"], verdict
    assert verdict["how"] == "squash"
    assert sorted(verdict["decisions"]) == sorted([DECISION, OTHER_DECISION])  # type: ignore[arg-type]


def test_squash_including_an_unlinked_commit_is_not_relinked(box: Sandbox) -> None:
    box.git("checkout", "-q", "-b", "feature")
    box.commit_ok(linked("feature one"), file="one.txt")
    box.commit_without_hooks("sneaked in", file="two.txt")
    box.git("checkout", "-q", "main")
    box.git("merge", "--squash", "feature")
    result = box.run(
        ["git", "-c", "core.hooksPath=/dev/null", "commit", "-q", "-m", "Feature (#13)"]
    )
    assert result.returncode == 0, result.stderr
    verdict = verdicts(box, "HEAD~1..HEAD")[box.head()]
    assert not verdict["ok"]
    assert verdict["how"] is None
