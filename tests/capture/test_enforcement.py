"""commit-msg enforcement, overrides, and what the hooks record, in real repositories."""

from __future__ import annotations

from pathlib import Path

import pytest

from flowloom.capture.state import PendingLink, read_pending, write_pending
from tests.capture.git_sandbox import DECISION, OTHER_DECISION, Sandbox, SandboxTemplate


def _set_up(sandbox: Sandbox) -> None:
    sandbox.commit_ok("initial commit, before FlowLoom", extra=("--no-verify",))
    sandbox.init()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> SandboxTemplate:
    return SandboxTemplate(tmp_path_factory.mktemp("enforcement"), _set_up)


@pytest.fixture
def box(template: SandboxTemplate) -> Sandbox:
    return template.fresh()


def test_unlinked_manual_commit_is_refused(box: Sandbox) -> None:
    before = box.head()
    result = box.commit("a manual change")
    assert result.returncode == 1
    assert box.head() == before
    err = result.stderr
    assert "Traceback" not in err
    assert "commit refused: no FlowLoom-Decision trailer" in err
    assert "flowloom decide" in err  # how to link
    assert 'FLOWLOOM_OVERRIDE="<reason>" git commit' in err  # how to override
    assert 'flowloom override "<reason>"' in err
    assert not [e for e in box.events("commit.link") if e["subject"] != box.head()]


def test_pending_link_adds_trailers_and_post_commit_records_the_link(box: Sandbox) -> None:
    entry = box.record_decision()
    write_pending(box.common_dir(), PendingLink(decision=DECISION, session="s-1", entry=entry))
    sha = box.commit_ok("implement the cache")
    assert ("FlowLoom-Decision", DECISION) in box.trailers()
    assert ("FlowLoom-Session", "s-1") in box.trailers()
    assert ("FlowLoom-Entry", str(entry)) in box.trailers()
    links = [e for e in box.events("commit.link") if e["subject"] == sha]
    assert len(links) == 1
    refs = links[0]["refs"]
    assert refs["decision"] == DECISION
    assert refs["session"] == "s-1"
    assert refs["entry"] == entry
    assert refs["branch"] == "main"
    assert refs["tree"] == box.git("rev-parse", "HEAD^{tree}").strip()
    diff = box.git("diff-tree", "--patch", "--root", "--no-commit-id", sha)
    expected = box.run(["git", "patch-id", "--stable"], input=diff).stdout.split()[0]
    assert refs["patch_id"] == expected
    assert links[0]["actor"]["id"] == "ann@example.com"
    assert links[0]["git"] == {"branch": "main", "head": sha}
    assert read_pending(box.common_dir()) is None  # consumed
    # The next manual commit is not linked any more.
    assert box.commit("unrelated").returncode == 1


def test_trailer_naming_an_unrecorded_decision_is_refused(box: Sandbox) -> None:
    result = box.commit(f"change\n\nFlowLoom-Decision: {OTHER_DECISION}")
    assert result.returncode == 1
    assert f"decision {OTHER_DECISION} is not recorded" in result.stderr
    box.record_decision(OTHER_DECISION)
    box.commit_ok(f"change\n\nFlowLoom-Decision: {OTHER_DECISION}", line="again")


def test_malformed_decision_id_is_refused(box: Sandbox) -> None:
    result = box.commit("change\n\nFlowLoom-Decision: D-NOT-HEX")
    assert result.returncode == 1
    assert "not a decision id" in result.stderr


def test_override_by_environment_is_accepted_and_recorded(box: Sandbox) -> None:
    grants_before = len(box.events("override.grant"))
    sha = box.commit_ok("hotfix", env={"FLOWLOOM_OVERRIDE": "production down, INC-7"})
    assert ("FlowLoom-Override", "production down, INC-7") in box.trailers()
    grants = box.events("override.grant")
    assert len(grants) == grants_before + 1
    grant = grants[-1]
    assert grant["refs"]["reason"] == "production down, INC-7"
    assert grant["refs"]["branch"] == "main"
    assert grant["refs"]["source"] == "environment"
    assert grant["actor"] == {"type": "human", "id": "ann@example.com", "name": "Ann Author"}
    assert grant["subject"] == "pending"
    link = next(e for e in box.events("commit.link") if e["subject"] == sha)
    assert link["refs"]["override"] == {"reason": "production down, INC-7", "grant": grant["index"]}
    assert not (box.common_dir() / "flowloom" / "override.json").exists()


@pytest.mark.parametrize("reason", ["", "   "])
def test_override_without_a_reason_is_refused(box: Sandbox, reason: str) -> None:
    result = box.commit("hotfix", env={"FLOWLOOM_OVERRIDE": reason})
    assert result.returncode == 1
    assert "an override needs a reason" in result.stderr
    assert len(box.events("override.grant")) == 1  # only the adoption commit's


def test_flowloom_override_command_lets_one_commit_through(box: Sandbox) -> None:
    out = box.ok("override", "vendor drop, reviewed in PR 12")
    assert "next commit" in out
    sha = box.commit_ok("import vendor code")
    grant = box.events("override.grant")[-1]
    assert grant["refs"]["reason"] == "vendor drop, reviewed in PR 12"
    assert grant["refs"]["source"] == "flowloom override"
    assert ("FlowLoom-Override", "vendor drop, reviewed in PR 12") in box.trailers(sha)
    # Consumed: the next unlinked commit is refused again.
    assert box.commit("another manual change").returncode == 1


def test_flowloom_override_refuses_an_empty_reason(box: Sandbox) -> None:
    result = box.flowloom("override", "  ")
    assert result.returncode == 3
    assert result.stderr == "flowloom: error: an override needs a reason\n"


def test_policy_can_require_an_approver(box: Sandbox) -> None:
    box.set_policy(override_requires_approver=True)
    result = box.commit("hotfix", env={"FLOWLOOM_OVERRIDE": "urgent"})
    assert result.returncode == 1
    assert "requires an approver" in result.stderr
    assert 'FLOWLOOM_OVERRIDE_APPROVER="<name>"' in result.stderr
    self_approved = box.commit(
        "hotfix", env={"FLOWLOOM_OVERRIDE": "urgent", "FLOWLOOM_OVERRIDE_APPROVER": "ann"}
    )
    assert self_approved.returncode == 1
    assert "someone other than you" in self_approved.stderr
    sha = box.commit_ok(
        "hotfix",
        env={"FLOWLOOM_OVERRIDE": "urgent", "FLOWLOOM_OVERRIDE_APPROVER": "Carol Lead"},
    )
    assert ("FlowLoom-Override-Approver", "Carol Lead") in box.trailers(sha)
    assert box.events("override.grant")[-1]["refs"]["approver"] == "Carol Lead"
    assert box.flowloom("override", "urgent").returncode == 3
    assert box.flowloom("override", "urgent", "--approver", "carol").returncode == 0


def test_override_trailer_written_by_hand_is_accepted_and_recorded(box: Sandbox) -> None:
    box.commit_ok("docs typo\n\nFlowLoom-Override: typo only")
    grant = box.events("override.grant")[-1]
    assert grant["refs"] == {"reason": "typo only", "source": "trailer", "branch": "main"}


def test_empty_override_trailer_is_refused(box: Sandbox) -> None:
    result = box.commit("docs typo\n\nFlowLoom-Override: ")
    assert result.returncode == 1


def test_policy_without_enforcement_lets_unlinked_commits_through(box: Sandbox) -> None:
    box.set_policy(enforce=False)
    sha = box.commit_ok("a manual change")
    assert all(e["subject"] != sha for e in box.events("commit.link"))


def test_editor_commit_keeps_the_title_apart_from_the_trailers(box: Sandbox) -> None:
    entry = box.record_decision()
    write_pending(box.common_dir(), PendingLink(decision=DECISION, session="s-1", entry=entry))
    box.write("work.txt", "edited\n")
    box.git("add", "work.txt")
    editor = box.root / "editor.sh"
    editor.write_text(
        '#!/bin/sh\nprintf "Title typed by the user%s" "$(cat "$1")" > "$1.new"\nmv "$1.new" "$1"\n'
    )
    editor.chmod(0o755)
    result = box.run(["git", "commit", "-q"], env={"GIT_EDITOR": str(editor)})
    assert result.returncode == 0, result.stderr
    assert box.message().splitlines()[0] == "Title typed by the user"
    assert ("FlowLoom-Decision", DECISION) in box.trailers()


def test_message_with_only_trailers_is_aborted_like_an_empty_one(box: Sandbox) -> None:
    entry = box.record_decision()
    write_pending(box.common_dir(), PendingLink(decision=DECISION, session="s-1", entry=entry))
    box.write("work.txt", "edited\n")
    box.git("add", "work.txt")
    result = box.run(["git", "commit", "-q"])  # GIT_EDITOR=true: the user wrote nothing
    assert result.returncode == 1
    assert "empty commit message" in result.stderr


def test_merge_commits_are_not_judged(box: Sandbox) -> None:
    box.record_decision()
    box.git("checkout", "-q", "-b", "feature")
    box.commit_ok(f"feature work\n\nFlowLoom-Decision: {DECISION}", file="feature.txt")
    box.git("checkout", "-q", "main")
    box.commit_ok(f"main work\n\nFlowLoom-Decision: {DECISION}", file="main.txt")
    result = box.run(["git", "merge", "--no-ff", "-q", "-m", "Merge feature", "feature"])
    assert result.returncode == 0, result.stderr
    assert len(box.git("log", "-1", "--format=%P").split()) == 2


def test_hooks_do_nothing_where_flowloom_is_not_set_up(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    box.commit_ok("first", extra=("--no-verify",))
    box.ok("init")
    (box.repo / ".flowloom" / "config.toml").unlink()
    result = box.commit("a manual change")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_no_verify_skips_enforcement_and_post_commit_warns(box: Sandbox) -> None:
    result = box.commit("sneaky", extra=("--no-verify",))
    assert result.returncode == 0
    assert "is not linked to a decision" in result.stderr
    assert "flowloom check" in result.stderr


def test_commit_msg_fails_closed_on_a_broken_ledger(box: Sandbox) -> None:
    box.record_decision()
    database = box.common_dir() / "flowloom" / "ledger.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    database.write_bytes(b"this is not a database" * 200)
    result = box.commit(f"change\n\nFlowLoom-Decision: {DECISION}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "could not check the decision link" in result.stderr
    assert "--no-verify" in result.stderr


def test_post_commit_failure_warns_in_one_line_and_commits(box: Sandbox) -> None:
    box.set_policy(enforce=False)
    database = box.common_dir() / "flowloom" / "ledger.db"
    for suffix in ("-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    database.write_bytes(b"this is not a database" * 200)
    result = box.commit(f"change\n\nFlowLoom-Override: {'x'}")
    assert result.returncode == 0
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "post-commit" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("flowloom: warning: post-commit hook:")
    assert "kept in the outbox" in warnings[0]  # durable there: nothing is lost
    spool = box.common_dir() / "flowloom" / "spool"
    [name] = [p.name for p in spool.glob("*.json")]
    assert '"commit.link"' in (spool / name).read_text()


def test_a_title_shaped_like_a_trailer_is_still_a_title(box: Sandbox) -> None:
    box.record_decision()
    refused = box.commit("fix: a typo")
    assert refused.returncode == 1
    assert "no FlowLoom-Decision trailer" in refused.stderr
    sha = box.commit_ok(f"fix: a typo\n\nFlowLoom-Decision: {DECISION}")
    assert box.message(sha).startswith("fix: a typo\n")
