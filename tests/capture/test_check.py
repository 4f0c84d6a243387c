"""`flowloom check`: the CI gate over a range of commits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.capture.git_sandbox import DECISION, OTHER_DECISION, Sandbox, SandboxTemplate


def _set_up(sandbox: Sandbox) -> None:
    sandbox.commit_ok("initial commit", extra=("--no-verify",))
    sandbox.init()
    sandbox.allow_signers("ann", "bob", "carol")
    sandbox.record_decision(DECISION, requested_by="bob")
    sandbox.git("checkout", "-q", "-b", "feature")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> SandboxTemplate:
    return SandboxTemplate(tmp_path_factory.mktemp("check"), _set_up)


@pytest.fixture
def box(template: SandboxTemplate) -> Sandbox:
    return template.fresh()


def linked(message: str, decision: str = DECISION) -> str:
    return f"{message}\n\nFlowLoom-Decision: {decision}"


def report(box: Sandbox, *args: str) -> tuple[int, dict[str, object]]:
    result = box.flowloom("check", "--json", *args)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def test_clean_range_passes_with_a_summary(box: Sandbox) -> None:
    box.commit_ok(linked("one"))
    box.commit_ok("two", env={"FLOWLOOM_OVERRIDE": "config only"})
    result = box.flowloom("check")  # default: the commits on HEAD not on main
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(
        "ok: 2 commits in main..HEAD for feature: 1 linked, 1 overridden"
    )


def test_no_verify_commit_fails_the_check(box: Sandbox) -> None:
    box.commit_ok(linked("one"))
    sneaky = box.commit_without_hooks("sneaked past the hooks")
    box.commit_ok(linked("three"))
    result = box.flowloom("check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines == [
        f"{sneaky[:12]} sneaked past the hooks: no linked decision"
        " (no FlowLoom-Decision trailer, no re-link by patch-id)"
    ]
    assert "FAILED: 3 commits" in result.stderr
    code, data = report(box)
    assert code == 1
    assert data["failing"] == 1
    failing = [c for c in data["commits"] if not c["ok"]]  # type: ignore[union-attr]
    assert [c["sha"] for c in failing] == [sneaky]
    assert failing[0]["problems"][0]["kind"] == "unlinked"


def test_every_failing_commit_is_listed(box: Sandbox) -> None:
    first = box.commit_without_hooks("first unlinked")
    second = box.commit_without_hooks(
        f"names an unknown decision\n\nFlowLoom-Decision: {OTHER_DECISION}"
    )
    third = box.commit_without_hooks("empty override\n\nFlowLoom-Override:")
    code, data = report(box)
    assert code == 1
    kinds = {c["sha"]: [p["kind"] for p in c["problems"]] for c in data["commits"]}  # type: ignore[union-attr]
    assert kinds == {
        first: ["unlinked"],
        second: ["unknown-decision"],
        third: ["override-reason"],
    }


def test_override_needs_an_approver_when_the_policy_says_so(box: Sandbox) -> None:
    box.set_policy(override_requires_approver=True)
    box.git("commit", "-qam", "policy", "--no-verify")
    plain = box.commit_without_hooks("hotfix\n\nFlowLoom-Override: urgent")
    approved = box.commit_without_hooks(
        "hotfix 2\n\nFlowLoom-Override: urgent\nFlowLoom-Override-Approver: carol"
    )
    code, data = report(box, "HEAD~2..HEAD")
    kinds = {c["sha"]: [p["kind"] for p in c["problems"]] for c in data["commits"]}  # type: ignore[union-attr]
    assert kinds[plain] == ["override-approver"]
    assert kinds[approved] == []
    assert code == 1


def test_protected_branch_needs_an_approval_by_someone_else(box: Sandbox) -> None:
    sha = box.commit_ok(linked("one"))
    code, data = report(box, "--branch", "main")
    assert code == 1
    problem = data["commits"][0]["problems"][0]  # type: ignore[index]
    assert problem["kind"] == "unapproved"
    assert "protected branch main" in problem["message"]
    # Not protected: no approval needed.
    assert report(box, "--branch", "feature")[0] == 0
    # The author's own approval and the requester's do not count.
    box.approve(DECISION, "ann")
    box.approve(DECISION, "bob")
    assert report(box, "--branch", "main")[0] == 1
    box.approve(DECISION, "carol")
    code, data = report(box, "--branch", "main")
    assert code == 0, data
    assert data["commits"][0]["sha"] == sha  # type: ignore[index]


def test_self_approval_counts_when_the_policy_allows_it(box: Sandbox) -> None:
    box.set_policy(forbid_self_approval=False)
    box.git("commit", "-qam", "policy", env={"FLOWLOOM_OVERRIDE": "policy change"})
    box.commit_ok(linked("one"))
    assert report(box, "--branch", "main")[0] == 1
    box.approve(DECISION, "ann")
    assert report(box, "--branch", "main")[0] == 0


def test_branch_comes_from_ci_variables(box: Sandbox) -> None:
    box.commit_ok(linked("one"))
    result = box.flowloom("check", env={"GITHUB_BASE_REF": "main"})
    assert result.returncode == 1
    assert "not approved" in result.stdout


def test_all_and_explicit_ranges(box: Sandbox) -> None:
    box.commit_ok(linked("one"))
    code, data = report(box, "--all")
    # The commit made before FlowLoom was adopted has no link.
    assert code == 1
    assert data["checked"] == 4  # initial, adoption, allowed signers, one
    code, data = report(box, "HEAD~1..HEAD")
    assert code == 0 and data["checked"] == 1


def test_bad_range_is_a_one_line_error(box: Sandbox) -> None:
    result = box.flowloom("check", "no-such-branch..HEAD")
    assert result.returncode == 3
    assert result.stderr.startswith("flowloom: error: cannot list the commits of")
    assert result.stderr.count("\n") == 1


def test_record_keeps_the_verdict_and_status_shows_it(box: Sandbox) -> None:
    box.commit_without_hooks("unlinked")
    assert box.flowloom("check", "--record").returncode == 1
    result = box.events("ci.result")[-1]
    assert result["subject"] == "main..HEAD"
    assert result["refs"]["ok"] is False
    assert result["refs"]["failing"] == 1
    assert "last check: FAILED (1 commits) on main..HEAD" in box.ok("status")


def test_check_outside_a_repository(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    result = box.run([*box_cmd(), "check"], cwd=outside)
    assert result.returncode == 3
    assert "not inside a git work tree" in result.stderr


def box_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "flowloom"]
