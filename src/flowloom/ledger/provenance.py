"""Provenance: whether a reader may believe what an authority-bearing event says.

An event's bytes are whatever its writer chose; the tree only proves they never changed.
So readers (decision status, signature checks, the CI gate, compliance checks, the web
pages and reports) ask `judge()` before they count an approval, a signature, a hold or an
audit fact, and count it only when its origin is proven:

- **attested** by a key the reader trusts: FlowLoom's own endpoint or command wrote it
  (`flowloom.ledger.attest`). When the key is a team server's (`Trust.servers`), which
  authenticated the person before writing, the event's human actor is proven too; a
  log's own key (`Trust.attesters`) proves only that FlowLoom's command wrote it.
- **signed by the person** with their own SSH key (``refs.ssh_signature``, git's SSH
  signing), whose key the project's allowed-signers file lists for that identity
  (`Trust.ssh`). This is how approvals made without a server are proven.

Anything else is shown for what it is ("unverified approval by bob") and never counts.
Identities are compared in canonical form (`flowloom.ledger.identity`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from flowloom.errors import FlowLoomError
from flowloom.ledger.attest import ATTESTATION_FIELD, attested_by, is_authority_kind, unattested
from flowloom.ledger.canonical import canonicalize
from flowloom.ledger.identity import canonical_identity

if TYPE_CHECKING:
    from flowloom.ledger.note import Verifier

__all__ = [
    "SSH_SIGNATURE_FIELD",
    "Provenance",
    "SshCheck",
    "Trust",
    "judge",
    "judge_bytes",
    "ssh_signed_message",
]

SSH_SIGNATURE_FIELD: Final = "ssh_signature"
"""The member of ``refs`` holding an armored SSH signature by the acting person."""


class SshCheck(Protocol):
    """Who signed `message` (their canonical identity), or raise VerificationError."""

    def principal(self, message: bytes, armored: str, at: datetime | None) -> str: ...


@dataclass(frozen=True)
class Trust:
    """What a reader believes: which keys attest, and which people's SSH keys sign."""

    servers: tuple[Verifier, ...] = ()
    """Keys of team servers, which authenticate a person before writing in their name:
    their attestation proves the origin and the (human) actor."""
    attesters: tuple[Verifier, ...] = ()
    """Keys of logs whose attestation proves only that FlowLoom's own command wrote the
    event (a local log's key: anyone at that machine holds it)."""
    ssh: SshCheck | None = None

    @classmethod
    def of_server(cls, keys: Iterable[Verifier]) -> Trust:
        return cls(servers=tuple(keys))

    @classmethod
    def of_log(
        cls,
        keys: Iterable[Verifier],
        ssh: SshCheck | None = None,
        *,
        servers: Iterable[Verifier] = (),
    ) -> Trust:
        return cls(servers=tuple(servers), attesters=tuple(keys), ssh=ssh)


NOBODY: Final = Trust()


@dataclass(frozen=True)
class Provenance:
    """What is proven about one event's origin."""

    origin: str
    """"server" (a trusted server attested it), "log" (this log's own key attested it),
    "ssh" (the person signed it), or "none"."""
    identity: str | None
    """The person proven to have acted (canonical form), when one is."""
    reason: str = ""
    """Why the actor is not proven, for display; empty when it is."""

    @property
    def attested(self) -> bool:
        """FlowLoom's own code wrote it (a trusted attestation, or the person's signature)."""
        return self.origin != "none"

    @property
    def proven_person(self) -> bool:
        return self.identity is not None


def ssh_signed_message(envelope: Mapping[str, Any]) -> bytes:
    """The bytes a person's SSH signature covers: the envelope without signature fields."""
    plain = unattested(envelope)
    refs = plain.get("refs")
    if isinstance(refs, Mapping) and SSH_SIGNATURE_FIELD in refs:
        rest = {k: v for k, v in refs.items() if k not in (SSH_SIGNATURE_FIELD, ATTESTATION_FIELD)}
        if rest:
            plain["refs"] = rest
        else:
            plain.pop("refs")
    return canonicalize(plain)


def _actor_id(envelope: Mapping[str, Any]) -> tuple[str, str]:
    actor = envelope.get("actor")
    if not isinstance(actor, Mapping):
        return "", ""
    kind, ident = actor.get("type"), actor.get("id")
    return (kind if isinstance(kind, str) else "", ident if isinstance(ident, str) else "")


def judge(envelope: Mapping[str, Any], trust: Trust, *, at: datetime | None = None) -> Provenance:
    """What `trust` may believe of `envelope` (a parsed event), never raising for bad input.

    A signer's key validity is checked at `at` (default: now), never at the event's own
    time, which the signer wrote and could have backdated past the key's expiry.
    """
    actor_type, actor_id = _actor_id(envelope)
    refs = envelope.get("refs")
    armored = refs.get(SSH_SIGNATURE_FIELD) if isinstance(refs, Mapping) else None
    if isinstance(armored, str) and trust.ssh is not None:
        try:
            principal = trust.ssh.principal(ssh_signed_message(envelope), armored, at)
        except FlowLoomError as exc:
            ssh_problem = f"its SSH signature does not verify: {exc.message}"
        else:
            if actor_id and canonical_identity(actor_id) == principal:
                return Provenance("ssh", principal)
            ssh_problem = (
                f"it is signed by {principal}'s key but names {actor_id or 'nobody'} as actor"
            )
    elif isinstance(armored, str):
        ssh_problem = "it is SSH-signed, but no allowed-signers file was given to check it"
    else:
        ssh_problem = ""
    if attested_by(envelope, trust.servers) is not None:
        if actor_type == "human" and actor_id:
            return Provenance("server", canonical_identity(actor_id))
        return Provenance("server", None, ssh_problem)
    if attested_by(envelope, trust.attesters) is not None:
        reason = ssh_problem or (
            "written by FlowLoom's command, but no signature proves who the person was"
            if actor_type == "human"
            else ""
        )
        return Provenance("log", None, reason)
    if ssh_problem:
        return Provenance("none", None, ssh_problem)
    kind = envelope.get("kind")
    if isinstance(kind, str) and is_authority_kind(kind):
        if isinstance(refs, Mapping) and ATTESTATION_FIELD in refs:
            return Provenance("none", None, "attested by a key this reader does not trust")
        return Provenance("none", None, "not written by the endpoint that enforces its rule")
    return Provenance("none", None, "no attestation or signature")


def judge_bytes(envelope: bytes, trust: Trust) -> Provenance:
    """`judge` for canonical envelope bytes."""
    import json

    try:
        parsed = json.loads(envelope)
    except ValueError:
        return Provenance("none", None, "the envelope is not JSON")
    if not isinstance(parsed, dict):
        return Provenance("none", None, "the envelope is not a JSON object")
    return judge(parsed, trust)
