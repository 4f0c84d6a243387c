"""CI without a server: `flowloom check` judges pushed commits against the log that the
pre-push hook published to refs/flowloom/log, verified with the team's vkey."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.capture.git_sandbox import DECISION, Sandbox


def _ci_clone(box: Sandbox, remote: Path, tmp_path: Path) -> Path:
    ci = tmp_path / "ci"
    subprocess.run(["git", "clone", "-q", str(remote), str(ci)], check=True, env=box.env)
    subprocess.run(
        ["git", "fetch", "-q", "--no-tags", "origin", "+refs/flowloom/*:refs/flowloom/*"],
        cwd=ci,
        check=True,
        env=box.env,
    )
    return ci


def _check(box: Sandbox, ci: Path, vkey: str) -> subprocess.CompletedProcess[str]:
    env = {**box.env, "FLOWLOOM_HOME": str(ci.parent / "ci-home"), "FLOWLOOM_VKEY": vkey}
    return subprocess.run(
        [sys.executable, "-m", "flowloom", "check", "--all", "--ledger-ref", "refs/flowloom/log"],
        cwd=ci,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_against_the_published_log(tmp_path: Path) -> None:
    box = Sandbox(tmp_path)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "-b", "main", "--bare", str(remote)], check=True)
    box.init("--agent", "none")
    box.git("remote", "add", "origin", str(remote))
    box.allow_signers("carol@example.com")
    box.record_decision()
    box.approve(DECISION, "carol@example.com")  # protected branch: someone else approves
    box.commit_ok(f"linked change\n\nFlowLoom-Decision: {DECISION}")
    vkey = box.ok("log", "vkey").strip()
    box.git("push", "-q", "origin", "main")

    ci = _ci_clone(box, remote, tmp_path)
    passed = _check(box, ci, vkey)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "3 commits" in passed.stdout  # not a vacuous pass

    sneaky = box.commit_without_hooks("sneaky change")
    box.git("push", "-q", "--no-verify", "origin", "main")
    ci2 = _ci_clone(box, remote, tmp_path / "second")
    failed = _check(box, ci2, vkey)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert sneaky[:12] in failed.stdout

    # A log signed by another key is refused, not trusted.
    from flowloom.ledger.note import Signer

    stranger = Signer.generate("flowloom.local/repo").verifier().vkey
    refused = _check(box, ci, stranger)
    assert refused.returncode == 1
    assert "does not verify" in refused.stderr
