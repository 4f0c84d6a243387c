"""Local approvals are proven by the approver's own SSH signature, or they do not count.

The CI gate (`flowloom check`) on a protected branch, in real git repositories, with
keys made and signatures produced by the real OpenSSH `ssh-keygen`: an approval written
by hand, signed by a key the committed allowed-signers file does not list (at the base
of the range), or by the author, never satisfies the gate; the OS user name proves
nothing.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from flowloom.decisions.records import DecisionBook
from flowloom.ledger import merkle
from flowloom.ledger.canonical import canonicalize
from flowloom.ledger.event import now_ts
from flowloom.repo.git import GitRepo
from flowloom.repo.signers import GitKeyApprover
from flowloom.store.interface import PendingEntry
from tests.capture.git_sandbox import DECISION, Sandbox, SandboxTemplate
from tests.support.forgeries import FORGED_KINDS
from tests.support.sshkeys import make_key


def _set_up(sandbox: Sandbox) -> None:
    sandbox.commit_ok("initial commit", extra=("--no-verify",))
    sandbox.init()
    sandbox.allow_signers("ann", "carol")
    sandbox.record_decision(DECISION, requested_by="bob")
    sandbox.git("checkout", "-q", "-b", "feature")
    sandbox.commit_ok(f"one\n\nFlowLoom-Decision: {DECISION}")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> SandboxTemplate:
    return SandboxTemplate(tmp_path_factory.mktemp("forgeries"), _set_up)


@pytest.fixture
def box(template: SandboxTemplate) -> Sandbox:
    return template.fresh()


def gate(box: Sandbox) -> tuple[int, dict[str, object]]:
    result = box.flowloom("check", "--json", "--branch", "main")
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def problems(data: dict[str, object]) -> list[str]:
    return [p["kind"] for c in data["commits"] for p in c["problems"]]  # type: ignore[attr-defined]


def test_an_approval_by_a_listed_key_of_someone_else_passes(box: Sandbox) -> None:
    assert gate(box)[0] == 1
    box.approve(DECISION, "carol")
    assert gate(box)[0] == 0


def test_the_cli_signs_with_the_key_git_signs_with(box: Sandbox) -> None:
    carol = box.ssh_key("carol")
    box.git("config", "gpg.format", "ssh")
    box.git("config", "user.signingkey", str(carol.public))
    # The private key sits beside the .pub (as ssh-keygen -Y sign finds it).
    result = box.flowloom("decision", "approve", DECISION)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{DECISION} approved by carol@example.com (entry ")
    assert gate(box)[0] == 0
    shown = json.loads(box.ok("decision", "show", DECISION, "--json"))
    [approval] = shown["approvals"]
    assert approval["verified"] is True and approval["via"] == "ssh"
    assert approval["tree"] == GitRepo(box.repo).tree("HEAD")


@pytest.mark.parametrize("user", ["carol", "carol@example.com"])
def test_the_os_user_name_proves_nothing(box: Sandbox, user: str) -> None:
    # No signing key configured: nothing is recorded, whatever USER says.
    before = len(box.events("decision.approve"))
    result = box.flowloom("decision", "approve", DECISION, env={"USER": user, "LOGNAME": user})
    assert result.returncode != 0
    assert "gpg.format" in result.stderr and "Traceback" not in result.stderr
    assert len(box.events("decision.approve")) == before
    assert gate(box)[0] == 1


def test_a_hand_made_approval_is_refused_by_log_append(box: Sandbox) -> None:
    meta = {
        "actor": {"type": "human", "id": "carol@example.com"},
        "subject": DECISION,
        "refs": {"meaning": "approved"},
    }
    result = box.flowloom("log", "append", "--kind", "decision.approve", "--meta", json.dumps(meta))
    assert result.returncode == 8, result.stderr  # permission denied
    assert "carry authority" in result.stderr and "flowloom decision approve" in result.stderr
    result = box.flowloom("record", "--kind", "decision.approve", "--subject", DECISION)
    assert result.returncode == 8, result.stderr
    assert gate(box)[0] == 1


def test_a_row_written_into_the_database_never_counts(box: Sandbox) -> None:
    """Hand-edited SQLite: an approval appended straight to the store (and one whose
    signature was lifted from a genuine approval onto different content)."""
    with box.services() as services:
        ledger = services.ledger
        decision = DecisionBook(ledger).get(DECISION)
        forged = {
            "v": 1,
            "kind": "decision.approve",
            "ts": now_ts(),
            "project": ledger.log,
            "actor": {"type": "human", "id": "carol@example.com"},
            "subject": DECISION,
            "refs": {"meaning": "approved", "content_digest": decision.content_digest},
        }
        raw = canonicalize(forged)
        ledger.writer.append_many([PendingEntry(raw, merkle.leaf_hash(raw), "decision.approve")])
    assert gate(box)[0] == 1
    # A genuine signature by carol over another decision, pasted onto this one.
    box.record_decision("D-abcdef0123", requested_by="bob")
    box.approve("D-abcdef0123", "carol")
    genuine = box.events("decision.approve")[-1]
    lifted = {k: v for k, v in genuine.items() if k != "index"}
    lifted["subject"] = DECISION
    lifted["refs"] = {
        "meaning": "approved",
        "content_digest": decision.content_digest,
        "ssh_signature": genuine["refs"]["ssh_signature"],
    }
    db = box.common_dir() / "flowloom" / "ledger.db"
    with box.services() as services:
        raw = canonicalize(lifted)
        services.ledger.writer.append_many(
            [PendingEntry(raw, merkle.leaf_hash(raw), "decision.approve")]
        )
    assert sqlite3.connect(db).execute("SELECT count(*) FROM entries").fetchone()[0] > 0
    code, data = gate(box)
    assert code == 1 and problems(data) == ["unapproved"]
    shown = json.loads(box.ok("decision", "show", DECISION, "--json"))
    assert [a["verified"] for a in shown["approvals"]] == [False, False]
    assert "SSH signature does not verify" in shown["approvals"][1]["unverified_reason"]


def test_a_key_not_in_the_allowed_signers_file_does_not_count(box: Sandbox) -> None:
    stranger = make_key(box.root / "sshkeys", "mallory", "ecdsa", 256)
    signer = GitKeyApprover(GitRepo(box.repo), key=stranger.private)
    with pytest.raises(Exception, match="stands for nobody"):
        signer.identity()
    # Signed anyway, naming carol: the signature is real, the key is not carol's.
    with box.services() as services:
        book = DecisionBook(services.ledger, forbid_self_approval=False)
        book.approve(DECISION, "carol@example.com", sign=signer.sign)
    assert gate(box)[0] == 1


def test_a_key_added_by_the_change_itself_does_not_count(box: Sandbox) -> None:
    """The allowed-signers file is read at the base of the range: a branch cannot bring
    the key that approves it."""
    box.allow_signers("ann", "carol", "dave")  # committed on the feature branch
    box.approve(DECISION, "dave")
    code, data = gate(box)
    assert code == 1 and problems(data) == ["unapproved"]
    box.approve(DECISION, "carol")
    assert gate(box)[0] == 0


def test_the_authors_own_signed_approval_does_not_count(box: Sandbox) -> None:
    box.approve(DECISION, "ann")  # ann authored the commit
    assert gate(box)[0] == 1


@pytest.mark.parametrize(
    "variant", ["ANN@example.com", "ann@example.com.", "mailto:ann@example.com", "ａnn@example.com"]
)
def test_an_identity_variant_of_the_author_is_still_the_author(box: Sandbox, variant: str) -> None:
    """The author listed under a disguised form of their email is still excluded."""
    ann = box.ssh_key("ann")
    box.git("checkout", "-q", "main")
    signers = box.repo / ".flowloom" / "allowed_signers"
    signers.write_text(f'{variant} namespaces="flowloom" {ann.public_line}\n')
    box.git("commit", "-qam", "signers", env={"FLOWLOOM_OVERRIDE": "signers"})
    box.git("checkout", "-q", "feature")
    box.git("rebase", "-q", "main")
    box.approve(DECISION, "ann")
    assert gate(box)[0] == 1


@pytest.mark.parametrize("kind", FORGED_KINDS)
def test_log_append_refuses_every_authority_kind(tmp_path: Path, kind: str) -> None:
    box = Sandbox(tmp_path)
    box.commit_ok("initial commit", extra=("--no-verify",))
    before = box.flowloom("log", "show", "--json").stdout
    result = box.flowloom("log", "append", "--kind", kind, "--meta", '{"subject": "x"}')
    assert result.returncode == 8, result.stderr
    assert result.stderr.startswith(f"flowloom: error: {kind} events carry authority")
    assert "Traceback" not in result.stderr
    assert box.flowloom("log", "show", "--json").stdout == before
