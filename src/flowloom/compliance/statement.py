"""The signed statement that goes with every report: what it is, at which checkpoint, by whom.

Every report file (and every evidence pack, inside and beside it) is accompanied by an
in-toto Statement v1 in a DSSE envelope (`flowloom.ledger.dsse`), signed with the log's
key (the key that signs its checkpoints). Its subject is the file's SHA-256; its
predicate (`PREDICATE_TYPE`) records what an auditor needs to rely on the file and to
re-perform it (`flowloom.compliance.reperform`):

- the framework, catalogue version and format; the period as requested (inclusive end,
  timezone stated) and as assessed (half-open UTC times);
- the scope: project, repository, protected branches;
- the checkpoint the assessment was computed at (origin, size, root hash, the signed
  note) and how much of the instance log's security events it read;
- the assessment's own SHA-256 (of its JSON document, `report.json` in a pack);
- what the assessment trusted (`TrustRecord`) and the compliance settings it used;
- who generated it (`Generator`): on a server the authenticated principal; on the
  command line the person whose SSH signing key signs the envelope too, as the
  repository's allowed-signers file names them, else "unauthenticated";
- FlowLoom's version.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

import flowloom
from flowloom.compliance.history import Period
from flowloom.compliance.model import Assessment
from flowloom.compliance.settings import DEFAULT_RETENTION_DAYS, ComplianceSettings
from flowloom.compliance.snapshot import Snapshot
from flowloom.errors import InputError, VerificationError
from flowloom.ledger.dsse import Envelope, statement
from flowloom.ledger.note import Signer, Verifier
from flowloom.ledger.provenance import Trust

__all__ = [
    "PREDICATE_TYPE",
    "SSH_NAMESPACE",
    "STATEMENT_SUFFIX",
    "Generator",
    "TrustRecord",
    "armor_ssh_signature",
    "predicate",
    "settings_from_record",
    "sign_statement",
]

PREDICATE_TYPE: Final = "urn:flowloom:compliance-report:v1"
STATEMENT_SUFFIX: Final = ".intoto.jsonl"
"""A report's statement is written beside it as ``<report file>.intoto.jsonl``."""
SSH_NAMESPACE: Final = "flowloom"

SshSign = Callable[[bytes], str]
"""Signs bytes with a person's SSH key; returns the armored SSHSIG."""


@dataclass(frozen=True)
class TrustRecord:
    """What an assessment believed, in a form a statement can carry and a verifier can
    rebuild the same `Trust` from: verifier keys and the allowed-signers file's text."""

    servers: tuple[str, ...] = ()
    attesters: tuple[str, ...] = ()
    allowed_signers: str | None = None
    allowed_signers_rev: str | None = None

    def trust(self) -> Trust:
        ssh = None
        if self.allowed_signers is not None:
            from flowloom.ledger.sshsig import AllowedSigners
            from flowloom.repo.signers import ALLOWED_SIGNERS_PATH, SignersCheck

            source = f"{ALLOWED_SIGNERS_PATH} at {self.allowed_signers_rev or 'HEAD'}"
            ssh = SignersCheck(AllowedSigners.parse(self.allowed_signers, source=source))
        return Trust.of_log(
            [Verifier.from_vkey(k) for k in self.attesters],
            ssh,
            servers=[Verifier.from_vkey(k) for k in self.servers],
        )

    @classmethod
    def of_server(cls, trust: Trust) -> TrustRecord:
        return cls(servers=tuple(v.vkey for v in trust.servers))

    def to_json(self) -> dict[str, Any]:
        return {
            "servers": list(self.servers),
            "attesters": list(self.attesters),
            "allowedSigners": (
                None
                if self.allowed_signers is None
                else {"rev": self.allowed_signers_rev, "text": self.allowed_signers}
            ),
        }

    @classmethod
    def from_json(cls, data: Any) -> TrustRecord:
        if not isinstance(data, Mapping):
            raise VerificationError("the statement does not say what the assessment trusted")
        signers = data.get("allowedSigners")
        text = signers.get("text") if isinstance(signers, Mapping) else None
        rev = signers.get("rev") if isinstance(signers, Mapping) else None
        return cls(
            servers=tuple(str(k) for k in data.get("servers") or ()),
            attesters=tuple(str(k) for k in data.get("attesters") or ()),
            allowed_signers=text if isinstance(text, str) else None,
            allowed_signers_rev=rev if isinstance(rev, str) else None,
        )


@dataclass(frozen=True)
class Generator:
    """Who generated a report, and how that is known.

    `method`: ``server`` (the server authenticated the principal), ``ssh`` (the person's
    SSH signing key signs the statement too; `ssh_sign`), or ``none`` (nothing proves
    it: `identity` is only what the machine was told, e.g. git's user.email).
    """

    identity: str
    method: str = "none"
    ssh_sign: SshSign | None = field(default=None, compare=False, repr=False)
    ssh_key: str = ""
    """The SSH key's fingerprint (``SHA256:...``), the signature's DSSE keyid."""

    @property
    def authenticated(self) -> bool:
        return self.method in ("server", "ssh")

    @property
    def label(self) -> str:
        """For the report's "Generated by" line."""
        if self.method == "server":
            return f"{self.identity} (authenticated by the FlowLoom server)"
        if self.method == "ssh":
            return f"{self.identity} (SSH signature by key {self.ssh_key} on this statement)"
        claimed = f": claims to be {self.identity}" if self.identity else ""
        return f"unauthenticated{claimed} (nothing proves who ran it)"

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "identity": self.identity,
            "authenticated": self.authenticated,
            "method": self.method,
        }
        if self.ssh_key:
            found["sshKey"] = self.ssh_key
        return found


def _settings_json(settings: ComplianceSettings, branches: Sequence[str]) -> dict[str, Any]:
    found: dict[str, Any] = {
        "overrideApprovalHours": int(settings.override_approval_window / timedelta(hours=1)),
        "retentionDays": dict(settings.retention_days),
        "protectedBranches": list(branches),
    }
    if settings.baseline is not None:
        found["baseline"] = settings.baseline.date().isoformat()
    return found


def settings_from_record(data: Any) -> ComplianceSettings:
    """The ComplianceSettings a statement says the assessment used."""
    if not isinstance(data, Mapping):
        return ComplianceSettings()
    hours = data.get("overrideApprovalHours")
    days = data.get("retentionDays")
    branches = data.get("protectedBranches")
    baseline = data.get("baseline")
    return ComplianceSettings(
        baseline=(
            datetime.fromisoformat(baseline).replace(tzinfo=UTC)
            if isinstance(baseline, str) and len(baseline) == 10
            else None
        ),
        override_approval_window=timedelta(hours=hours if isinstance(hours, int) else 72),
        retention_days=MappingProxyType(
            {str(k): int(v) for k, v in days.items()}
            if isinstance(days, Mapping)
            else dict(DEFAULT_RETENTION_DAYS)
        ),
        protected_branches=tuple(str(b) for b in branches) if isinstance(branches, list) else None,
    )


def predicate(
    assessment: Assessment,
    *,
    fmt: str,
    period: Period,
    snapshot: Snapshot,
    origin: str,
    assessment_sha256: str,
    trust: TrustRecord,
    settings: ComplianceSettings,
    generator: Generator,
) -> dict[str, Any]:
    """The predicate of a report's statement (see the module's docstring)."""
    return {
        "framework": assessment.framework,
        "frameworkTitle": assessment.framework_title,
        "catalogueVersion": assessment.catalogue_version,
        "format": fmt,
        "period": {
            "from": period.first or assessment.period_from,
            "to": period.last or assessment.period_to,
            "toInclusive": period.last_included,
            "timezone": "UTC",
            "start": assessment.period_from,
            "end": assessment.period_to,
            "endExclusive": True,
        },
        "scope": {
            "project": assessment.project,
            "repository": assessment.repository,
            "branches": list(assessment.branches),
        },
        "checkpoint": {
            "origin": origin,
            "size": snapshot.size,
            "rootHash": snapshot.root,
            "vkey": snapshot.vkey,
            "note": snapshot.checkpoint.note,
        },
        "instanceLog": (
            None if snapshot.instance_size is None else {"size": snapshot.instance_size}
        ),
        "assessment": {
            "sha256": assessment_sha256,
            "mediaType": "application/json",
            "schema": "flowloom-assessment/1",
        },
        "trust": trust.to_json(),
        "settings": _settings_json(settings, assessment.branches),
        "generatedBy": generator.to_json(),
        "generatedAt": assessment.generated_at,
        "generator": {"name": "flowloom", "version": flowloom.__version__},
    }


def sign_statement(
    subjects: Iterable[tuple[str, str]],
    body: Mapping[str, Any],
    signer: Signer,
    generator: Generator,
) -> Envelope:
    """The statement over `subjects`, signed by the log's key (and the person's SSH key)."""
    envelope = Envelope.of_statement(statement(subjects, PREDICATE_TYPE, body)).signed(signer)
    if generator.method == "ssh" and generator.ssh_sign is not None:
        armored = generator.ssh_sign(envelope.pae())
        envelope = envelope.with_signature(generator.ssh_key, _ssh_blob(armored))
    return envelope


def _ssh_blob(armored: str) -> bytes:
    lines = [line for line in armored.strip().splitlines() if not line.startswith("-----")]
    try:
        return base64.b64decode("".join(lines), validate=True)
    except ValueError:
        raise InputError("ssh-keygen returned a signature that is not base64") from None


def armor_ssh_signature(blob: bytes) -> str:
    """The armored form ``ssh-keygen -Y verify`` reads, from a DSSE signature's bytes."""
    text = base64.b64encode(blob).decode("ascii")
    body = "\n".join(text[i : i + 70] for i in range(0, len(text), 70))
    return f"-----BEGIN SSH SIGNATURE-----\n{body}\n-----END SSH SIGNATURE-----\n"
