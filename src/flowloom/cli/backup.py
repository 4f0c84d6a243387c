"""`flowloom admin backup` and `flowloom admin restore`: disaster recovery for the database.

A backup holds the database only; keys are backed up on their own (docs/operations.md).
A restore refuses a backup older than a checkpoint anchored or witnessed outside the
database; `--force` overrides only with `--reason`, recorded as `database.restore`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError

if TYPE_CHECKING:
    from flowloom.compliance.anchors.interface import AnchorRecord

__all__ = ["backup", "restore"]


def _database(ctx: click.Context) -> str:
    """`admin --database`, else the settings' database."""
    parent = ctx.parent.obj if ctx.parent is not None else None
    url = getattr(parent, "database", None)
    return str(url or AppContext.of(ctx).settings().database)


def _progress(line: str) -> None:
    click.echo(f"flowloom: {line}", err=True)


@click.command("backup")
@click.argument("dest", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
@click.pass_context
def backup(ctx: click.Context, dest: Path, as_json: bool) -> None:
    """Copy the database, online and consistent, into the new directory DEST (no keys)."""
    from flowloom.ops.backup import make_backup

    manifest = make_backup(_database(ctx), dest, _progress)
    if as_json:
        click.echo(json.dumps(manifest.to_json(), indent=1, sort_keys=True))
        return
    for name, state in sorted(manifest.logs.items()):
        click.echo(f"{name}\t{state.size} entries")
    click.echo(f"backed up to {dest} ({manifest.engine}, sha256 {manifest.data_sha256[:16]})")


def _records(paths: tuple[Path, ...]) -> list[tuple[str, AnchorRecord]]:
    from flowloom.compliance.anchors.interface import AnchorRecord

    found: list[tuple[str, AnchorRecord]] = []
    for path in paths:
        try:
            data: Any = json.loads(path.read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(f"cannot read anchor record {path}: {exc}") from exc
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict):
                raise InputError(f"{path} is not an anchor record (a JSON object or a list)")
            found.append((str(path), AnchorRecord.from_refs(item)))
    return found


@click.command("restore")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--record",
    "records",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Anchor records kept elsewhere ('anchor ... --json' or 'anchor list --json').",
)
@click.option(
    "--witness-url",
    "witness_urls",
    multiple=True,
    help="Also ask this witness whether the backup rolls back what it cosigned (repeatable).",
)
@click.option(
    "--witness-vkey",
    "witness_vkeys",
    multiple=True,
    help="The cosignature key of each --witness-url, in the same order.",
)
@click.option("--timeout", default=10.0, show_default=True, help="Seconds to wait for a witness.")
@click.option("--force", is_flag=True, help="Restore even a backup that rolls the log back.")
@click.option("--reason", help="Why a forced restore is right (required with --force; recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@click.pass_context
def restore(
    ctx: click.Context,
    source: Path,
    records: tuple[Path, ...],
    witness_urls: tuple[str, ...],
    witness_vkeys: tuple[str, ...],
    timeout: float,
    force: bool,
    reason: str | None,
    as_json: bool,
) -> None:
    """Restore the backup SOURCE over the database; refuses a rollback of anchored logs."""
    from flowloom.compliance.anchors.journal import AnchorJournal
    from flowloom.errors import VerificationError
    from flowloom.ops.restore import live_anchors
    from flowloom.ops.restore import restore as run_restore
    from flowloom.services import AuditLedgers

    if force and not (reason and reason.strip()):
        raise InputError("--force needs --reason: say why this rollback is right (it is recorded)")
    if reason and not force:
        raise InputError("--reason goes with --force")
    if len(witness_urls) != len(witness_vkeys):
        raise InputError("give one --witness-vkey for each --witness-url")
    url = _database(ctx)
    settings = AppContext.of(ctx).settings().with_overrides(database=url)
    journal = AnchorJournal.of_home(settings.home)
    known = [(f"anchor journal {journal.path}", r) for r in journal.records()]
    known += _records(records)
    try:
        known += live_anchors(url)
    except Exception as exc:  # the database being replaced may be the broken thing
        _progress(f"warning: cannot read anchors from the current database: {exc}")
    outcome = run_restore(
        url,
        source,
        known,
        force=force,
        progress=_progress,
        witnesses=list(zip(witness_urls, witness_vkeys, strict=True)),
        timeout=timeout,
    )
    refs: dict[str, Any] = {
        "backup": {
            "created_at": outcome.manifest.created_at,
            "sha256": outcome.manifest.data_sha256,
            "engine": outcome.manifest.engine,
            "version": outcome.manifest.version,
        },
        "sizes": outcome.sizes,
        "forced": bool(outcome.overridden),
    }
    if outcome.overridden:
        refs["reason"] = (reason or "").strip()
        refs["overridden"] = [c.to_json() for c in outcome.overridden]
    audit = AuditLedgers(settings)
    try:
        audit(
            "database.restore",
            None,
            {"subject": f"backup {outcome.manifest.created_at}", "refs": refs},
        )
    finally:
        audit.close()
    if as_json:
        click.echo(json.dumps({**refs, "problems": outcome.problems}, indent=1, sort_keys=True))
    else:
        for conflict in outcome.overridden:
            click.echo(f"FORCED  {conflict.line()}", err=True)
        for name, size in sorted(outcome.sizes.items()):
            click.echo(f"{name}\t{size} entries")
        click.echo(f"restored {source} (backup of {outcome.manifest.created_at})")
    if outcome.problems:
        for problem in outcome.problems:
            click.echo(f"FAIL  {problem}", err=True)
        raise VerificationError(
            f"the restored database does not verify: {len(outcome.problems)} problem(s)",
            hint="the lines marked FAIL say which; restore another backup",
        )
    if not as_json:
        click.echo("verified: every log's tree and signed checkpoints check out")
