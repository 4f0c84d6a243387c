"""The chain-verification statement: what was verified, its root, and how to check it again.

A short document, in text, HTML and JSON, that an auditor files next to the report: the
ledger's origin, the range of entries verified, the tree size and root hash, the signed
checkpoint and how many checkpoints were checked, the external anchors, the verifier's
name and version, when it ran, the result — and the commands that repeat the check
offline from the evidence pack, trusting nothing but the verifier key. It is evidence
for the integrity of the record; the reader is expected to re-run the check, not to
take the statement's word for it.
"""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any, Final

import flowloom
from flowloom.compliance.model import Assessment
from flowloom.compliance.reports.atomic import atomic_text
from flowloom.compliance.reports.templating import environment, stylesheet

__all__ = [
    "BUNDLE_DIR",
    "CHECKPOINT_FILE",
    "SCHEMA",
    "TITLE",
    "VKEY_FILE",
    "document",
    "period_text",
    "render",
    "render_html",
    "render_text",
]

SCHEMA: Final = "flowloom-chain-verification/1"
TITLE: Final = "Chain-verification statement"
BUNDLE_DIR: Final = "ledger-bundle"
VKEY_FILE: Final = "ledger.vkey"
CHECKPOINT_FILE: Final = "checkpoint.txt"

_PURPOSE: Final = (
    "This statement records the outcome of a mechanical verification of the FlowLoom "
    "ledger's hash chain and signed checkpoints. It is evidence for the integrity of the "
    "record; repeat the check yourself with the commands below, which need only the files "
    "in the evidence pack and the verifier key."
)


def period_text(assessment: Assessment) -> str:
    """The period as it was requested, else as the half-open range of times."""
    return assessment.period_label or (
        f"{assessment.period_from} to {assessment.period_to} (end excluded, UTC)"
    )


def _root_base64(root_hex: str) -> str | None:
    try:
        return base64.b64encode(bytes.fromhex(root_hex)).decode("ascii")
    except (ValueError, binascii.Error):
        return None


def _steps(assessment: Assessment) -> list[dict[str, str]]:
    ledger = assessment.ledger
    size = ledger.checkpoint_size if ledger.checkpoint_size is not None else ledger.size
    return [
        {
            "what": "Check that every file of the evidence pack is the one issued",
            "command": "sha256sum -c MANIFEST.sha256",
        },
        {
            "what": (
                "Verify the ledger bundle offline: checkpoint signature, every entry, "
                "every tile and every body"
            ),
            "command": f"flowloom log verify-bundle {BUNDLE_DIR} --vkey {VKEY_FILE}",
        },
        {
            "what": (
                f"Confirm the bundle's checkpoint names origin {ledger.origin} and a size "
                f"of at least {size} (exporting adds an export.generate entry; at exactly "
                f"{size} the root is the one shown above, in base64)"
            ),
            "command": f"head -n 3 {BUNDLE_DIR}/checkpoint",
        },
        {
            "what": (
                "Without a bundle in the pack, export one from the ledger and verify it "
                "the same way"
            ),
            "command": (
                f"flowloom log export {BUNDLE_DIR} && "
                f"flowloom log verify-bundle {BUNDLE_DIR} --vkey {VKEY_FILE}"
            ),
        },
    ]


def document(assessment: Assessment) -> dict[str, Any]:
    """The statement as data (schema "flowloom-chain-verification/1")."""
    ledger = assessment.ledger
    return {
        "format": SCHEMA,
        "title": TITLE,
        "purpose": _PURPOSE,
        "project": ledger.project or assessment.project,
        "origin": ledger.origin,
        "range": {
            "first": 0 if ledger.size else None,
            "last": ledger.size - 1 if ledger.size else None,
            "entries": ledger.size,
        },
        "tree_size": ledger.size,
        "root": ledger.root,
        "root_base64": _root_base64(ledger.root),
        "checkpoint": {
            "size": ledger.checkpoint_size,
            "note": ledger.checkpoint_note,
        },
        "checkpoints_checked": ledger.checkpoints_checked,
        "vkey": ledger.vkey,
        "anchors": [a.to_json() for a in ledger.anchors],
        "verifier": {
            "name": "FlowLoom",
            "version": assessment.verifier_version,
            "rendered_by": f"flowloom {flowloom.__version__}",
        },
        "verified_at": assessment.generated_at,
        "result": "verified" if ledger.verified else "problems found",
        "problems": list(ledger.problems),
        "note": ledger.note,
        "assessment": {
            "framework": assessment.framework,
            "period_from": assessment.period_from,
            "period_to": assessment.period_to,
        },
        "reverify": _steps(assessment),
    }


def render_text(assessment: Assessment) -> str:
    """The statement as plain text (UTF-8, LF line ends)."""
    doc = document(assessment)
    rng = doc["range"]
    lines = [
        TITLE,
        "=" * len(TITLE),
        "",
        doc["purpose"],
        "",
        f"Project:              {doc['project']}",
        f"Ledger origin:        {doc['origin']}",
        (
            f"Range verified:       entries {rng['first']} to {rng['last']} "
            f"({rng['entries']} entries, the whole log at its signed checkpoint)"
            if rng["entries"]
            else "Range verified:       the log is empty"
        ),
        f"Tree size:            {doc['tree_size']}",
        f"Root hash (hex):      {doc['root']}",
        f"Root hash (base64):   {doc['root_base64'] or '-'}",
        f"Latest checkpoint:    size {doc['checkpoint']['size']}",
        f"Checkpoints checked:  {doc['checkpoints_checked']}",
        f"Verifier key:         {doc['vkey'] or '-'}",
        f"Verifier:             {doc['verifier']['name']} {doc['verifier']['version']} "
        f"(rendered by {doc['verifier']['rendered_by']})",
        f"Verified at:          {doc['verified_at']}",
        f"Result:               {doc['result']}",
        f"Assessment period:    {period_text(assessment)} ({assessment.framework})",
    ]
    if doc["note"]:
        lines.append(f"Note:                 {doc['note']}")
    lines += ["", "Problems", "--------"]
    lines += [f"- {p}" for p in doc["problems"]] or ["none"]
    lines += ["", "Anchors", "-------"]
    lines += [
        f"- entry {a['entry']} at {a['ts']}: {a['type']}, checkpoint size "
        f"{a['checkpoint_size'] if a['checkpoint_size'] is not None else '-'}: {a['detail']}"
        for a in doc["anchors"]
    ] or ["none recorded in the ledger"]
    lines += ["", "Signed checkpoint", "-----------------"]
    lines += [doc["checkpoint"]["note"].rstrip("\n")] if doc["checkpoint"]["note"] else ["none"]
    lines += ["", "How to verify again, offline", "----------------------------"]
    for number, step in enumerate(doc["reverify"], start=1):
        lines += [f"{number}. {step['what']}:", f"   {step['command']}"]
    return "\n".join(lines) + "\n"


def render_html(assessment: Assessment) -> str:
    """The statement as a self-contained HTML page."""
    template = environment().get_template("chain-verification.html.j2")
    return template.render(doc=document(assessment), a=assessment, css=stylesheet())


def render(assessment: Assessment, out: Path, *, bundle_dir: Path | None = None) -> Path:
    """Write the statement; the suffix of `out` picks the form (.json, .html, else text)."""
    suffix = out.suffix.lower()
    if suffix == ".json":
        text = json.dumps(document(assessment), indent=2, ensure_ascii=False) + "\n"
    elif suffix in (".html", ".htm"):
        text = render_html(assessment)
    else:
        text = render_text(assessment)
    with atomic_text(out, newline="\n") as handle:
        handle.write(text)
    return out
