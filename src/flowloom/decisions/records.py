"""Decision records: what was decided, why, who asked, and who approved it.

Data model (events in the ledger; the contract is docs/capture.md):

- ``decision.record``: subject = the decision id (``D-`` + 10 lowercase hex), envelope
  ``session`` = the work session, refs = the decision's fields: ``title, context,
  options, choice, rationale, requested_by, session, model, files, tickets, risk,
  prompt_entry, response_entry`` (empty and unset fields are left out).
- ``decision.amend``: subject = the decision id, refs = ``record`` (the entry of the
  record it amends) and any of ``options, choice, rationale, risk, model,
  response_entry``: what the decision gained after it was recorded, chiefly the reply of
  the turn that produced it (`reply_amendment`). Readers merge amendments into the
  record in log order, each named field replacing the value before; the other fields
  (title, context, who asked, session, files, tickets, prompt) are never amended.
- ``decision.approve``: subject = the decision id, actor = the approver, refs =
  ``meaning`` (approved / reviewed) and ``content_digest`` (`decision_digest`): the
  SHA-256 of the record's canonical envelope and, once amended, of its amendments too,
  so an approval names exactly the content it approved: an amendment recorded after an
  approval is not covered by it, and that approval no longer counts (approve again);
  ``signature``: the index of the ``signature.apply`` entry when the approval was an
  electronic signature (the team server; docs/signatures.md).

A record is never edited; reading scans only these kinds (an indexed query) and parses
only the envelopes whose bytes name the decision asked for. Light to import (standard
library and flowloom.ledger only): the capture drainer amends decisions on every reply.
Text arrives here already redacted.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from flowloom.errors import InputError, NotFoundError
from flowloom.ledger.canonical import canonicalize
from flowloom.ledger.event import Event
from flowloom.ledger.identity import canonical_identity
from flowloom.ledger.log import EnvelopeSigner, Ledger
from flowloom.ledger.provenance import NOBODY, Trust, judge

__all__ = [
    "APPROVAL_MEANINGS",
    "DECISION_ID",
    "RISKS",
    "Approval",
    "Decision",
    "DecisionBook",
    "ExchangeDraft",
    "SelfApprovalError",
    "check_decision_id",
    "content_digest",
    "decision_digest",
    "draft_from_exchange",
    "extract_tickets",
    "new_decision_id",
    "record_meta",
    "reply_amendment",
]

DECISION_ID: Final = re.compile(r"D-[0-9a-f]{10}")
"""The form of a decision id: ``D-`` and 10 lowercase hex digits."""

RISKS: Final = ("low", "medium", "high")
AMENDABLE: Final = ("options", "choice", "rationale", "risk", "model", "response_entry")
"""The fields a ``decision.amend`` may set; the rest of a record never changes."""
APPROVAL_MEANINGS: Final = ("approved", "reviewed")

# Jira/Linear-style keys. Prefixes of standards and algorithms (SHA-256, UTF-8,
# ISO-27001, GPT-4, ...) look the same and are not tickets.
_TICKET: Final = re.compile(r"(?<![\w-])([A-Z][A-Z0-9]{1,9})-([1-9][0-9]{0,8})(?![\w-])")
_NOT_TICKETS: Final = frozenset(
    {
        "AES", "CVE", "CWE", "ECMA", "GPT", "HTTP", "IEC", "IEEE", "ISO", "MD", "PEP",
        "RFC", "RSA", "SHA", "SOC", "TLS", "UTF", "WCAG",
    }
)  # fmt: skip

_TITLE_MAX = 120
_CONTEXT_MAX = 1000
_TEXT_MAX = 1000
_OPTION_MAX = 200
_OPTIONS_MAX = 12
_HIGH_RISK_WORDS: Final = re.compile(
    r"\b(security|auth|authn|authz|authenticat\w*|authori[sz]\w*|password\w*|secrets?|"
    r"credentials?|encrypt\w*|crypto\w*|payments?|billing|migrations?|drop table|"
    r"data loss|production|gdpr|pii|permissions?)\b",
    re.IGNORECASE,
)


class SelfApprovalError(InputError):
    """The policy forbids approving a decision one asked for or operated the AI for."""


@dataclass(frozen=True)
class Approval:
    """One ``decision.approve`` event, and what is proven about who made it."""

    approver: str
    meaning: str
    ts: str
    entry: int
    content_digest: str
    matches: bool  # the digest is the record's: the approval is of this exact content
    signature: int | None = None
    """The ``signature.apply`` entry that signed this approval, when there is one."""
    verified: bool = False
    """The approver is proven: a trusted server attested it, or their SSH key signed it."""
    via: str = "none"
    """How it is proven: "server", "ssh"; or "log"/"none" when the person is not."""
    unverified_reason: str = ""
    tree: str | None = None
    """The git tree the approver signed, when the approval names one."""

    @property
    def counts(self) -> bool:
        """An approval that counts: of this exact content, by a proven person."""
        return self.meaning == "approved" and self.matches and self.verified

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "approver": self.approver,
            "meaning": self.meaning,
            "ts": self.ts,
            "entry": self.entry,
            "content_digest": self.content_digest,
            "matches": self.matches,
            "verified": self.verified,
            "via": self.via,
        }
        if self.unverified_reason:
            data["unverified_reason"] = self.unverified_reason
        if self.signature is not None:
            data["signature"] = self.signature
        if self.tree is not None:
            data["tree"] = self.tree
        return data

    def describe(self) -> str:
        """For people: "approved by bob" or "unverified approval by bob"."""
        what = {"approved": "approval", "reviewed": "review"}.get(self.meaning, self.meaning)
        if self.verified:
            return f"{self.meaning} by {self.approver}"
        return f"unverified {what} by {self.approver}"


@dataclass(frozen=True)
class Decision:
    """A decision as recorded; ``entry`` and ``created`` come from its ledger event."""

    id: str
    title: str
    context: str = ""
    options: tuple[str, ...] = ()
    choice: str = ""
    rationale: str = ""
    requested_by: str = ""
    session: str | None = None
    model: str | None = None
    files: tuple[str, ...] = ()
    tickets: tuple[str, ...] = ()
    risk: str = "low"
    prompt_entry: int | None = None
    response_entry: int | None = None
    created: str = ""
    entry: int | None = None
    recorded_by: Mapping[str, Any] = field(default_factory=dict)
    content_digest: str = ""
    approvals: tuple[Approval, ...] = ()
    amendments: tuple[int, ...] = ()
    """Entries of the ``decision.amend`` events merged into this view, in log order."""
    envelope_digests: tuple[str, ...] = field(default=(), repr=False)
    """The SHA-256 of the record's envelope and of each amendment's: `content_digest`'s input."""

    @property
    def status(self) -> str:
        """MADR status: accepted once a proven person approved it, proposed before."""
        approved = any(a.counts for a in self.approvals)
        return "accepted" if approved else "proposed"

    def refs(self) -> dict[str, Any]:
        """The ``decision.record`` refs: the fields, unset and empty ones left out."""
        refs: dict[str, Any] = {
            "title": self.title,
            "context": self.context,
            "options": list(self.options),
            "choice": self.choice,
            "rationale": self.rationale,
            "requested_by": self.requested_by,
            "session": self.session,
            "model": self.model,
            "files": list(self.files),
            "tickets": list(self.tickets),
            "risk": self.risk,
            "prompt_entry": self.prompt_entry,
            "response_entry": self.response_entry,
        }
        return {k: v for k, v in refs.items() if v not in (None, "", [])}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, **self.refs()}
        for name in ("options", "files", "tickets"):
            data.setdefault(name, [])
        data.update(
            {
                "status": self.status,
                "created": self.created,
                "entry": self.entry,
                "recorded_by": dict(self.recorded_by),
                "content_digest": self.content_digest,
                "approvals": [a.to_json() for a in self.approvals],
                "amendments": list(self.amendments),
            }
        )
        return data

    @classmethod
    def from_envelope(cls, index: int, envelope: bytes) -> Decision:
        """Read a ``decision.record`` entry; refs of the wrong type are refused."""
        event = Event.parse(envelope)
        if event.kind != "decision.record" or event.subject is None:
            raise InputError(f"entry {index} is not a decision record")
        refs = event.refs
        return cls(
            id=event.subject,
            title=_text(refs, "title", index),
            context=_text(refs, "context", index),
            options=_texts(refs, "options", index),
            choice=_text(refs, "choice", index),
            rationale=_text(refs, "rationale", index),
            requested_by=_text(refs, "requested_by", index),
            session=_text(refs, "session", index) or event.session,
            model=_text(refs, "model", index) or None,
            files=_texts(refs, "files", index),
            tickets=_texts(refs, "tickets", index),
            risk=_text(refs, "risk", index) or "low",
            prompt_entry=_index(refs, "prompt_entry", index),
            response_entry=_index(refs, "response_entry", index),
            created=event.ts,
            entry=index,
            recorded_by=event.actor.to_json(),
            content_digest=content_digest(envelope),
            envelope_digests=(content_digest(envelope),),
        )

    def amends(self, envelope: bytes) -> bool:
        """Whether the ``decision.amend`` envelope names this record (its id and entry)."""
        event = Event.parse(envelope)
        record = event.refs.get("record")
        return (
            event.kind == "decision.amend"
            and event.subject == self.id
            and self.entry is not None
            and isinstance(record, int)
            and not isinstance(record, bool)
            and record == self.entry
        )

    def amended(self, index: int, envelope: bytes) -> Decision:
        """This decision with the ``decision.amend`` at entry `index` merged in.

        The fields it names (only those in `AMENDABLE`) replace the values before, and
        `content_digest` comes to cover it. An entry that does not amend this record, or
        precedes it, or names a field of the wrong type raises InputError.
        """
        if not self.amends(envelope) or self.entry is None or index <= self.entry:
            raise InputError(f"entry {index} is not an amendment of {self.id}'s record")
        refs = Event.parse(envelope).refs
        what = "decision amendment"
        changes: dict[str, Any] = {}
        if "options" in refs:
            changes["options"] = _texts(refs, "options", index, what)
        for name in ("choice", "rationale", "risk"):
            if name in refs:
                changes[name] = _text(refs, name, index, what)
        if "model" in refs:
            changes["model"] = _text(refs, "model", index, what) or None
        if "response_entry" in refs:
            changes["response_entry"] = _index(refs, "response_entry", index, what)
        digests = (*self.envelope_digests, content_digest(envelope))
        return replace(
            self,
            **changes,
            amendments=(*self.amendments, index),
            envelope_digests=digests,
            content_digest=decision_digest(digests),
        )


_RECORD = "decision record"


def _text(refs: Mapping[str, Any], name: str, index: int, what: str = _RECORD) -> str:
    value = refs.get(name, "")
    if not isinstance(value, str):
        raise InputError(f"{what} at entry {index}: {name} is not text")
    return value


def _texts(refs: Mapping[str, Any], name: str, index: int, what: str = _RECORD) -> tuple[str, ...]:
    value = refs.get(name, ())
    if not isinstance(value, tuple | list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{what} at entry {index}: {name} is not a list of text")
    return tuple(value)


def _index(refs: Mapping[str, Any], name: str, index: int, what: str = _RECORD) -> int | None:
    value = refs.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{what} at entry {index}: {name} is not an entry index")
    return value


def content_digest(envelope: bytes) -> str:
    """SHA-256 of one canonical envelope, as ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(envelope).hexdigest()


def decision_digest(envelope_digests: Sequence[str]) -> str:
    """What an approval binds to: the decision's content as recorded and amended so far.

    A record never amended: its envelope's digest (`content_digest`), as it always was.
    Amended: ``sha256:`` + hex SHA-256 of the canonical JSON array of the record's and
    each amendment's envelope digest, in log order; so approving names the record and
    every amendment before the approval, and a later amendment makes a new digest that
    no earlier approval carries.
    """
    if len(envelope_digests) == 1:
        return envelope_digests[0]
    return "sha256:" + hashlib.sha256(canonicalize(list(envelope_digests))).hexdigest()


def new_decision_id() -> str:
    """A fresh random decision id (40 bits: collisions are not a practical concern)."""
    return "D-" + secrets.token_hex(5)


def check_decision_id(decision_id: str) -> str:
    if not DECISION_ID.fullmatch(decision_id):
        raise InputError(
            f"{decision_id!r} is not a decision id", hint="ids look like D-0123456789 (hex)"
        )
    return decision_id


def extract_tickets(*texts: str) -> tuple[str, ...]:
    """Ticket keys (ABC-123) mentioned in `texts`, in order of first mention."""
    found: dict[str, None] = {}
    for text in texts:
        for match in _TICKET.finditer(text):
            if match.group(1) not in _NOT_TICKETS:
                found.setdefault(match.group(0), None)
    return tuple(found)


def record_meta(decision: Decision, *, actor: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The envelope fields (``meta``) of the ``decision.record`` event for `decision`."""
    meta: dict[str, Any] = {"subject": decision.id, "refs": decision.refs()}
    if decision.session:
        meta["session"] = decision.session
    if actor is not None:
        meta["actor"] = dict(actor)
    return meta


def _needle(name: str, value: str) -> bytes:
    """The exact bytes ``"name":"value"`` take in a canonical envelope."""
    return canonicalize(name) + b":" + canonicalize(value)


# -- drafting from a conversation ---------------------------------------------------------


@dataclass(frozen=True)
class ExchangeDraft:
    """A decision read out of a prompt and the reply that led to a change."""

    title: str
    context: str
    choice: str
    rationale: str
    options: tuple[str, ...]
    tickets: tuple[str, ...]
    risk: str


_BULLET = re.compile(r"^ ?(?:[-*+•]|\d{1,2}[.)])\s+(\S.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n")


def _clip(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _squash(text: str) -> str:
    return " ".join(text.split())


def _without_code(text: str) -> list[str]:
    lines: list[str] = []
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            lines.append("")
            continue
        lines.append("" if fenced else line.rstrip())
    return lines


def _paragraphs(lines: Iterable[str]) -> Iterator[list[str]]:
    block: list[str] = []
    for line in lines:
        if line.strip():
            block.append(line)
        elif block:
            yield block
            block = []
    if block:
        yield block


def _first_sentence(text: str) -> tuple[str, str]:
    """(first sentence, the rest) of a paragraph."""
    parts = _SENTENCE_END.split(text.strip(), maxsplit=1)
    first = parts[0].strip()
    rest = parts[1].strip() if len(parts) > 1 else ""
    return first, rest


def _plain(text: str) -> str:
    # Markdown emphasis and inline code markers say nothing a record needs.
    return re.sub(r"(\*\*|__|`)", "", text).strip()


def draft_from_exchange(prompt_text: str, reply_text: str, *, files: int = 0) -> ExchangeDraft:
    """Read a decision out of a prompt and its reply (pure; nothing is recorded).

    Title: the prompt's first sentence. Context: the prompt, clipped. Choice: the first
    sentence of the reply's first prose paragraph; rationale: the rest of that paragraph
    (or the next prose paragraph when it has one sentence). Options: the reply's
    top-level bullet items. Risk: high when the prompt or reply touches security,
    credentials, payments, migrations, data loss or production; medium when the change
    spans five files or more; low otherwise.
    """
    prompt_paras = [" ".join(p) for p in _paragraphs(_without_code(prompt_text))]
    first_prompt = _squash(prompt_paras[0]) if prompt_paras else ""
    title = _clip(_plain(_first_sentence(first_prompt)[0]).rstrip(".:;,"), _TITLE_MAX)
    context = _clip(prompt_text, _CONTEXT_MAX)

    reply_lines = _without_code(reply_text)
    options: list[str] = []
    prose: list[str] = []
    for block in _paragraphs(reply_lines):
        text_lines: list[str] = []
        for line in block:
            bullet = _BULLET.match(line)
            if bullet:
                if len(options) < _OPTIONS_MAX:
                    options.append(_clip(_plain(bullet.group(1)), _OPTION_MAX))
            elif line.lstrip().startswith(("#", "|", ">")) or line.startswith("    "):
                continue  # headings, tables, quotes, indented code
            elif not text_lines and line.startswith(" "):
                continue  # the continuation of a bullet item
            else:
                text_lines.append(line.strip())
        if text_lines:
            prose.append(_squash(" ".join(text_lines)))
    choice, rationale = ("", "")
    if prose:
        choice, rationale = _first_sentence(prose[0])
        if not rationale and len(prose) > 1:
            rationale = prose[1]
    haystack = f"{prompt_text}\n{reply_text}"
    if _HIGH_RISK_WORDS.search(haystack):
        risk = "high"
    elif files >= 5:
        risk = "medium"
    else:
        risk = "low"
    return ExchangeDraft(
        title=title or "Untitled decision",
        context=context,
        choice=_clip(_plain(choice), _TEXT_MAX),
        rationale=_clip(_plain(rationale), _TEXT_MAX),
        options=tuple(dict.fromkeys(o for o in options if o)),
        tickets=extract_tickets(prompt_text, reply_text),
        risk=risk,
    )


def reply_amendment(decision: Decision, reply_text: str, response_entry: int) -> dict[str, Any]:
    """The refs of the ``decision.amend`` a turn's final reply adds to `decision` (its record).

    The reply is read as `draft_from_exchange` reads it, with the record's context (the
    prompt), else its title, as the prompt. Only what the record left empty is filled:
    a decision recorded explicitly (``flowloom decide``) keeps its own choice, rationale
    and reply; risk only ever goes up. Pass the record as recorded, not an amended view:
    a later reply of the same turn (a Stop hook that made the agent go on) then replaces
    the earlier one's fields.
    """
    draft = draft_from_exchange(
        decision.context or decision.title, reply_text, files=len(decision.files)
    )
    refs: dict[str, Any] = {"record": decision.entry, "source": "reply"}
    if decision.response_entry is None:
        refs["response_entry"] = response_entry
    if not decision.options and draft.options:
        refs["options"] = list(draft.options)
    if not decision.choice and draft.choice:
        refs["choice"] = draft.choice
    if not decision.rationale and draft.rationale:
        refs["rationale"] = draft.rationale
    current = decision.risk if decision.risk in RISKS else "low"
    if RISKS.index(draft.risk) > RISKS.index(current):
        refs["risk"] = draft.risk
    return refs


# -- the service --------------------------------------------------------------------------


class DecisionBook:
    """Records, reads and approves the decisions of one ledger."""

    PROMPT_KINDS: Final = ("agent.prompt", "gateway.exchange")
    RESPONSE_KINDS: Final = ("agent.response", "gateway.exchange")

    def __init__(
        self,
        ledger: Ledger,
        *,
        forbid_self_approval: bool = True,
        forbid_approving_own_ai_session: bool | None = None,
        trust: Trust = NOBODY,
    ) -> None:
        """`forbid_self_approval`: the requester or recorder may not approve;
        `forbid_approving_own_ai_session`: nor may the operator of the decision's AI
        session (None: the same as `forbid_self_approval`); `trust`: whose attestations
        and signatures prove an approver (an approval proven by neither never counts)."""
        self.ledger = ledger
        self.trust = trust
        self.forbid_self_approval = forbid_self_approval
        self.forbid_approving_own_ai_session = (
            forbid_self_approval
            if forbid_approving_own_ai_session is None
            else forbid_approving_own_ai_session
        )

    # -- writing --------------------------------------------------------------------

    def record(
        self,
        *,
        title: str,
        requested_by: str,
        context: str = "",
        options: Sequence[str] = (),
        choice: str = "",
        rationale: str = "",
        session: str | None = None,
        model: str | None = None,
        files: Sequence[str] = (),
        tickets: Sequence[str] = (),
        risk: str = "low",
        prompt_entry: int | None = None,
        response_entry: int | None = None,
        actor: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Record a decision durably; tickets mentioned in the text are added."""
        title = " ".join(title.split())
        if not title:
            raise InputError("a decision needs a title")
        if risk not in RISKS:
            raise InputError(f"risk must be one of {', '.join(RISKS)}, not {risk!r}")
        requested_by = requested_by.strip()
        if not requested_by:
            raise InputError("a decision needs the person who requested it (requested_by)")
        for ticket in tickets:
            if not ticket.strip() or any(c.isspace() for c in ticket.strip()):
                raise InputError(f"ticket {ticket!r} is not a ticket id (like ABC-123)")
        self._check_entry(prompt_entry, "prompt_entry", self.PROMPT_KINDS)
        self._check_entry(response_entry, "response_entry", self.RESPONSE_KINDS)
        mentioned = extract_tickets(title, context, choice, rationale, *options)
        decision = Decision(
            id=new_decision_id(),
            title=title,
            context=context.strip(),
            options=tuple(dict.fromkeys(o.strip() for o in options if o.strip())),
            choice=choice.strip(),
            rationale=rationale.strip(),
            requested_by=requested_by,
            session=session or None,
            model=model or None,
            files=tuple(dict.fromkeys(f for f in files if f)),
            tickets=tuple(dict.fromkeys([*(t.strip() for t in tickets), *mentioned])),
            risk=risk,
            prompt_entry=prompt_entry,
            response_entry=response_entry,
        )
        prepared = self.ledger.prepare("decision.record", meta=record_meta(decision, actor=actor))
        ack = self.ledger.writer.append_many([prepared.entry])[0]
        # A team server writes the envelope itself (its actor, its salt): read back what
        # it stored, when this ledger holds it.
        stored = self.ledger.store.entry(self.ledger.log, ack.index) if ack.index >= 0 else None
        envelope = stored.envelope if stored is not None else prepared.entry.envelope
        return Decision.from_envelope(ack.index, envelope)

    def from_exchange(
        self,
        prompt_text: str,
        reply_text: str,
        *,
        requested_by: str,
        session: str | None = None,
        model: str | None = None,
        files: Sequence[str] = (),
        prompt_entry: int | None = None,
        response_entry: int | None = None,
        risk: str | None = None,
        actor: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Record the decision a prompt and its reply led to (see `draft_from_exchange`)."""
        draft = draft_from_exchange(prompt_text, reply_text, files=len(files))
        return self.record(
            title=draft.title,
            context=draft.context,
            options=draft.options,
            choice=draft.choice,
            rationale=draft.rationale,
            requested_by=requested_by,
            session=session,
            model=model,
            files=files,
            tickets=draft.tickets,
            risk=risk or draft.risk,
            prompt_entry=prompt_entry,
            response_entry=response_entry,
            actor=actor,
        )

    def approve(
        self,
        decision_id: str,
        approver: str,
        meaning: str = "approved",
        *,
        approver_name: str | None = None,
        signature: int | None = None,
        tree: str | None = None,
        sign: EnvelopeSigner | None = None,
    ) -> Approval:
        """Record an approval (or review) of the decision's exact recorded content.

        `signature` is the index of the ``signature.apply`` entry when the approval is an
        electronic signature (the team server); `sign` adds the approver's own signature
        to the envelope (git's SSH signing, without a server), and `tree` names the git
        tree the approver looked at. Only the server's endpoint or a person's signature
        makes the approval count (`Approval.verified`).
        """
        if meaning not in APPROVAL_MEANINGS:
            raise InputError(
                f"meaning must be one of {', '.join(APPROVAL_MEANINGS)}, not {meaning!r}"
            )
        approver = approver.strip()
        if not approver:
            raise InputError("an approval needs an approver")
        if signature is not None and (
            isinstance(signature, bool) or not isinstance(signature, int) or signature < 0
        ):
            raise InputError(f"signature must be a ledger entry index, not {signature!r}")
        decision = self.get(decision_id)
        involved = self.involved(decision)
        who = canonical_identity(approver)
        if who in involved:
            key = (
                "forbid_approving_own_ai_session"
                if involved[who].startswith("operated")
                else "forbid_self_approval"
            )
            raise SelfApprovalError(
                f"{approver} cannot approve {decision.id}: they {involved[who]}",
                hint=f"the policy's {key} asks for someone else's approval",
            )
        for earlier in decision.approvals:
            if (
                earlier.verified
                and earlier.matches  # an approval of earlier content: approve this one
                and canonical_identity(earlier.approver) == who
                and earlier.meaning == meaning
            ):
                raise InputError(
                    f"{approver} already {meaning} {decision.id} (entry {earlier.entry})"
                )
        actor: dict[str, Any] = {"type": "human", "id": approver}
        if approver_name:
            actor["name"] = approver_name
        refs: dict[str, Any] = {"meaning": meaning, "content_digest": decision.content_digest}
        if signature is not None:
            refs["signature"] = signature
        if tree is not None:
            refs["tree"] = tree
        prepared = self.ledger.prepare(
            "decision.approve",
            meta={"actor": actor, "subject": decision.id, "refs": refs},
            sign=sign,
        )
        ack = self.ledger.writer.append_many([prepared.entry])[0]
        stored = self.ledger.store.entry(self.ledger.log, ack.index) if ack.index >= 0 else None
        envelope = stored.envelope if stored is not None else prepared.entry.envelope
        approval = _approval(ack.index, envelope, decision, self.trust)
        assert approval is not None
        return approval

    def involved(self, decision: Decision) -> dict[str, str]:
        """Who may not approve `decision` under the policy, and why.

        The operators of its AI session when `forbid_approving_own_ai_session`; whoever
        recorded or requested it when `forbid_self_approval`.
        """
        involved: dict[str, str] = {}
        if decision.session and self.forbid_approving_own_ai_session:
            for operator in self._session_operators(decision.session):
                involved[canonical_identity(operator)] = (
                    f"operated the AI session {decision.session}"
                )
        if self.forbid_self_approval:
            if decision.recorded_by.get("type") == "human" and decision.recorded_by.get("id"):
                involved[canonical_identity(str(decision.recorded_by["id"]))] = "recorded it"
            if decision.requested_by:
                involved[canonical_identity(decision.requested_by)] = "requested it"
        return involved

    def _session_operators(self, session: str) -> set[str]:
        """The people who ran `session`: its session.start events' operator or human actor."""
        needle = _needle("session", session)
        operators: set[str] = set()
        for entry in self._entries("session.start"):
            if needle not in entry[1]:
                continue
            event = Event.parse(entry[1])
            if event.session != session:
                continue
            operator = event.refs.get("operator")
            if isinstance(operator, str) and operator:
                operators.add(operator)
            if event.actor.type == "human":
                operators.add(event.actor.id)
        return operators

    def _check_entry(self, index: int | None, name: str, kinds: Sequence[str]) -> None:
        if index is None:
            return
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise InputError(f"{name} must be a ledger entry index, not {index!r}")
        stored = self.ledger.store.entry(self.ledger.log, index)
        if stored is None:
            raise NotFoundError(
                f"{name} {index} does not exist (the log has {self.ledger.size()} entries)"
            )
        if stored.kind not in kinds:
            raise InputError(f"{name} {index} is a {stored.kind!r} entry, not {' or '.join(kinds)}")

    # -- reading ----------------------------------------------------------------------

    def _entries(self, kind: str) -> Iterator[tuple[int, bytes]]:
        for entry in self.ledger.store.entries(self.ledger.log, kind=kind):
            yield entry.index, entry.envelope

    def _merge(self, decision: Decision, amendments: Iterable[tuple[int, bytes]]) -> Decision:
        """`decision` with those of `amendments` that amend its record merged in, in order."""
        for index, envelope in sorted(amendments):
            if decision.entry is not None and index > decision.entry and decision.amends(envelope):
                decision = decision.amended(index, envelope)
        return decision

    def at(
        self, index: int, approvals: Iterable[int] = (), amendments: Iterable[int] = ()
    ) -> Decision | None:
        """The decision recorded at entry `index`, amended by the entries at `amendments`,
        with the approvals at `approvals`.

        For callers that keep their own index of entries: None when the entry is not a
        decision record; entries that are not amendments or approvals of it are skipped.
        """
        stored = self.ledger.store.entry(self.ledger.log, index)
        if stored is None or stored.kind != "decision.record":
            return None
        found = Decision.from_envelope(index, stored.envelope)
        amending: list[tuple[int, bytes]] = []
        for at in set(amendments):
            entry = self.ledger.store.entry(self.ledger.log, at)
            if entry is not None and entry.kind == "decision.amend":
                amending.append((at, entry.envelope))
        found = self._merge(found, amending)
        checked: list[Approval] = []
        for at in sorted(set(approvals)):
            entry = self.ledger.store.entry(self.ledger.log, at)
            if entry is not None and entry.kind == "decision.approve":
                approval = _approval(at, entry.envelope, found, self.trust)
                if approval is not None:
                    checked.append(approval)
        return _with_approvals(found, checked)

    def get(self, decision_id: str) -> Decision:
        """The decision with this id, with its approvals; NotFoundError if none."""
        check_decision_id(decision_id)
        needle = _needle("subject", decision_id)
        found: Decision | None = None
        for index, envelope in self._entries("decision.record"):
            if needle in envelope:
                candidate = Decision.from_envelope(index, envelope)
                if candidate.id == decision_id:
                    found = candidate
                    break  # ids are unique; the first record is the decision
        if found is None:
            raise NotFoundError(
                f"no decision {decision_id} in this log",
                hint="'flowloom decision list' shows the recorded decisions",
            )
        found = self._merge(
            found,
            ((i, e) for i, e in self._entries("decision.amend") if needle in e),
        )
        approvals = [
            approval
            for index, envelope in self._entries("decision.approve")
            if needle in envelope
            for approval in [_approval(index, envelope, found, self.trust)]
            if approval is not None
        ]
        return _with_approvals(found, approvals)

    def commits(self, decision_id: str) -> builtins.list[tuple[int, str]]:
        """(entry, commit sha) of every ``commit.link`` event naming the decision."""
        needle = _needle("decision", check_decision_id(decision_id))
        found: dict[str, int] = {}
        for index, envelope in self._entries("commit.link"):
            if needle not in envelope:
                continue
            event = Event.parse(envelope)
            if event.refs.get("decision") == decision_id and event.subject:
                found.setdefault(event.subject, index)
        return sorted((index, sha) for sha, index in found.items())

    def list(self) -> builtins.list[Decision]:
        """Every decision, oldest first, with its approvals."""
        decisions: dict[str, Decision] = {}
        for index, envelope in self._entries("decision.record"):
            decision = Decision.from_envelope(index, envelope)
            decisions.setdefault(decision.id, decision)
        amending: dict[str, list[tuple[int, bytes]]] = {}
        for index, envelope in self._entries("decision.amend"):
            subject = Event.parse(envelope).subject
            if subject in decisions:
                amending.setdefault(subject, []).append((index, envelope))
        for decision_id, entries in amending.items():
            decisions[decision_id] = self._merge(decisions[decision_id], entries)
        approvals: dict[str, list[Approval]] = {}
        for index, envelope in self._entries("decision.approve"):
            event = Event.parse(envelope)
            target = decisions.get(event.subject or "")
            if target is None:
                continue
            approval = _approval(index, envelope, target, self.trust)
            if approval is not None:
                approvals.setdefault(target.id, []).append(approval)
        return [_with_approvals(d, approvals.get(d.id, [])) for d in decisions.values()]


def _approval(index: int, envelope: bytes, decision: Decision, trust: Trust) -> Approval | None:
    event = Event.parse(envelope)
    if event.kind != "decision.approve" or event.subject != decision.id:
        return None
    meaning = event.refs.get("meaning")
    digest = event.refs.get("content_digest")
    signature = event.refs.get("signature")
    tree = event.refs.get("tree")
    proven = judge(event.to_json(), trust)
    return Approval(
        approver=proven.identity or event.actor.id,
        verified=proven.identity is not None,
        via=proven.origin,
        unverified_reason=proven.reason,
        tree=tree if isinstance(tree, str) else None,
        meaning=meaning if isinstance(meaning, str) else "",
        ts=event.ts,
        entry=index,
        content_digest=digest if isinstance(digest, str) else "",
        matches=digest == decision.content_digest,
        signature=signature
        if isinstance(signature, int) and not isinstance(signature, bool)
        else None,
    )


def _with_approvals(decision: Decision, approvals: Sequence[Approval]) -> Decision:
    if not approvals:
        return decision
    return replace(decision, approvals=tuple(approvals))
