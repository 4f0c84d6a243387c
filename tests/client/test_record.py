"""Recording from a command with a server: queued first, the index once acked."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flowloom.client.link import ServerLink
from flowloom.client.status import server_warnings
from flowloom.config import load_settings
from flowloom.errors import AuthError
from flowloom.events import outbox as spool
from flowloom.sinks.record import record_via_server
from flowloom.sinks.server import outbox_depth, send_outbox
from tests.client.conftest import LiveServer
from tests.client.test_outbox import TS, prompt


def test_the_index_comes_back_once_the_server_acked(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    done = record_via_server(link, [prompt("recorded")], "cli", created=TS)
    assert not done.queued and done.waiting == 0
    [index] = done.indices
    assert index is not None
    assert sqlite_server.body(key, index) == "recorded"


def test_an_unreachable_server_leaves_the_event_queued(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    link = link_factory(sqlite_server, key)
    done = record_via_server(link, [prompt("later")], "cli", created=TS)
    assert done.queued and done.waiting == 1
    assert done.why is not None and "cannot reach" in done.why.message
    sqlite_server.start()
    assert send_outbox(link).sent == 1


def test_a_refused_key_is_raised_after_the_event_is_safely_queued(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    user, key = sqlite_server.provision()
    sqlite_server.revoke_keys(user)
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    with pytest.raises(AuthError, match="kept in the outbox"):
        record_via_server(link, [prompt("kept")], "cli", created=TS)
    assert outbox_depth(link) == 1


def test_status_warns_about_a_stale_outbox_and_an_alarm(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink], tmp_path: Path
) -> None:
    _, key = sqlite_server.provision()
    link = link_factory(sqlite_server, key)
    settings = load_settings(
        tmp_path, {"HOME": str(tmp_path / "h"), "FLOWLOOM_SERVER": sqlite_server.url}
    ).with_overrides(project=link.project)
    assert server_warnings(settings, link.state_dir) == []
    record_via_server(link, [prompt("stuck")], "cli", created=TS)
    assert server_warnings(settings, link.state_dir) == []  # just queued: not stale yet
    [name] = spool.pending(link.spool_dir)
    old = time.time() - 3600
    os.utime(Path(link.spool_dir, name), (old, old))
    [warning] = server_warnings(settings, link.state_dir)
    assert "1 spool file(s) have waited 60 min" in warning and "cannot reach" in warning
    trust = link.trust()
    state = trust.load()
    state.data["alarm"] = {"at": "then", "message": "the server rewrote history: test"}
    trust.save(state)
    assert any("rewrote history" in w for w in server_warnings(settings, link.state_dir))
