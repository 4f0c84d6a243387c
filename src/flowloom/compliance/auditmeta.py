"""What auditors expect around the findings: stable exception ids and how to verify.

An exception id is derived from what the finding is about (framework, check, kind of
finding, commit, entry, who, when), never from its wording or its position, so two runs
over the same period give every exception the same id, every format prints it, and a
management response (`flowloom.compliance.responses`) can name it.

`how_to_verify` is the independent-verification section of every report: the log's
verifier key and its fingerprint, the checkpoint the assessment was computed at, where
the signed statement and its digest are, and the commands that check them, with
FlowLoom and with standard tools only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from flowloom.compliance.model import CheckResult, Finding

if TYPE_CHECKING:
    from flowloom.compliance.model import Assessment

__all__ = ["exception_id", "how_to_verify", "with_ids"]


def exception_id(framework: str, finding: Finding, key: str = "") -> str:
    """``SOX-1a2b3c4d5e``: the framework and a digest of what the finding is about.

    The person it names enters as their pseudonym (keyed with `key`, the log's origin),
    so the id is the same in a report that minimises personal data and reveals nothing
    a dictionary of e-mail addresses could recover."""
    from flowloom.compliance.minimise import pseudonym

    actor = pseudonym(key, finding.actor) if finding.actor else None
    text = "\x1f".join(
        str(part) if part is not None else ""
        for part in (
            framework,
            finding.check,
            finding.what,
            finding.commit,
            finding.entry,
            actor,
            finding.ts,
        )
    )
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]
    return f"{framework.upper()}-{digest}"


def with_ids(framework: str, results: Iterable[CheckResult], key: str) -> list[CheckResult]:
    """The results with every finding given its id (a repeat of the same facts gets
    ``-2``, ``-3`` in check order, so ids stay unique within a report)."""
    seen: dict[str, int] = {}
    found: list[CheckResult] = []
    for result in results:
        findings: list[Finding] = []
        for finding in result.findings:
            base = exception_id(framework, finding, key)
            seen[base] = seen.get(base, 0) + 1
            ident = base if seen[base] == 1 else f"{base}-{seen[base]}"
            findings.append(replace(finding, id=ident))
        found.append(replace(result, findings=tuple(findings)))
    return found


def _fingerprint(vkey: str | None) -> str | None:
    """The SHA-256 of the verifier key's text: what to compare it with over the phone."""
    if not vkey:
        return None
    return "SHA256:" + hashlib.sha256(vkey.encode("utf-8")).hexdigest()


def how_to_verify(assessment: Assessment) -> dict[str, Any]:
    """The independent-verification section (JSON form; every format renders it)."""
    ledger = assessment.ledger
    return {
        "vkey": ledger.vkey,
        "vkey_fingerprint": _fingerprint(ledger.vkey),
        "origin": ledger.origin,
        "checkpoint_size": ledger.checkpoint_size,
        "root": ledger.root,
        "statement": "the signed statement beside the file (FILE.intoto.jsonl; "
        "report.intoto.jsonl inside an evidence pack): an in-toto Statement v1 in a DSSE "
        "envelope signed with the log's key, whose subject is the file's SHA-256 and whose "
        "predicate names this checkpoint and the assessment's SHA-256",
        "statement_digest": "the statement's SHA-256 is recorded in the ledger, in "
        "refs.statement of the export.generate entry appended just after checkpoint "
        f"{ledger.checkpoint_size} (flowloom log show ENTRY)",
        "with_flowloom": [
            "flowloom log vkey  # on the project: compare its fingerprint with the one above",
            "flowloom report verify PACK.zip --vkey LOG.vkey --repo REPOSITORY",
            "flowloom report verify REPORT.pdf --vkey LOG.vkey",
        ],
        "without_flowloom": [
            "unzip -q PACK.zip && sha256sum -c --quiet MANIFEST.sha256",
            "python3 verify_statement.py report.intoto.jsonl log.vkey  # docs/reports.md",
            'printf %s "$(cat log.vkey)" | sha256sum  # the fingerprint above',
        ],
    }
