"""The outbound guard: where the server may send requests on a project admin's behalf.

Webhook subscriptions, code-host `api_url`s and SIEM destinations are written by project
admins, yet the server makes the connection. Without a guard any admin could reach the
cloud metadata service, loopback or the private network (SSRF). So a destination is
checked twice: when it is saved, and at send time after DNS resolution, and the
connection goes to the very address that was checked (a name that resolves to a public
address when saved and to 127.0.0.1 later gains nothing). Public addresses are always
allowed; others only when the operator lists them in ``[server] outbound_allow``.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from flowloom.errors import ConfigError, InputError

__all__ = [
    "OutboundGuard",
    "OutboundRefusedError",
    "guarded_client",
    "outbound_allow",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

SETTING = "[server] outbound_allow"
_HINT = (
    f"the server sends to internal addresses only when the operator lists them in {SETTING} "
    '(e.g. outbound_allow = ["10.1.2.0/24", "hooks.internal.example"]) '
    "or FLOWLOOM_SERVER_OUTBOUND_ALLOW"
)


class OutboundRefusedError(InputError):
    """A destination that resolves to a non-public address not in the allow-list."""

    def __init__(self, message: str) -> None:
        super().__init__(message, hint=_HINT)


def outbound_allow(value: object) -> tuple[str, ...]:
    """The allow-list from a TOML list or a comma-separated string: CIDRs (or addresses)
    and host names, normalised; ConfigError naming an entry that is neither."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError("server setting outbound_allow must be a list of CIDRs or host names")
    found: list[str] = []
    for item in items:
        text = item.strip().lower().rstrip(".")
        if not text:
            continue
        try:
            found.append(str(ipaddress.ip_network(text, strict=False)))
            continue
        except ValueError:
            pass
        labels = text.split(".")
        if not all(label and len(label) < 64 for label in labels) or not all(
            ch.isalnum() or ch == "-" for ch in text.replace(".", "")
        ):
            raise ConfigError(
                f"outbound_allow entry {item!r} is neither an IP network nor a host name",
                hint='e.g. outbound_allow = ["127.0.0.1/32", "10.1.2.0/24", "hooks.example"]',
            )
        found.append(text)
    return tuple(dict.fromkeys(found))


def _system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # a label IDNA cannot encode: no such host
        raise OSError(f"{host!r} is not a valid host name: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:  # a translator reaches the IPv4 inside
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _public(embedded)
        if address.teredo is not None:
            return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class OutboundGuard:
    """Decides whether a destination may be reached; public addresses always may."""

    allow: tuple[str, ...] = ()
    """[server] outbound_allow: networks and host names that may be internal."""
    resolver: Resolver = _system_resolver
    """Name → addresses (the system's resolver; tests give their own)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow", outbound_allow(self.allow))

    @property
    def _networks(self) -> list[IPNetwork]:
        found: list[IPNetwork] = []
        for entry in self.allow:
            try:
                found.append(ipaddress.ip_network(entry))
            except ValueError:
                continue
        return found

    def permits(self, address: str) -> bool:
        """Whether the server may connect to this IP address."""
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if _public(ip):
            return True
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net) for net in self._networks)

    def resolve(self, host: str, port: int) -> list[str]:
        """The addresses to connect to for `host`: every one checked. Raises
        OutboundRefusedError when any is not permitted (a listed host name is trusted)."""
        name = host.strip("[]").lower().rstrip(".")
        try:
            addresses = [str(ipaddress.ip_address(name))]
        except ValueError:
            addresses = list(self.resolver(name, port))
        if name in self.allow:
            return addresses
        refused = [a for a in addresses if not self.permits(a)]
        if refused:
            shown = "" if refused == [name] else f" (it resolves to {', '.join(refused)})"
            raise OutboundRefusedError(
                f"outbound destination {host!r}{shown} is not a public address "
                f"and {SETTING} does not list it"
            )
        return addresses

    def check_url(self, url: str, *, default_port: int = 443) -> None:
        """The save-time check of a destination URL (or host:port target).

        A name that does not resolve now is let through: it is checked again, after
        resolution, every time something is sent.
        """
        parts = urlsplit(url if "://" in url else f"//{url}")
        host = parts.hostname
        if not host:
            return
        try:
            port = parts.port or default_port
        except ValueError:
            port = default_port
        try:
            self.resolve(host, port)
        except OSError:
            return

    def connect(self, host: str, port: int, timeout: float | None) -> socket.socket:
        """A TCP connection to a checked address of `host` (the first that answers)."""
        last: OSError | None = None
        for address in self.resolve(host, port):
            try:
                return socket.create_connection((address, port), timeout=timeout)
            except OSError as exc:
                last = exc
        raise last or OSError(f"no address for {host}")


class _GuardedBackend(httpcore.NetworkBackend):
    """httpcore's sync backend, connecting only to addresses the guard checked; TLS
    still names the original host (httpcore passes it as server_hostname)."""

    def __init__(self, guard: OutboundGuard) -> None:
        self._guard = guard
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = self._guard.resolve(host, port)
        except OutboundRefusedError as exc:
            raise httpcore.ConnectError(f"{exc} ({exc.hint})") from None
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
            except httpcore.ConnectTimeout as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("outbound requests do not use unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def guarded_client(
    guard: OutboundGuard,
    *,
    timeout: float = 30.0,
    verify: bool | ssl.SSLContext = True,
    follow_redirects: bool = False,
) -> httpx.Client:
    """An httpx client whose every connection passes the guard (environment proxies are
    ignored: a proxy would connect where the guard cannot see)."""
    context = verify if isinstance(verify, ssl.SSLContext) else httpx.create_ssl_context(verify)
    transport = httpx.HTTPTransport(verify=context)
    transport._pool = httpcore.ConnectionPool(
        ssl_context=context, network_backend=_GuardedBackend(guard)
    )
    return httpx.Client(
        transport=transport, timeout=timeout, follow_redirects=follow_redirects, trust_env=False
    )
