"""Verify a report and re-perform its assessment: what `flowloom report verify` runs.

For an evidence pack (ZIP) it checks, and lists every problem:

- every file against MANIFEST.sha256 (which must be in its one canonical form) and
  manifest.json, and the ledger bundle inside offline (`verify_evidence_pack`);
- the signed statement inside (`report.intoto.jsonl`): its DSSE signature by the log's
  key, and that its subjects are exactly the pack's files with their digests;
- the statement beside the pack (``<pack>.intoto.jsonl``), when present: the pack's digest;
- that the checkpoint the statement names is the bundle's, that the bundle covers every
  entry the report cites, and that report.json is the assessment the statement names;
- that report.pdf embeds exactly the pack's report.json, and a statement by the same
  key over it that says what the pack's statement says (but the format);
- the generating person's SSH signature, when the statement claims one;

then **re-performs** the assessment: the bundle is loaded into a scratch database and
assessed again with what the statement recorded (period, trust, settings, the instance
log's events, the time it ran), with the repository when one is given, and the result
is compared with report.json, field by field; the HTML and CSV files are rendered again
from report.json and compared byte for byte. Every difference is listed.

A single report file (HTML, PDF, CSV, JSON) is checked against the statement beside it:
signature, digest, the checkpoint's signature; a PDF's embedded files as in a pack.
Re-performing needs the ledger: verify the evidence pack of the same run for that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import flowloom
from flowloom.compliance.model import Assessment
from flowloom.compliance.reports import certificate
from flowloom.compliance.reports.evidence_pack import (
    INSTANCE_EVENTS,
    MANIFEST_SHA256,
    STATEMENT_FILE,
    verify_evidence_pack,
)
from flowloom.compliance.statement import (
    PREDICATE_TYPE,
    SSH_NAMESPACE,
    STATEMENT_SUFFIX,
    TrustRecord,
    armor_ssh_signature,
    settings_from_record,
)
from flowloom.errors import FlowLoomError, InputError
from flowloom.ledger.dsse import Envelope
from flowloom.ledger.log import Ledger
from flowloom.ledger.note import Verifier
from flowloom.repo.git import GitRepo
from flowloom.store.interface import StoredCheckpoint

__all__ = ["ReportVerification", "verify_report"]

_RERENDERED: Final = (
    ("report.html", "html"),
    ("population.csv", "csv"),
    ("exceptions.csv", "exceptions-csv"),
    ("audit-trail.csv", "audit-trail-csv"),
    ("controls-requirements.csv", "controls-csv"),
    ("chain-verification.txt", "chain-verification"),
    ("chain-verification.json", "chain-verification"),
    ("chain-verification.html", "chain-verification"),
)
_VANTAGE: Final = frozenset({"ledger.checkpoints_checked", "checks[trail_integrity].summary"})
"""Fields that count what the verifier held rather than what the record says: the
server checks every stored checkpoint and body, a pack's bundle holds one checkpoint
and no withheld bodies."""


@dataclass
class ReportVerification:
    """What checking a report found: problems (integrity, signatures), differences
    (re-performance), and notes (what was and was not checked)."""

    path: Path
    problems: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_checked: int = 0
    signed_by: str = ""
    generated_by: str = ""
    reperformed: bool = False
    fall_back: bool = field(default=False, repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.differences

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": self.problems,
            "differences": self.differences,
            "notes": self.notes,
            "files_checked": self.files_checked,
            "signed_by": self.signed_by,
            "generated_by": self.generated_by,
            "reperformed": self.reperformed,
        }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_report(
    path: Path,
    *,
    trusted: Sequence[Verifier] = (),
    repo: GitRepo | None = None,
    other_logs_fall_back: bool = False,
) -> ReportVerification:
    """Check the report at `path` (a pack or a file with its statement beside it).

    `trusted`: the log's keys as the verifier obtained them (``--vkey``, or the log's own
    history); without any, the key the pack or statement carries is used, and a note
    says the check then rests on the pack vouching for itself. With
    `other_logs_fall_back`, keys of another log than the report's count as none (the
    command line's default: the log of the directory it runs in).
    """
    result = ReportVerification(path)
    result.fall_back = other_logs_fall_back
    if not path.is_file():
        raise InputError(f"{path} is not a file")
    if zipfile.is_zipfile(path):
        try:
            _verify_pack(path, trusted, repo, result)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            result.problems.append(f"the pack is damaged: {exc}")
    else:
        _verify_file(path, trusted, result)
    return result


# -- the statement -------------------------------------------------------------------------


def _open_statement(
    data: bytes, trusted: Sequence[Verifier], carried: str | None, where: str, result: Any
) -> tuple[Envelope, dict[str, Any], Verifier] | None:
    """The statement's envelope, its statement and the key that signed it, or None."""
    try:
        envelope = Envelope.parse(data)
        document = envelope.statement()
    except FlowLoomError as exc:
        result.problems.append(f"{where}: {exc.message}")
        return None
    predicate = document["predicate"]
    if document.get("predicateType") != PREDICATE_TYPE:
        result.problems.append(f"{where}: its predicate type is not {PREDICATE_TYPE}")
        return None
    candidates = list(trusted)
    named = {s.keyid.rpartition("+")[0] for s in envelope.signatures}
    if result.fall_back and not any(v.name in named for v in candidates):
        candidates = []
    if not candidates:
        vkey = carried or _text(predicate, "checkpoint", "vkey")
        try:
            candidates = [Verifier.from_vkey(vkey.strip())] if vkey else []
        except FlowLoomError as exc:
            result.problems.append(f"{where}: the key it names cannot be used: {exc.message}")
            return None
        note = (
            "the signatures were checked against the key the report carries itself; pass "
            "--vkey with the log's key obtained from the project ('flowloom log vkey', "
            "GET .../ledger/vkey) for a check that does not rest on the report"
        )
        if note not in result.notes:
            result.notes.append(note)
    signer = envelope.verified_by(candidates)
    if signer is None:
        keys = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in candidates) or "none"
        result.problems.append(
            f"{where}: its signature does not verify with the log's key ({keys})"
        )
        return None
    result.signed_by = f"{signer.name}+{signer.key_id.hex()}"
    return envelope, document, signer


def _text(data: Mapping[str, Any], *keys: str) -> str:
    value: Any = data
    for key in keys:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else ""


def _subjects(document: Mapping[str, Any]) -> dict[str, str]:
    return {s["name"]: s["digest"]["sha256"] for s in document["subject"]}


def _check_generator(
    envelope: Envelope,
    predicate: Mapping[str, Any],
    repo: GitRepo | None,
    result: ReportVerification,
) -> None:
    """The person named as generator: proven by their SSH signature, or said not to be."""
    who = predicate.get("generatedBy")
    if not isinstance(who, Mapping):
        result.problems.append("the statement does not say who generated the report")
        return
    identity, method = str(who.get("identity") or ""), str(who.get("method") or "none")
    if method == "server":
        result.generated_by = f"{identity} (authenticated by the FlowLoom server that signed it)"
        return
    if method != "ssh":
        result.generated_by = "unauthenticated: nothing proves who generated it"
        return
    key = str(who.get("sshKey") or "")
    found = envelope.signature_by(key)
    if found is None:
        result.problems.append(f"the statement claims an SSH signature by {key}, but has none")
        return
    from flowloom.ledger.sshsig import AllowedSigners, verify_signed
    from flowloom.repo.signers import allowed_signers_at

    trust = TrustRecord.from_json(predicate.get("trust"))
    signers = None
    if repo is not None and trust.allowed_signers_rev:
        signers = allowed_signers_at(repo, trust.allowed_signers_rev)
    if signers is None and trust.allowed_signers is not None:
        signers = AllowedSigners.parse(trust.allowed_signers, source="the statement")
    if signers is None:
        result.problems.append("no allowed-signers file to check the generator's SSH signature")
        return
    try:
        verify_signed(
            envelope.pae(), armor_ssh_signature(found.sig), SSH_NAMESPACE, signers,
            principal=identity,
        )  # fmt: skip
    except FlowLoomError as exc:
        result.problems.append(f"the generator's SSH signature: {exc.message}")
        return
    result.generated_by = f"{identity} (SSH signature verified)"


# -- a single file -------------------------------------------------------------------------


def _verify_file(path: Path, trusted: Sequence[Verifier], result: ReportVerification) -> None:
    beside = path.with_name(path.name + STATEMENT_SUFFIX)
    if not beside.is_file():
        result.problems.append(f"no signed statement beside it ({beside.name})")
        return
    opened = _open_statement(beside.read_bytes(), trusted, None, beside.name, result)
    if opened is None:
        return
    envelope, document, signer = opened
    subjects = _subjects(document)
    digest = _sha256(path.read_bytes())
    result.files_checked = 1
    if subjects.get(path.name) != digest:
        listed = ", ".join(subjects) or "nothing"
        result.problems.append(
            f"{path.name} does not match the digest its statement signs (it names {listed})"
        )
    predicate = document["predicate"]
    _check_checkpoint_note(predicate, signer, result)
    _check_generator(envelope, predicate, None, result)
    assessed = _text(predicate, "assessment", "sha256")
    if predicate.get("format") == "json" and digest != assessed:
        result.problems.append("the JSON is not the assessment the statement names")
    if predicate.get("format") == "pdf":
        _check_embedded(path.name, path.read_bytes(), None, predicate, signer, result)
    result.notes.append(
        "not re-performed: a single file carries no ledger; verify the evidence pack (zip) "
        "of the period to re-perform the assessment"
    )


def _check_checkpoint_note(
    predicate: Mapping[str, Any], signer: Verifier, result: ReportVerification
) -> tuple[int, str] | None:
    from flowloom.ledger.checkpoint import open_checkpoint

    note = _text(predicate, "checkpoint", "note")
    try:
        checkpoint = open_checkpoint(note, signer)
    except FlowLoomError as exc:
        result.problems.append(f"the statement's checkpoint: {exc.message}")
        return None
    named = predicate.get("checkpoint") or {}
    if checkpoint.size != named.get("size") or checkpoint.root.hex() != named.get("rootHash"):
        result.problems.append("the statement's checkpoint size or root disagrees with its note")
        return None
    return checkpoint.size, checkpoint.root.hex()


# -- the files a PDF embeds ----------------------------------------------------------------


def _check_embedded(
    name: str,
    data: bytes,
    report_bytes: bytes | None,
    predicate: Mapping[str, Any],
    signer: Verifier,
    result: ReportVerification,
) -> None:
    """The PDF's attachments are the report's assessment and the statement over it.

    A report PDF embeds ``report.json`` (what it is rendered from) and the statement
    signed over it (`flowloom.compliance.reports.pdf`). Someone who takes them out of
    the PDF must get exactly the pack's report.json (`report_bytes`; for a PDF on its
    own, the assessment its statement names), and a statement by the same key, over
    that JSON, saying what the report's own statement says.
    """
    from flowloom.compliance.reports.pdf import (
        ASSESSMENT_ATTACHMENT,
        STATEMENT_ATTACHMENT,
        read_embedded,
    )

    try:
        files = read_embedded(data)
    except FlowLoomError as exc:
        result.problems.append(f"{name}: {exc.message}")
        return
    for extra in sorted(set(files) - {ASSESSMENT_ATTACHMENT, STATEMENT_ATTACHMENT}):
        result.problems.append(f"{name} embeds {extra!r}, which a report PDF does not carry")
    embedded = files.get(ASSESSMENT_ATTACHMENT)
    assessed = _text(predicate, "assessment", "sha256")
    if embedded is None:
        result.problems.append(f"{name} does not embed its assessment ({ASSESSMENT_ATTACHMENT})")
    elif report_bytes is not None and embedded != report_bytes:
        result.problems.append(
            f"{name} embeds a {ASSESSMENT_ATTACHMENT} that differs from the pack's "
            f"{ASSESSMENT_ATTACHMENT}"
        )
    elif _sha256(embedded) != assessed:
        result.problems.append(
            f"{name} embeds a {ASSESSMENT_ATTACHMENT} that is not the assessment its "
            "statement names"
        )
    line = files.get(STATEMENT_ATTACHMENT)
    if line is None:
        result.problems.append(
            f"{name} does not embed the statement over its assessment ({STATEMENT_ATTACHMENT})"
        )
        return
    where = f"the statement {name} embeds"
    try:
        envelope = Envelope.parse(line)
        inner = envelope.statement()
    except FlowLoomError as exc:
        result.problems.append(f"{where}: {exc.message}")
        return
    if envelope.verified_by([signer]) is None:
        result.problems.append(f"{where}: its signature does not verify with the report's key")
    if inner.get("predicateType") != PREDICATE_TYPE:
        result.problems.append(f"{where}: its predicate type is not {PREDICATE_TYPE}")
    if _subjects(inner) != {ASSESSMENT_ATTACHMENT: assessed}:
        result.problems.append(
            f"{where} is not over the report's assessment (it names "
            + (", ".join(f"{k} {v[:12]}" for k, v in _subjects(inner).items()) or "nothing")
            + ")"
        )
    said = dict(inner.get("predicate") or {})
    if said.pop("format", None) != "json":
        result.problems.append(f"{where} is not a statement over a JSON assessment")
    expected = {k: v for k, v in predicate.items() if k != "format"}
    differing = sorted(k for k in {*said, *expected} if said.get(k) != expected.get(k))
    if differing:
        result.problems.append(
            f"{where} says otherwise than the report's statement about: " + ", ".join(differing)
        )


# -- an evidence pack ----------------------------------------------------------------------


def _verify_pack(
    path: Path, trusted: Sequence[Verifier], repo: GitRepo | None, result: ReportVerification
) -> None:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        carried = _member_text(archive, certificate.VKEY_FILE)
        try:
            statement_bytes = archive.read(STATEMENT_FILE)
        except KeyError:
            result.problems.append(f"the pack has no signed statement ({STATEMENT_FILE})")
            return
        opened = _open_statement(statement_bytes, trusted, carried, STATEMENT_FILE, result)
        if opened is None:
            return
        envelope, document, signer = opened
        pack = verify_evidence_pack(path, vkey=signer.vkey, ledger=True)
        result.problems.extend(pack.problems)
        result.files_checked = pack.files_checked
        subjects = _subjects(document)
        inside = {n for n in names if n not in (STATEMENT_FILE, MANIFEST_SHA256)}
        for name in sorted(inside | set(subjects)):
            if name not in subjects:
                result.problems.append(f"{name} is in the pack but not in the signed statement")
            elif name not in inside:
                result.problems.append(f"{name} is in the signed statement but not in the pack")
            elif _sha256(archive.read(name)) != subjects[name]:
                result.problems.append(f"{name} does not match the digest the statement signs")
        predicate = document["predicate"]
        _check_beside(path, predicate, trusted, carried, result)
        named = _check_checkpoint_note(predicate, signer, result)
        _check_generator(envelope, predicate, repo, result)
        try:
            report_bytes = archive.read("report.json")
            original = json.loads(report_bytes)
        except (KeyError, ValueError):
            result.problems.append("report.json is missing or unreadable")
            return
        if _sha256(report_bytes) != _text(predicate, "assessment", "sha256"):
            result.problems.append("report.json is not the assessment the statement names")
        packed_pdf = _member_bytes(archive, "report.pdf")
        if packed_pdf is not None:
            _check_embedded("report.pdf", packed_pdf, report_bytes, predicate, signer, result)
        bundle_note = _member_text(archive, f"{certificate.BUNDLE_DIR}/checkpoint")
        if bundle_note is None:
            result.problems.append("the pack has no ledger bundle: nothing to re-perform from")
            return
        if bundle_note != _text(predicate, "checkpoint", "note"):
            result.problems.append(
                "the ledger bundle is cut at another checkpoint than the one the report "
                "was computed at"
            )
        if named is not None:
            _check_coverage(original, named, result)
        if result.problems:
            result.notes.append("not re-performed: the pack is not intact")
            return
        with tempfile.TemporaryDirectory(prefix="flowloom-reperform-") as tmp:
            root = Path(tmp)
            for name in names:
                if name.startswith(f"{certificate.BUNDLE_DIR}/"):
                    target = root / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with archive.open(name) as src, target.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
            instance = _member_bytes(archive, INSTANCE_EVENTS)
            redone = _reperform(root, predicate, signer, instance, repo, original, result)
            if redone is not None:
                _compare_renderings(archive, original, predicate, root, result)


def _member_text(archive: zipfile.ZipFile, name: str) -> str | None:
    data = _member_bytes(archive, name)
    try:
        return data.decode("utf-8") if data is not None else None
    except UnicodeDecodeError:
        return None


def _member_bytes(archive: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        return archive.read(name)
    except KeyError:
        return None


def _check_beside(
    path: Path,
    predicate: Mapping[str, Any],
    trusted: Sequence[Verifier],
    carried: str | None,
    result: ReportVerification,
) -> None:
    beside = path.with_name(path.name + STATEMENT_SUFFIX)
    if not beside.is_file():
        result.notes.append(f"no statement beside the pack ({beside.name}); the one inside holds")
        return
    opened = _open_statement(beside.read_bytes(), trusted, carried, beside.name, result)
    if opened is None:
        return
    _, outer, _ = opened
    if _subjects(outer).get(path.name) != _sha256(path.read_bytes()):
        result.problems.append(f"{path.name} does not match the digest of {beside.name}")
    if outer["predicate"].get("checkpoint") != predicate.get("checkpoint"):
        result.problems.append(f"{beside.name} names another checkpoint than the pack's statement")


def _check_coverage(
    original: Mapping[str, Any], named: tuple[int, str], result: ReportVerification
) -> None:
    """The report is computed at the checkpoint, and every entry it cites is under it."""
    size, root = named
    ledger = original.get("ledger") or {}
    if ledger.get("size") != size or ledger.get("root") != root:
        result.problems.append(
            f"report.json covers {ledger.get('size')} entries but its checkpoint signs {size}"
        )
    cited = sorted(i for i in _cited(original) if i >= size)
    if cited:
        listed = ", ".join(map(str, cited[:10]))
        result.problems.append(f"report.json cites entries the bundle does not cover: {listed}")


def _cited(original: Mapping[str, Any]) -> set[int]:
    found: set[int] = set()
    for check in original.get("checks") or ():
        found.update(i for i in check.get("evidence_entries") or () if isinstance(i, int))
    for finding in original.get("exceptions") or ():
        if isinstance(finding.get("entry"), int) and not finding.get("details", {}).get("log"):
            found.add(finding["entry"])
    for row in original.get("audit_trail") or ():
        if isinstance(row.get("entry"), int):
            found.add(row["entry"])
    return found


# -- re-performing -------------------------------------------------------------------------


def _reperform(
    bundle_root: Path,
    predicate: Mapping[str, Any],
    signer: Verifier,
    instance: bytes | None,
    repo: GitRepo | None,
    original: Mapping[str, Any],
    result: ReportVerification,
) -> Assessment | None:
    from flowloom.compliance.assess import assess
    from flowloom.compliance.checks import CHECKS
    from flowloom.compliance.history import Period
    from flowloom.compliance.snapshot import Snapshot
    from flowloom.ledger.bundle import verify_bundle
    from flowloom.ledger.event import parse_ts
    from flowloom.repo.policy import Policy

    bundle = bundle_root / certificate.BUNDLE_DIR
    verification = verify_bundle(bundle, signer)
    period_data = predicate.get("period") or {}
    period = Period(
        parse_ts(str(period_data.get("start"))),
        parse_ts(str(period_data.get("end"))),
        first=str(period_data.get("from") or ""),
        last=str(period_data.get("to") or ""),
        last_included=bool(period_data.get("toInclusive")),
    )
    scope = predicate.get("scope") or {}
    repository = str(scope.get("repository") or "")
    checks: list[str] | None = None
    git_checks = {c for c, spec in CHECKS.items() if spec.needs_git}
    if repository and repo is None:
        checks = [c["check"] for c in original.get("checks") or () if c["check"] not in git_checks]
        result.notes.append(
            "the commit checks ("
            + ", ".join(sorted(git_checks))
            + ") were not re-performed: give the repository (--repo) to re-perform them"
        )
    instance_log = predicate.get("instanceLog")
    instance_size = instance_log.get("size") if isinstance(instance_log, Mapping) else None
    rows = _instance_rows(instance) if instance_size is not None else []
    with _scratch_ledger(bundle, predicate, verification.size) as (ledger, checkpoint):
        try:
            redone = assess(
                ledger,
                framework=str(predicate.get("framework")),
                period=period,
                trust=TrustRecord.from_json(predicate.get("trust")).trust(),
                repo=repo,
                policy=Policy(configured=False),
                settings=settings_from_record(predicate.get("settings")),
                now=parse_ts(str(predicate.get("generatedAt"))),
                repository=repository,
                checks=checks,
                snapshot=Snapshot(checkpoint, signer.vkey, instance_size),
                instance=rows,
                verification=verification,
                generated_by=str(original.get("generated_by") or ""),
                sample_seed=_seed(original),
            )
        except FlowLoomError as exc:
            result.differences.append(f"the assessment could not be re-performed: {exc.message}")
            return None
    result.reperformed = True
    skipped = set(git_checks) if checks is not None else set()
    version = _text(predicate, "generator", "version")
    if version != flowloom.__version__:
        result.notes.append(
            f"generated by FlowLoom {version}, re-performed with {flowloom.__version__}"
        )
    result.differences.extend(_differences(original, redone.to_json(), skipped))
    return redone


def _seed(original: Mapping[str, Any]) -> str | None:
    """The seed the report's sample was drawn with, to draw it again."""
    sampling = original.get("sampling")
    seed = sampling.get("seed") if isinstance(sampling, Mapping) else None
    return seed if isinstance(seed, str) and seed else None


def _instance_rows(data: bytes | None) -> list[tuple[int, bytes]]:
    rows: list[tuple[int, bytes]] = []
    for line in (data or b"").splitlines():
        item = json.loads(line)
        rows.append((int(item["index"]), str(item["envelope"]).encode("utf-8")))
    return rows


@contextlib.contextmanager
def _scratch_ledger(
    bundle: Path, predicate: Mapping[str, Any], size: int
) -> Iterator[tuple[Ledger, StoredCheckpoint]]:
    """The bundle's first `size` entries (and its bodies) in a scratch SQLite database,
    as a Ledger that can neither sign nor decrypt: re-performing writes nothing real."""
    from flowloom.ledger import merkle
    from flowloom.ledger.bundle import bundle_bodies, bundle_entries
    from flowloom.ledger.event import Event
    from flowloom.ledger.log import Ledger
    from flowloom.ledger.writer import LogWriter
    from flowloom.store.interface import PendingEntry, StoredBody
    from flowloom.store.sqlite import SQLiteStore

    project = _text(predicate, "scope", "project")
    root = bytes.fromhex(_text(predicate, "checkpoint", "rootHash"))
    checkpoint = StoredCheckpoint(size, root, _text(predicate, "checkpoint", "note"))
    bodies = bundle_bodies(bundle)
    pending = []
    for _index, envelope in bundle_entries(bundle, size):
        event = Event.parse(envelope)
        body = None
        if event.body is not None and event.body in bodies:
            salt, plain = bodies[event.body]
            body = StoredBody(digest=event.body, salt=salt, content=plain)
        pending.append(PendingEntry(envelope, merkle.leaf_hash(envelope), event.kind, body))

    def nothing() -> Any:
        raise InputError("re-performing a report neither signs nor decrypts")

    with tempfile.TemporaryDirectory(prefix="flowloom-scratch-") as tmp:
        store = SQLiteStore(Path(tmp) / "reperform.db")
        try:
            writer = LogWriter(store, project)
            for start in range(0, len(pending), 1000):
                writer.append_many(pending[start : start + 1000])
            writer.close()
            store.add_checkpoint(project, lambda *_: checkpoint)
            yield (
                Ledger(
                    store,
                    log=project,
                    origin=_text(predicate, "checkpoint", "origin"),
                    signer=nothing,
                    cipher=nothing,
                    actor={"type": "service", "id": "flowloom"},
                    max_body_bytes=1 << 30,
                ),
                checkpoint,
            )
        finally:
            store.close()


# -- comparing -----------------------------------------------------------------------------

_KEYED: Final = {"controls": ("control", "id"), "checks": ("check",), "changes": ("commit",)}


def _differences(
    original: Mapping[str, Any], redone: Mapping[str, Any], skipped: set[str]
) -> list[str]:
    """Every field where the report and the re-performed assessment differ."""
    left, right = dict(original), dict(redone)
    for doc in (left, right):
        doc.pop("verifier_version", None)
        if skipped:
            doc["checks"] = [c for c in doc.get("checks") or () if c.get("check") not in skipped]
            doc["exceptions"] = [
                f for f in doc.get("exceptions") or () if f.get("check") not in skipped
            ]
            doc["controls"] = [
                c
                for c in doc.get("controls") or ()
                if not set(c.get("control", {}).get("checks") or ()) & skipped
            ]
            for name in ("summary", "changes", "completeness", "sampling"):
                doc.pop(name, None)
    found: list[str] = []
    _diff("", left, right, found)
    return found


def _key(item: Any, path: tuple[str, ...]) -> str | None:
    value = item
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value if isinstance(value, str) else None


def _diff(where: str, left: Any, right: Any, found: list[str]) -> None:
    if where in _VANTAGE:
        return
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        for key in list(dict.fromkeys([*left, *right])):
            name = f"{where}.{key}" if where else str(key)
            if key not in right:
                found.append(f"{name}: in the report, not in the re-performed assessment")
            elif key not in left:
                found.append(f"{name}: in the re-performed assessment, not in the report")
            else:
                _diff(name, left[key], right[key], found)
        return
    if isinstance(left, list) and isinstance(right, list):
        path = _KEYED.get(where)
        if path is not None:
            lefts = {_key(i, path): i for i in left}
            rights = {_key(i, path): i for i in right}
            for key in list(dict.fromkeys([*lefts, *rights])):
                name = f"{where}[{key}]"
                if key not in rights:
                    found.append(f"{name}: in the report, not in the re-performed assessment")
                elif key not in lefts:
                    found.append(f"{name}: in the re-performed assessment, not in the report")
                else:
                    _diff(name, lefts[key], rights[key], found)
            return
        if len(left) != len(right):
            found.append(
                f"{where}: the report has {len(left)}, the re-performed assessment {len(right)}"
            )
        for i, (a, b) in enumerate(zip(left, right, strict=False)):
            _diff(f"{where}[{i}]", a, b, found)
        return
    if left != right:
        found.append(
            f"{where}: the report says {json.dumps(left, ensure_ascii=False)[:200]}, "
            f"re-performed {json.dumps(right, ensure_ascii=False)[:200]}"
        )


def _compare_renderings(
    archive: zipfile.ZipFile,
    original: Mapping[str, Any],
    predicate: Mapping[str, Any],
    scratch: Path,
    result: ReportVerification,
) -> None:
    """The HTML and CSV files are renderings of report.json (with this same version)."""
    from flowloom.compliance.reports import render

    if _text(predicate, "generator", "version") != flowloom.__version__:
        result.notes.append("the HTML and CSV files were not rendered again (another version)")
        return
    assessment = Assessment.from_json(original)
    folder = scratch / "rendered"
    folder.mkdir()
    for name, fmt in _RERENDERED:
        packed = _member_bytes(archive, name)
        if packed is None:
            result.differences.append(f"{name} is missing from the pack")
            continue
        again = render(fmt, assessment, folder / name).read_bytes()
        if again != packed:
            result.differences.append(f"{name} is not a rendering of report.json")
    result.notes.append(
        "report.pdf is checked by its digest in the signed statement and by the files it "
        "embeds; its layout is not rendered again"
    )
