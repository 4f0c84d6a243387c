"""`flowloom anchor …`: put checkpoints outside the database, and check them later.

Each anchoring command records a `checkpoint.anchor` event only after the outside
party's evidence verified; `--json` prints the record, which can be kept elsewhere
and given back to `anchor verify --record` (a database rollback also removes the
anchor events that came after the backup it was restored from). Every record is also
appended to the anchor journal beside the keys, which `flowloom admin restore` reads.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError, VerificationError

if TYPE_CHECKING:
    from flowloom.compliance.anchors.book import AnchorBook, AnchorCheck, AnchoredEntry
    from flowloom.compliance.anchors.interface import Anchor, AnchorRecord

__all__ = ["anchor"]

_TIMEOUT = click.option(
    "--timeout", default=10.0, show_default=True, help="Seconds to wait for the remote party."
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the anchor record as JSON.")


_ON_SERVER = (
    "FLOWLOOM_HOME=<the server's home> flowloom --database <the server's database> "
    "--project {project} anchor ..."
)


def _local(ctx: click.Context) -> AppContext:
    """The context, once it is clear the anchored log is this one (not a team server's)."""
    app = AppContext.of(ctx)
    app.local_only("anchoring", _ON_SERVER.format(project=app.settings().project))
    return app


def _book(ctx: click.Context) -> AnchorBook:
    from flowloom.compliance.anchors.book import AnchorBook

    return AnchorBook(_local(ctx).services().ledger)


def _report(ctx: click.Context, entry: AnchoredEntry, as_json: bool) -> None:
    from flowloom.compliance.anchors.journal import AnchorJournal

    # Also outside the database: a restore from an older backup must not erase it.
    AnchorJournal.of_home(AppContext.of(ctx).settings().home).append(entry.record)
    if as_json:
        click.echo(json.dumps({"entry": entry.index, **entry.record.to_refs()}, indent=1))
    else:
        click.echo(f"anchored: {entry.record.summary()} (recorded as entry {entry.index})")


@click.group()
def anchor() -> None:
    """Anchor checkpoints outside the database: RFC 3161 TSA, S3 Object Lock, witnesses."""


@anchor.command("tsa")
@click.option("--url", required=True, help="The time-stamping authority's RFC 3161 URL.")
@click.option(
    "--ca",
    "ca_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA certificate the TSA certificate must chain to (repeatable; default: pin it).",
)
@_TIMEOUT
@_JSON
@click.pass_context
def tsa(
    ctx: click.Context, url: str, ca_files: tuple[Path, ...], timeout: float, as_json: bool
) -> None:
    """Time-stamp the latest checkpoint with an RFC 3161 authority."""
    from flowloom.compliance.anchors.tsa import TsaAnchor, load_trust_anchors

    trust = load_trust_anchors(ca_files)
    _report(ctx, _book(ctx).anchor(TsaAnchor(url, trust=trust, timeout=timeout)), as_json)


@anchor.command("s3")
@click.option("--bucket", required=True, help="A bucket created with Object Lock enabled.")
@click.option("--prefix", default="flowloom/", show_default=True, help="Key prefix.")
@click.option("--endpoint-url", help="S3-compatible endpoint (default: AWS).")
@click.option("--region", help="Bucket region (default: from the AWS configuration).")
@click.option(
    "--retain-days",
    type=click.IntRange(min=1),
    default=2557,
    show_default=True,
    help="Days the bundle stays locked in COMPLIANCE mode (no one can delete it sooner).",
)
@click.option("--timeout", default=30.0, show_default=True, help="Seconds per S3 request.")
@_JSON
@click.pass_context
def s3(
    ctx: click.Context,
    bucket: str,
    prefix: str,
    endpoint_url: str | None,
    region: str | None,
    retain_days: int,
    timeout: float,
    as_json: bool,
) -> None:
    """Export a sealed bundle and store it in S3 under a compliance-mode Object Lock."""
    from flowloom.compliance.anchors.s3 import S3Anchor, export_and_anchor, make_client

    client = make_client(endpoint_url=endpoint_url, region=region, timeout=timeout)
    target = S3Anchor(client, bucket=bucket, prefix=prefix, retain_days=retain_days)
    with tempfile.TemporaryDirectory(prefix="flowloom-anchor-") as tmp:
        _report(ctx, export_and_anchor(_book(ctx), target, Path(tmp)), as_json)


def _proofs(ctx: click.Context) -> Any:
    ledger = _local(ctx).services().ledger
    return lambda old, new: ledger.consistency(old, new)[1]


@anchor.command("witness")
@click.option("--url", required=True, help="The witness's submission prefix URL.")
@click.option("--vkey", required=True, help="The witness's cosignature verifier key.")
@_TIMEOUT
@_JSON
@click.pass_context
def witness(ctx: click.Context, url: str, vkey: str, timeout: float, as_json: bool) -> None:
    """Have a C2SP tlog-witness cosign the latest checkpoint."""
    from flowloom.compliance.anchors.witness import CosignatureVerifier, WitnessAnchor

    book = _book(ctx)
    verifier = CosignatureVerifier.from_vkey(vkey)
    last = book.latest("witness", url.rstrip("/"))
    target = WitnessAnchor(
        verifier,
        url=url,
        proofs=_proofs(ctx),
        old_size=last.size if last is not None else 0,
        timeout=timeout,
    )
    _report(ctx, book.anchor(target), as_json)


@anchor.command("list")
@_JSON
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List the anchors recorded in the log."""
    entries = _book(ctx).entries()
    if as_json:
        rows = [{"entry": e.index, **e.record.to_refs()} for e in entries]
        click.echo(json.dumps(rows, indent=1))
        return
    if not entries:
        click.echo("no anchors recorded (see 'flowloom anchor --help')")
    for entry in entries:
        click.echo(f"{entry.index}\t{entry.record.summary()}")


def _read_record(path: Path) -> tuple[str, AnchorRecord]:
    from flowloom.compliance.anchors.interface import AnchorRecord

    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read anchor record {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise InputError(f"{path} is not an anchor record (a JSON object)")
    return str(path), AnchorRecord.from_refs(data)


class _Verifiers:
    """Picks the evidence verifier for each record from the options given."""

    def __init__(
        self,
        *,
        ca_files: tuple[Path, ...],
        witness_vkeys: tuple[str, ...],
        offline: bool,
        endpoint_url: str | None,
        region: str | None,
        timeout: float,
    ) -> None:
        from flowloom.compliance.anchors.tsa import load_trust_anchors
        from flowloom.compliance.anchors.witness import CosignatureVerifier

        self.trust = load_trust_anchors(ca_files)
        self.witnesses = [CosignatureVerifier.from_vkey(v) for v in witness_vkeys]
        self.offline = offline
        self.endpoint_url = endpoint_url
        self.region = region
        self.timeout = timeout
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from flowloom.compliance.anchors.s3 import make_client

            self._client = make_client(
                endpoint_url=self.endpoint_url, region=self.region, timeout=self.timeout
            )
        return self._client

    def __call__(self, record: AnchorRecord) -> Anchor | None:
        if record.type == "tsa":
            from flowloom.compliance.anchors.tsa import TsaAnchor

            return TsaAnchor(trust=self.trust)
        if record.type == "witness":
            from flowloom.compliance.anchors.witness import CosignatureVerifier, WitnessAnchor

            name = str(record.evidence.get("witness", ""))
            trusted = [w for w in self.witnesses if w.name == name]
            if trusted:
                return WitnessAnchor(trusted[0])
            # No key given for this witness: the recorded key checks integrity only.
            return WitnessAnchor(CosignatureVerifier.from_vkey(str(record.evidence.get("vkey"))))
        if record.type == "s3" and not self.offline:
            from flowloom.compliance.anchors.s3 import S3Anchor

            return S3Anchor(self.client(), bucket=str(record.evidence.get("bucket", "")))
        return None


def _print_check(check: AnchorCheck) -> None:
    what = "" if check.evidence_checked else " (log side only)"
    if check.ok:
        click.echo(f"ok    {check.record.summary()} [{check.source}]{what}")
    else:
        click.echo(f"FAIL  {check.record.summary()} [{check.source}]: {check.problem}")


@anchor.command("verify")
@click.option(
    "--record",
    "records",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An anchor record kept outside the database ('--json' output; repeatable).",
)
@click.option(
    "--ca",
    "ca_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA certificate TSA certificates must chain to (default: the recorded one, pinned).",
)
@click.option(
    "--witness-vkey",
    "witness_vkeys",
    multiple=True,
    help="Trusted witness cosignature key (repeatable; default: the recorded key).",
)
@click.option(
    "--witness-url",
    help="Ask this witness (with --witness-vkey) whether the log now fits what it cosigned.",
)
@click.option("--bucket", help="Also check every bundle stored in this S3 bucket.")
@click.option("--prefix", default="flowloom/", show_default=True, help="Key prefix for --bucket.")
@click.option("--endpoint-url", help="S3-compatible endpoint (default: AWS).")
@click.option("--region", help="S3 region.")
@click.option("--offline", is_flag=True, help="Contact nothing; S3 evidence is not checked.")
@_TIMEOUT
@click.pass_context
def verify(
    ctx: click.Context,
    records: tuple[Path, ...],
    ca_files: tuple[Path, ...],
    witness_vkeys: tuple[str, ...],
    witness_url: str | None,
    bucket: str | None,
    prefix: str,
    endpoint_url: str | None,
    region: str | None,
    offline: bool,
    timeout: float,
) -> None:
    """Check every anchor: its evidence, and that the log still extends it (rollback)."""
    if offline and (witness_url or bucket):
        raise InputError("--offline cannot be combined with --witness-url or --bucket")
    if witness_url and len(witness_vkeys) != 1:
        raise InputError("--witness-url needs exactly one --witness-vkey")
    book = _book(ctx)
    pick = _Verifiers(
        ca_files=ca_files,
        witness_vkeys=witness_vkeys,
        offline=offline,
        endpoint_url=endpoint_url,
        region=region,
        timeout=timeout,
    )
    extra = [_read_record(path) for path in records]
    if bucket:
        from flowloom.compliance.anchors.s3 import S3Anchor

        scanner = S3Anchor(pick.client(), bucket=bucket, prefix=prefix)
        extra.extend((f"s3 bucket {bucket}", r) for r in scanner.scan())
    checks = book.check_all(pick, extra=extra)
    for check in checks:
        _print_check(check)
    failures = sum(1 for c in checks if not c.ok)
    if witness_url:
        failures += _probe_witness(ctx, book, witness_url, pick.witnesses[0], timeout)
    if not checks and not witness_url:
        click.echo("no anchors to check (see 'flowloom anchor --help')")
    if failures:
        raise VerificationError(
            f"{failures} anchor check(s) failed",
            hint="the lines marked FAIL say which anchor and why",
        )


def _probe_witness(ctx: click.Context, book: Any, url: str, verifier: Any, timeout: float) -> int:
    from flowloom.compliance.anchors.interface import checkpoint_text, parse_checkpoint
    from flowloom.compliance.anchors.witness import WitnessAnchor, WitnessConflictError

    note = book.ledger.checkpoint_at(None).note
    probe = WitnessAnchor(verifier, url=url, proofs=_proofs(ctx), timeout=timeout)
    size = parse_checkpoint(note).size
    try:
        lines = probe.probe(note)
        probe.witness.find(lines, checkpoint_text(note))
    except WitnessConflictError as exc:
        click.echo(f"FAIL  witness {url}: {exc.diagnostics()}")
        return 1
    click.echo(f"ok    witness {url}: the log at size {size} fits what it cosigned")
    return 0
