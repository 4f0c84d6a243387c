"""Electronic signatures over a real directory and ledger, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flowloom.auth.directory import Directory
from flowloom.auth.principals import Principal
from flowloom.auth.records import User
from flowloom.auth.signatures import (
    SIGNATURE_KIND,
    ReauthCredentials,
    SignatureMeaning,
    SignatureRecord,
    SignatureService,
    SigningPolicy,
    SubjectResolver,
)
from flowloom.decisions.records import DecisionBook, content_digest
from flowloom.errors import (
    AuthError,
    ConflictError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
)
from flowloom.ledger import merkle
from flowloom.ledger.event import Event
from flowloom.ledger.keys import KeyStore
from flowloom.ledger.log import Ledger
from flowloom.ledger.note import Verifier
from flowloom.ledger.receipt import Receipt, verify_receipt
from flowloom.repo.policy import Policy, policy_from_table, policy_table_text
from flowloom.server.state import LedgerRegistry
from flowloom.services import open_store
from flowloom.store.interface import Store
from tests.auth.conftest import PASSWORD, fast_hasher

PROJECT = "proj"


@dataclass
class World:
    store: Store
    ledgers: LedgerRegistry
    directory: Directory
    alice: User
    bob: User

    def ledger(self, project: str = PROJECT) -> Ledger:
        return self.ledgers.get(project)

    def service(
        self,
        policy: SigningPolicy | None = None,
        *,
        subjects: Mapping[str, SubjectResolver] | None = None,
    ) -> SignatureService:
        return SignatureService(self.directory, self.ledgers.get, policy=policy, subjects=subjects)

    def session_principal(self, user: User, *, via: str = "password") -> Principal:
        _, token, _ = self.directory.create_session(user.id, via=via)
        return self.directory.principal_for_session(token)

    def key_principal(self, user: User) -> Principal:
        _, secret = self.directory.create_key(user.id, name="signing")
        return self.directory.principal_for_key(secret)

    def kinds(self, project: str = PROJECT) -> list[str]:
        ledger = self.ledger(project)
        return [e.kind for e in ledger.store.entries(ledger.log)]

    def events(self, kind: str, project: str = PROJECT) -> list[Event]:
        ledger = self.ledger(project)
        return [Event.parse(e.envelope) for e in ledger.store.entries(ledger.log, kind=kind)]


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    store = open_store(db_url)
    ledgers = LedgerRegistry(
        store,
        KeyStore(tmp_path / "home"),
        origin=lambda p: f"flowloom.test/{p}",
        max_body_bytes=1 << 20,
    )
    directory = Directory(db_url, audit=ledgers.audit, password_hasher=fast_hasher())
    directory.create_project(PROJECT)
    alice = directory.create_user("alice@example.org", "Alice Author", password=PASSWORD)
    bob = directory.create_user("bob@example.org", "Robert Q. Approver", password=PASSWORD)
    directory.grant(bob.id, PROJECT, "approver")
    directory.grant(alice.id, PROJECT, "developer")
    built = World(store, ledgers, directory, alice, bob)
    yield built
    ledgers.close()
    directory.close()
    store.close()


def _decision(
    world: World, *, requested_by: str = "alice@example.org", session: str | None = None
) -> str:
    book = DecisionBook(world.ledger())
    return book.record(
        title="Use argon2id for passwords", requested_by=requested_by, session=session
    ).id


def _digest(world: World, decision_id: str) -> str:
    return DecisionBook(world.ledger()).get(decision_id).content_digest


def test_first_signature_in_a_session_needs_email_and_password_then_password_only(
    world: World,
) -> None:
    service = world.service()
    bob = world.session_principal(world.bob)
    decision = _decision(world)
    subject = f"decision:{decision}"
    digest = _digest(world, decision)

    with pytest.raises(AuthError, match="first signature in a session needs your email"):
        service.sign(
            bob,
            PROJECT,
            subject=subject,
            content_digest=digest,
            meaning="reviewed",
            credentials=ReauthCredentials(password=PASSWORD),
        )
    first = service.sign(
        bob,
        PROJECT,
        subject=subject,
        content_digest=digest,
        meaning="reviewed",
        credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
    )
    assert first.components == ("email", "password")
    assert first.method == "password"
    assert world.directory.get_session(bob.session_id or "").signed_before

    second = service.sign(
        bob,
        PROJECT,
        subject=subject,
        content_digest=digest,
        meaning="responsible",
        credentials=ReauthCredentials(password=PASSWORD),
    )
    assert second.components == ("password",)
    assert second.id > first.id

    with pytest.raises(AuthError, match="needs your password"):
        service.sign(
            bob,
            PROJECT,
            subject=subject,
            content_digest=digest,
            meaning="authored",
            credentials=ReauthCredentials(),
        )

    # A new session starts over: every component again.
    again = world.session_principal(world.bob)
    with pytest.raises(AuthError, match="first signature"):
        service.sign(
            again,
            PROJECT,
            subject=subject,
            content_digest=digest,
            meaning="reviewed",
            credentials=ReauthCredentials(password=PASSWORD),
        )


def test_manifestation_has_printed_name_from_the_directory_time_and_meaning(world: World) -> None:
    service = world.service()
    # A caller cannot choose the printed name: the principal's name is ignored.
    bob = world.key_principal(world.bob)
    forged = Principal(
        user_id=bob.user_id,
        email=bob.email,
        name="Somebody Else",
        kind="user",
        grants=bob.grants,
        scopes=None,
        via="key",
        key_id=bob.key_id,
    )
    decision = _decision(world)
    before = datetime.now(UTC)
    record = service.sign(
        forged,
        PROJECT,
        subject=f"decision:{decision}",
        content_digest=_digest(world, decision),
        meaning=SignatureMeaning.APPROVED,
        credentials=ReauthCredentials(
            email="BOB@example.org", password=PASSWORD, client="10.0.0.9"
        ),
    )
    assert record.printed_name == "Robert Q. Approver"
    assert record.meaning is SignatureMeaning.APPROVED
    assert record.auth_key == bob.key_id and record.auth_session is None

    [event] = world.events(SIGNATURE_KIND)
    assert event.actor.id == world.bob.id and event.actor.name == "Robert Q. Approver"
    assert event.subject == f"decision:{decision}"
    signed_at = datetime.fromisoformat(event.ts)
    assert signed_at.tzinfo is not None and event.ts.endswith("Z")
    assert before - timedelta(seconds=1) <= signed_at <= datetime.now(UTC)
    refs = dict(event.refs)
    assert refs["printed_name"] == "Robert Q. Approver"
    assert refs["meaning"] == "approved"
    assert refs["statement"] == "I approve this content."
    assert refs["content_digest"] == _digest(world, decision)
    assert refs["method"] == "password"
    assert PASSWORD not in json.dumps(event.to_json())
    assert record.manifestation() == f"Robert Q. Approver — approved — {event.ts}"


def test_meaning_subject_and_digest_are_validated(world: World) -> None:
    service = world.service()
    bob = world.key_principal(world.bob)
    creds = ReauthCredentials(email="bob@example.org", password=PASSWORD)
    decision = _decision(world)
    digest = _digest(world, decision)
    with pytest.raises(InputError, match="not a signature meaning"):
        service.sign(
            bob,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=digest,
            meaning="liked",
            credentials=creds,
        )
    with pytest.raises(InputError, match="not a signature subject"):
        service.sign(
            bob,
            PROJECT,
            subject="no colon here",
            content_digest=digest,
            meaning="approved",
            credentials=creds,
        )
    with pytest.raises(InputError, match="content_digest must be"):
        service.sign(
            bob,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest="md5:abc",
            meaning="approved",
            credentials=creds,
        )
    stale = "sha256:" + "0" * 64
    with pytest.raises(ConflictError, match="has content digest"):
        service.sign(
            bob,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=stale,
            meaning="approved",
            credentials=creds,
        )
    with pytest.raises(InputError, match="approved or reviewed"):
        service.approve_decision(bob, PROJECT, decision, credentials=creds, meaning="authored")
    assert SIGNATURE_KIND not in world.kinds()


def test_wrong_password_is_refused_audited_and_throttled(world: World) -> None:
    service = world.service()
    bob = world.key_principal(world.bob)
    decision = _decision(world)
    digest = _digest(world, decision)

    def attempt(password: str) -> None:
        service.sign(
            bob,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=digest,
            meaning="approved",
            credentials=ReauthCredentials(
                email="bob@example.org", password=password, client="192.0.2.7"
            ),
        )

    for _ in range(world.directory.throttle_policy.max_failures):
        with pytest.raises(AuthError, match="wrong email or password"):
            attempt("not the password at all")
    # The account is now locked: even the right password is refused until later.
    with pytest.raises(AuthError, match="too many failed sign-in attempts"):
        attempt(PASSWORD)
    assert SIGNATURE_KIND not in world.kinds()

    failed = world.events("auth.signature_failed")
    assert len(failed) == world.directory.throttle_policy.max_failures + 1
    assert {f.refs["reason"] for f in failed} == {"bad_credentials"}
    assert all(f.actor.id == world.bob.id and f.subject == f"decision:{decision}" for f in failed)
    login_failed = world.events("auth.login_failed", project="flowloom-instance")
    assert [e.refs["reason"] for e in login_failed][-1] == "throttled"
    everything = b"".join(e.envelope for e in world.store.entries(PROJECT))
    assert b"not the password" not in everything


def test_someone_elses_credentials_do_not_sign(world: World) -> None:
    service = world.service()
    bob = world.key_principal(world.bob)
    decision = _decision(world)
    with pytest.raises(AuthError, match="not those of the signed-in user"):
        service.sign(
            bob,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=_digest(world, decision),
            meaning="approved",
            credentials=ReauthCredentials(email="alice@example.org", password=PASSWORD),
        )
    [failed] = world.events("auth.signature_failed")
    assert failed.refs["reason"] == "other_user"


def test_api_key_signing_always_needs_email_and_service_accounts_never_sign(world: World) -> None:
    service = world.service()
    bob = world.key_principal(world.bob)
    decision = _decision(world)
    digest = _digest(world, decision)
    with pytest.raises(AuthError, match="needs your email and password"):
        service.sign(
            bob,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=digest,
            meaning="approved",
            credentials=ReauthCredentials(password=PASSWORD),
        )
    robot = world.directory.create_user(None, "CI Robot", kind="service")
    world.directory.grant(robot.id, PROJECT, "owner")
    robot_principal = world.key_principal(robot)
    with pytest.raises(PermissionDeniedError, match="service accounts cannot"):
        service.sign(
            robot_principal,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=digest,
            meaning="approved",
            credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
        )
    assert SIGNATURE_KIND not in world.kinds()


def test_disabled_user_cannot_sign(world: World) -> None:
    service = world.service()
    bob = world.key_principal(world.bob)  # taken before the account is disabled
    decision = _decision(world)
    world.directory.disable_user(world.bob.id)
    with pytest.raises(AuthError, match="disabled"):
        service.sign(
            bob,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=_digest(world, decision),
            meaning="approved",
            credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
        )
    assert SIGNATURE_KIND not in world.kinds()
    assert world.events("auth.signature_failed")[0].refs["reason"] == "disabled"


def test_sso_session_signs_after_a_fresh_identity_provider_reauthentication(world: World) -> None:
    carol = world.directory.upsert_oidc_user(
        "https://idp.test", "carol-1", "carol@example.org", "Carol SSO"
    )
    decision = _decision(world)
    digest = _digest(world, decision)
    principal = world.session_principal(carol, via="oidc")
    session_id = principal.session_id or ""
    service = world.service()

    def sign(svc: SignatureService) -> SignatureRecord:
        return svc.sign(
            principal,
            PROJECT,
            subject=f"decision:{decision}",
            content_digest=digest,
            meaning="reviewed",
            credentials=ReauthCredentials(),
        )

    with pytest.raises(AuthError, match="fresh sign-in at your identity provider"):
        sign(service)
    world.directory.mark_reauthenticated(session_id)
    record = sign(service)
    assert record.method == "oidc-reauth"
    later = SignatureService(
        world.directory, world.ledgers.get, clock=lambda: datetime.now(UTC) + timedelta(minutes=6)
    )
    with pytest.raises(AuthError, match="identity provider"):
        sign(later)
    reasons = [e.refs["reason"] for e in world.events("auth.signature_failed")]
    assert reasons == ["reauth_required", "reauth_required"]


def test_approval_is_a_signature_and_the_approve_event_names_it(world: World) -> None:
    service = world.service()
    bob = world.session_principal(world.bob)
    decision = _decision(world)
    done = service.approve_decision(
        bob,
        PROJECT,
        decision,
        credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
    )
    assert done.signature.subject == f"decision:{decision}"
    assert done.signature.meaning is SignatureMeaning.APPROVED
    assert done.approval.signature == done.signature.id
    [approve] = world.events("decision.approve")
    assert approve.refs["signature"] == done.signature.id
    assert approve.refs["content_digest"] == done.signature.content_digest
    assert approve.actor.id == world.bob.id and approve.actor.name == "Robert Q. Approver"
    # Read without trusting the server's key, the approval is the server's word only.
    assert DecisionBook(world.ledger()).get(decision).status == "proposed"
    got = service.book(PROJECT).get(decision)
    assert got.status == "accepted"
    assert got.approvals[0].verified and got.approvals[0].via == "server"
    assert got.approvals[0].signature == done.signature.id
    assert got.to_json()["approvals"][0]["signature"] == done.signature.id

    with pytest.raises(ConflictError, match="already approved"):
        service.approve_decision(
            bob, PROJECT, decision, credentials=ReauthCredentials(password=PASSWORD)
        )
    assert len(world.events(SIGNATURE_KIND)) == 1


def test_segregation_of_duties_forbids_approving_ones_own_decision(world: World) -> None:
    alice = world.key_principal(world.alice)
    world.directory.grant(world.alice.id, PROJECT, "approver")
    decision = _decision(world, requested_by="Alice Author <alice@example.org>")
    creds = ReauthCredentials(email="alice@example.org", password=PASSWORD)
    with pytest.raises(
        PermissionDeniedError, match=r"cannot approve .*: they requested it"
    ) as caught:
        world.service().approve_decision(alice, PROJECT, decision, credentials=creds)
    assert "forbid_self_approval" in (caught.value.hint or "")
    assert SIGNATURE_KIND not in world.kinds()
    [denied] = world.events("auth.approval_denied")
    assert denied.subject == decision and denied.refs["policy"] == "forbid_self_approval"

    lenient = world.service(SigningPolicy(forbid_self_approval=False))
    assert lenient.approve_decision(alice, PROJECT, decision, credentials=creds).approval.matches


def test_segregation_of_duties_forbids_approving_ones_own_ai_session(world: World) -> None:
    bob = world.key_principal(world.bob)
    world.ledger().record(
        "session.start",
        meta={
            "session": "s-42",
            "actor": {"type": "agent", "id": "claude-code"},
            "refs": {"operator": "bob@example.org"},
        },
    )
    decision = _decision(world, requested_by="alice@example.org", session="s-42")
    creds = ReauthCredentials(email="bob@example.org", password=PASSWORD)
    with pytest.raises(PermissionDeniedError, match="operated the AI session s-42") as caught:
        world.service().approve_decision(bob, PROJECT, decision, credentials=creds)
    assert "forbid_approving_own_ai_session" in (caught.value.hint or "")
    assert SIGNATURE_KIND not in world.kinds()

    # The committed policy's switch turns this rule off on its own.
    policy = SigningPolicy.from_policy(Policy(forbid_approving_own_ai_session=False))
    assert policy.forbid_self_approval and not policy.forbid_approving_own_ai_session
    done = world.service(policy).approve_decision(bob, PROJECT, decision, credentials=creds)
    assert done.approval.approver == world.bob.id


def test_verify_passes_and_the_receipt_verifies_offline_against_the_vkey(world: World) -> None:
    service = world.service()
    bob = world.key_principal(world.bob)
    decision = _decision(world)
    done = service.approve_decision(
        bob,
        PROJECT,
        decision,
        credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
    )
    verdict = service.verify(PROJECT, done.signature.id)
    assert verdict.ok, verdict.reasons
    assert {c.name: c.status for c in verdict.checks} == {
        "included": "pass",
        "content": "pass",
        "origin": "pass",
        "signer": "pass",
        "reauthentication": "pass",
    }
    assert verdict.current_digest == done.signature.content_digest
    assert json.loads(json.dumps(verdict.to_json()))["ok"] is True

    # Offline: only the receipt text, the vkey and the envelope are needed.
    assert verdict.receipt is not None and verdict.vkey is not None
    envelope = world.ledger().entry(done.signature.id).envelope
    checkpoint = verify_receipt(
        Receipt.parse(verdict.receipt), merkle.leaf_hash(envelope), Verifier.from_vkey(verdict.vkey)
    )
    assert checkpoint.size > done.signature.id
    assert merkle.leaf_hash(envelope).hex() == done.signature.leaf_hash


def test_verify_reports_a_digest_mismatch_when_the_subject_content_changed(world: World) -> None:
    documents = {"spec-1": b"version one"}

    def document_digest(ledger: Ledger, ref: str) -> str:
        return content_digest(documents[ref])

    service = world.service(subjects={"doc": document_digest})
    bob = world.key_principal(world.bob)
    record = service.sign(
        bob,
        PROJECT,
        subject="doc:spec-1",
        content_digest=content_digest(b"version one"),
        meaning="authored",
        credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
    )
    assert service.verify(PROJECT, record.id).ok
    documents["spec-1"] = b"version two"
    verdict = service.verify(PROJECT, record.id)
    assert not verdict.ok
    assert verdict.check("content").status == "fail"
    assert verdict.reasons == [
        f"content digest mismatch: doc:spec-1 is now {content_digest(b'version two')}, "
        f"signed {content_digest(b'version one')}"
    ]
    assert verdict.check("included").status == "pass"

    # A subject FlowLoom cannot read is reported as unchecked, not as verified.
    other = service.sign(
        bob,
        PROJECT,
        subject="ticket:PAY-12",
        content_digest=content_digest(b"x"),
        meaning="reviewed",
        credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
    )
    unknown = service.verify(PROJECT, other.id)
    assert unknown.ok and unknown.check("content").status == "unchecked"


def test_verify_fails_for_a_signer_disabled_before_signing_time(world: World) -> None:
    service = world.service()
    bob = world.key_principal(world.bob)
    decision = _decision(world)
    record = service.sign(
        bob,
        PROJECT,
        subject=f"decision:{decision}",
        content_digest=_digest(world, decision),
        meaning="approved",
        credentials=ReauthCredentials(email="bob@example.org", password=PASSWORD),
    )
    world.directory.disable_user(world.bob.id)
    verdict = service.verify(PROJECT, record.id)
    # Disabled after signing: the signature stands.
    assert verdict.ok and "disabled since" in verdict.check("signer").detail

    # A signature event forged into the log for a user disabled beforehand does not.
    forged = world.ledger().record(
        SIGNATURE_KIND,
        meta={
            "actor": {"type": "human", "id": world.bob.id},
            "subject": f"decision:{decision}",
            "refs": {
                "signer": world.bob.id,
                "printed_name": "Robert Q. Approver",
                "meaning": "approved",
                "content_digest": _digest(world, decision),
                "method": "password",
                "components": ["email", "password"],
            },
        },
    )
    bad = service.verify(PROJECT, forged.index)
    assert not bad.ok
    assert bad.check("signer").status == "fail"
    assert "disabled before the signature" in bad.check("signer").detail


def test_get_refuses_entries_that_are_not_signatures(world: World) -> None:
    service = world.service()
    _decision(world)
    with pytest.raises(NotFoundError, match="no signature 0"):
        service.get(PROJECT, 0)
    with pytest.raises(NotFoundError):
        service.verify(PROJECT, 999)


def test_the_committed_policy_table_sets_both_segregation_rules() -> None:
    table = {"forbid_self_approval": True, "forbid_approving_own_ai_session": False}
    policy = SigningPolicy.from_policy(policy_from_table(table))
    assert policy == SigningPolicy(forbid_self_approval=True, forbid_approving_own_ai_session=False)
    assert "forbid_approving_own_ai_session = true" in policy_table_text(Policy())
    with pytest.raises(ValueError, match="positive"):
        SigningPolicy(sso_reauth_max_age=timedelta(0))
