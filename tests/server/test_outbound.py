"""The outbound guard (issue 18, SSRF): webhooks, code-host `api_url`s and SIEM targets
may not point at internal addresses unless `[server] outbound_allow` lists them; checked
on save (over the real API of a real server) and at send time after DNS resolution,
against real loopback receivers."""

from __future__ import annotations

import socket
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from flowloom.errors import ConfigError
from flowloom.integrations.http import HostError, send
from flowloom.outbound import OutboundGuard, OutboundRefusedError, guarded_client
from flowloom.server.app import create_app
from flowloom.server.settings import ServerSettings, load_server_settings
from flowloom.siem.transports import DeliveryError, HecTransport, SyslogTransport
from tests.server.support import OWN, World, make_world
from tests.webhooks.receiver import Receiver

INTERNAL = [
    "169.254.169.254",  # cloud metadata
    "127.0.0.1",
    "10.1.2.3",
    "192.168.0.10",
    "172.16.5.4",
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fd00::1",
    "::ffff:127.0.0.1",  # IPv4-mapped loopback
    "::ffff:169.254.169.254",
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
]


def _resolving(table: dict[str, Sequence[str]]) -> OutboundGuard:
    return OutboundGuard((), resolver=lambda host, port: table[host])


def rebinding(first: str, then: str) -> list[str]:
    """A resolver's answers that change between calls, as a rebinding DNS server's do."""
    return [first, then]


@pytest.mark.parametrize("address", INTERNAL)
def test_internal_addresses_are_refused_by_default(address: str) -> None:
    guard = OutboundGuard()
    assert not guard.permits(address)
    with pytest.raises(OutboundRefusedError, match=r"\[server\] outbound_allow"):
        guard.resolve(address, 443)


def test_public_addresses_pass_and_listed_networks_and_names_are_allowed() -> None:
    assert OutboundGuard().permits("93.184.216.34")
    assert OutboundGuard().permits("2606:4700:4700::1111")
    listed = OutboundGuard(("10.1.2.0/24", "127.0.0.1/32", "hooks.internal.example"))
    assert listed.permits("10.1.2.3") and listed.permits("127.0.0.1")
    assert not listed.permits("10.1.3.1") and not listed.permits("169.254.169.254")
    assert listed.resolve("10.1.2.3", 80) == ["10.1.2.3"]
    named = OutboundGuard(("hooks.internal.example",), resolver=lambda h, p: ["10.9.9.9"])
    assert named.resolve("Hooks.Internal.Example", 443) == ["10.9.9.9"]


def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(OutboundRefusedError, match=r"resolves to 127\.0\.0\.1"):
        _resolving({"sneaky.example": ["93.184.216.34", "127.0.0.1"]}).resolve(
            "sneaky.example", 443
        )
    with pytest.raises(OutboundRefusedError):  # the system resolver, for real
        OutboundGuard().resolve("localhost", 443)


def test_the_setting_is_validated_and_read_from_file_and_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="outbound_allow"):
        OutboundGuard(("not a host!",))
    home = tmp_path / "user"
    (home / ".config" / "flowloom").mkdir(parents=True)
    (home / ".config" / "flowloom" / "config.toml").write_text(
        '[server]\noutbound_allow = ["127.0.0.1/32", "10.1.2.0/24", "Hooks.Internal.Example"]\n'
    )
    env = {"HOME": str(home), "FLOWLOOM_HOME": str(tmp_path / "fl")}
    settings = load_server_settings(tmp_path, env)
    assert settings.outbound_allow == ("127.0.0.1/32", "10.1.2.0/24", "hooks.internal.example")
    env["FLOWLOOM_SERVER_OUTBOUND_ALLOW"] = "192.168.1.0/24, ::1"
    assert load_server_settings(tmp_path, env).outbound_allow == ("192.168.1.0/24", "::1/128")
    assert ServerSettings(database="x", home=tmp_path).outbound.allow == ()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, TestClient]]:
    """A real server with the default setting: nothing internal is allowed."""
    tmp = tmp_path_factory.mktemp("outbound")
    world = make_world(str(tmp / "server.db"), tmp / "home", outbound_allow=())
    yield world, TestClient(create_app(world.server))
    world.close()


SAVES = {
    "webhook": ("post", "/webhooks", lambda url: {"url": url, "kinds": ["agent.prompt"]}),
    "gitlab api_url": (
        "put",
        "/integrations/gitlab",
        lambda url: {"settings": {"repo": "a/b", "api_url": url}, "secrets": {"token": "t"}},
    ),
    "siem hec": (
        "put",
        "/siem/soc",
        lambda url: {"kind": "hec", "target": url, "secret": "t"},
    ),
}


@pytest.mark.parametrize("channel", sorted(SAVES))
@pytest.mark.parametrize("host", ["169.254.169.254", "127.0.0.1", "10.0.0.8", "[::1]", "localhost"])
def test_saving_an_internal_destination_is_refused_naming_the_setting(
    strict: tuple[World, TestClient], channel: str, host: str
) -> None:
    world, client = strict
    method, path, body = SAVES[channel]
    answer = client.request(
        method,
        f"/api/v1/projects/{OWN}{path}",
        json=body(f"http://{host}:8088/latest/meta-data"),
        headers=world.headers("admin" if channel != "webhook" else "owner"),
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert "not a public address" in error["message"]
    assert "outbound_allow" in error["message"] + error.get("hint", "")


def test_saving_a_syslog_target_on_a_private_range_is_refused(
    strict: tuple[World, TestClient],
) -> None:
    world, client = strict
    answer = client.put(
        f"/api/v1/projects/{OWN}/siem/soc-syslog",
        json={"kind": "syslog", "target": "tcp://192.168.10.20:514"},
        headers=world.headers("admin"),
    )
    assert answer.status_code == 400, answer.text
    assert "outbound_allow" in answer.text


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.stop()


def test_send_time_refuses_loopback_and_connects_to_the_checked_address(
    receiver: Receiver,
) -> None:
    url = f"http://rebind.example:{receiver.port}/hook"
    # Saved while the name pointed elsewhere; it now resolves to loopback (rebinding).
    answers = iter(rebinding("93.184.216.34", "127.0.0.1"))
    guard = OutboundGuard((), resolver=lambda host, port: [next(answers)])
    guard.check_url(url)  # the save-time check passes: a public address then
    with guarded_client(guard) as client, pytest.raises(httpx.ConnectError, match="outbound"):
        client.post(url, content=b"{}")
    assert receiver.received == []
    # Listed: the request goes to the address the guard resolved (the system resolver
    # has never heard of rebind.example), with the original Host header.
    allowed = OutboundGuard(("127.0.0.0/8",), resolver=lambda host, port: ["127.0.0.1"])
    with guarded_client(allowed) as client:
        assert client.post(url, content=b"{}").status_code == 200
    headers = {k.lower(): v for k, v in receiver.wait_for(1)[0].headers.items()}
    assert headers["host"] == f"rebind.example:{receiver.port}"


def test_each_channel_refuses_at_send_time(receiver: Receiver) -> None:
    guard = OutboundGuard()
    with guarded_client(guard) as http, pytest.raises(HostError, match="outbound_allow"):
        send(http, "POST", receiver.url, headers={})  # code-host integrations
    with pytest.raises(DeliveryError, match="outbound_allow"):
        HecTransport(receiver.url, "t", sourcetype="s", host="h", outbound=guard).send(
            [("uid", {"a": 1})]
        )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        syslog = SyslogTransport("127.0.0.1", port, outbound=guard)
        with pytest.raises(DeliveryError, match="outbound_allow"):
            syslog.send([("uid", b"<14>1 - - - - - - hello")])
    assert receiver.received == []
