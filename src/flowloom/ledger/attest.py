"""Attestations: proof that an authority-bearing event was written by FlowLoom's own code.

A Merkle tree proves that nothing changed; it does not prove who wrote an entry. Kinds
that carry authority (approvals, signatures, ``auth.*``, ``key.*``, holds, erasure,
anchors, exports, CI verdicts and test results) are written only by the endpoint or command that
enforces their rule, and that writer binds an *attestation* into the event: an Ed25519
signature by the log's signing key over the event's canonical envelope without the
attestation itself, kept in ``refs.attestation``::

    "refs": {..., "attestation": {"key": "<origin>+<8 hex key id>", "sig": "<base64>"}}

The signed message is ``ATTESTATION_CONTEXT`` followed by that canonical envelope (with
``refs`` left out when the attestation was its only member), so anyone holding the log's
verifier key can check it offline, exactly as they check its checkpoints. Readers count
an authority-bearing event only when its attestation verifies under a key they trust
(see `flowloom.ledger.provenance`); the generic append routes refuse these kinds.

Stdlib only at import time: hooks import the ledger package on every prompt.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from flowloom.errors import PermissionDeniedError
from flowloom.ledger.canonical import canonicalize

if TYPE_CHECKING:
    from flowloom.ledger.note import Signer, Verifier

__all__ = [
    "ATTESTATION_CONTEXT",
    "ATTESTATION_FIELD",
    "AUTHORITY_FAMILIES",
    "AUTHORITY_KINDS",
    "WRITTEN_BY",
    "Attestation",
    "attest",
    "attestation_of",
    "attested_by",
    "is_authority_kind",
    "refuse_generic",
    "unattested",
]

AUTHORITY_KINDS: Final = frozenset(
    {
        "decision.approve",
        "signature.apply",
        "retention.set",
        "erasure.tombstone",
        "checkpoint.anchor",
        "export.generate",
        "ci.result",
        "test.result",
        "scan.result",
        "compliance.response",
        "access.review_opened",
        "access.review_decided",
        "access.review_closed",
        "database.restore",
    }
)
"""Kinds whose event is itself an authority: only their own endpoint writes them."""

AUTHORITY_FAMILIES: Final = ("auth", "key", "integration")
"""Families (``auth.*``, ``key.*``) whose every kind carries authority."""

ATTESTATION_FIELD: Final = "attestation"
"""The member of ``refs`` that holds the attestation."""

ATTESTATION_CONTEXT: Final = b"flowloom-attestation/v1\n"
"""Prefix of every attested message, so the signature means nothing in another context."""


WRITTEN_BY: Final = {
    "decision.approve": "'flowloom decision approve ID' (signed with your SSH signing key), "
    "or on a team server POST /api/v1/projects/{project}/decisions/{id}/approve "
    "(an electronic signature, with re-authentication and segregation of duties)",
    "signature.apply": "a team server's POST /api/v1/projects/{project}/signatures "
    "(with re-authentication)",
    "retention.set": "'flowloom retention hold' / 'release', or on a team server "
    "POST or DELETE /api/v1/projects/{project}/compliance/holds",
    "export.generate": "'flowloom report' or 'flowloom log export', or a team server's "
    "GET /api/v1/projects/{project}/reports: each records its export itself",
    "erasure.tombstone": "'flowloom log erase'",
    "checkpoint.anchor": "'flowloom anchor'",
    "database.restore": "'flowloom admin restore'",
    "ci.result": "'flowloom check --record' in CI",
    "test.result": "'flowloom ci record --junit PATH' in CI",
    "scan.result": "'flowloom scan ingest FILE.sarif', or a team server's "
    "POST /api/v1/projects/{project}/scans",
    "compliance.response": "'flowloom report respond EXCEPTION_ID' (signed with your SSH "
    "signing key), or on a team server POST /api/v1/projects/{project}/reports/responses",
    "access.review_opened": "'flowloom access-review open', or on a team server "
    "POST /api/v1/projects/{project}/access-reviews (or /api/v1/access-reviews)",
    "access.review_decided": "a team server's POST .../access-reviews/{campaign}/lines/{line}"
    " (an electronic signature, with re-authentication)",
    "access.review_closed": "'flowloom access-review close', or on a team server "
    "POST .../access-reviews/{campaign}/close",
    "auth": "nothing: FlowLoom records sign-ins, keys, users and roles as they happen",
    "key": "nothing: FlowLoom records its key events itself ('flowloom log rotate-key')",
    "integration": "nothing: FlowLoom records what a code host reports through its signed "
    "webhook (POST /api/v1/integrations/github/webhook) and settings changes itself",
}
"""Where each authority-bearing kind is written instead (for the refusal's hint)."""


def is_authority_kind(kind: str) -> bool:
    """Whether events of `kind` carry authority (written only where their rule is enforced)."""
    return kind in AUTHORITY_KINDS or kind.partition(".")[0] in AUTHORITY_FAMILIES


def refuse_generic(kind: str, where: str = "") -> None:
    """Refuse (PermissionDeniedError; HTTP 403) a generic append of an authority kind."""
    if not is_authority_kind(kind):
        return
    instead = WRITTEN_BY.get(kind) or WRITTEN_BY[kind.partition(".")[0]]
    raise PermissionDeniedError(
        f"{where}{kind} events carry authority and are written only where their rule is "
        "enforced, never through a generic append",
        hint=f"use {instead}",
    )


@dataclass(frozen=True)
class Attestation:
    """The parsed ``refs.attestation`` of one event: which key, and its signature."""

    key_name: str
    key_id: bytes
    signature: bytes

    @property
    def key(self) -> str:
        return f"{self.key_name}+{self.key_id.hex()}"


def unattested(envelope: Mapping[str, Any]) -> dict[str, Any]:
    """The envelope as it was signed: without ``refs.attestation`` (and without empty refs)."""
    result = dict(envelope)
    refs = result.get("refs")
    if isinstance(refs, Mapping):
        rest = {k: v for k, v in refs.items() if k != ATTESTATION_FIELD}
        if rest:
            result["refs"] = rest
        else:
            result.pop("refs")
    return result


def _message(envelope: Mapping[str, Any]) -> bytes:
    return ATTESTATION_CONTEXT + canonicalize(unattested(envelope))


def attest(envelope: Mapping[str, Any], signer: Signer) -> dict[str, Any]:
    """`envelope` (a JSON object) with an attestation by `signer` bound into its refs."""
    signature = signer.sign(_message(envelope))
    result = unattested(envelope)
    refs = dict(result.get("refs") or {})
    refs[ATTESTATION_FIELD] = {
        "key": f"{signer.name}+{signer.key_id.hex()}",
        "sig": base64.b64encode(signature).decode("ascii"),
    }
    result["refs"] = refs
    return result


def attestation_of(envelope: Mapping[str, Any]) -> Attestation | None:
    """The event's attestation, or None when it has none or a malformed one."""
    refs = envelope.get("refs")
    if not isinstance(refs, Mapping):
        return None
    found = refs.get(ATTESTATION_FIELD)
    if not isinstance(found, Mapping):
        return None
    key, sig = found.get("key"), found.get("sig")
    if not isinstance(key, str) or not isinstance(sig, str):
        return None
    name, _, hex_id = key.rpartition("+")
    try:
        key_id = bytes.fromhex(hex_id)
        signature = base64.b64decode(sig, validate=True)
    except (ValueError, binascii.Error):
        return None
    if not name or len(key_id) != 4:
        return None
    return Attestation(name, key_id, signature)


def attested_by(envelope: Mapping[str, Any], trusted: Iterable[Verifier]) -> Verifier | None:
    """The trusted key whose attestation of `envelope` verifies, or None."""
    found = attestation_of(envelope)
    if found is None:
        return None
    message: bytes | None = None
    for verifier in trusted:
        if verifier.name != found.key_name or verifier.key_id != found.key_id:
            continue
        if message is None:
            message = _message(envelope)
        if verifier.verify(message, found.signature):
            return verifier
    return None
