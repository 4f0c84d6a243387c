"""The server's read-only view of the LLM gateway: [server.gateway] settings, lazy opening
over the server's own database, and the budgets it reads (Access.budgets) — with the
same periods the gateway's admission uses — against a real SQLite database shared with
a gateway's Access, as two processes would share it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from flowloom.errors import ConfigError
from flowloom.gateway.access.errors import BudgetExceededError
from flowloom.gateway.access.records import Usage
from flowloom.gateway.access.service import Access, AccessSettings
from flowloom.server.build import build_server
from flowloom.server.gateway_view import GatewayView, shown_url
from flowloom.server.settings import GatewaySettings, ServerSettings, load_server_settings
from tests.server.support import ROOT, free_port, serve_process, stop, wait_ready

# 2025-01-31 23:00 UTC: an hour before both a new day and a new month.
START = datetime(2025, 1, 31, 23, 0, tzinfo=UTC).timestamp()
PRICES = {"testco": {"dollar": {"input": 1_000_000.0, "output": 1_000_000.0}}}
MASTER = bytes(range(32))


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(tmp_path: Path, clock: Clock) -> Iterator[Access]:
    """A gateway process's Access on the database the view reads."""
    access = Access(
        str(tmp_path / "shared.db"),
        master_key_loader=lambda: MASTER,
        clock=clock,
        prices=PRICES,
        settings=AccessSettings(background=False),
    )
    yield access
    access.close()


@pytest.fixture
def view(tmp_path: Path, gateway: Access, clock: Clock) -> Iterator[GatewayView]:
    opened = GatewayView(
        str(tmp_path / "shared.db"), config=None, master_key_loader=lambda: MASTER, clock=clock
    )
    yield opened
    opened.close()


def _spend(access: Access, key_id: str, dollars: int) -> None:
    key = access.get_key(key_id)
    admitted = access.admit(key, model="dollar", est_tokens=0)
    access.settle(admitted, provider="testco", model="dollar", usage=Usage(dollars, 0))


# -- settings ----------------------------------------------------------------------------


def test_server_gateway_settings_from_the_config_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "config" / "flowloom" / "config.toml"
    config.parent.mkdir(parents=True)
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    config.write_text("[server]\nport = 9000\n")
    assert load_server_settings(tmp_path, env).gateway == GatewaySettings()
    config.write_text(
        '[server]\n[server.gateway]\nconfig = "gw/routing.toml"\n'
        'database = "postgresql://gw@db.example/gateway"\n'
    )
    settings = load_server_settings(tmp_path, env)
    assert settings.gateway.config == Path("gw/routing.toml")
    assert settings.gateway.database == "postgresql://gw@db.example/gateway"
    overridden = load_server_settings(
        tmp_path,
        {
            **env,
            "FLOWLOOM_SERVER_GATEWAY_CONFIG": "other.toml",
            "FLOWLOOM_SERVER_GATEWAY_DATABASE": "gateway.db",
        },
    )
    assert overridden.gateway == GatewaySettings(database="gateway.db", config=Path("other.toml"))
    for bad in ('[server.gateway]\nrouting = "x.toml"\n', "[server.gateway]\nconfig = 3\n"):
        config.write_text("[server]\n" + bad)
        with pytest.raises(ConfigError, match=r"\[server.gateway\]"):
            load_server_settings(tmp_path, env)


def test_the_view_opens_nothing_until_used_and_shares_the_server_database(
    tmp_path: Path,
) -> None:
    database = tmp_path / "server.db"
    settings = ServerSettings(database=str(database), home=tmp_path / "home")
    server = build_server(settings)
    try:
        assert server.gateway is not None and server.gateway.config_path is None

        def tables() -> set[str]:
            with sqlite3.connect(database) as conn:
                rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                return {row[0] for row in rows}

        assert not {t for t in tables() if t.startswith("gateway_")}  # start-up pays nothing
        assert server.gateway.budgets("alpha") == []
        assert server.gateway.policy() is None  # no routing file configured
        assert "gateway_vkeys" in tables()
        # a gateway given the same database URL shares the tables
        quiet = AccessSettings(background=False)
        with Access(str(database), master_key_loader=lambda: MASTER, settings=quiet) as access:
            key, _ = access.create_key(name="shared", project="alpha", budget_usd=3)
        assert [k.id for k in server.gateway.keys("alpha")] == [key.id]
        assert [b.key_id for b in server.gateway.budgets("alpha")] == [key.id]
    finally:
        server.close()


def test_serve_with_gateway_shows_the_served_routing_file(tmp_path: Path) -> None:
    """`flowloom serve --gateway FILE`: the providers page reads the policy being served."""
    database, home = str(tmp_path / "server.db"), tmp_path / "home"
    config = tmp_path / "routing.toml"
    config.write_text(
        '[providers.upstream-one]\nkind = "anthropic"\nbase_url = "http://127.0.0.1:9"\n'
        'region = "eu"\n[models.claude]\ntargets = [{ provider = "upstream-one", model = "m" }]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "FLOWLOOM_HOME": str(home)}
    command = [sys.executable, "-m", "flowloom", "serve", "--database", database]
    created = subprocess.run(
        [*command, "--home", str(home), "--create-admin", "boss@example.org"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=True,
    )
    headers = {"Authorization": f"Bearer {created.stdout.strip()}"}
    port = free_port()
    process = serve_process(database, home, port, extra=("--gateway", str(config)))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        page = httpx.get(base + "/ui/admin/gateway", headers=headers, timeout=20)
        assert page.status_code == 200
        assert "upstream-one" in page.text and str(config) in page.text
    finally:
        stop(process)


def test_a_missing_routing_file_or_database_is_reported_not_created(tmp_path: Path) -> None:
    missing = GatewayView(
        str(tmp_path / "absent.db"), config=tmp_path / "absent.toml", master_key_loader=bytes
    )
    with pytest.raises(ConfigError, match="cannot read"):
        missing.policy()
    with pytest.raises(Exception, match="does not exist"):
        missing.budgets("alpha")
    assert not (tmp_path / "absent.db").exists()
    missing.close()


def test_base_urls_are_shown_without_credentials_or_query() -> None:
    assert shown_url("https://u:p@host.example:8443/v1?key=s#x") == "https://host.example:8443/v1"
    assert shown_url("http://127.0.0.1:8000/v1") == "http://127.0.0.1:8000/v1"


# -- budgets (Access.budgets) ----------------------------------------------------------------


def test_budgets_of_a_project_with_spend_of_the_current_period(
    gateway: Access, view: GatewayView, clock: Clock
) -> None:
    gateway.set_project_budget("acme", 10, period="month")
    daily, _ = gateway.create_key(name="daily", project="acme", budget_usd=3, period="day")
    clock.now += 1  # keys are listed oldest first
    monthly, _ = gateway.create_key(owner_user="ada", project="acme", budget_usd=8)
    gateway.create_key(name="unbudgeted", project="acme")
    elsewhere, _ = gateway.create_key(name="other", project="elsewhere", budget_usd=1)
    _spend(gateway, daily.id, 2)
    _spend(gateway, monthly.id, 5)
    _spend(gateway, elsewhere.id, 1)
    gateway.flush()
    found = view.budgets("acme")
    assert [(b.scope, b.key_id) for b in found] == [
        ("project", None),
        ("key", daily.id),
        ("key", monthly.id),
    ]
    project, day, month = found
    assert (project.spent_usd, project.budget_usd, project.period) == (7.0, 10.0, "month")
    assert project.period_start == "2025-01-01"
    assert project.period_end == datetime(2025, 2, 1, tzinfo=UTC)
    assert (day.spent_usd, day.period_start, day.prefix, day.name) == (
        2.0,
        "2025-01-31",
        daily.prefix,
        "daily",
    )
    assert day.period_end == datetime(2025, 2, 1, tzinfo=UTC)
    assert month.spent_usd == 5.0 and month.used == pytest.approx(5 / 8)
    assert not any(b.exhausted for b in found)
    # an hour later it is a new day and a new month: both periods start from zero
    clock.now += 3600
    _spend(gateway, daily.id, 3)
    gateway.flush()
    project, day, month = view.budgets("acme")
    assert project.period_start == "2025-02-01" and project.spent_usd == 3.0
    assert day.spent_usd == 3.0 and day.exhausted and day.remaining_usd == 0.0
    assert month.spent_usd == 0.0
    # what the view reports exhausted, the gateway refuses
    with pytest.raises(BudgetExceededError):
        gateway.admit(gateway.get_key(daily.id), model="dollar", est_tokens=0)


def test_budgets_leave_out_revoked_and_expired_keys_and_count_unflushed_spend(
    gateway: Access, view: GatewayView, clock: Clock
) -> None:
    soon = datetime.fromtimestamp(START + 60, UTC)
    expiring, _ = gateway.create_key(name="e", project="acme", budget_usd=1, expires_at=soon)
    clock.now += 1  # keys are listed oldest first
    revoked, _ = gateway.create_key(name="r", project="acme", budget_usd=1)
    clock.now += 1
    live, _ = gateway.create_key(name="l", project="acme", budget_usd=4)
    gateway.revoke_key(revoked.id)
    assert [b.key_id for b in view.budgets("acme")] == [expiring.id, live.id]
    clock.now += 61
    assert [b.key_id for b in view.budgets("acme")] == [live.id]
    assert view.budgets("nobody") == []
    _spend(gateway, live.id, 2)
    assert view.budgets("acme")[0].spent_usd == 0.0  # another process: not flushed yet
    assert gateway.budgets("acme")[0].spent_usd == 2.0  # its own pending spend counts
    gateway.flush()
    assert view.budgets("acme")[0].spent_usd == 2.0
