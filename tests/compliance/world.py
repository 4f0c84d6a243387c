"""A small organisation's month of work, built for real: a git repository, a ledger, a directory.

Everything goes through the real pieces: git in subprocesses with controlled dates, an
SQLite ledger (the project log and the instance log in one store), the Directory (users,
API keys, disabling, revocation, with its audit events in the instance log) and the
SignatureService (Part 11 signatures with re-authentication). One clock drives the
ledger, the directory and git's dates so the period logic is exercised exactly.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from flowloom.auth.directory import Directory
from flowloom.auth.signatures import ReauthCredentials, SignatureService
from flowloom.compliance.changes import git_object_digest
from flowloom.decisions.records import DecisionBook, content_digest
from flowloom.ledger.body import BodyCipher
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import Trust
from flowloom.repo.git import GitRepo
from flowloom.store.interface import Store
from flowloom.store.sqlite import SQLiteStore

PROJECT = "acme"
INSTANCE = "flowloom-instance"
PASSWORD = "correct horse battery staple"

ANN = ("Ann Author", "ann@example.com")
BOB = ("Bob Builder", "bob@example.com")
RITA = ("Rita Reviewer", "rita@example.com")
CAROL = ("Carol Ops", "carol@example.com")
MALLORY = ("Mallory Leaver", "mallory@example.com")


class Clock:
    """The one time source of the world; tests move it forward."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment

    def advance(self, **delta: float) -> datetime:
        self.now = self.now + timedelta(**delta)
        return self.now


def at(day: int, hour: int = 9, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


@dataclass
class World:
    root: Path
    clock: Clock
    store: Store
    ledger: Ledger
    instance: Ledger
    directory: Directory
    signatures: SignatureService
    repo: GitRepo
    expected: dict[str, Any] = field(default_factory=dict)
    users: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)

    @property
    def trust(self) -> Trust:
        """What a reader believes here: the world plays a team server, whose keys (the
        project's and the instance log's) attest what its endpoints wrote."""
        return Trust.of_server([self.ledger.verifier, self.instance.verifier])

    # -- git --------------------------------------------------------------------------

    def git(self, *args: str, who: tuple[str, str] = ANN) -> str:
        stamp = f"@{int(self.clock.now.timestamp())} +0000"
        env = {
            **os.environ,
            "HOME": str(self.root / "home"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": str(self.root / "home" / ".gitconfig"),
            "GIT_AUTHOR_NAME": who[0],
            "GIT_AUTHOR_EMAIL": who[1],
            "GIT_COMMITTER_NAME": who[0],
            "GIT_COMMITTER_EMAIL": who[1],
            "GIT_AUTHOR_DATE": stamp,
            "GIT_COMMITTER_DATE": stamp,
        }
        for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
            env.pop(name, None)
        done = subprocess.run(
            ["git", *args], cwd=self.repo.cwd, env=env, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout.strip()

    def commit(
        self,
        path: str,
        text: str,
        title: str,
        *,
        who: tuple[str, str],
        trailers: dict[str, str] | None = None,
    ) -> str:
        file = self.repo.cwd / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
        self.git("add", path, who=who)
        message = title
        if trailers:
            message += "\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers.items())
        self.git("commit", "-q", "-m", message, who=who)
        return self.git("rev-parse", "HEAD")

    # -- ledger events, as the hooks and CI record them ----------------------------------

    def link(
        self,
        sha: str,
        branch: str,
        *,
        who: tuple[str, str],
        decision: str | None = None,
        session: str | None = None,
        override: dict[str, Any] | None = None,
    ) -> int:
        refs: dict[str, Any] = {
            "branch": branch,
            "patch_id": self.repo.patch_id(sha),
            "tree": self.repo.tree(sha),
        }
        if decision:
            refs["decision"] = decision
        if session:
            refs["session"] = session
        if override:
            refs["override"] = override
        meta: dict[str, Any] = {
            "actor": {"type": "human", "id": who[1], "name": who[0]},
            "git": {"branch": branch, "head": sha},
            "subject": sha,
            "refs": refs,
        }
        if session:
            meta["session"] = session
        return self.ledger.record("commit.link", meta=meta).index

    def ci(self, sha: str, branch: str, *, ok: bool = True, gate_only: bool = False) -> int:
        """A CI run: the gate's verdict and (unless `gate_only`) the tests' results for
        `sha`'s tree, as `flowloom check --record` and `flowloom ci record` write them."""
        refs = {"ok": ok, "checked": 1, "linked": 1, "overridden": 0, "failing": 0 if ok else 1}
        if not gate_only:
            self.tests(sha, branch, ok=ok)
        return self.ledger.record(
            "ci.result",
            meta={
                "actor": {"type": "service", "id": "ci", "name": "CI"},
                "subject": f"{branch}",
                "git": {"branch": branch, "head": sha},
                "refs": {**refs, "branch": branch, "commits": []},
            },
        ).index

    def tests(self, sha: str, branch: str, *, ok: bool = True) -> int:
        """Test results for `sha`'s tree (`flowloom ci record`), from a verified CI run."""
        return self.ledger.record(
            "test.result",
            meta={
                "actor": {"type": "service", "id": "ci:github:acme/app"},
                "subject": sha,
                "git": {"branch": branch, "head": sha},
                "refs": {
                    "ok": ok,
                    "commit": sha,
                    "tree": self.repo.tree(sha),
                    "tests": 2,
                    "passed": 2 if ok else 1,
                    "failed": 0 if ok else 1,
                    "errors": 0,
                    "skipped": 0,
                    "files": [],
                    "failing": [] if ok else ["tests.test_app::test_pay"],
                    "ci": {"platform": "github", "verified": True, "claims": {"sha": sha}},
                },
            },
        ).index

    def session(self, session: str, operator: tuple[str, str], model: str | None) -> int:
        refs: dict[str, Any] = {"source": "startup", "operator": operator[1]}
        if model:
            refs["model"] = model
        return self.ledger.record(
            "session.start",
            meta={
                "actor": {"type": "agent", "id": f"claude-code@{operator[1]}"},
                "session": session,
                "subject": "claude-code",
                "refs": refs,
            },
        ).index

    def decide(
        self, title: str, requested_by: tuple[str, str], *, session: str | None, model: str | None
    ) -> str:
        decision = DecisionBook(self.ledger).record(
            title=title,
            requested_by=f"{requested_by[0]} <{requested_by[1]}>",
            session=session,
            model=model,
            actor={"type": "agent", "id": "claude-code"},
        )
        return decision.id

    def principal(self, person: tuple[str, str]) -> Any:
        return self.directory.principal_for_key(self.secrets[person[1]])

    def approve(self, decision: str, person: tuple[str, str]) -> tuple[int, int]:
        signed = self.signatures.approve_decision(
            self.principal(person),
            PROJECT,
            decision,
            credentials=ReauthCredentials(password=PASSWORD, email=person[1]),
        )
        return signed.signature.id, signed.approval.entry

    def sign(self, subject: str, digest: str, person: tuple[str, str]) -> int:
        record = self.signatures.sign(
            self.principal(person),
            PROJECT,
            subject=subject,
            content_digest=digest,
            meaning="approved",
            credentials=ReauthCredentials(password=PASSWORD, email=person[1]),
        )
        return record.id

    def close(self) -> None:
        self.directory.close()
        self.ledger.writer.close()
        self.instance.writer.close()
        self.store.close()

    def user(self, person: tuple[str, str]) -> None:
        """Create `person` in the directory with a password and an API key."""
        user = self.directory.create_user(person[1], person[0], password=PASSWORD)
        self.users[person[1]] = user
        _, secret = self.directory.create_key(user.id, name="laptop")
        self.secrets[person[1]] = secret

    def grant_override(self, reason: str, who: tuple[str, str], branch: str) -> int:
        return self.ledger.record(
            "override.grant",
            meta={
                "actor": {"type": "human", "id": who[1], "name": who[0]},
                "subject": "pending",
                "refs": {"reason": reason, "source": "cli", "branch": branch},
            },
        ).index


def build_world(root: Path) -> World:
    """Build the month of March 2026 and note what each check must flag in `expected`."""
    world = empty_world(root)
    _month(world)
    return world


def empty_world(root: Path, start: datetime | None = None, *, store: Store | None = None) -> World:
    """The same pieces with nothing in them yet: a repository without commits, empty logs
    (in `store` when given, an SQLite file otherwise)."""
    (root / "home").mkdir(parents=True)
    (root / "repo").mkdir()
    clock = Clock(start or at(20, month=2))
    store = store or SQLiteStore(root / "ledger.db")
    keys = KeyStore(root / "flowloom-home")

    def ledger_for(log: str) -> Ledger:
        origin = f"flowloom.example.com/{log}"
        keys.signer(origin)
        return Ledger(
            store,
            log=log,
            origin=origin,
            signer=lambda: keys.signer(origin)[0],
            cipher=lambda: BodyCipher(keys.master_key()),
            actor={"type": "human", "id": "ops"},
            max_body_bytes=1 << 20,
            clock=clock,
        )

    ledger = ledger_for(PROJECT)
    instance = ledger_for(INSTANCE)
    ledgers = {PROJECT: ledger, INSTANCE: instance}

    def audit(kind: str, project: str | None, meta: Any) -> None:
        ledgers[project or INSTANCE].record(kind, meta=dict(meta))

    directory = Directory(
        f"sqlite:///{root / 'directory.db'}",
        audit=audit,
        clock=clock,
        password_hasher=PasswordHasher(time_cost=1, memory_cost=64, parallelism=1),
    )
    signatures = SignatureService(directory, ledgers.__getitem__, clock=clock)
    world = World(
        root=root,
        clock=clock,
        store=store,
        ledger=ledger,
        instance=instance,
        directory=directory,
        signatures=signatures,
        repo=GitRepo(root / "repo"),
    )
    world.git("init", "-q", "-b", "main")
    # What 'flowloom init' records first: the adoption, the population's default baseline.
    ledger.record(
        "config.change", meta={"subject": ".flowloom/config.toml", "refs": {"init": True}}
    )
    return world


def _month(w: World) -> None:
    exp = w.expected
    w.commit("README.md", "acme\n", "Initial commit", who=ANN)  # before the period
    w.git("branch", "f6")
    w.git("branch", "f7")

    for person in (ANN, BOB, RITA, CAROL, MALLORY):
        w.user(person)

    # C1: an AI-assisted change, independently approved by signature, tested, merged.
    w.clock.set(at(2))
    w.session("S1", ANN, "claude-sonnet-4-5-20250929")
    w.ledger.record(
        "agent.prompt",
        body=b"Customer 17 (jane@example.org) reports rounding errors in refunds",
        data_subject="customer-17",
        meta={"actor": {"type": "agent", "id": "claude-code"}, "session": "S1"},
    )
    d1 = w.decide("Round refunds half-even", ANN, session="S1", model="claude-sonnet-4-5-20250929")
    w.git("checkout", "-q", "-b", "f1", "main")
    w.clock.advance(hours=1)
    c1 = w.commit(
        "refunds.py", "ROUND = 'half-even'\n", "Round refunds half-even", who=ANN,
        trailers={"FlowLoom-Decision": d1, "FlowLoom-Session": "S1"},
    )  # fmt: skip
    w.ledger.record(
        "artifact.write",
        body=b"+ROUND = 'half-even'\n",
        meta={"actor": {"type": "agent", "id": "claude-code"}, "session": "S1",
              "subject": "refunds.py"},
    )  # fmt: skip
    w.link(c1, "f1", who=ANN, decision=d1, session="S1")
    w.clock.advance(hours=1)
    w.ci(c1, "f1")
    w.approve(d1, RITA)
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "f1")

    # A body of a data subject under legal hold, and one of a trial user.
    w.clock.set(at(3))
    w.ledger.record(
        "agent.prompt",
        body=b"Patient 7 record excerpt",
        data_subject="patient-7",
        meta={"actor": {"type": "agent", "id": "claude-code"}, "session": "S1"},
    )

    # C2: Ann operated the AI session for Bob's change, and Ann approved it (policy off),
    # without an electronic signature.
    w.clock.set(at(4))
    w.session("S2", ANN, "claude-opus-4-1-20250805")
    d2 = w.decide("Cache exchange rates", BOB, session="S2", model="claude-opus-4-1-20250805")
    w.git("checkout", "-q", "-b", "f2", "main")
    w.clock.advance(hours=1)
    c2 = w.commit(
        "rates.py", "CACHE = True\n", "Cache exchange rates", who=BOB,
        trailers={"FlowLoom-Decision": d2, "FlowLoom-Session": "S2"},
    )  # fmt: skip
    w.link(c2, "f2", who=BOB, decision=d2, session="S2")
    w.clock.advance(hours=1)
    w.ci(c2, "f2")
    approval = DecisionBook(w.ledger, forbid_self_approval=False).approve(d2, ANN[1])
    exp["unsigned_approval"] = approval.entry
    # Bob's key is used once before it is revoked: fine.
    w.ledger.record(
        "agent.tool",
        meta={
            "actor": {"type": "agent", "id": "claude-code"},
            "session": "S2",
            "refs": {"auth_key": w.principal(BOB).key_id},
        },
    )
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "f2")

    w.clock.set(at(5))
    w.ledger.record(
        "agent.prompt",
        body=b"Trial user 3 asked for a demo account",
        data_subject="trial-user-3",
        meta={"actor": {"type": "agent", "id": "claude-code"}, "session": "S2"},
    )
    # Mallory works normally, then leaves and is disabled; Bob's key is revoked.
    w.ledger.record(
        "agent.prompt",
        meta={"actor": {"type": "human", "id": w.users[MALLORY[1]].id, "name": MALLORY[0]}},
    )
    w.clock.set(at(6))
    bob_key = w.principal(BOB).key_id
    w.directory.disable_user(w.users[MALLORY[1]].id)
    w.directory.revoke_key(bob_key)

    # C3: a direct push to main: no decision, no link, no CI.
    w.clock.set(at(7))
    c3 = w.commit("hotpatch.py", "X = 1\n", "Quick fix", who=BOB)

    # C4: an emergency override, approved by Carol the next morning.
    w.clock.set(at(8))
    g4 = w.grant_override("payment outage P1", ANN, "hotfix-4")
    w.git("checkout", "-q", "-b", "hotfix-4", "main")
    c4 = w.commit(
        "outage.py", "RETRIES = 5\n", "Raise retries during outage", who=ANN,
        trailers={"FlowLoom-Override": "payment outage P1"},
    )  # fmt: skip
    w.link(c4, "hotfix-4", who=ANN, override={"reason": "payment outage P1", "grant": g4})
    w.clock.advance(minutes=30)
    w.ci(c4, "hotfix-4")
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "hotfix-4")
    w.clock.advance(hours=14)
    override_sig = w.sign(f"entry:{g4}", content_digest(w.ledger.entry(g4).envelope), CAROL)

    # A legal hold on patient 7.
    w.clock.set(at(10))
    from flowloom.compliance.retention import place_hold

    place_hold(w.ledger, "LH-2026-1", reason="litigation: Doe v. Acme", data_subject="patient-7")

    # C5: an override nobody ever approved, merged without CI.
    w.clock.set(at(11))
    g5 = w.grant_override("demo tomorrow", BOB, "hotfix-5")
    w.git("checkout", "-q", "-b", "hotfix-5", "main")
    c5 = w.commit(
        "demo.py", "DEMO = True\n", "Demo switch", who=BOB,
        trailers={"FlowLoom-Override": "demo tomorrow"},
    )  # fmt: skip
    w.link(c5, "hotfix-5", who=BOB, override={"reason": "demo tomorrow", "grant": g5})
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "hotfix-5")

    # M6: a feature branch of two AI commits (model given only as an alias), merged
    # through a pull request; Rita approves the decision and signs the merged tree.
    w.clock.set(at(12))
    w.session("S3", ANN, "sonnet")
    d6 = w.decide("Export statements as PDF", ANN, session="S3", model=None)
    w.git("checkout", "-q", "f6")
    w.clock.advance(hours=1)
    c6a = w.commit(
        "export.py", "def pdf(): ...\n", "Statement export", who=ANN,
        trailers={"FlowLoom-Decision": d6, "FlowLoom-Session": "S3"},
    )  # fmt: skip
    w.link(c6a, "f6", who=ANN, decision=d6, session="S3")
    w.clock.advance(hours=1)
    c6b = w.commit(
        "export.py", "def pdf():\n    return b''\n", "Statement export: body", who=ANN,
        trailers={"FlowLoom-Decision": d6, "FlowLoom-Session": "S3"},
    )  # fmt: skip
    w.link(c6b, "f6", who=ANN, decision=d6, session="S3")
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "-b", "pr6", "main")
    w.git("merge", "-q", "--no-ff", "-m", "Merge f6: statement export", "f6")
    m6 = w.git("rev-parse", "HEAD")
    w.clock.advance(minutes=20)
    w.ci(m6, "pr6")
    w.approve(d6, RITA)
    tree6 = w.repo.tree(m6)
    w.sign(f"tree:{tree6}", git_object_digest(tree6), RITA)
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "pr6")

    # M7: Bob's AI change (the session did not record its model) merged through a pull
    # request; Rita approved the decision but nobody approved the merged tree.
    w.clock.set(at(14))
    w.session("S4", BOB, None)
    d7 = w.decide("Batch ledger writes", BOB, session="S4", model=None)
    w.git("checkout", "-q", "f7")
    w.clock.advance(hours=1)
    c7a = w.commit(
        "batch.py", "BATCH = 100\n", "Batch ledger writes", who=BOB,
        trailers={"FlowLoom-Decision": d7, "FlowLoom-Session": "S4"},
    )  # fmt: skip
    w.link(c7a, "f7", who=BOB, decision=d7, session="S4")
    w.clock.advance(hours=1)
    w.approve(d7, RITA)
    w.git("checkout", "-q", "-b", "pr7", "main")
    w.git("merge", "-q", "--no-ff", "-m", "Merge f7: batching", "f7", who=BOB)
    m7 = w.git("rev-parse", "HEAD")
    w.clock.advance(minutes=20)
    w.ci(m7, "pr7")
    w.clock.advance(hours=1)
    w.git("checkout", "-q", "main")
    w.git("merge", "-q", "--ff-only", "pr7", who=BOB)

    # C8: linked on main, then thrown away by a reset (as a force push would).
    w.clock.set(at(16))
    d8 = w.decide("Try a new logger", BOB, session=None, model=None)
    c8 = w.commit("log.py", "LOG = 1\n", "New logger", who=BOB, trailers={"FlowLoom-Decision": d8})
    w.link(c8, "main", who=BOB, decision=d8)
    w.clock.advance(hours=2)
    w.git("reset", "-q", "--hard", "HEAD~1", who=BOB)

    # After revocation: Mallory's old hook still records; Bob's revoked key is replayed.
    w.clock.set(at(18))
    late_mallory = w.ledger.record(
        "agent.prompt",
        meta={"actor": {"type": "human", "id": w.users[MALLORY[1]].id, "name": MALLORY[0]}},
    ).index
    late_laptop = w.ledger.record(
        "agent.prompt",  # her laptop's hook records her under her git email
        meta={"actor": {"type": "human", "id": MALLORY[1]}},
    ).index
    late_key = w.ledger.record(
        "agent.tool",
        meta={"actor": {"type": "agent", "id": "claude-code"}, "refs": {"auth_key": bob_key}},
    ).index

    # Erasures: a GDPR request (fine), a purge before its time (done by hand, bypassing
    # the purge function), and an erasure of a subject under legal hold.
    w.clock.set(at(20))
    from flowloom.ledger.body import subject_pseudonym

    trial = subject_pseudonym(PROJECT, "trial-user-3")
    early = w.ledger.record(
        "erasure.tombstone",
        meta={
            "subject": trial,
            "refs": {
                "subject": trial,
                "bodies": w.store.body_digests(PROJECT, trial),
                "reason": "cleanup",
                "purpose": "retention",
            },
        },
    ).index
    w.store.delete_bodies(PROJECT, trial)
    w.clock.set(at(22))
    held = w.ledger.erase("patient-7", reason="patient asked for erasure").index
    w.clock.set(at(25))
    request = w.ledger.erase("customer-17", reason="GDPR Art. 17 request #88").index
    w.clock.set(at(31, 12))
    w.ledger.checkpoint()

    exp.update(
        c1=c1, c2=c2, c3=c3, c4=c4, c5=c5, c6a=c6a, c6b=c6b, m6=m6, c7a=c7a, m7=m7, c8=c8,
        d1=d1, d2=d2, d6=d6, d7=d7, g4=g4, g5=g5, override_sig=override_sig,
        late_mallory=late_mallory, late_laptop=late_laptop, late_key=late_key,
        early=early, held=held, request=request,
    )  # fmt: skip


def enter(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """Run the CLI in `world` as its developer: its repository, ledger, keys and git
    config, and no team server."""
    for name in ("FLOWLOOM_SERVER", "FLOWLOOM_API_KEY", "FLOWLOOM_API_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(world.root / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(world.root / "home" / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(world.root / "home" / ".gitconfig"))
    monkeypatch.setenv("FLOWLOOM_HOME", str(world.root / "flowloom-home"))
    monkeypatch.setenv("FLOWLOOM_DATABASE", str(world.root / "ledger.db"))
    monkeypatch.setenv("FLOWLOOM_PROJECT", PROJECT)
    monkeypatch.setenv("FLOWLOOM_ORIGIN", f"flowloom.example.com/{PROJECT}")
    monkeypatch.chdir(world.repo.cwd)
    return world
