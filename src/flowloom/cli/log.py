"""`flowloom log …`: append to, read, prove, verify and export the ledger."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import FlowLoomError, InputError
from flowloom.ledger.attest import refuse_generic
from flowloom.ledger.canonical import parse_json
from flowloom.ledger.keyring import key_name
from flowloom.ledger.log import consistency_text
from flowloom.ledger.verify import VerifyReport, verify_store
from flowloom.store.interface import StoredBody

if TYPE_CHECKING:
    from flowloom.ledger.note import Verifier
    from flowloom.services import Services

__all__ = ["log"]


def _read_bytes(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {source}: {exc.strerror}") from exc


def _read_text(source: str, what: str) -> str:
    data = _read_bytes(source)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {source} is not valid UTF-8 (byte {exc.start})") from exc


def _parse_meta(meta: str | None) -> dict[str, Any] | None:
    if meta is None:
        return None
    raw = _read_bytes(meta[1:]) if meta.startswith("@") else meta.encode("utf-8", "surrogateescape")
    value = parse_json(raw, what="--meta")
    if not isinstance(value, dict):
        raise InputError("--meta must be a JSON object")
    return value


@click.group()
def log() -> None:
    """The append-only, verifiable ledger."""


@log.command()
@click.option("--kind", required=True, help="Event kind from the catalogue (docs/events.md).")
@click.option("--body-file", metavar="FILE|-", help="Body to store beside the event ('-': stdin).")
@click.option(
    "--meta", metavar="JSON|@FILE", help="Envelope fields: actor, session, git, subject, refs."
)
@click.option("--data-subject", help="Encrypt the body under this data subject's key (erasable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def append(
    ctx: click.Context,
    kind: str,
    body_file: str | None,
    meta: str | None,
    data_subject: str | None,
    as_json: bool,
) -> None:
    """Append one event; prints its index and leaf hash once it is durable."""
    refuse_generic(kind)
    meta_value = _parse_meta(meta)
    body = _read_bytes(body_file) if body_file is not None else None
    ledger = AppContext.of(ctx).services().ledger
    ack = ledger.record(kind, body=body, meta=meta_value, data_subject=data_subject)
    if as_json:
        click.echo(json.dumps({"index": ack.index, "leaf_hash": ack.leaf_hash.hex()}))
    else:
        click.echo(f"{ack.index} {ack.leaf_hash.hex()}")


@log.command()
@click.option("--from", "start", type=click.IntRange(min=0), default=0, help="First index.")
@click.option("--kind", help="Only events of this kind.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def show(
    ctx: click.Context, start: int, kind: str | None, limit: int | None, as_json: bool
) -> None:
    """List events."""
    ledger = AppContext.of(ctx).services("read").ledger
    shown = 0
    for entry in ledger.store.entries(ledger.log, start=start, kind=kind):
        if limit is not None and shown >= limit:
            break
        shown += 1
        event = json.loads(entry.envelope)
        if as_json:
            click.echo(json.dumps({"index": entry.index, "event": event}, ensure_ascii=False))
            continue
        actor = event.get("actor", {})
        who = actor.get("name") or actor.get("id", "?")
        subject = f"  {event['subject']}" if event.get("subject") else ""
        body = "  [body]" if event.get("body") else ""
        click.echo(
            f"{entry.index:>6}  {event.get('ts', '?')}  {entry.kind:<18} {who}{subject}{body}"
        )


@log.command()
@click.argument("digest")
@click.pass_context
def body(ctx: click.Context, digest: str) -> None:
    """Print the body stored under DIGEST (sha256:…)."""
    ledger = AppContext.of(ctx).services("read").ledger
    content = ledger.read_body(digest)
    if content is None:
        raise InputError(f"no body {digest}: never stored, or erased")
    sys.stdout.buffer.write(content)


@log.command()
@click.pass_context
def checkpoint(ctx: click.Context) -> None:
    """Sign a checkpoint over everything durable and print it."""
    click.echo(AppContext.of(ctx).services().ledger.checkpoint().note, nl=False)


@log.command()
@click.pass_context
def vkey(ctx: click.Context) -> None:
    """Print the verifier key (public) of this log: the key its own history names."""
    click.echo(AppContext.of(ctx).services("read").ledger.verifier.vkey)


@log.command("restore-key")
@click.option(
    "--from-env",
    "variable",
    default="FLOWLOOM_LOG_KEY",
    show_default=True,
    metavar="NAME",
    help="The environment variable holding the key (a CI secret).",
)
@click.option(
    "--vkey",
    "vkey_text",
    envvar="FLOWLOOM_VKEY",
    help="The log's verifier key: the restored key must be its private half.",
)
@click.pass_context
def restore_key(ctx: click.Context, variable: str, vkey_text: str | None) -> None:
    """Put the log's signing key from a CI secret into FLOWLOOM_HOME (keys/, mode 0600).

    CI records its verdicts and test results attested by the log's key (docs/ci.md); the
    job restores that key from a secret first. Checked against FLOWLOOM_VKEY when given,
    so a wrong or stale secret fails here, not at the first attestation. Never printed.
    """
    import os

    from flowloom.ledger.keys import KeyStore
    from flowloom.ledger.note import Signer

    text = os.environ.get(variable, "").strip()
    if not text:
        raise InputError(
            f"{variable} is empty: no log key to restore",
            hint="store the key file's content (FLOWLOOM_HOME/keys/<log>.skey) as a CI secret",
        )
    try:
        signer = Signer.from_skey(text)
    except (FlowLoomError, ValueError):
        raise InputError(f"{variable} does not hold a FlowLoom log signing key") from None
    if vkey_text and signer.verifier().vkey != vkey_text.strip():
        raise InputError(
            f"the key in {variable} is not the private half of FLOWLOOM_VKEY "
            f"({vkey_text.strip().split('+')[0]})",
            hint="update the secret from the key that signs this log ('flowloom log vkey')",
        )
    keys = KeyStore(AppContext.of(ctx).settings().home)
    keys.archive(signer)
    keys.activate(signer)
    click.echo(f"restored the signing key of {signer.name} ({signer.verifier().vkey})")


@log.command()
@click.argument("index", type=click.IntRange(min=0))
@click.option(
    "--size", type=click.IntRange(min=1), help="Prove against the checkpoint at this size."
)
@click.pass_context
def prove(ctx: click.Context, index: int, size: int | None) -> None:
    """Print a C2SP tlog-proof receipt for entry INDEX.

    Signs a checkpoint first when the log grew and its key is here; without the key a
    stored checkpoint covering INDEX is used, or the error names the key needed.
    """
    receipt = AppContext.of(ctx).services("sign").ledger.prove(index, size)
    click.echo(receipt.text(), nl=False)


@log.command()
@click.argument("old", type=click.IntRange(min=0))
@click.argument("new", type=click.IntRange(min=1), required=False)
@click.pass_context
def consistency(ctx: click.Context, old: int, new: int | None) -> None:
    """Print a proof that the log at size OLD is a prefix of the checkpoint at NEW."""
    target, proof = AppContext.of(ctx).services("sign").ledger.consistency(old, new)
    click.echo(consistency_text(old, proof, target.note), nl=False)


def _print_report(report: VerifyReport, what: str, limit: int = 200) -> int:
    for problem in report.problems[:limit]:
        click.echo(problem.line())
    if len(report.problems) > limit:
        click.echo(f"... and {len(report.problems) - limit} more problems")
    if report.bodies_unchecked:
        click.echo(
            f"note: {report.bodies_unchecked} encrypted bodies not checked: the master key "
            "is not in this FLOWLOOM_HOME"
        )
    if report.ok:
        size = report.checkpoint.size if report.checkpoint else 0
        key = f", key {key_name(report.key)}" if report.key is not None else ""
        click.echo(
            f"ok: {what} verifies: {report.size} entries, {report.checkpoints_checked} "
            f"checkpoints (latest at {size}), {report.bodies_checked} bodies{key}"
        )
        return 0
    click.echo(f"FAILED: {what} does not verify: {len(report.problems)} problems", err=True)
    return 1


def _progress(enabled: bool) -> Any:
    if not enabled:
        return None

    def report(done: int, total: int) -> None:
        click.echo(f"\rverified {done}/{total} entries", nl=done >= total, err=True)

    return report


@log.command()
@click.option(
    "--against",
    "against",
    type=click.Path(dir_okay=False),
    help="A checkpoint kept elsewhere: detects rollback and forks.",
)
@click.option("--no-bodies", is_flag=True, help="Skip checking stored bodies.")
@click.option(
    "--remote",
    metavar="NAME",
    help="Verify the copy published on git remote NAME (refs/flowloom/log) instead.",
)
@click.option(
    "--vkey",
    "vkey_text",
    metavar="VKEY|FILE",
    help="A verifier key you trust (or a file holding it); it must be one of the log's keys.",
)
@click.pass_context
def verify(
    ctx: click.Context,
    against: str | None,
    no_bodies: bool,
    remote: str | None,
    vkey_text: str | None,
) -> None:
    """Verify the whole log; exit 1 and name every bad entry when it does not.

    Checkpoints are checked against the keys the log itself pins and rotates to, so no
    key file is needed; nothing is written and no key is created.
    """
    services = AppContext.of(ctx).services("read")
    if remote is not None:
        if against is not None:
            raise InputError("use --remote or --against, not both")
        ctx.exit(_verify_remote(services, remote))
    ledger = services.ledger
    note = _read_text(against, "checkpoint file") if against else None
    trusted = _trusted_key(vkey_text) if vkey_text is not None else None
    if trusted is None and ledger.keyring is not None and not ledger.keyring.history().all:
        trusted = ledger.current_verifier()  # a log from before keys were pinned

    def decrypt(stored: StoredBody) -> bytes | None:
        return ledger.read_body(stored.digest)

    report = verify_store(
        ledger.store,
        ledger.log,
        trusted,
        against=note,
        decrypt=decrypt,
        check_bodies=not no_bodies,
        progress=_progress(sys.stderr.isatty()),
    )
    _remember(services.settings.last_verification_file, report)
    ctx.exit(_print_report(report, "the log"))


def _trusted_key(text: str) -> Verifier:
    """A verifier key given on the command line, or read from the file it names."""
    from flowloom.ledger.note import Verifier

    if Path(text).is_file():
        text = _read_text(text, "verifier key file").strip()
    return Verifier.from_vkey(text)


@log.command("rotate-key")
@click.option("--reason", required=True, help="Why the key is replaced (recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rotate_key(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Replace the log's signing key; the old key attests the change (key.rotated).

    The old key file is kept under its key id, so what it signed still verifies.
    """
    rotation = AppContext.of(ctx).services().ledger.rotate_key(reason=reason)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "old_vkey": rotation.old.vkey,
                    "new_vkey": rotation.new.vkey,
                    "index": rotation.index,
                    "checkpoint": rotation.checkpoint.size,
                }
            )
        )
        return
    click.echo(
        f"rotated: {key_name(rotation.old)} -> {key_name(rotation.new)} (entry "
        f"{rotation.index}; checkpoint {rotation.checkpoint.size} signed by the new key)"
    )
    click.echo(rotation.new.vkey)


def _remember(path: Path, report: VerifyReport) -> None:
    """Leave the outcome for `flowloom status`; failing to write it is not an error."""
    from datetime import UTC, datetime

    outcome = {
        "ts": datetime.now(UTC).isoformat(timespec="seconds"),
        "ok": report.ok,
        "size": report.size,
        "problems": len(report.problems),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(outcome) + "\n")
        tmp.replace(path)
    except OSError:
        pass


def _verify_remote(services: Services, remote: str) -> int:
    """`log verify --remote`: the published copy verifies and agrees with the local log."""
    from flowloom.config import find_git_dirs
    from flowloom.repo.replicate import LOG_REF, verify_remote

    git = find_git_dirs(Path.cwd())
    if git is None:
        raise InputError("--remote needs a git repository; run it inside one")
    report = verify_remote(git[0], services.ledger, remote)
    problems = report.all_problems()
    for problem in problems[:200]:
        click.echo(problem.line())
    where = f"{remote}'s {LOG_REF} ({report.commit[:12]})"
    if report.ok:
        click.echo(
            f"ok: {where} verifies: {report.remote_size} entries, consistent with the local "
            f"log ({report.local_size} entries)"
        )
        return 0
    click.echo(f"FAILED: {where} does not verify: {len(problems)} problems", err=True)
    return 1


@log.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.pass_context
def export(ctx: click.Context, directory: str) -> None:
    """Export a bundle (C2SP tlog-tiles layout, bodies, manifest) to DIRECTORY."""
    from flowloom.ledger.bundle import export_bundle

    ledger = AppContext.of(ctx).services().ledger
    manifest = export_bundle(ledger, Path(directory))
    click.echo(
        f"exported {manifest['size']} entries, {len(manifest['files'])} files to {directory}"
    )


@log.command("verify-bundle")
@click.argument("directory", type=click.Path(file_okay=False, exists=True))
@click.option("--vkey", "vkey_text", required=True, help="Verifier key, or a file holding it.")
@click.pass_context
def verify_bundle_cmd(ctx: click.Context, directory: str, vkey_text: str) -> None:
    """Verify an exported bundle with nothing but the bundle and the verifier key."""
    from flowloom.ledger.bundle import verify_bundle

    report = verify_bundle(Path(directory), _trusted_key(vkey_text))
    ctx.exit(_print_report(report, "the bundle"))


@log.command()
@click.argument("data_subject")
@click.option("--reason", required=True, help="Why (recorded in the tombstone).")
@click.pass_context
def erase(ctx: click.Context, data_subject: str, reason: str) -> None:
    """Erase a data subject's bodies (GDPR Art. 17); the log still verifies."""
    ack = AppContext.of(ctx).services().ledger.erase(data_subject, reason=reason)
    click.echo(f"erased; tombstone at {ack.index}")
