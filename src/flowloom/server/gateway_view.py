"""GatewayView: what the server shows of the LLM gateway — budgets, keys, providers, policy.

Read-only. The gateway (``flowloom gateway serve``, another process) keeps its virtual
keys, budgets, spend and sealed provider keys in its access tables
(flowloom.gateway.access), by default in the database it records into — so a server and
a gateway given the same database URL share them — and its routing policy in a TOML file
(docs/gateway-routing.md). ``[server.gateway]`` tells the server where both are.

Nothing is opened at start-up: the access tables are opened on first use (an Access
without its spend writer; opening applies the access migrations, as the gateway's own
commands do) and closed with the server; the routing file is compiled again only when
it changed. What leaves this module never holds key material: provider keys are names
and times, virtual keys their prefix, base URLs lose any user-info and query.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from flowloom.errors import ConfigError, StoreUnavailableError
from flowloom.store.urls import sqlite_path

if TYPE_CHECKING:  # the gateway's modules are imported on first use, not at start-up
    from sqlalchemy.engine import Engine

    from flowloom.gateway.access.records import BudgetStatus, ProviderKeyInfo, VirtualKey
    from flowloom.gateway.access.service import Access
    from flowloom.gateway.routing.config import CompiledConfig
    from flowloom.ledger.keyprovider import Envelope

__all__ = [
    "GatewayView",
    "ModelEntry",
    "ProviderEntry",
    "RoutingPolicy",
    "TargetEntry",
    "provider_entries",
    "shown_url",
]


@dataclass(frozen=True)
class TargetEntry:
    """One target of a model's route, with the capabilities the policy declares."""

    provider: str
    model: str
    region: str | None
    tools: bool
    vision: bool
    context_window: int | None
    max_output: int | None
    weight: float
    price_in: float
    price_out: float


@dataclass(frozen=True)
class ModelEntry:
    """A routable model: its aliases, strategy and targets in configuration order."""

    name: str
    display_name: str
    aliases: tuple[str, ...]
    strategy: str
    max_attempts: int
    targets: tuple[TargetEntry, ...]


@dataclass(frozen=True)
class ProviderEntry:
    """A configured provider and whether the upstream key it names is stored."""

    name: str
    kind: str
    region: str | None
    base_url: str
    api_key_ref: str | None
    stored_key: ProviderKeyInfo | None
    api_version: str | None = None
    deployments: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class RoutingPolicy:
    """The routing file as the gateway compiles it (providers without their keys)."""

    source: str
    digest: str | None
    default_strategy: str
    max_attempts: int
    direct: bool
    providers: tuple[ProviderEntry, ...]
    models: tuple[ModelEntry, ...]
    residency: tuple[tuple[str, tuple[str, ...]], ...]
    """(project, allowed regions) from [projects.<name>]."""


def shown_url(url: str) -> str:
    """`url` without user-info, query or fragment: what a page may show of a base URL."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _policy(config: CompiledConfig) -> RoutingPolicy:
    providers = tuple(
        ProviderEntry(
            name=p.name,
            kind=p.kind,
            region=p.region,
            base_url=shown_url(p.base_url),
            api_key_ref=p.api_key_ref,
            stored_key=None,
            api_version=p.api_version,
            deployments=tuple(sorted(p.deployments.items())),
        )
        for p in config.providers.values()
    )
    models: list[ModelEntry] = []
    for info in config.models:
        if info.alias_of is not None:
            continue
        route = config.routes[info.id]
        models.append(
            ModelEntry(
                name=info.id,
                display_name=info.display_name,
                aliases=tuple(m.id for m in config.models if m.alias_of == info.id),
                strategy=route.strategy,
                max_attempts=route.max_attempts,
                targets=tuple(
                    TargetEntry(
                        provider=t.key[0],
                        model=t.key[1],
                        region=t.region,
                        tools=t.tools,
                        vision=t.vision,
                        context_window=t.context_window,
                        max_output=t.max_output,
                        weight=t.weight,
                        price_in=t.price_in,
                        price_out=t.price_out,
                    )
                    for t in route.targets
                ),
            )
        )
    residency = sorted(config.projects.items())
    return RoutingPolicy(
        source=config.source,
        digest=config.digest,
        default_strategy=config.router.default_strategy,
        max_attempts=config.router.max_attempts,
        direct=config.router.direct,
        providers=providers,
        models=tuple(models),
        residency=tuple((name, tuple(sorted(regions))) for name, regions in residency),
    )


def provider_entries(
    policy: RoutingPolicy | None, stored: Sequence[ProviderKeyInfo]
) -> tuple[list[ProviderEntry], list[ProviderKeyInfo]]:
    """The policy's providers with their stored keys' times, and stored keys none names."""
    by_name = {key.name: key for key in stored}
    entries: list[ProviderEntry] = []
    named: set[str] = set()
    for entry in policy.providers if policy is not None else ():
        ref = entry.api_key_ref
        if ref is not None:
            named.add(ref)
        found = by_name.get(ref) if ref is not None else None
        entries.append(
            ProviderEntry(
                name=entry.name,
                kind=entry.kind,
                region=entry.region,
                base_url=entry.base_url,
                api_key_ref=ref,
                stored_key=found,
                api_version=entry.api_version,
                deployments=entry.deployments,
            )
        )
    return entries, [key for key in stored if key.name not in named]


def _sqlite_file(url: str) -> Path | None:
    """The file an SQLite database URL names (None for PostgreSQL or in-memory)."""
    try:
        path = sqlite_path(url)
    except ValueError:
        return None
    return None if path is None or path == ":memory:" else Path(path)


class GatewayView:
    """Read the gateway's access tables and routing file on demand; close() when done.

    `database` is a URL (the gateway's own access database) or the server's engine (the
    tables in the server's database); `config` the routing file, None when not given.
    `env` fills ``${VAR}`` in base URLs as the gateway does (default: this process's
    environment, read when the file is compiled).
    """

    def __init__(
        self,
        database: str | Engine,
        *,
        config: Path | None,
        master_key_loader: Callable[[], bytes | Envelope],
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._database = database
        self._config = config
        self._master_key = master_key_loader
        self._env = env
        self._clock = clock
        self._access: Access | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._policy: tuple[tuple[int, int, int], RoutingPolicy | ConfigError] | None = None

    @property
    def config_path(self) -> Path | None:
        return self._config

    # -- the access tables ---------------------------------------------------------------

    def _opened(self) -> Access:
        with self._lock:
            if self._closed:
                raise StoreUnavailableError("the server is shutting down")
            if self._access is None:
                database = self._database
                if isinstance(database, str):
                    file = _sqlite_file(database)
                    if file is not None and not file.exists():
                        raise StoreUnavailableError(
                            f"the gateway database {database} does not exist",
                            hint="set [server.gateway] database to the database the gateway "
                            "uses (flowloom gateway serve --database), or leave it out",
                        )
                from flowloom.gateway.access.service import Access, AccessSettings

                self._access = Access(
                    database,
                    master_key_loader=self._master_key,
                    clock=self._clock,
                    settings=AccessSettings(background=False),
                )
            return self._access

    def revoke_user_keys(self, owners: Sequence[str]) -> list[VirtualKey]:
        """Revoke the virtual keys owned by a user named by any of `owners` (id, email).

        The one write this view makes: deprovisioning a user must reach their gateway
        keys too. Every gateway process, this one or another, refuses them from its
        next request (each request re-reads a cached key's revocation).
        """
        return self._opened().revoke_owned_keys("user", owners)

    def budgets(self, project: str) -> list[BudgetStatus]:
        """The project's budget and its live keys' budgets, with this period's spend."""
        return self._opened().budgets(project)

    def keys(self, project: str) -> list[VirtualKey]:
        """The project's virtual keys that are not revoked (prefixes, never secrets)."""
        return self._opened().list_keys(project=project)

    def all_keys(self) -> list[VirtualKey]:
        """Every virtual key that is not revoked, of any project (for access reviews)."""
        return self._opened().list_keys()

    def revoke_key(self, key_id: str, actor: Mapping[str, Any]) -> VirtualKey:
        """Revoke a virtual key at once: an access review's revoke decision needs it. The
        caller records it (it knows why)."""
        return self._opened().revoke_key(key_id, actor=actor)

    def provider_keys(self) -> list[ProviderKeyInfo]:
        """The stored upstream keys' names and times (never the keys)."""
        return self._opened().list_provider_keys()

    # -- the routing file ------------------------------------------------------------------

    def policy(self) -> RoutingPolicy | None:
        """The routing policy in the file now; None without a file; ConfigError if unusable.

        Compiled again only when the file's mtime, size or inode changed.
        """
        path = self._config
        if path is None:
            return None
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                cached = self._policy
                if cached is not None and cached[0] == stamp:
                    return self._result(cached[1])
                raw = fh.read()
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the gateway's routing configuration: {exc.strerror or exc}",
                hint="check [server.gateway] config in the server configuration",
            ) from exc
        from flowloom.gateway.routing.config import compile_config

        result: RoutingPolicy | ConfigError
        try:
            text = raw.decode("utf-8")
            env = self._env if self._env is not None else dict(os.environ)
            result = _policy(compile_config(text, source=str(path), env=env))
        except UnicodeDecodeError:
            result = ConfigError(f"{path}: the routing configuration is not UTF-8 text")
        except ConfigError as exc:
            result = exc
        self._policy = (stamp, result)
        return self._result(result)

    @staticmethod
    def _result(result: RoutingPolicy | ConfigError) -> RoutingPolicy:
        if isinstance(result, ConfigError):
            raise ConfigError(result.message, hint=result.hint)
        return result

    def close(self) -> None:
        with self._lock:
            self._closed = True
            access, self._access = self._access, None
        if access is not None:
            access.close()
