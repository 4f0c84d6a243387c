"""Server settings: where the database and keys are, the public URL, request limits.

Layering (later wins): built-in defaults < the ``[server]`` table of the user config
file (~/.config/flowloom/config.toml) < environment ``FLOWLOOM_SERVER_*`` < command-line
options of ``flowloom serve``. The database and home default to the CLI's settings, so
a first ``flowloom serve`` needs no configuration at all.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flowloom.config import DEFAULT_MAX_BODY_BYTES, load_settings
from flowloom.errors import ConfigError
from flowloom.outbound import OutboundGuard, outbound_allow
from flowloom.server.tlog.witnesses import WitnessSetting, parse_witnesses

__all__ = [
    "GatewaySettings",
    "ServerSettings",
    "load_server_settings",
    "origin_prefix_of",
    "trusted_networks",
]

DEFAULT_PORT = 8470


def origin_prefix_of(public_url: str) -> str:
    """What a server at `public_url` puts before '/<project>' in its log names."""
    parts = urlsplit(public_url)
    return (parts.netloc + parts.path).rstrip("/")


def trusted_networks(value: object) -> tuple[str, ...]:
    """Proxy networks from a list or a comma-separated string of CIDRs (or addresses),
    normalised; ConfigError naming the one that is not a network."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple):
        raise ConfigError("server setting trusted_proxies must be a list of CIDRs")
    networks: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            networks.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ConfigError(
                f"trusted proxy {text!r} is not an IP network",
                hint="give CIDRs such as 10.0.0.0/8 or 127.0.0.1/32, separated by commas",
            ) from None
    return tuple(dict.fromkeys(networks))


@dataclass(frozen=True)
class GatewaySettings:
    """[server.gateway]: where the server reads the LLM gateway's state (never writes it).

    The gateway (`flowloom gateway serve`, another process) keeps its virtual keys,
    budgets, spend and sealed provider keys in its access tables, by default in the
    database it records into; its routing policy is a TOML file.
    """

    database: str | None = None
    """The database holding the gateway's access tables; None: the server's own."""
    config: Path | None = None
    """The gateway's routing policy file (for the providers and policy page); optional."""


@dataclass(frozen=True)
class ServerSettings:
    """Everything the server process needs before it opens the database."""

    database: str
    home: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    public_url: str = ""
    """The URL clients use; it names every project's log (origin = host/path/project)."""
    max_request_bytes: int = 32 * 1024 * 1024
    max_batch_events: int = 1000
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    batch_max_entries: int = 2000
    cookie_secure: bool | None = None
    """Mark the session cookie Secure; None: only when public_url is https."""
    trusted_proxies: tuple[str, ...] = ()
    """Networks of the reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are
    believed; empty (the default): those headers are ignored, whoever sends them."""
    repositories: Mapping[str, Path] = field(default_factory=dict)
    """[server.repositories]: project → path of a clone the server may read, for the
    git-based compliance checks and signatures over trees and commits; usually empty."""
    oidc: Mapping[str, Any] | None = None
    """The [server.oidc] table with FLOWLOOM_SERVER_OIDC_* applied, validated when the
    server is built (flowloom.auth.oidc.OidcSettings); None: single sign-on is off."""
    saml: Mapping[str, Any] | None = None
    """The [server.saml] table with FLOWLOOM_SERVER_SAML_* applied, validated when the
    server is built (flowloom.auth.saml.SamlSettings); None: SAML sign-in is off."""
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    """[server.gateway] with FLOWLOOM_SERVER_GATEWAY_DATABASE / _CONFIG applied."""
    ldap: Mapping[str, Any] | None = None
    """The [server.ldap] table, validated when the server is built
    (flowloom.auth.ldap.LdapSettings); None: no LDAP sign-in."""
    ci_issuers: tuple[str, ...] = ()
    """OIDC issuers whose CI job tokens this server believes (``[server] ci_issuers``,
    FLOWLOOM_SERVER_CI_ISSUERS comma-separated): a synced test.result or ci.result is
    taken only with a token from one of them; empty (the default): none is taken."""
    ci_audience: str = "flowloom"
    """The audience those tokens must name."""
    witnesses: tuple[WitnessSetting, ...] = ()
    """[[server.witnesses]]: C2SP tlog-witnesses (url, vkey) asked to cosign checkpoints."""
    outbound_allow: tuple[str, ...] = ()
    """``[server] outbound_allow`` (FLOWLOOM_SERVER_OUTBOUND_ALLOW, comma-separated): the
    internal networks and host names webhooks, code-host integrations and SIEM feeds may
    reach; empty (the default): public addresses only (flowloom.outbound)."""

    def __post_init__(self) -> None:
        if not self.public_url:
            object.__setattr__(self, "public_url", f"http://{self.host}:{self.port}")
        parts = urlsplit(self.public_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(
                f"public_url {self.public_url!r} is not an http(s) URL",
                hint="use the address clients reach, e.g. https://flowloom.example.com",
            )
        for name in ("port", "max_request_bytes", "max_batch_events", "max_body_bytes"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"server setting {name} must not be negative")
        object.__setattr__(self, "trusted_proxies", trusted_networks(self.trusted_proxies))
        object.__setattr__(self, "ci_issuers", ci_issuers(self.ci_issuers))
        object.__setattr__(self, "outbound_allow", outbound_allow(self.outbound_allow))

    @property
    def outbound(self) -> OutboundGuard:
        """The guard every request made on a project admin's behalf passes."""
        return OutboundGuard(self.outbound_allow)

    @property
    def origin_prefix(self) -> str:
        """The public URL without its scheme: logs are named '<prefix>/<project>'."""
        return origin_prefix_of(self.public_url)

    def origin(self, project: str) -> str:
        return f"{self.origin_prefix}/{project}"

    @property
    def https(self) -> bool:
        """Whether clients reach the server over https (its public URL says so)."""
        return urlsplit(self.public_url).scheme == "https"

    @property
    def public_base(self) -> str:
        """The public URL without a trailing slash: same-server absolute URLs start so."""
        return self.public_url.rstrip("/")

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return self.https

    def with_overrides(self, **changes: Any) -> ServerSettings:
        """A copy with the given fields replaced; None means 'not given'."""
        clean = {k: v for k, v in changes.items() if v is not None}
        derived = self.public_url == f"http://{self.host}:{self.port}"
        if ("host" in clean or "port" in clean) and "public_url" not in clean and derived:
            clean["public_url"] = ""  # derived again from the new host/port
        return replace(self, **clean)


_ENV_PREFIX = "FLOWLOOM_SERVER_"


def _coerce(name: str, value: object, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"server setting {name} must be true or false, got {value!r}")
    if name == "outbound_allow":
        return outbound_allow(value)
    if kind is int:
        try:
            return int(str(value))
        except ValueError:
            raise ConfigError(f"server setting {name} must be an integer, got {value!r}") from None
    if kind is Path:
        return Path(str(value))
    if kind is tuple:
        return trusted_networks(value)
    if kind is list:
        return ci_issuers(value)
    return str(value)


def ci_issuers(value: object) -> tuple[str, ...]:
    """The allow-list of CI OIDC issuers: https URLs (http only on loopback, for tests and
    an issuer on the same host), from a TOML list or a comma-separated string."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ConfigError("server setting ci_issuers must be a list of issuer URLs")
    found: list[str] = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        parts = urlsplit(url)
        loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
        if not parts.netloc or not (
            parts.scheme == "https" or (parts.scheme == "http" and loopback)
        ):
            raise ConfigError(
                f"ci_issuers entry {item!r} is not an https URL",
                hint="e.g. https://token.actions.githubusercontent.com or https://gitlab.com",
            )
        found.append(url)
    return tuple(dict.fromkeys(found))


_KINDS: dict[str, type] = {
    "database": str,
    "home": Path,
    "host": str,
    "port": int,
    "public_url": str,
    "max_request_bytes": int,
    "max_batch_events": int,
    "max_body_bytes": int,
    "batch_max_entries": int,
    "cookie_secure": bool,
    "trusted_proxies": tuple,
    "ci_issuers": list,
    "ci_audience": str,
    "outbound_allow": tuple,
}


_SUBTABLES = frozenset({"oidc", "saml", "repositories", "gateway", "ldap", "witnesses"})
# The client's keys share the [server] table (docs/sync.md); the server ignores them.
_CLIENT_KEYS = frozenset({"url", "api_key_file", "vkey"})
"""Tables inside [server] that their own modules validate."""


def _server_table(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    table = data.get("server", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [server] must be a table")
    unknown = sorted(set(table) - set(_KINDS) - _SUBTABLES - _CLIENT_KEYS)
    if unknown:
        raise ConfigError(
            f"{path}: unknown [server] setting(s): {', '.join(unknown)}",
            hint=f"known: {', '.join(_KINDS)}",
        )
    return table


def _repositories(table: object) -> dict[str, Path]:
    if table is None:
        return {}
    if not isinstance(table, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    ):
        raise ConfigError(
            "[server.repositories] must map project names to repository paths",
            hint='e.g. acme = "/srv/git/acme.git"',
        )
    return {project: Path(path) for project, path in table.items()}


def _gateway(table: object, env: Mapping[str, str]) -> GatewaySettings:
    if table is None:
        table = {}
    if not isinstance(table, dict) or not all(
        key in ("database", "config") and isinstance(value, str) and value
        for key, value in table.items()
    ):
        raise ConfigError(
            "[server.gateway] takes database and config, both strings",
            hint='e.g. config = "/etc/flowloom/gateway.toml"',
        )
    database = env.get(_ENV_PREFIX + "GATEWAY_DATABASE") or table.get("database")
    config = env.get(_ENV_PREFIX + "GATEWAY_CONFIG") or table.get("config")
    return GatewaySettings(database=database, config=Path(config) if config else None)


def load_server_settings(
    cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> ServerSettings:
    """Settings for `flowloom serve` before command-line options are applied."""
    env = os.environ if env is None else env
    base = load_settings(cwd, env)
    values: dict[str, Any] = {"database": base.database, "home": base.home}
    values["max_body_bytes"] = base.max_body_bytes
    user_home = Path(env.get("HOME", str(Path.home())))
    xdg_config = Path(env.get("XDG_CONFIG_HOME") or user_home / ".config")
    table = _server_table(xdg_config / "flowloom" / "config.toml")
    oidc_table = table.pop("oidc", None)
    saml_table = table.pop("saml", None)
    ldap_table = table.pop("ldap", None)
    if ldap_table is not None and not isinstance(ldap_table, dict):
        raise ConfigError("[server.ldap] must be a table")
    ldap_password = env.get(_ENV_PREFIX + "LDAP_BIND_PASSWORD")
    if ldap_table is not None and ldap_password:
        ldap_table = {**ldap_table, "bind_password": ldap_password}  # kept out of the file
    values["repositories"] = _repositories(table.pop("repositories", None))
    gateway = _gateway(table.pop("gateway", None), env)
    witnesses = parse_witnesses(table.pop("witnesses", None))
    values.update(table)
    for name in _KINDS:
        raw = env.get(_ENV_PREFIX + name.upper())
        if raw:
            values[name] = raw
    known = {f.name for f in fields(ServerSettings)}
    typed = {k: _coerce(k, v, _KINDS[k]) for k, v in values.items() if k in known and k in _KINDS}
    typed["repositories"] = values["repositories"]
    from flowloom.auth.oidc import oidc_config  # validated later, once public_url is final
    from flowloom.auth.saml import saml_config

    return ServerSettings(
        **typed,
        oidc=oidc_config(oidc_table, env),
        saml=saml_config(saml_table, env),
        gateway=gateway,
        ldap=ldap_table,
        witnesses=witnesses,
    )
