"""`flowloom gateway keys …` / `providers …` against a real database and ledger."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from flowloom.cli.context import AppContext
from flowloom.cli.gateway_keys import keys, providers
from flowloom.gateway.access import Access, Usage
from flowloom.gateway.access.service import AccessSettings
from flowloom.ledger.keys import KeyStore


@click.group()
@click.option("--database")
@click.pass_context
def root(ctx: click.Context, database: str | None) -> None:
    """Stands in for `flowloom gateway` (the core helper's group)."""
    app = AppContext(database=database, project=None)
    ctx.obj = app
    ctx.call_on_close(app.close)


root.add_command(keys)
root.add_command(providers)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[CliRunner, str, Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("FLOWLOOM_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return CliRunner(), str(tmp_path / "ledger.db"), home


def test_keys_create_list_usage_revoke(env: tuple[CliRunner, str, Path]) -> None:
    runner, db, home = env
    result = runner.invoke(
        root,
        ["--database", db, "keys", "create", "--owner-user", "alice", "--project", "acme",
         "--models", "claude-*,gpt-4o", "--rpm", "60", "--tpm", "100000",
         "--budget-usd", "50", "--period", "month", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    secret = created["key"]
    assert secret.startswith("flv_") and created["models"] == ["claude-*", "gpt-4o"]
    assert created["budget_usd"] == 50.0 and created["rpm"] == 60

    plain = runner.invoke(root, ["--database", db, "keys", "create", "--project", "acme"])
    assert plain.exit_code == 0 and plain.stdout.strip().startswith("flv_")

    listed = runner.invoke(root, ["--database", db, "keys", "list"])
    assert listed.exit_code == 0 and created["id"] in listed.stdout
    assert secret not in listed.output and "budget=$50/month" in listed.stdout

    with Access(
        db,
        master_key_loader=KeyStore(home).master_key,
        settings=AccessSettings(background=False),
    ) as access:
        vkey = access.authenticate(secret)
        adm = access.admit(vkey, model="claude-haiku-4-5", est_tokens=10)
        access.settle(adm, provider="anthropic", model="claude-haiku-4-5", usage=Usage(1000, 100))

    usage = runner.invoke(root, ["--database", db, "keys", "usage", "--by", "model", "--json"])
    assert usage.exit_code == 0, usage.output
    rows = json.loads(usage.stdout)
    assert rows == [
        {
            "model": "claude-haiku-4-5",
            "requests": 1,
            "input_tokens": 1000,
            "output_tokens": 100,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "cost_usd": pytest.approx(0.0015),
        }
    ]
    for by in ("key", "day"):
        table = runner.invoke(root, ["--database", db, "keys", "usage", "--by", by])
        assert table.exit_code == 0 and "requests" in table.stdout

    budget = runner.invoke(
        root, ["--database", db, "keys", "budget", created["prefix"], "--budget-usd", "10"]
    )
    assert budget.exit_code == 0 and "$10/month" in budget.stdout
    revoked = runner.invoke(root, ["--database", db, "keys", "revoke", created["id"]])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    after = runner.invoke(root, ["--database", db, "keys", "list", "--json"])
    assert created["id"] not in after.stdout

    # the audit events reached the project's ledger, without the secret
    from flowloom.store.sqlite import SQLiteStore

    store = SQLiteStore(Path(db))
    try:
        kinds = []
        for log in ("acme",):
            size = store.size(log)
            for index in range(size):
                envelope = store.entry(log, index)
                assert secret not in repr(envelope)
                kinds.append(repr(envelope))
        joined = "\n".join(kinds)
        assert "auth.vkey_created" in joined and "auth.vkey_revoked" in joined
        assert "config.change" in joined
    finally:
        store.close()


def test_providers_set_key_from_stdin_and_list(env: tuple[CliRunner, str, Path]) -> None:
    runner, db, home = env
    secret = "sk-proj-UPSTREAM-SECRET-abcdef0123456789"
    result = runner.invoke(
        root, ["--database", db, "providers", "set-key", "openai"], input=secret + "\n"
    )
    assert result.exit_code == 0, result.output
    assert secret not in result.output
    listed = runner.invoke(root, ["--database", db, "providers", "list"])
    assert listed.exit_code == 0 and listed.stdout.startswith("openai\t")
    assert secret not in listed.output
    assert secret.encode() not in Path(db).read_bytes()
    with Access(
        db, master_key_loader=KeyStore(home).master_key, settings=AccessSettings(background=False)
    ) as access:
        assert access.provider_key("openai") == secret
    empty = runner.invoke(root, ["--database", db, "providers", "set-key", "x"], input="\n")
    assert empty.exit_code != 0
    gone = runner.invoke(root, ["--database", db, "providers", "delete", "openai"])
    assert gone.exit_code == 0


def test_bad_input_is_a_clear_error(env: tuple[CliRunner, str, Path]) -> None:
    runner, db, _ = env
    result = runner.invoke(root, ["--database", db, "keys", "create", "--rpm", "5"])
    assert result.exit_code != 0
    assert "owner" in str(result.exception)
