"""One report run: snapshot, assess, render, sign, record. The CLI and the server call this.

1. The log's key is asked for first (the run signs and records), so without it nothing
   is written.
2. **One snapshot.** An evidence pack without a given bundle exports the ledger first
   (its own ``export.generate`` and checkpoint); then a checkpoint is signed over
   everything recorded so far and the assessment reads exactly the entries it covers
   (`flowloom.compliance.snapshot`). A given bundle must be cut at that same checkpoint,
   else the run is refused: a pack's report and its bundle cover the same entries.
3. The format is rendered from that one assessment (a pack holds every format). A PDF
   embeds the assessment's JSON and a statement signed over that JSON (PDF/A-3
   associated files); its own statement, over its final bytes, is the one beside it.
4. **Signed.** The file gets a statement beside it (``<file>.intoto.jsonl``), and a pack
   one inside too, over every file (`flowloom.compliance.statement`).
5. **Recorded.** An ``export.generate`` event names the file's and the statement's
   SHA-256 and the checkpoint; its body is the statement itself.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flowloom.compliance.assess import assess
from flowloom.compliance.history import Period, security_rows
from flowloom.compliance.model import Assessment
from flowloom.compliance.reports import RENDERERS, evidence_pack, pdf
from flowloom.compliance.reports import json as json_report
from flowloom.compliance.reports.atomic import write_atomic
from flowloom.compliance.settings import ComplianceSettings
from flowloom.compliance.snapshot import Snapshot, take_snapshot
from flowloom.compliance.statement import (
    STATEMENT_SUFFIX,
    Generator,
    TrustRecord,
    predicate,
    sign_statement,
)
from flowloom.errors import InputError
from flowloom.ledger.dsse import sha256_hex
from flowloom.ledger.log import Ledger
from flowloom.repo.git import GitRepo
from flowloom.repo.policy import Policy

__all__ = ["Generated", "bundle_checkpoint", "generate_report", "instance_events"]

_SEED = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Generated:
    """What a run wrote and recorded."""

    path: Path
    sha256: str
    statement_path: Path
    statement_sha256: str
    entry: int
    assessment: Assessment
    snapshot: Snapshot


def bundle_checkpoint(bundle_dir: Path) -> tuple[int, str]:
    """(size, root hex) of the checkpoint a `flowloom log export` bundle is cut at."""
    from flowloom.errors import FlowLoomError
    from flowloom.ledger.checkpoint import Checkpoint

    try:
        note = (bundle_dir / "checkpoint").read_text("utf-8")
        parsed = Checkpoint.parse(note.split("\n\n", 1)[0] + "\n")
    except (OSError, UnicodeDecodeError, FlowLoomError) as exc:
        raise InputError(
            f"{bundle_dir} is not a ledger bundle: {exc}",
            hint="give the directory written by 'flowloom log export'",
        ) from None
    return parsed.size, parsed.root.hex()


def instance_events(rows: list[tuple[int, bytes]]) -> bytes:
    """The instance log's security events as a pack carries them: one JSON line each."""
    return b"".join(
        json.dumps({"index": i, "envelope": e.decode("utf-8")}, ensure_ascii=False).encode() + b"\n"
        for i, e in rows
    )


def generate_report(
    ledger: Ledger,
    *,
    framework: str,
    period: Period,
    fmt: str,
    out: Path,
    trust: TrustRecord,
    generator: Generator,
    repo: GitRepo | None = None,
    policy: Policy | None = None,
    settings: ComplianceSettings | None = None,
    repository: str | None = None,
    bundle_dir: Path | None = None,
    actor: dict[str, Any] | None = None,
    via: str | None = None,
    sample_seed: str | None = None,
) -> Generated:
    """Run one report (see the module's docstring); returns what was written."""
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise InputError(
            f"unknown report format {fmt!r}", hint=f"choose one of: {', '.join(RENDERERS)}"
        )
    settings = settings or ComplianceSettings()
    if sample_seed is not None and not _SEED.fullmatch(sample_seed):
        raise InputError(
            f"sample seed {sample_seed!r} is not usable",
            hint="use 1 to 64 letters, digits, '-' or '_'",
        )
    signer = ledger.require_signer()
    with tempfile.TemporaryDirectory(prefix="flowloom-run-") as tmp:
        if fmt == "zip" and bundle_dir is None:
            from flowloom.ledger.bundle import export_bundle

            # Bodies of data subjects stay out of a pack: they must remain erasable.
            bundle_dir = Path(tmp) / "ledger-bundle"
            export_bundle(ledger, bundle_dir, withhold_subject_bodies=True)
        snapshot = take_snapshot(ledger)
        if bundle_dir is not None and fmt == "zip":
            size, root = bundle_checkpoint(bundle_dir)
            if (size, root) != (snapshot.size, snapshot.root):
                raise InputError(
                    f"the ledger bundle in {bundle_dir} covers {size} entries, but the report "
                    f"is computed at checkpoint {snapshot.size}: the pack would hold a ledger "
                    "that does not match its report",
                    hint="leave out --bundle-dir (the report then exports the ledger itself), "
                    "or export it again just before the report",
                )
        rows = security_rows(ledger.store, snapshot.instance_size)
        if snapshot.instance_size is None:
            rows = []
        assessment = assess(
            ledger,
            framework=framework,
            period=period,
            trust=trust.trust(),
            repo=repo,
            policy=policy,
            settings=settings,
            repository=repository,
            snapshot=snapshot,
            instance=rows,
            generated_by=generator.label,
            sample_seed=sample_seed,
        )
        digest_of_assessment = sha256_hex(json_report.to_bytes(assessment))

        def body(kind: str) -> dict[str, Any]:
            return predicate(
                assessment,
                fmt=kind,
                period=period,
                snapshot=snapshot,
                origin=ledger.origin,
                assessment_sha256=digest_of_assessment,
                trust=trust,
                settings=settings,
                generator=generator,
            )

        # The PDF carries report.json and a statement over it (a PDF cannot carry one over
        # itself: its own statement is signed over its final bytes, and written beside it).
        assessment_statement = sign_statement(
            [(pdf.ASSESSMENT_ATTACHMENT, digest_of_assessment)], body("json"), signer, generator
        ).to_line()
        if fmt == "zip":
            extra = {}
            if snapshot.instance_size is not None:
                extra[evidence_pack.INSTANCE_EVENTS] = instance_events(rows)

            def sign(subjects: list[tuple[str, str]]) -> bytes:
                return sign_statement(subjects, body("evidence-pack"), signer, generator).to_line()

            written = evidence_pack.render(
                assessment,
                out,
                bundle_dir=bundle_dir,
                extra=extra,
                sign=sign,
                assessment_statement=assessment_statement,
            )
        elif fmt == "pdf":
            written = pdf.render(assessment, out, statement=assessment_statement)
        else:
            written = renderer(assessment, out)
    digest = sha256_hex(written.read_bytes())
    envelope = sign_statement([(written.name, digest)], body(fmt), signer, generator)
    line = envelope.to_line()
    statement_path = write_atomic(written.with_name(written.name + STATEMENT_SUFFIX), line)
    statement_digest = sha256_hex(line)
    refs: dict[str, Any] = {
        "framework": framework,
        "from": assessment.period_from,
        "to": assessment.period_to,
        "format": fmt,
        "flagged": assessment.flagged,
        "sha256": digest,
        "statement": statement_digest,
        "checkpoint": snapshot.size,
    }
    if via is not None:
        refs["via"] = via
    meta: dict[str, Any] = {"subject": f"report:{framework}", "refs": refs}
    if actor is not None:
        meta["actor"] = actor
    ack = ledger.record("export.generate", body=line, meta=meta)
    return Generated(
        written, digest, statement_path, statement_digest, ack.index, assessment, snapshot
    )
