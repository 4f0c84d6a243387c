"""Electronic signatures (21 CFR Part 11): re-authenticate, record the manifestation, verify.

Data model: one ``signature.apply`` ledger event per signature, in the signed project's
log; its entry index is the signature's id. The envelope holds the manifestation
(§11.50): ``actor`` = the signer (directory user id and printed name), ``ts`` = when
(UTC), ``subject`` = what was signed (``decision:<id>``, ``entry:<index>``, or any
``<type>:<ref>``) and ``refs``::

    {"signer": user id, "printed_name": full name from the directory, "email": ...,
     "meaning": "authored" | "reviewed" | "approved" | "responsible",
     "statement": the meaning in words, "content_digest": "sha256:<hex>",
     "method": "password" | "oidc-reauth" | "saml-reauth",
     "components": ["email", "password"] | ...,
     "auth_session": session id (never its token) | "auth_key": API key id}

Signing (§11.200): every component (email and password) at the first signing in a
session and on every API-key signing; the password alone for later signings in the same
continuous session; for single sign-on sessions an identity-provider re-authentication
no older than `SigningPolicy.sso_reauth_max_age`. Failures are refused with AuthError,
counted by the Directory's sign-in throttle and audited (``auth.login_failed`` by the
Directory, ``auth.signature_failed`` here). Service accounts never sign.

Binding (§11.70): the signed digest must be the subject's current content digest when
FlowLoom can compute it (decisions: `flowloom.decisions.records.content_digest` of the
decision record envelope), and verification recomputes it later.

Approving a decision is a signature followed by a ``decision.approve`` event that names
the signature's index; the segregation-of-duties rules of `SigningPolicy` are checked
first, so a forbidden approval leaves no signature behind.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final, Literal

from flowloom.auth.permissions import INSTANCE_PROJECT
from flowloom.decisions.records import (
    APPROVAL_MEANINGS,
    Approval,
    Decision,
    DecisionBook,
    check_decision_id,
    content_digest,
)
from flowloom.errors import (
    AuthError,
    ConflictError,
    FlowLoomError,
    InputError,
    NotFoundError,
    PermissionDeniedError,
    VerificationError,
)
from flowloom.ledger import merkle
from flowloom.ledger.event import Event, parse_ts
from flowloom.ledger.identity import canonical_identity, names_of
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import Trust, judge
from flowloom.ledger.receipt import verify_receipt

if TYPE_CHECKING:
    from flowloom.auth.directory import Directory
    from flowloom.auth.principals import Principal
    from flowloom.auth.records import User
    from flowloom.repo.policy import Policy

__all__ = [
    "INSTANCE_PROJECT",
    "SIGNATURE_KIND",
    "CheckStatus",
    "DecisionSignature",
    "ReauthCredentials",
    "SignatureCheck",
    "SignatureMeaning",
    "SignatureRecord",
    "SignatureService",
    "SignatureVerdict",
    "SigningPolicy",
    "SubjectResolver",
    "identities_of",
]

SIGNATURE_KIND: Final = "signature.apply"

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_SUBJECT = re.compile(r"[a-z][a-z0-9_.-]{0,31}:[^\s]{1,200}")
_METHODS: Final = ("password", "oidc-reauth", "saml-reauth")
_OIDC_REAUTH_HINT = (
    "re-authenticate with your identity provider (GET /api/v1/auth/oidc/login?reauth=true), "
    "then sign within a few minutes"
)
_SAML_REAUTH_HINT = (
    "re-authenticate with your identity provider (GET /api/v1/auth/saml/login?reauth=true, "
    "which asks it for ForceAuthn), then sign within a few minutes"
)


class SignatureMeaning(StrEnum):
    """What a signature means (§11.50(a)(3)); shown with every signature."""

    AUTHORED = "authored"
    REVIEWED = "reviewed"
    APPROVED = "approved"
    RESPONSIBLE = "responsible"

    @property
    def statement(self) -> str:
        """The meaning in words, as recorded in the manifestation."""
        return _STATEMENTS[self]

    @classmethod
    def parse(cls, value: object) -> SignatureMeaning:
        """The meaning named `value`; InputError listing the meanings otherwise."""
        try:
            return cls(str(value))
        except ValueError:
            raise InputError(
                f"{value!r} is not a signature meaning",
                hint=f"use one of: {', '.join(m.value for m in cls)}",
            ) from None


_STATEMENTS: Final[Mapping[SignatureMeaning, str]] = {
    SignatureMeaning.AUTHORED: "I am the author of this content.",
    SignatureMeaning.REVIEWED: "I have reviewed this content.",
    SignatureMeaning.APPROVED: "I approve this content.",
    SignatureMeaning.RESPONSIBLE: "I take responsibility for this content.",
}


@dataclass(frozen=True)
class ReauthCredentials:
    """What the signer re-enters to sign; the password is never shown or recorded.

    `client` is the caller's network address, so the sign-in throttle counts failures
    per address as it does for sign-in.
    """

    password: str | None = field(default=None, repr=False)
    email: str | None = None
    client: str = "unknown"


@dataclass(frozen=True)
class SigningPolicy:
    """Segregation of duties and re-authentication limits for signing."""

    forbid_self_approval: bool = True
    """Nobody approves a decision they requested or recorded."""
    forbid_approving_own_ai_session: bool = True
    """Nobody approves a decision made in an AI session they operated."""
    sso_reauth_max_age: timedelta = timedelta(minutes=5)
    """How recent an identity-provider re-authentication must be to sign without a password."""

    def __post_init__(self) -> None:
        if self.sso_reauth_max_age <= timedelta(0):
            raise ValueError("sso_reauth_max_age must be positive")

    @classmethod
    def from_policy(cls, policy: Policy, **changes: Any) -> SigningPolicy:
        """The signing rules of a repository's committed policy (flowloom.repo.policy)."""
        values: dict[str, Any] = {
            "forbid_self_approval": policy.forbid_self_approval,
            "forbid_approving_own_ai_session": policy.forbid_approving_own_ai_session,
        }
        values.update(changes)
        return cls(**values)


@dataclass(frozen=True)
class SignatureRecord:
    """One applied signature, as read back from its ``signature.apply`` entry."""

    id: int
    """The entry index: signatures are named by where they are in the log."""
    project: str
    signer: str
    printed_name: str
    email: str | None
    meaning: SignatureMeaning
    subject: str
    content_digest: str
    signed_at: str
    method: str
    components: tuple[str, ...]
    auth_session: str | None
    auth_key: str | None
    leaf_hash: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "project": self.project,
            "signer": self.signer,
            "printed_name": self.printed_name,
            "email": self.email,
            "meaning": self.meaning.value,
            "statement": self.meaning.statement,
            "subject": self.subject,
            "content_digest": self.content_digest,
            "signed_at": self.signed_at,
            "method": self.method,
            "components": list(self.components),
            "auth_session": self.auth_session,
            "auth_key": self.auth_key,
            "leaf_hash": self.leaf_hash,
        }

    def manifestation(self) -> str:
        """The human-readable form (§11.50): printed name, time, meaning."""
        return f"{self.printed_name} — {self.meaning.value} — {self.signed_at}"

    @classmethod
    def from_entry(cls, project: str, index: int, envelope: bytes) -> SignatureRecord:
        """Read a ``signature.apply`` entry; InputError when it is not a well-formed one."""
        event = Event.parse(envelope)
        if event.kind != SIGNATURE_KIND or event.subject is None:
            raise InputError(f"entry {index} is not a signature")
        refs = event.refs

        def text(name: str) -> str:
            value = refs.get(name)
            if not isinstance(value, str) or not value:
                raise InputError(f"signature at entry {index}: {name} is missing")
            return value

        def optional(name: str) -> str | None:
            value = refs.get(name)
            return value if isinstance(value, str) and value else None

        components = refs.get("components", ())
        if not isinstance(components, tuple) or not all(isinstance(c, str) for c in components):
            raise InputError(f"signature at entry {index}: components is not a list of text")
        return cls(
            id=index,
            project=event.project,
            signer=text("signer"),
            printed_name=text("printed_name"),
            email=optional("email"),
            meaning=SignatureMeaning.parse(text("meaning")),
            subject=event.subject,
            content_digest=text("content_digest"),
            signed_at=event.ts,
            method=text("method"),
            components=tuple(components),
            auth_session=optional("auth_session"),
            auth_key=optional("auth_key"),
            leaf_hash=merkle.leaf_hash(envelope).hex(),
        )


CheckStatus = Literal["pass", "fail", "unchecked"]


@dataclass(frozen=True)
class SignatureCheck:
    """One question verification asks, and its answer."""

    name: str
    status: CheckStatus
    detail: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass(frozen=True)
class SignatureVerdict:
    """Whether a signature still holds, check by check, with the receipt to check it offline.

    `receipt` is the tlog-proof of the signature entry under a signed checkpoint;
    together with `vkey` and the envelope (`leaf_hash`) anyone can re-check inclusion.
    """

    signature: SignatureRecord
    checks: tuple[SignatureCheck, ...]
    current_digest: str | None
    receipt: str | None
    vkey: str | None

    @property
    def ok(self) -> bool:
        """True when no check failed (unchecked ones are reported, not failures)."""
        return all(check.status != "fail" for check in self.checks)

    @property
    def reasons(self) -> list[str]:
        """The failed checks' details, one line each."""
        return [check.detail for check in self.checks if check.status == "fail"]

    def check(self, name: str) -> SignatureCheck:
        for found in self.checks:
            if found.name == name:
                return found
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "signature": self.signature.to_json(),
            "checks": [c.to_json() for c in self.checks],
            "reasons": self.reasons,
            "current_digest": self.current_digest,
            "receipt": self.receipt,
            "vkey": self.vkey,
        }


@dataclass(frozen=True)
class DecisionSignature:
    """An approval of a decision and the signature it was given with."""

    signature: SignatureRecord
    approval: Approval

    def to_json(self) -> dict[str, Any]:
        return {"signature": self.signature.to_json(), "approval": self.approval.to_json()}


SubjectResolver = Callable[[Ledger, str], str | None]
"""The current content digest of a subject; None when it cannot be computed here."""
"""(project ledger, reference after the colon) → the subject's current content digest.

Raises NotFoundError when the subject does not exist (any more)."""


def _decision_digest(ledger: Ledger, ref: str) -> str:
    return DecisionBook(ledger).get(check_decision_id(ref)).content_digest


def _entry_digest(ledger: Ledger, ref: str) -> str:
    if not ref.isdigit():
        raise InputError(f"entry:{ref} does not name an entry index")
    return content_digest(ledger.entry(int(ref)).envelope)


DEFAULT_SUBJECTS: Final[Mapping[str, SubjectResolver]] = {
    "decision": _decision_digest,
    "entry": _entry_digest,
}


def identities_of(principal: Principal) -> set[str]:
    """The canonical names one person may appear under in a decision: user id, email,
    the email's local part, printed name. Segregation of duties compares against all."""
    names = {principal.user_id, principal.name}
    if principal.email:
        names |= {principal.email, principal.email.split("@", 1)[0]}
    return {canonical_identity(name) for name in names if name and name.strip()}


class SignatureService:
    """Applies and verifies electronic signatures over the projects' ledgers."""

    def __init__(
        self,
        directory: Directory,
        ledger_for: Callable[[str], Ledger],
        clock: Callable[[], datetime] | None = None,
        policy: SigningPolicy | None = None,
        *,
        subjects: Mapping[str, SubjectResolver] | None = None,
        instance_project: str = INSTANCE_PROJECT,
        trust_for: Callable[[str], Trust] | None = None,
    ) -> None:
        """`ledger_for(project)` gives a project's ledger; `clock` returns aware UTC time
        (for the SSO re-authentication window); `subjects` adds digest resolvers for
        subject types beyond ``decision`` and ``entry``; `trust_for(project)` says whose
        attestations prove an event (default: the project's own signing key, this
        server's)."""
        self.directory = directory
        self._ledger_for = ledger_for
        self._trust_for = trust_for or (
            lambda project: Trust.of_server([ledger_for(project).verifier])
        )
        self._clock = clock or (lambda: datetime.now(UTC))
        self.policy = policy or SigningPolicy()
        self._subjects = {**DEFAULT_SUBJECTS, **(subjects or {})}
        self._instance_project = instance_project

    # -- signing ---------------------------------------------------------------------

    def sign(
        self,
        principal: Principal,
        project: str,
        *,
        subject: str,
        content_digest: str,
        meaning: SignatureMeaning | str,
        credentials: ReauthCredentials,
    ) -> SignatureRecord:
        """Re-authenticate `principal` and record its signature of `subject`.

        InputError for a bad meaning, subject or digest; ConflictError when the digest is
        not the subject's current content; AuthError when re-authentication fails;
        PermissionDeniedError for service accounts.
        """
        meaning = SignatureMeaning.parse(meaning)
        subject = self._check_subject(subject)
        if not isinstance(content_digest, str) or not _DIGEST.fullmatch(content_digest):
            raise InputError(
                "content_digest must be 'sha256:' and 64 lowercase hex digits",
                hint="sign the digest FlowLoom shows for the content (e.g. a decision's)",
            )
        ledger = self._ledger_for(project)
        current = self._current_digest(ledger, subject)
        if current is not None and current != content_digest:
            raise ConflictError(
                f"{subject} has content digest {current}, not the {content_digest} given",
                hint="read the content again and sign what is there now",
            )
        user = self._signer(principal, project, subject)
        method, components = self._reauthenticate(principal, user, project, subject, credentials)
        refs: dict[str, Any] = {
            "signer": user.id,
            "printed_name": user.name,
            "email": user.email,
            "meaning": meaning.value,
            "statement": meaning.statement,
            "content_digest": content_digest,
            "method": method,
            "components": list(components),
            "auth_session": principal.session_id if principal.via == "session" else None,
            "auth_key": principal.key_id if principal.via == "key" else None,
        }
        prepared = ledger.prepare(
            SIGNATURE_KIND,
            meta={
                "actor": {"type": "human", "id": user.id, "name": user.name},
                "subject": subject,
                "refs": {k: v for k, v in refs.items() if v is not None},
            },
        )
        ack = ledger.writer.append_many([prepared.entry])[0]
        if principal.via == "session" and principal.session_id:
            self.directory.mark_signed(principal.session_id)
            if method == "password":
                self.directory.mark_reauthenticated(principal.session_id)
        return SignatureRecord.from_entry(project, ack.index, prepared.entry.envelope)

    def _check_subject(self, subject: str) -> str:
        if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
            raise InputError(
                f"{subject!r} is not a signature subject",
                hint="name what is signed as '<type>:<ref>', e.g. decision:D-0123456789",
            )
        return subject

    def _current_digest(self, ledger: Ledger, subject: str) -> str | None:
        kind, _, ref = subject.partition(":")
        resolver = self._subjects.get(kind)
        return None if resolver is None else resolver(ledger, ref)

    def _signer(self, principal: Principal, project: str, subject: str) -> User:
        """The signer's directory record: a person whose account is enabled."""
        if principal.kind != "user":
            self._audit_failure(principal, project, subject, "service_account")
            raise PermissionDeniedError(
                "service accounts cannot apply electronic signatures",
                hint="a person signs, with their own email and password",
            )
        user = self.directory.get_user(principal.user_id)
        if user.disabled or user.kind != "user":
            self._audit_failure(principal, project, subject, "disabled")
            raise AuthError("this account is disabled", hint="ask an administrator")
        return user

    def _reauthenticate(
        self,
        principal: Principal,
        user: User,
        project: str,
        subject: str,
        credentials: ReauthCredentials,
    ) -> tuple[str, tuple[str, ...]]:
        """Check the re-entered credentials; (method, components entered)."""
        password = credentials.password or None
        email = (credentials.email or "").strip() or None
        session = None
        if principal.via == "session":
            if not principal.session_id:
                raise AuthError("signing needs a session", hint="sign in again")
            session = self.directory.get_session(principal.session_id)
        if password is None:
            if session is not None and session.via in ("oidc", "saml"):
                fresh = session.reauthenticated_at
                now = self._clock()
                if fresh is not None and now - fresh <= self.policy.sso_reauth_max_age:
                    return f"{session.via}-reauth", ("identity-provider",)
                self._audit_failure(principal, project, subject, "reauth_required")
                raise AuthError(
                    "signing needs a fresh sign-in at your identity provider",
                    hint=_OIDC_REAUTH_HINT if session.via == "oidc" else _SAML_REAUTH_HINT,
                )
            self._audit_failure(principal, project, subject, "password_missing")
            raise AuthError(
                "signing needs your password",
                hint="send your password (and, the first time in a session, your email)",
            )
        first = session is None or not session.signed_before
        if first and email is None:
            self._audit_failure(principal, project, subject, "email_missing")
            raise AuthError(
                "the first signature in a session needs your email and password",
                hint="send both; later signatures in the same session need the password only",
            )
        try:
            proven = self.directory.check_password(
                email or user.email or "", password, client=credentials.client
            )
        except AuthError:
            self._audit_failure(principal, project, subject, "bad_credentials")
            raise
        if proven.user_id != principal.user_id:
            self._audit_failure(principal, project, subject, "other_user")
            raise AuthError(
                "the credentials are not those of the signed-in user",
                hint="a signature is applied with your own email and password",
            )
        return "password", ("email", "password") if email is not None else ("password",)

    def _audit_failure(self, principal: Principal, project: str, subject: str, reason: str) -> None:
        """Record a refused signing in the project's log (never with the credentials)."""
        refs: dict[str, Any] = {
            "user_id": principal.user_id,
            "reason": reason,
            "via": principal.via,
        }
        if principal.session_id:
            refs["auth_session"] = principal.session_id
        if principal.key_id:
            refs["auth_key"] = principal.key_id
        self._ledger_for(project).record(
            "auth.signature_failed",
            meta={"actor": principal.actor(), "subject": subject, "refs": refs},
        )

    # -- approving decisions -----------------------------------------------------------

    def book(self, project: str) -> DecisionBook:
        """The project's decisions, under this service's segregation-of-duties rules."""
        return DecisionBook(
            self._ledger_for(project),
            forbid_self_approval=self.policy.forbid_self_approval,
            forbid_approving_own_ai_session=self.policy.forbid_approving_own_ai_session,
            trust=self._trust_for(project),
        )

    def check_segregation(self, principal: Principal, project: str, decision: Decision) -> None:
        """PermissionDeniedError (audited) when the policy forbids `principal` approving."""
        mine = identities_of(principal)
        for person, why in self.book(project).involved(decision).items():
            if names_of(person) & mine:
                key = (
                    "forbid_approving_own_ai_session"
                    if why.startswith("operated")
                    else "forbid_self_approval"
                )
                self._ledger_for(project).record(
                    "auth.approval_denied",
                    meta={
                        "actor": principal.actor(),
                        "subject": decision.id,
                        "refs": {"user_id": principal.user_id, "reason": why, "policy": key},
                    },
                )
                raise PermissionDeniedError(
                    f"{principal.name} cannot approve {decision.id}: they {why}",
                    hint=f"the policy ({key}) asks for someone else's approval",
                )

    def approve_decision(
        self,
        principal: Principal,
        project: str,
        decision_id: str,
        *,
        credentials: ReauthCredentials,
        meaning: SignatureMeaning | str = SignatureMeaning.APPROVED,
    ) -> DecisionSignature:
        """Sign the decision's recorded content, then record the approval naming the
        signature. Segregation of duties and duplicates are checked before signing."""
        meaning = SignatureMeaning.parse(meaning)
        if meaning.value not in APPROVAL_MEANINGS:
            raise InputError(
                f"a decision is approved or reviewed, not {meaning.value}",
                hint=f"use meaning {' or '.join(APPROVAL_MEANINGS)}",
            )
        book = self.book(project)
        decision = book.get(decision_id)
        self.check_segregation(principal, project, decision)
        mine = identities_of(principal)
        for earlier in decision.approvals:
            if earlier.verified and earlier.approver in mine and earlier.meaning == meaning.value:
                raise ConflictError(
                    f"you already {meaning.value} {decision.id} (entry {earlier.entry})",
                    hint="an approval stands once given; nothing more is needed",
                )
        signature = self.sign(
            principal,
            project,
            subject=f"decision:{decision.id}",
            content_digest=decision.content_digest,
            meaning=meaning,
            credentials=credentials,
        )
        approval = book.approve(
            decision.id,
            principal.user_id,
            meaning.value,
            approver_name=signature.printed_name,
            signature=signature.id,
        )
        return DecisionSignature(signature, approval)

    # -- reading and verifying -----------------------------------------------------------

    def get(self, project: str, signature_id: int) -> SignatureRecord:
        """The signature at entry `signature_id`; NotFoundError when there is none."""
        ledger = self._ledger_for(project)
        if isinstance(signature_id, bool) or not isinstance(signature_id, int):
            raise InputError(f"a signature id is an entry index, not {signature_id!r}")
        stored = ledger.store.entry(ledger.log, signature_id) if signature_id >= 0 else None
        if stored is None or stored.kind != SIGNATURE_KIND:
            raise NotFoundError(
                f"no signature {signature_id} in project {project}",
                hint="a signature's id is the index of its signature.apply entry",
            )
        return SignatureRecord.from_entry(project, signature_id, stored.envelope)

    def verify(self, project: str, signature_id: int) -> SignatureVerdict:
        """Check a signature now: in the log under a signed checkpoint, bound to the
        subject's current content, applied by an existing person enabled at the time."""
        record = self.get(project, signature_id)
        ledger = self._ledger_for(project)
        envelope = ledger.entry(signature_id).envelope
        checks: list[SignatureCheck] = []
        receipt_text: str | None = None
        vkey: str | None = None
        try:
            receipt = ledger.prove(signature_id)
            vkey = ledger.verifier.vkey
            checkpoint = verify_receipt(receipt, merkle.leaf_hash(envelope), ledger.verifier)
            receipt_text = receipt.text()
            checks.append(
                SignatureCheck(
                    "included",
                    "pass",
                    f"entry {signature_id} is in the log under the signed checkpoint of "
                    f"size {checkpoint.size}",
                )
            )
        except (VerificationError, InputError, NotFoundError) as exc:
            checks.append(SignatureCheck("included", "fail", f"not provably in the log: {exc}"))
        current: str | None = None
        try:
            current = self._current_digest(ledger, record.subject)
        except FlowLoomError as exc:
            checks.append(
                SignatureCheck("content", "fail", f"{record.subject} cannot be read: {exc}")
            )
        else:
            if current is None:
                checks.append(
                    SignatureCheck(
                        "content",
                        "unchecked",
                        f"FlowLoom cannot compute the content of {record.subject}; compare "
                        f"{record.content_digest} with the content yourself",
                    )
                )
            elif current == record.content_digest:
                checks.append(
                    SignatureCheck(
                        "content", "pass", f"{record.subject} still has the signed content"
                    )
                )
            else:
                checks.append(
                    SignatureCheck(
                        "content",
                        "fail",
                        f"content digest mismatch: {record.subject} is now {current}, "
                        f"signed {record.content_digest}",
                    )
                )
        proven = judge(json.loads(envelope), self._trust_for(project))
        if proven.origin == "server":
            checks.append(
                SignatureCheck("origin", "pass", "written by this server's signing endpoint")
            )
        else:
            checks.append(SignatureCheck("origin", "fail", f"unverified: {proven.reason}"))
        checks.append(self._signer_check(record))
        if record.method in _METHODS and record.components:
            checks.append(
                SignatureCheck(
                    "reauthentication",
                    "pass",
                    f"signed after re-entering {', '.join(record.components)} ({record.method})",
                )
            )
        else:
            checks.append(
                SignatureCheck(
                    "reauthentication",
                    "fail",
                    f"unknown re-authentication method {record.method!r}",
                )
            )
        return SignatureVerdict(record, tuple(checks), current, receipt_text, vkey)

    def _signer_check(self, record: SignatureRecord) -> SignatureCheck:
        try:
            user = self.directory.get_user(record.signer)
        except NotFoundError:
            return SignatureCheck("signer", "fail", f"no user {record.signer} in the directory")
        signed_at = parse_ts(record.signed_at)
        if user.kind != "user":
            return SignatureCheck("signer", "fail", f"{user.id} is a service account")
        if user.created_at > signed_at:
            return SignatureCheck(
                "signer", "fail", f"{user.id} was created after the signature was applied"
            )
        disabled = self._disabled_at(user.id) if user.disabled else None
        if disabled is not None and disabled <= signed_at:
            return SignatureCheck(
                "signer", "fail", f"{user.id} was disabled before the signature was applied"
            )
        if user.disabled and disabled is None:
            return SignatureCheck(
                "signer",
                "unchecked",
                f"{user.id} is disabled now and the instance log does not say since when",
            )
        later = " (disabled since)" if user.disabled else ""
        return SignatureCheck(
            "signer",
            "pass",
            f"{record.printed_name} ({user.id}) existed and was enabled when signing{later}",
        )

    def _disabled_at(self, user_id: str) -> datetime | None:
        """When the instance log says `user_id`'s current disabled spell began (a user can
        be disabled, enabled again and disabled again), if it says so."""
        try:
            ledger = self._ledger_for(self._instance_project)
        except FlowLoomError:
            return None
        trust = self._trust_for(self._instance_project)
        changes: list[tuple[int, str, datetime]] = []
        for kind in ("auth.user_disabled", "auth.user_enabled", "auth.user_deleted"):
            for entry in ledger.store.entries(ledger.log, kind=kind):
                event = Event.parse(entry.envelope)
                if not judge(event.to_json(), trust).attested:
                    continue  # only the server's own record of a change counts
                if event.subject == user_id or event.refs.get("user_id") == user_id:
                    changes.append((entry.index, kind, parse_ts(event.ts)))
        since: datetime | None = None
        for _, kind, moment in sorted(changes):
            if kind == "auth.user_enabled":
                since = None
            elif since is None:
                since = moment
        return since
