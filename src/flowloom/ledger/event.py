"""The event envelope: one ledger entry, its strict validation, and the catalogue of kinds.

An event is a small JSON object whose RFC 8785 canonical bytes are the Merkle leaf
(docs/events.md, DESIGN §3)::

    {"v":1, "kind":"agent.prompt", "ts":"2026-11-22T02:40:00.123456Z",
     "project":"...", "actor":{"type":"agent","id":"...","name":"..."},
     "session":"...", "git":{"branch":"...","head":"<sha>"}, "subject":"...",
     "body":"sha256:<hex>", "refs":{...}}

`Event` objects are immutable and always valid: the constructor checks every field,
canonicalizes the envelope once (`Event.canonical()` returns those cached bytes) and
refuses envelopes over `MAX_EVENT_BYTES`. Two events are equal when their canonical
bytes are. `refs` is frozen deeply: nested objects become read-only mappings and arrays
become tuples; `to_json()` gives plain dicts and lists back.

This module is imported by git and agent hooks on every prompt: stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from flowloom.errors import InputError, UnknownKindError
from flowloom.ledger.canonical import MAX_DEPTH, JSONValue, canonicalize, parse_json

__all__ = [
    "ACTOR_TYPES",
    "ENVELOPE_VERSION",
    "KINDS",
    "KIND_FAMILIES",
    "MAX_EVENT_BYTES",
    "Actor",
    "Event",
    "GitContext",
    "format_ts",
    "is_known_kind",
    "now_ts",
    "parse_ts",
    "validate_kind",
]

ENVELOPE_VERSION: Final = 1
"""The only envelope version, the value of the `v` field."""

MAX_EVENT_BYTES: Final = 65_535
"""Largest canonical envelope: tlog-tiles entry bundles store entry lengths as uint16."""

ACTOR_TYPES: Final = ("agent", "human", "service")
"""Who can act: a person, an AI assistant, or a machine identity (CI, the server)."""

KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "session.start": "A work session began: the agent or person, tool, model, directory.",
        "session.end": "A work session ended, with the reason and what it produced.",
        "agent.prompt": "A prompt given to an AI coding assistant; the prompt text is the body.",
        "agent.tool": "The assistant used a tool (shell, edit, search); input and result as body.",
        "artifact.write": "A file the assistant created or changed; path as subject, diff as body.",
        "agent.response": "The assistant's answer to a prompt; the text is the body.",
        "gateway.exchange": "A model request and response through the LLM gateway, with usage.",
        "decision.record": "A decision: what, why, options, who asked; ties events to a change.",
        "decision.amend": (
            "What a decision gained after it was recorded: the reply, options, choice, rationale."
        ),
        "decision.approve": "Someone approved or rejected a decision.",
        "signature.apply": "An electronic signature: signer, meaning, time, signed content hash.",
        "commit.link": "A git commit linked to its decision and session.",
        "override.grant": "A policy check was overridden; the reason is recorded.",
        "ci.result": "The verdict of the CI gate (flowloom check) on a range of commits.",
        "scan.result": (
            "Security scanner results (SARIF) for the scanned tree, with the decisions of the "
            "flagged lines."
        ),
        "test.result": (
            "Test results (JUnit) for the tree that was tested, with the CI run's identity."
        ),
        "config.change": "A setting or the committed policy changed.",
        "redaction.apply": "Secrets or personal data were redacted before content was stored.",
        "erasure.tombstone": "A body was erased (its key and salt destroyed): who, what, why.",
        "retention.set": "A retention period or legal hold was set or lifted.",
        "checkpoint.anchor": (
            "A signed checkpoint was anchored elsewhere (git ref, witness, TSA, S3 Object Lock)."
        ),
        "export.generate": "An evidence bundle, report or export was produced.",
        "database.restore": "The database was restored from a backup (forced: with the reason).",
        "compliance.response": (
            "Management's response to a report's exception: remediation, owner, due date."
        ),
        "access.review_opened": (
            "An access review campaign was opened: its scope, period, due date and lines."
        ),
        "access.review_decided": (
            "A reviewer certified or revoked one access review line, with an e-signature."
        ),
        "access.review_closed": "An access review campaign was closed, every line decided.",
        "capture.error": "Capture failed or was partial, so that a gap in the record is visible.",
        "capture.bypass": (
            "Files changed during an agent's turn that no tool hook reported: paths, digests."
        ),
    }
)
"""The catalogue: every fixed event kind and what it records (docs/events.md)."""

KIND_FAMILIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "auth": "Sign-in and access: auth.login, auth.login_failed, auth.logout, "
        "auth.key_created, auth.key_revoked, auth.role_granted, ...",
        "key": "Signing and encryption key lifecycle: key.generated, key.rotated, "
        "key.revoked, key.destroyed, ...",
        "memory": "Project memory changes: memory.add, memory.update, memory.forget, ...",
        "integration": "Code hosts: settings changed, merges, reviews and branch protection "
        "they reported: integration.configured, integration.github_review, ...",
    }
)
"""Families whose kinds are `<family>.<suffix>` for any suffix matching [a-z][a-z0-9_]*."""

_FAMILY_SUFFIX = re.compile(r"[a-z][a-z0-9_]*")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_GIT_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_BODY_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TIMESTAMP_EXAMPLE = "2026-11-22T02:40:00.123456Z"

_EVENT_FIELDS = frozenset(
    {"v", "kind", "ts", "project", "actor", "session", "git", "subject", "body", "refs"}
)
_REQUIRED_FIELDS = ("v", "kind", "ts", "project", "actor")
_ACTOR_FIELDS = frozenset({"type", "id", "name"})
_GIT_FIELDS = frozenset({"branch", "head"})


# --------------------------------------------------------------------------- kinds


def is_known_kind(kind: object) -> bool:
    """Whether `kind` is in the catalogue or in one of the open families."""
    if not isinstance(kind, str):
        return False
    if kind in KINDS:
        return True
    family, dot, suffix = kind.partition(".")
    return bool(dot) and family in KIND_FAMILIES and _FAMILY_SUFFIX.fullmatch(suffix) is not None


def validate_kind(kind: object) -> str:
    """Return `kind` if it is a catalogued kind; raise UnknownKindError otherwise."""
    if not isinstance(kind, str):
        raise InputError(f"event field 'kind' must be a string, got {_describe(kind)}")
    if is_known_kind(kind):
        return kind
    message = f"unknown event kind {_abbrev(kind)!r}"
    if kind in KIND_FAMILIES:
        message += f"; {kind} is a family, give a suffix such as {kind}.something"
    else:
        import difflib  # only on this error path: hooks import this module on every prompt

        close = difflib.get_close_matches(kind, list(KINDS), n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    families = ", ".join(f"{family}.*" for family in KIND_FAMILIES)
    raise UnknownKindError(
        message,
        hint=f"the catalogue is in docs/events.md; open families: {families}",
    )


# --------------------------------------------------------------------------- timestamps


def format_ts(moment: datetime) -> str:
    """Format an aware datetime as an event timestamp, YYYY-MM-DDTHH:MM:SS.ffffffZ (UTC)."""
    if moment.utcoffset() is None:
        raise ValueError("an event timestamp needs a timezone-aware datetime, not a naive one")
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat pads the year to four digits and always writes the microseconds here.
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def now_ts(moment: datetime | None = None) -> str:
    """The event timestamp of `moment` (an aware datetime), or of now when it is None."""
    return format_ts(datetime.now(UTC) if moment is None else moment)


def parse_ts(ts: object, *, name: str = "ts") -> datetime:
    """Read an event timestamp into an aware UTC datetime, or raise InputError.

    The format is exact: RFC 3339 in UTC with six fractional digits and a `Z`.
    """
    if isinstance(ts, str) and _TIMESTAMP.fullmatch(ts):
        try:
            return datetime.fromisoformat(ts)  # 3.11 reads the Z as UTC
        except ValueError:
            pass  # month 13, 30 February, second 60, ...
    raise InputError(
        f"event field {name!r} must be a UTC time like {_TIMESTAMP_EXAMPLE} "
        f"(six fractional digits, Z), got {_describe(ts)}"
    )


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: `type` is human, agent or service; `id` is stable, `name` for people."""

    type: str
    id: str
    name: str | None = None

    def __post_init__(self) -> None:
        if self.type not in ACTOR_TYPES:
            raise InputError(
                f"event field 'actor.type' must be one of {', '.join(ACTOR_TYPES)}, "
                f"got {_describe(self.type)}"
            )
        _require_text("actor.id", self.id)
        if self.name is not None:
            _require_text("actor.name", self.name)

    def to_json(self) -> dict[str, JSONValue]:
        """The `actor` object of the envelope (`name` omitted when None)."""
        result: dict[str, JSONValue] = {"type": self.type, "id": self.id}
        if self.name is not None:
            result["name"] = self.name
        return result

    @classmethod
    def from_json(cls, obj: object) -> Actor:
        """Read the `actor` object of an envelope, strictly."""
        members = _object_members("actor", obj, _ACTOR_FIELDS, required=("type", "id"))
        return cls(type=members["type"], id=members["id"], name=members.get("name"))


@dataclass(frozen=True, slots=True)
class GitContext:
    """Where in git it happened: the branch and/or the HEAD commit (40 or 64 hex digits).

    Either may be missing (a detached HEAD has no branch, an unborn branch no commit),
    but not both.
    """

    branch: str | None = None
    head: str | None = None

    def __post_init__(self) -> None:
        if self.branch is None and self.head is None:
            raise InputError("event field 'git' needs a branch, a head, or both")
        if self.branch is not None:
            _require_text("git.branch", self.branch)
        if self.head is not None and not (
            isinstance(self.head, str) and _GIT_SHA.fullmatch(self.head)
        ):
            raise InputError(
                "event field 'git.head' must be a commit id of 40 or 64 lowercase hex "
                f"digits, got {_describe(self.head)}"
            )

    def to_json(self) -> dict[str, JSONValue]:
        """The `git` object of the envelope (absent members omitted)."""
        result: dict[str, JSONValue] = {}
        if self.branch is not None:
            result["branch"] = self.branch
        if self.head is not None:
            result["head"] = self.head
        return result

    @classmethod
    def from_json(cls, obj: object) -> GitContext:
        """Read the `git` object of an envelope, strictly."""
        members = _object_members("git", obj, _GIT_FIELDS, required=())
        return cls(branch=members.get("branch"), head=members.get("head"))


_NO_REFS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """One ledger entry's envelope; valid by construction, immutable, hashable.

    Equality and hashing follow the canonical bytes.
    """

    kind: str
    ts: str
    project: str
    actor: Actor
    session: str | None = None
    git: GitContext | None = None
    subject: str | None = None
    body: str | None = None
    refs: Mapping[str, Any] = field(default_factory=lambda: _NO_REFS)
    v: int = ENVELOPE_VERSION
    _canonical: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if type(self.v) is not int or self.v != ENVELOPE_VERSION:
            raise InputError(
                f"event field 'v' must be {ENVELOPE_VERSION} (the envelope version), "
                f"got {_describe(self.v)}"
            )
        validate_kind(self.kind)
        parse_ts(self.ts)
        _require_text("project", self.project)
        if not isinstance(self.actor, Actor):
            raise InputError(f"event field 'actor' must be an Actor, got {_describe(self.actor)}")
        if self.session is not None:
            _require_text("session", self.session)
        if self.git is not None and not isinstance(self.git, GitContext):
            raise InputError(f"event field 'git' must be a GitContext, got {_describe(self.git)}")
        if self.subject is not None:
            _require_text("subject", self.subject)
        if self.body is not None and not (
            isinstance(self.body, str) and _BODY_DIGEST.fullmatch(self.body)
        ):
            raise InputError(
                "event field 'body' must be 'sha256:' and 64 lowercase hex digits, "
                f"got {_describe(self.body)}"
            )
        if self.refs is not _NO_REFS:  # the default is frozen and empty already
            if not isinstance(self.refs, Mapping):
                raise InputError(
                    f"event field 'refs' must be an object, got {_describe(self.refs)}"
                )
            object.__setattr__(self, "refs", _freeze(self.refs, 0))
        canonical = canonicalize(self.to_json())
        if len(canonical) > MAX_EVENT_BYTES:
            raise InputError(
                f"event is {len(canonical):,} bytes canonicalized, over the limit of "
                f"{MAX_EVENT_BYTES:,}; put large content in the body, not in refs or subject"
            )
        object.__setattr__(self, "_canonical", canonical)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return self._canonical == other._canonical

    def __hash__(self) -> int:
        return hash(self._canonical)

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        # refs holds read-only mappings, which do not pickle: rebuild from the bytes.
        return (_event_from_canonical, (self._canonical,))

    def canonical(self) -> bytes:
        """The RFC 8785 bytes of the envelope: what the ledger stores and hashes."""
        return self._canonical

    def to_json(self) -> dict[str, JSONValue]:
        """The envelope as plain JSON data; optional fields are omitted when unset."""
        result: dict[str, JSONValue] = {
            "v": self.v,
            "kind": self.kind,
            "ts": self.ts,
            "project": self.project,
            "actor": self.actor.to_json(),
        }
        if self.session is not None:
            result["session"] = self.session
        if self.git is not None:
            result["git"] = self.git.to_json()
        if self.subject is not None:
            result["subject"] = self.subject
        if self.body is not None:
            result["body"] = self.body
        if self.refs:
            result["refs"] = _thaw(self.refs)
        return result

    @classmethod
    def from_json(cls, obj: object) -> Event:
        """Read an envelope from parsed JSON, strictly; raise InputError naming the field.

        Unknown fields, null for an optional field, and missing required fields are
        refused; an empty `refs` object is accepted and, like an absent one, omitted.
        """
        # The version first: another version may have other fields.
        version = obj.get("v", ENVELOPE_VERSION) if isinstance(obj, Mapping) else ENVELOPE_VERSION
        if type(version) is not int or version != ENVELOPE_VERSION:
            raise InputError(
                f"event field 'v' must be {ENVELOPE_VERSION}, got {_describe(version)}; "
                "this FlowLoom reads envelope version 1 only"
            )
        members = _object_members(None, obj, _EVENT_FIELDS, required=_REQUIRED_FIELDS)
        git = members.get("git")
        refs = members.get("refs", _NO_REFS)
        if not isinstance(refs, Mapping):
            raise InputError(f"event field 'refs' must be an object, got {_describe(refs)}")
        return cls(
            kind=members["kind"],
            ts=members["ts"],
            project=members["project"],
            actor=Actor.from_json(members["actor"]),
            session=members.get("session"),
            git=None if git is None else GitContext.from_json(git),
            subject=members.get("subject"),
            body=members.get("body"),
            refs=refs,
        )

    @classmethod
    def parse(cls, data: bytes | str) -> Event:
        """Parse an envelope from JSON text (canonical or not) with strict validation."""
        return cls.from_json(parse_json(data, what="event"))


def _event_from_canonical(data: bytes) -> Event:
    return Event.parse(data)


# --------------------------------------------------------------------------- helpers


def _object_members(
    name: str | None, obj: object, allowed: frozenset[str], *, required: tuple[str, ...]
) -> dict[str, Any]:
    """Check an envelope object's member names; return its members, nulls refused."""
    label = "event" if name is None else f"event field {name!r}"
    if not isinstance(obj, Mapping):
        raise InputError(f"{label} must be a JSON object, got {_describe(obj)}")
    if not obj.keys() <= allowed:
        unknown = sorted(str(key) for key in obj if key not in allowed)
        listed = ", ".join(repr(_abbrev(key)) for key in unknown)
        raise InputError(
            f"{label} has unknown member(s) {listed}; allowed: {', '.join(sorted(allowed))}"
        )
    prefix = "" if name is None else f"{name}."
    for key in required:
        if key not in obj:
            raise InputError(f"event is missing the required field '{prefix}{key}'")
    if None in obj.values():
        key = next(key for key, value in obj.items() if value is None)
        raise InputError(f"event field '{prefix}{key}' is null; omit it instead")
    return dict(obj)


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InputError(f"event field {name!r} must be a non-empty string, got {_describe(value)}")


def _freeze(value: object, depth: int) -> Any:
    """Deep read-only copy of refs data; canonicalize judges what is and is not JSON."""
    if type(value) is str or type(value) is int or value is None:
        return value
    if depth > MAX_DEPTH:
        return value  # canonicalize refuses it, with the path
    if type(value) is dict or isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item, depth + 1) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple([_freeze(item, depth + 1) for item in value])
    return value


def _thaw(value: Any) -> Any:
    if type(value) is str or type(value) is int or value is None:
        return value
    if type(value) is MappingProxyType:
        return {key: _thaw(item) for key, item in value.items()}
    if type(value) is tuple:
        return [_thaw(item) for item in value]
    return value


def _describe(value: object) -> str:
    """A short rendering of a bad value for a one-line message."""
    if isinstance(value, str):
        return repr(_abbrev(value))
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return f"a {type(value).__name__}"


def _abbrev(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
