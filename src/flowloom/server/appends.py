"""Appending through the API: client events become sealed ledger entries.

The server decides what the client may not: the project (from the path) and the actor
(from the principal). A person always records as themselves; an actor they name is kept
as the claim ``refs.reported_actor``. A service account may record for an AI agent (the
agent is the actor, the account ``refs.submitted_by``) but never as a person or another
service: such a claim is kept as ``refs.reported_actor`` too. Authority-bearing kinds
(approvals, signatures, ``auth.*``, ``key.*``, holds, erasure, anchors, exports, CI
verdicts: `flowloom.ledger.attest`) are refused here with 403, naming the endpoint that
enforces their rule. Bodies are redacted before they are sealed. A batch is prepared
whole first (all or nothing) and written in one writer call, so it is one transaction.
Client ``event_id`` keys make retries safe: a repeat returns the first index.

A person-signed event (``signed_envelope``: a ``decision.approve`` made with the
approver's SSH key, synced from a clone's outbox) is the one exception to "the server
writes the envelope": it is stored as signed, because changing it would break the
signature, and only after the server checked what it would otherwise have set itself —
the signature verifies against the project's committed allowed-signers file, the signer
is the actor, the actor is the authenticated key's user, the project is the path's, and
the segregation-of-duties policy allows it. Then the server attests it like its own
endpoints' events. A refusal is 400 for that event (the outbox replaces it with a
``capture.error`` naming why), never a silently rewritten identity.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from flowloom.auth.principals import Principal
from flowloom.errors import FlowLoomError, InputError, PermissionDeniedError
from flowloom.events.model import redaction_notice
from flowloom.events.redaction import Redactor
from flowloom.ledger import merkle
from flowloom.ledger.attest import ATTESTATION_FIELD, refuse_generic
from flowloom.ledger.event import Event, validate_kind
from flowloom.ledger.identity import canonical_identity
from flowloom.ledger.log import Ledger
from flowloom.ledger.provenance import SSH_SIGNATURE_FIELD, SshCheck, ssh_signed_message
from flowloom.server.idempotency import IdempotencyBook
from flowloom.server.models import EventIn
from flowloom.store.interface import PendingEntry

__all__ = [
    "CI_KINDS",
    "SIGNED_KINDS",
    "Appended",
    "CIRules",
    "SignedEventRefusedError",
    "SignedRules",
    "append_events",
]

_RESERVED_REFS = frozenset({ATTESTATION_FIELD, "submitted_by", "reported_actor"})
"""Refs the server sets; a client that sends them is refused, not silently overridden."""


SIGNED_KINDS = frozenset({"decision.approve"})
"""Authority kinds a person proves with their own signature, so a clone may sync them."""


class SignedEventRefusedError(InputError):
    """A person-signed event the server will not store (400: the event, not the caller)."""


@dataclass(frozen=True)
class SignedRules:
    """What the server checks a person-signed event against, for one project."""

    ssh: SshCheck | None
    """The project's allowed signers (from its configured repository); None: none known."""
    identities: Callable[[Principal], set[str]]
    """The canonical names the authenticated principal goes by."""
    segregation: Callable[[Principal, dict[str, Any]], None]
    """Raises when the policy forbids this principal the signed approval (its envelope)."""
    missing: str | None = None
    """Why `ssh` is None, and what the operator configures (the refusal says it)."""


CI_KINDS = frozenset({"test.result", "ci.result"})
"""Authority kinds a CI run proves with its platform's OIDC token, so a runner may sync them."""


@dataclass(frozen=True)
class CIRules:
    """Whose CI tokens the server believes, and how it verifies one."""

    issuers: tuple[str, ...]
    verify: Callable[[str, str], dict[str, Any]]
    """(token, issuer) → the verified claims; raises when the token does not verify."""


@dataclass(frozen=True)
class Appended:
    """What one submitted event became: its index and leaf hash, or an earlier one's."""

    index: int
    leaf_hash: str
    duplicate: bool


@dataclass(frozen=True)
class _Prepared:
    entry: PendingEntry
    actor: dict[str, Any]
    kind: str
    redactions: dict[str, int]


def _where(position: int | None) -> str:
    return "" if position is None else f"events[{position}]: "


def _body_bytes(event: EventIn, redactor: Redactor, position: int | None) -> bytes | None:
    if event.body is not None and event.body_b64 is not None:
        raise InputError(f"{_where(position)}give either body or body_b64, not both")
    if event.body is not None:
        return _utf8(redactor.text(event.body), position)
    if event.body_b64 is not None:
        try:
            raw = base64.b64decode(event.body_b64, validate=True)
        except (binascii.Error, ValueError):
            raise InputError(
                f"{_where(position)}body_b64 is not valid base64",
                hint="use standard base64 (A-Z a-z 0-9 + /, = padding)",
            ) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw  # binary content: nothing textual to redact
        return _utf8(redactor.text(text), position)
    return None


def _utf8(text: str, position: int | None) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, sent as a JSON \ud800 escape
        raise InputError(
            f"{_where(position)}body is not valid Unicode (it holds a lone surrogate)",
            hint="send text as UTF-8, or binary content as body_b64",
        ) from None


def _prepare_signed(
    ledger: Ledger,
    event: EventIn,
    principal: Principal,
    position: int | None,
    rules: SignedRules | None,
) -> _Prepared:
    """The person-signed envelope, checked (see the module docstring) and attested."""
    where = _where(position)

    def refuse(why: str, hint: str | None = None) -> SignedEventRefusedError:
        return SignedEventRefusedError(f"{where}signed {event.kind} refused: {why}", hint=hint)

    others = event.model_dump(exclude={"kind", "event_id", "signed_envelope"}, exclude_none=True)
    if others:
        raise refuse(f"give only kind, event_id and signed_envelope, not {sorted(others)[0]}")
    if event.kind not in SIGNED_KINDS:
        raise refuse(f"only {', '.join(sorted(SIGNED_KINDS))} events may be person-signed")
    assert event.signed_envelope is not None
    try:
        envelope = json.loads(event.signed_envelope)
        parsed = Event.from_json(envelope)
    except (ValueError, FlowLoomError) as exc:
        raise refuse(f"the envelope is not a valid event ({exc})") from None
    if envelope.get("kind") != event.kind:
        raise refuse(f"the envelope's kind is {envelope.get('kind')!r}, not {event.kind!r}")
    if envelope.get("project") != ledger.log:
        raise refuse(f"the envelope names project {envelope.get('project')!r}, not {ledger.log!r}")
    refs = envelope.get("refs")
    refs = refs if isinstance(refs, dict) else {}
    reserved = sorted(_RESERVED_REFS & set(refs))
    if reserved:
        raise refuse(f"refs.{reserved[0]} is set by the server, not the client")
    armored = refs.get(SSH_SIGNATURE_FIELD)
    if not isinstance(armored, str):
        raise refuse(f"it carries no refs.{SSH_SIGNATURE_FIELD}")
    actor = envelope.get("actor") if isinstance(envelope.get("actor"), dict) else {}
    actor_id = actor.get("id") if isinstance(actor.get("id"), str) else ""
    if actor.get("type") != "human" or not actor_id:
        raise refuse("its actor is not a person")
    mine = {canonical_identity(name) for name in rules.identities(principal)} if rules else set()
    if canonical_identity(actor_id) not in mine:
        raise refuse(
            f"it names {actor_id} as the actor, but this API key is {principal.user_id}'s",
            hint="each person syncs their own approvals with their own key",
        )
    if rules is None or rules.ssh is None:
        raise refuse(
            f"this server has no allowed-signers file for project {ledger.log}"
            + (f": {rules.missing}" if rules is not None and rules.missing else ""),
            hint=f'the operator sets [server.repositories] {ledger.log} = "/path/to/clone" in '
            "the server's config file (a clone, kept fetched, whose default branch commits "
            ".flowloom/allowed_signers) and restarts it; see docs/sync.md",
        )
    try:
        signer = rules.ssh.principal(ssh_signed_message(envelope), armored, None)
    except FlowLoomError as exc:
        raise refuse(f"its SSH signature does not verify: {exc.message}") from None
    if signer != canonical_identity(actor_id):
        raise refuse(f"it is signed by {signer}'s key but names {actor_id} as the actor")
    rules.segregation(principal, envelope)
    # The signed envelope is the event: `sign` hands it to prepare, which pins a new
    # log's key first and binds this server's attestation over it (the SSH signature
    # covers everything but the attestation, so it still verifies).
    prepared = ledger.prepare(event.kind, sign=lambda _server_built: parsed.to_json())
    return _Prepared(prepared.entry, dict(actor), event.kind, {})


def _prepare_ci(
    ledger: Ledger,
    event: EventIn,
    principal: Principal,
    position: int | None,
    rules: CIRules | None,
) -> _Prepared:
    """A CI run's result, believed only as far as its OIDC token proves: the issuer is
    on the server's allow-list, the token verifies, names the tested commit when it
    names one, and the run's identity (actor, ``refs.ci``) is taken from its verified
    claims, never from the client's; the key that sent it is ``refs.submitted_by``."""
    import hashlib

    import jwt

    from flowloom.ci.identity import CLAIMS

    where = _where(position)

    def refuse(why: str, hint: str | None = None) -> SignedEventRefusedError:
        return SignedEventRefusedError(f"{where}{event.kind} refused: {why}", hint=hint)

    if event.kind not in CI_KINDS or event.signed_envelope is not None:
        raise refuse(f"a CI token proves only {', '.join(sorted(CI_KINDS))} events")
    assert event.ci_token is not None
    try:
        issuer = jwt.decode(event.ci_token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        raise refuse("the CI identity token is not a JWT") from None
    issuer = issuer.rstrip("/") if isinstance(issuer, str) else ""
    if rules is None or issuer not in rules.issuers:
        raise refuse(
            f"this server does not trust CI tokens from {issuer or 'an unnamed issuer'}",
            hint="the operator lists the CI's issuer in [server] ci_issuers",
        )
    try:
        claims = rules.verify(event.ci_token, issuer)
    except FlowLoomError as exc:
        raise refuse(exc.message) from None
    refs = dict(event.refs or {})
    reserved = sorted(_RESERVED_REFS & set(refs))
    if reserved:
        raise refuse(f"refs.{reserved[0]} is set by the server, not the client")
    commit = refs.get("commit")
    sha = next((claims[k] for k in ("sha", "CI_COMMIT_SHA") if isinstance(claims.get(k), str)), "")
    if sha and isinstance(commit, str) and sha != commit:
        raise refuse(f"the CI token is for commit {sha[:12]}, not the tested {commit[:12]}")
    kept = {name: claims[name] for name in CLAIMS if isinstance(claims.get(name), str | int)}
    claimed = refs.get("ci")
    platform = str((claimed.get("platform") if isinstance(claimed, dict) else None) or "oidc")
    platform = platform[:40]
    refs["ci"] = {
        "platform": platform,
        "verified": True,
        "claims": kept,
        "issuer": issuer,
        "token_sha256": hashlib.sha256(event.ci_token.encode("utf-8")).hexdigest(),
        "verified_by": "server",
    }
    refs["submitted_by"] = principal.actor()
    place = next((str(kept[k]) for k in ("repository", "project_path") if kept.get(k)), "")
    actor = {"type": "service", "id": (f"ci:{platform}" + (f":{place}" if place else ""))[:200]}
    redactor = Redactor()
    body = _body_bytes(event, redactor, position)
    meta: dict[str, Any] = {"actor": actor, "refs": refs}
    if event.subject is not None:
        meta["subject"] = event.subject
    if event.git is not None:
        meta["git"] = event.git.model_dump(exclude_none=True)
    if event.session is not None:
        meta["session"] = event.session
    prepared = ledger.prepare(event.kind, body=body, meta=meta, ts=event.ts)
    return _Prepared(prepared.entry, actor, event.kind, dict(redactor.counts))


def _submitter(envelope: dict[str, Any]) -> tuple[str, str]:
    """Who sent an envelope to this server: the account behind an agent it records for
    (``refs.submitted_by``), else its actor, as (type, canonical id)."""
    refs = envelope.get("refs")
    who = refs.get("submitted_by") if isinstance(refs, dict) else None
    if not isinstance(who, dict):
        who = envelope.get("actor")
    if not isinstance(who, dict):
        return "", ""
    return str(who.get("type", "")), canonical_identity(str(who.get("id", "")))


def _refuse_foreign_amendment(
    ledger: Ledger, event: EventIn, principal: Principal, position: int | None
) -> None:
    """A ``decision.amend`` changes what a decision says (its reply, options, choice):
    only whoever recorded the decision may send one. The record it names, once in the
    log, must have been sent by this principal; a record not in the log yet is this
    batch's own (readers merge an amendment only when it follows its record)."""
    record = (event.refs or {}).get("record")
    if not isinstance(record, int) or isinstance(record, bool) or record < 0:
        return  # names no record: readers merge it into nothing
    stored = ledger.store.entry(ledger.log, record)
    if stored is None or stored.kind != "decision.record":
        return
    recorded = json.loads(stored.envelope)
    mine = (
        "service" if principal.kind == "service" else "human",
        canonical_identity(principal.user_id),
    )
    if _submitter(recorded) != mine:
        raise PermissionDeniedError(
            f"{_where(position)}decision.amend: the decision at entry {record} was recorded "
            f"by someone else; only whoever recorded a decision may amend it",
            hint="record a new decision that supersedes it instead",
        )


def _prepare(
    ledger: Ledger,
    event: EventIn,
    principal: Principal,
    position: int | None,
    rules: SignedRules | None = None,
    ci: CIRules | None = None,
) -> _Prepared:
    if event.signed_envelope is not None:
        return _prepare_signed(ledger, event, principal, position, rules)
    if event.ci_token is not None:
        return _prepare_ci(ledger, event, principal, position, ci)
    try:
        validate_kind(event.kind)
        refuse_generic(event.kind, _where(position))
        reserved = sorted(_RESERVED_REFS & set(event.refs or {}))
        if reserved:
            raise InputError(
                f"{_where(position)}refs.{reserved[0]} is set by the server, not the client"
            )
        if event.kind == "decision.amend":
            _refuse_foreign_amendment(ledger, event, principal, position)
        redactor = Redactor()
        body = _body_bytes(event, redactor, position)
        refs: dict[str, Any] = dict(event.refs or {})
        actor = principal.actor()
        if event.actor is not None:
            claimed = event.actor.model_dump(exclude_none=True)
            if principal.kind == "service" and claimed.get("type") == "agent":
                # A service account records for the AI agent it runs.
                refs["submitted_by"] = actor
                actor = claimed
            elif claimed != actor:
                # Nobody writes as a person (or another service) by naming them: the
                # authenticated principal is the actor, the claim is kept as a claim.
                refs["reported_actor"] = claimed
        meta: dict[str, Any] = {"actor": actor}
        if event.session is not None:
            meta["session"] = event.session
        if event.git is not None:
            meta["git"] = event.git.model_dump(exclude_none=True)
        if event.subject is not None:
            meta["subject"] = event.subject
        if refs:
            meta["refs"] = refs
        prepared = ledger.prepare(event.kind, body=body, meta=meta, data_subject=event.data_subject)
        entry = prepared.entry
        if event.ts is not None:
            # The client's clock: rebuild the envelope with it (validated strictly).
            envelope = prepared.event.to_json()
            envelope["ts"] = event.ts
            canonical = Event.from_json(envelope).canonical()
            entry = PendingEntry(
                envelope=canonical,
                leaf_hash=merkle.leaf_hash(canonical),
                kind=entry.kind,
                body=entry.body,
            )
    except InputError as exc:
        if position is None or exc.message.startswith("events["):
            raise
        raise type(exc)(f"{_where(position)}{exc.message}", hint=exc.hint) from exc
    return _Prepared(entry, actor, event.kind, dict(redactor.counts))


def append_events(
    ledger: Ledger,
    events: Sequence[EventIn],
    principal: Principal,
    idempotency: IdempotencyBook,
    *,
    batch: bool,
    signed_rules: Callable[[], SignedRules] | None = None,
    ci_rules: CIRules | None = None,
) -> list[Appended]:
    """Append `events` (all or nothing) and return one Appended per event, in order.

    `signed_rules` gives the checks for person-signed events (built only when one comes).
    """
    rules: SignedRules | None = None
    ids = [e.event_id for e in events if e.event_id is not None]
    claim = idempotency.claim(ledger.log, ids)
    results: list[Appended | None] = [None] * len(events)
    fresh: list[tuple[int, _Prepared]] = []
    first_position: dict[str, int] = {}
    try:
        for position, event in enumerate(events):
            if event.event_id is not None:
                if event.event_id in claim.done:
                    index, leaf = claim.done[event.event_id]
                    results[position] = Appended(index, leaf, True)
                    continue
                if event.event_id in first_position:
                    continue  # the same id twice in one batch: the first one's answer
                first_position[event.event_id] = position
            where = position if batch else None
            if event.signed_envelope is not None and rules is None and signed_rules:
                rules = signed_rules()
            fresh.append((position, _prepare(ledger, event, principal, where, rules, ci_rules)))
        entries = [p.entry for _, p in fresh]
        if len(entries) == 1:
            acks = [ledger.writer.append(entries[0])]  # group commit with other requests
        else:
            acks = ledger.writer.append_many(entries)  # one transaction for the batch
    except BaseException:
        idempotency.release(ledger.log, claim.claimed)
        raise
    settled: list[tuple[str, int, str]] = []
    for (position, _), ack in zip(fresh, acks, strict=True):
        results[position] = Appended(ack.index, ack.leaf_hash.hex(), False)
        event_id = events[position].event_id
        if event_id is not None:
            settled.append((event_id, ack.index, ack.leaf_hash.hex()))
    idempotency.settle(ledger.log, settled)
    for position, event in enumerate(events):
        if results[position] is None and event.event_id is not None:
            first = results[first_position[event.event_id]]
            assert first is not None
            results[position] = Appended(first.index, first.leaf_hash, True)
    _record_redactions(ledger, fresh, acks_indices=[a.index for a in acks])
    done = [r for r in results if r is not None]
    assert len(done) == len(events)
    return done


def _record_redactions(
    ledger: Ledger, fresh: Sequence[tuple[int, _Prepared]], *, acks_indices: Sequence[int]
) -> None:
    """One redaction.apply event per event whose body had secrets (counts, never secrets)."""
    entries: list[PendingEntry] = []
    for (_, prepared), index in zip(fresh, acks_indices, strict=True):
        if not prepared.redactions:
            continue
        notice = redaction_notice(
            prepared.kind, prepared.redactions, index, {"actor": prepared.actor}
        )
        entries.append(ledger.prepare(notice["kind"], meta=notice["meta"]).entry)
    if entries:
        ledger.writer.append_many(entries)
