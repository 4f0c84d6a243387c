"""The evidence pack: every form of the report, the ledger bundle and a manifest, in one ZIP.

Layout (all paths relative to the archive root):

    README.txt                 what each file is and how to check the pack
    report.html, report.pdf    the report (one template, two media)
    report.json                the whole assessment (schema flowloom-assessment/1)
    population.csv             the change population, one row per commit
    exceptions.csv             every finding of every check
    audit-trail.csv            the Part 11 audit trail: old → new, who, when, why
    controls-requirements.csv  each control, its clause, its checks and their outcome
    chain-verification.txt     the chain-verification statement (also .json and .html)
    ledger.vkey, checkpoint.txt  the verifier key and the signed checkpoint, when known
    ledger-bundle/...          the offline ledger bundle, when one is given
    instance-events.jsonl      the instance log's security events the assessment read
    manifest.json              pack format, subject, and SHA-256 + size of every file above
    report.intoto.jsonl        the signed statement (in-toto Statement v1 in DSSE) whose
                               subjects are every file above, manifest.json included
    MANIFEST.sha256            `sha256sum -c` input for every file, in its one canonical form

The archive is deterministic: members in sorted order, every entry stamped with the
assessment's `generated_at` (clamped to the ZIP epoch, 1980), fixed permissions and
compression, so the same assessment and bundle give the same bytes.
`verify_evidence_pack` checks a pack against its manifests and, when asked, verifies
the ledger bundle inside it; `flowloom.compliance.reperform` checks the statement and
re-performs the assessment.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final

import flowloom
from flowloom.compliance.model import Assessment
from flowloom.compliance.reports import certificate, html, pdf
from flowloom.compliance.reports import csv as csv_reports
from flowloom.compliance.reports import json as json_report
from flowloom.compliance.reports.atomic import atomic_path
from flowloom.errors import FlowLoomError, InputError, VerificationError

__all__ = [
    "INSTANCE_EVENTS",
    "MANIFEST_JSON",
    "MANIFEST_SHA256",
    "PACK_FORMAT",
    "STATEMENT_FILE",
    "EvidencePackReport",
    "PackProblemError",
    "PackSigner",
    "render",
    "verify_evidence_pack",
]

PACK_FORMAT: Final = "flowloom-evidence-pack/1"
MANIFEST_SHA256: Final = "MANIFEST.sha256"
MANIFEST_JSON: Final = "manifest.json"
STATEMENT_FILE: Final = "report.intoto.jsonl"
INSTANCE_EVENTS: Final = "instance-events.jsonl"

PackSigner = Callable[[list[tuple[str, str]]], bytes]
"""Returns the signed statement (a .intoto.jsonl line) over (file name, SHA-256) pairs."""

_CHUNK: Final = 1 << 20
_ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_LINE: Final = re.compile(r"([0-9a-f]{64}) [ *](.+)")

Renderer = Callable[..., Path]

_MEMBERS: Final[tuple[tuple[str, Renderer], ...]] = (
    ("report.html", html.render),
    ("report.pdf", pdf.render),
    ("report.json", json_report.render),
    ("population.csv", csv_reports.render),
    ("exceptions.csv", csv_reports.render_exceptions),
    ("audit-trail.csv", csv_reports.render_audit_trail),
    ("controls-requirements.csv", csv_reports.render_controls),
    ("chain-verification.txt", certificate.render),
    ("chain-verification.json", certificate.render),
    ("chain-verification.html", certificate.render),
)


class PackProblemError(VerificationError):
    """An evidence pack does not match its manifest."""


@dataclass
class EvidencePackReport:
    """What checking a pack found: files checked, and every problem (none = intact)."""

    files_checked: int = 0
    problems: list[str] = field(default_factory=list)
    ledger_checked: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise when the pack is not intact, naming the first problem."""
        if self.problems:
            raise PackProblemError(
                f"the evidence pack is not intact: {self.problems[0]}"
                + (f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""),
                hint="obtain the pack again from its issuer; do not rely on this copy",
            )


def _zip_time(timestamp: str) -> tuple[int, int, int, int, int, int]:
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return _ZIP_EPOCH
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    if moment.year < 1980:
        return _ZIP_EPOCH
    if moment.year > 2107:
        return (2107, 12, 31, 23, 59, 58)
    return (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _bundle_files(bundle_dir: Path) -> Iterator[tuple[str, Path]]:
    if not bundle_dir.is_dir() or not (bundle_dir / "manifest.json").is_file():
        raise InputError(
            f"{bundle_dir} is not a ledger bundle",
            hint="give the directory written by 'flowloom log export'",
        )
    for path in sorted(bundle_dir.rglob("*")):
        if path.is_symlink():
            raise InputError(f"{path} is a symbolic link; a ledger bundle holds plain files")
        if path.is_file():
            rel = path.relative_to(bundle_dir).as_posix()
            yield f"{certificate.BUNDLE_DIR}/{rel}", path


def _readme(assessment: Assessment, names: list[str], *, signed: bool) -> str:
    has_bundle = any(n.startswith(f"{certificate.BUNDLE_DIR}/") for n in names)
    period = assessment.period_label or (
        f"{assessment.period_from} to {assessment.period_to} (end excluded, UTC)"
    )
    lines = [
        f"FlowLoom evidence pack ({PACK_FORMAT})",
        "",
        f"Evidence for: {assessment.framework_title} ({assessment.framework})",
        f"Project:      {assessment.project}",
        f"Period:       {period}",
        f"Generated:    {assessment.generated_at} by FlowLoom {assessment.verifier_version}",
    ]
    if assessment.generated_by:
        lines.append(f"Generated by: {assessment.generated_by}")
    lines += [
        "",
        assessment.statement,
        "",
        "Files",
        "  report.html / report.pdf     the report (the PDF is laid out from the HTML)",
        "                               report.pdf is PDF/A-3b and embeds report.json"
        + (" and the statement over it" if signed else ""),
        "  report.json                  the whole assessment, schema flowloom-assessment/1",
        "  population.csv               the change population, one row per commit",
        "  exceptions.csv               every finding of every check",
        "  audit-trail.csv              audit trail: old -> new, who, when, why",
        "  controls-requirements.csv    controls, their clauses, checks and outcomes",
        "  chain-verification.*         the chain-verification statement (txt, json, html)",
        "  ledger.vkey, checkpoint.txt  the ledger's verifier key and signed checkpoint",
    ]
    if has_bundle:
        lines.append("  ledger-bundle/               the ledger as an offline bundle (tlog-tiles)")
    if INSTANCE_EVENTS in names:
        lines.append("  instance-events.jsonl        the instance log's security events read")
    lines += ["  manifest.json                SHA-256 and size of every file"]
    if signed:
        lines.append(
            f"  {STATEMENT_FILE}          the signed statement over every file (in-toto, DSSE)"
        )
    lines += [
        "  MANIFEST.sha256              the same digests, for sha256sum",
        "",
        "Check the pack",
        "  sha256sum -c MANIFEST.sha256",
    ]
    if signed:
        lines.append("  flowloom report verify THIS-PACK.zip --vkey VKEY")
    if has_bundle:
        lines.append(
            f"  flowloom log verify-bundle {certificate.BUNDLE_DIR} --vkey {certificate.VKEY_FILE}"
        )
    lines += [
        "",
        "Obtain the verifier key from the project itself, not only from this pack,",
        "so that the check does not rest on the pack vouching for itself.",
    ]
    return "\n".join(lines) + "\n"


def _stage(
    assessment: Assessment,
    staging: Path,
    bundle_dir: Path | None,
    extra: Mapping[str, bytes],
    *,
    signed: bool,
    assessment_statement: bytes | None = None,
) -> dict[str, Path]:
    members: dict[str, Path] = {}
    for name, data in extra.items():
        (staging / name).write_bytes(data)
        members[name] = staging / name
    for name, renderer in _MEMBERS:
        if renderer is pdf.render:
            members[name] = pdf.render(assessment, staging / name, statement=assessment_statement)
        else:
            members[name] = renderer(assessment, staging / name)
    ledger = assessment.ledger
    if ledger.vkey:
        (staging / certificate.VKEY_FILE).write_text(ledger.vkey.strip() + "\n", "utf-8")
        members[certificate.VKEY_FILE] = staging / certificate.VKEY_FILE
    if ledger.checkpoint_note:
        (staging / certificate.CHECKPOINT_FILE).write_text(ledger.checkpoint_note, "utf-8")
        members[certificate.CHECKPOINT_FILE] = staging / certificate.CHECKPOINT_FILE
    if bundle_dir is not None:
        members.update(_bundle_files(bundle_dir))
    readme = staging / "README.txt"
    readme.write_text(_readme(assessment, sorted(members), signed=signed), "utf-8")
    members["README.txt"] = readme
    return members


def _manifest(assessment: Assessment, files: dict[str, tuple[str, int]]) -> dict[str, Any]:
    return {
        "format": PACK_FORMAT,
        "framework": assessment.framework,
        "project": assessment.project,
        "period_from": assessment.period_from,
        "period_to": assessment.period_to,
        "generated_at": assessment.generated_at,
        "generator": f"flowloom {flowloom.__version__}",
        "ledger": {
            "origin": assessment.ledger.origin,
            "size": assessment.ledger.size,
            "root": assessment.ledger.root,
        },
        "files": {
            name: {"sha256": digest, "size": size} for name, (digest, size) in sorted(files.items())
        },
    }


def _add(archive: zipfile.ZipFile, name: str, source: Path, when: tuple[int, ...]) -> None:
    info = zipfile.ZipInfo(name, date_time=when)  # type: ignore[arg-type]
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3
    info.external_attr = 0o100644 << 16
    size = source.stat().st_size
    with (
        source.open("rb") as src,
        archive.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as dst,
    ):
        shutil.copyfileobj(src, dst, _CHUNK)


def render(
    assessment: Assessment,
    out: Path,
    *,
    bundle_dir: Path | None = None,
    extra: Mapping[str, bytes] | None = None,
    sign: PackSigner | None = None,
    assessment_statement: bytes | None = None,
) -> Path:
    """Write the evidence pack ZIP to `out`; `bundle_dir` is a `flowloom log export` folder.

    `extra` adds files (name → bytes); `sign` makes the signed statement over every file
    (flowloom.compliance.run passes both: the instance log's events and the log's key);
    `assessment_statement`, the statement over report.json, is embedded in report.pdf.
    """
    if bundle_dir is not None:
        next(_bundle_files(bundle_dir), None)  # refuse a wrong folder before rendering
    with tempfile.TemporaryDirectory(prefix="flowloom-pack-") as tmp:
        staging = Path(tmp)
        members = _stage(
            assessment,
            staging,
            bundle_dir,
            extra or {},
            signed=sign is not None,
            assessment_statement=assessment_statement,
        )
        for name in members:
            if "\n" in name or "\\" in name:
                raise InputError(f"cannot pack a file named {name!r}")
        files = {name: (_sha256(path), path.stat().st_size) for name, path in members.items()}
        manifest = staging / MANIFEST_JSON
        manifest.write_text(
            json.dumps(_manifest(assessment, files), indent=2, ensure_ascii=False) + "\n", "utf-8"
        )
        members[MANIFEST_JSON] = manifest
        files[MANIFEST_JSON] = (_sha256(manifest), manifest.stat().st_size)
        if sign is not None:
            signed = staging / STATEMENT_FILE
            signed.write_bytes(sign(sorted((n, d) for n, (d, _) in files.items())))
            members[STATEMENT_FILE] = signed
            files[STATEMENT_FILE] = (_sha256(signed), signed.stat().st_size)
        sums = staging / MANIFEST_SHA256
        sums.write_text(_sums_text({name: digest for name, (digest, _) in files.items()}), "utf-8")
        members[MANIFEST_SHA256] = sums
        when = _zip_time(assessment.generated_at)
        with atomic_path(out) as temp, zipfile.ZipFile(temp, "w") as archive:
            for name in sorted(members):
                _add(archive, name, members[name], when)
    return out


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return not (path.is_absolute() or ".." in path.parts or "\\" in name or not name.strip("/"))


def _member_sha256(archive: zipfile.ZipFile, name: str) -> str:
    digest = hashlib.sha256()
    with archive.open(name) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sums_text(sums: Mapping[str, str]) -> str:
    """MANIFEST.sha256 in its one canonical form: sorted, two spaces, LF line ends."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items()))


def _parse_sums(text: str, problems: list[str]) -> dict[str, str]:
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE.fullmatch(line)
        if not match:
            problems.append(f"{MANIFEST_SHA256} line {number} is not '<sha256>  <file>'")
            continue
        digest, name = match.groups()
        if name in sums:
            problems.append(f"{MANIFEST_SHA256} lists {name} twice")
        sums[name] = digest
    if not problems and text != _sums_text(sums):
        problems.append(f"{MANIFEST_SHA256} is not in its canonical form (edited)")
    return sums


def _check_manifest_json(
    archive: zipfile.ZipFile, sums: dict[str, str], problems: list[str]
) -> None:
    try:
        manifest = json.loads(archive.read(MANIFEST_JSON).decode("utf-8"))
        files = manifest["files"]
        listed = {name: entry["sha256"] for name, entry in files.items()}
        if manifest.get("format") != PACK_FORMAT:
            problems.append(f"{MANIFEST_JSON} is not a {PACK_FORMAT} manifest")
    except (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError):
        problems.append(f"{MANIFEST_JSON} is missing or unreadable")
        return
    expected = {n: d for n, d in sums.items() if n not in (MANIFEST_JSON, STATEMENT_FILE)}
    for name in sorted(set(listed) | set(expected)):
        if listed.get(name) != expected.get(name):
            problems.append(f"{MANIFEST_JSON} and {MANIFEST_SHA256} disagree about {name}")


def _check_ledger(
    archive: zipfile.ZipFile, names: list[str], vkey: str | None, report: EvidencePackReport
) -> None:
    from flowloom.ledger.bundle import verify_bundle
    from flowloom.ledger.note import Verifier

    prefix = f"{certificate.BUNDLE_DIR}/"
    inside = [n for n in names if n.startswith(prefix) and not n.endswith("/")]
    if not inside:
        return
    if vkey is None:
        try:
            vkey = archive.read(certificate.VKEY_FILE).decode("utf-8").strip()
        except (KeyError, UnicodeDecodeError):
            report.problems.append("the pack has a ledger bundle but no ledger.vkey to check it")
            return
    try:
        verifier = Verifier.from_vkey(vkey.strip())
    except FlowLoomError as exc:
        report.problems.append(f"the verifier key cannot be used: {exc.diagnostics()}")
        return
    with tempfile.TemporaryDirectory(prefix="flowloom-pack-check-") as tmp:
        root = Path(tmp)
        for name in inside:
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(name) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        result = verify_bundle(root / certificate.BUNDLE_DIR, verifier)
    report.ledger_checked = True
    report.problems.extend(f"ledger bundle: {p.line()}" for p in result.problems)


def verify_evidence_pack(
    path: Path, *, vkey: str | None = None, ledger: bool = True
) -> EvidencePackReport:
    """Check every member of a pack against MANIFEST.sha256 and manifest.json.

    Reports a modified, missing or unlisted member, a disagreement between the two
    manifests, and unsafe member names. With `ledger`, the ledger bundle inside is also
    verified offline, against `vkey` when given (recommended: a key obtained from the
    project itself) or else the pack's own ledger.vkey.
    """
    report = EvidencePackReport()
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path} is not a readable ZIP file: {exc}") from exc
    with archive:
        names = archive.namelist()
        for name in names:
            if not _safe_name(name):
                report.problems.append(f"unsafe member name {name!r}")
        if len(set(names)) != len(names):
            report.problems.append("the archive holds two members with the same name")
        try:
            text = archive.read(MANIFEST_SHA256).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            report.problems.append(f"{MANIFEST_SHA256} is missing or unreadable")
            return report
        sums = _parse_sums(text, report.problems)
        present = set(names)
        for name, expected in sorted(sums.items()):
            if name not in present:
                report.problems.append(f"{name} is listed in {MANIFEST_SHA256} but missing")
                continue
            report.files_checked += 1
            if _member_sha256(archive, name) != expected:
                report.problems.append(f"{name} does not match its SHA-256 in {MANIFEST_SHA256}")
        for name in sorted(present - set(sums) - {MANIFEST_SHA256}):
            if not name.endswith("/"):
                report.problems.append(f"{name} is in the archive but not in {MANIFEST_SHA256}")
        _check_manifest_json(archive, sums, report.problems)
        if ledger:
            _check_ledger(archive, names, vkey, report)
    return report
