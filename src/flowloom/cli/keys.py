"""`flowloom keys`: where the signing and master keys are held, and their rotation.

Rotating the checkpoint key is `Ledger.rotate_key` (as `flowloom log rotate-key`), with
the provider recorded. Rotating the master key makes a new key active at once, re-wraps
every stored data key under it (subject keys, the gateway's provider keys) and records
``key.rotated`` (purpose "master key") in the instance log, attested by its key.
"""

from __future__ import annotations

import json
from typing import Any

import click

from flowloom.cli.context import AppContext
from flowloom.errors import InputError, KeyMissingError

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Where keys are held (files, PKCS#11 token, AWS KMS) and their rotation."""


def _providers(ctx: click.Context) -> Any:
    from flowloom.ledger.providers import open_key_providers

    settings = AppContext.of(ctx).settings()
    return open_key_providers(settings.home, settings.keys)


@keys.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Say which provider holds each key, and the keys in use. Writes nothing."""
    from flowloom.ledger.keyring import key_name

    services = AppContext.of(ctx).services("read")
    master = services.master
    assert master is not None
    verifier = services.ledger.current_verifier()
    signer_here = None
    if verifier is not None:
        signer_here = services.keys.find(verifier) is not None
    try:
        master_ref: str | None = master.active(create=False).ref
    except KeyMissingError:  # no master key yet is a state to report, not an error here
        master_ref = None
    out = {
        "signing": {
            "provider": services.keys.provider,
            "location": services.keys.location,
            "log_key": verifier.vkey if verifier is not None else None,
            "held_here": signer_here,
        },
        "master": {"provider": master.provider, "location": master.location, "key": master_ref},
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    held = {True: "held here", False: "NOT held here", None: "no key yet"}[signer_here]
    name = key_name(verifier) if verifier is not None else "-"
    click.echo(f"signing keys: {services.keys.provider} ({services.keys.location})")
    click.echo(f"  log key: {name} ({held})")
    click.echo(f"master key: {master.provider} ({master.location})")
    click.echo(f"  in use: {master_ref or 'none yet'}")


@keys.group()
def rotate() -> None:
    """Replace the checkpoint signing key or the master key (recorded in the ledger)."""


@rotate.command("checkpoint")
@click.option("--reason", required=True, help="Why the key is replaced (recorded).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rotate_checkpoint(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Replace the log's signing key; the old key attests the change (key.rotated)."""
    from flowloom.ledger.keyring import key_name

    services = AppContext.of(ctx).services()
    rotation = services.ledger.rotate_key(reason=reason)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "provider": services.keys.provider,
                    "old_vkey": rotation.old.vkey,
                    "new_vkey": rotation.new.vkey,
                    "index": rotation.index,
                    "checkpoint": rotation.checkpoint.size,
                }
            )
        )
        return
    click.echo(
        f"rotated: {key_name(rotation.old)} -> {key_name(rotation.new)} in "
        f"{services.keys.location} (entry {rotation.index}; checkpoint "
        f"{rotation.checkpoint.size} signed by the new key)"
    )
    click.echo(rotation.new.vkey)


@rotate.command("master")
@click.option("--reason", required=True, help="Why the key is replaced (recorded).")
@click.option(
    "--to",
    "to",
    metavar="KEY",
    help="AWS KMS only: an existing key (id, ARN or alias) to move to, instead of a new one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rotate_master(ctx: click.Context, reason: str, to: str | None, as_json: bool) -> None:
    """Make a new master key active and re-wrap every stored data key under it."""
    from flowloom.ledger.providers import MASTER_PURPOSE
    from flowloom.services import AuditLedgers

    if not reason.strip():
        raise InputError("a key rotation needs a reason")
    app = AppContext.of(ctx)
    settings = app.settings()
    audit = AuditLedgers(settings)
    try:
        audit.require_key()  # the record needs the instance log's key: fail before rotating
        providers = _providers(ctx)
        old, new = providers.master.rotate(to)
        done = _rewrap(ctx, providers)
        audit(
            "key.rotated",
            None,
            {
                "subject": "master key",
                "refs": {
                    "purpose": MASTER_PURPOSE,
                    "provider": providers.master.provider,
                    "old_key": old.ref if old is not None else None,
                    "new_key": new.ref,
                    "reason": reason.strip(),
                    "rewrapped": done,
                },
            },
        )
    finally:
        audit.close()
    out = {
        "provider": providers.master.provider,
        "old_key": old.ref if old is not None else None,
        "new_key": new.ref,
        **done,
    }
    if as_json:
        click.echo(json.dumps(out))
        return
    click.echo(
        f"rotated the master key: {out['old_key'] or '(none)'} -> {new.ref}; re-wrapped "
        f"{done['subject_keys']} subject keys and {done['provider_keys']} provider keys"
    )


@keys.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rewrap(ctx: click.Context, as_json: bool) -> None:
    """Re-wrap data keys still under an older master key (after an interrupted rotation)."""
    done = _rewrap(ctx, _providers(ctx))
    if as_json:
        click.echo(json.dumps(done))
        return
    click.echo(
        f"re-wrapped {done['subject_keys']} subject keys and {done['provider_keys']} provider keys"
    )


def _rewrap(ctx: click.Context, providers: Any) -> dict[str, int]:
    from flowloom.gateway.access import Access
    from flowloom.gateway.access.service import AccessSettings
    from flowloom.ledger.providers import rewrap_subject_keys
    from flowloom.services import open_store

    settings = AppContext.of(ctx).settings()
    envelope = providers.envelope(create=False)
    store = open_store(settings.database)
    try:
        subjects = rewrap_subject_keys(store, envelope)
    finally:
        store.close()
    access = Access(
        settings.database,
        master_key_loader=lambda: envelope,
        settings=AccessSettings(background=False),
    )
    try:
        provider_keys = access.rewrap_provider_keys()
    finally:
        access.close()
    return {
        "subject_keys": subjects.moved,
        "subject_keys_current": subjects.current,
        "subject_keys_skipped": subjects.skipped,
        "provider_keys": provider_keys,
    }
