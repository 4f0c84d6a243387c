"""Wiring one gateway: ledger store, router, access, recorder and telemetry, built once.

Kept apart from the app so that importing the ASGI pipeline does not import SQLAlchemy,
the router's configuration loader or OpenTelemetry; `build()` imports what it uses.

`ServeSpec` is everything `flowloom gateway serve` decided, in a form that crosses a
process boundary (JSON in an environment variable): with `--workers N` each uvicorn
worker process builds its own gateway from it (`app_from_environment`, uvicorn's app
factory), over the same databases, so they share keys, limits, budgets and ledgers.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowloom.errors import ConfigError
from flowloom.gateway.app import Gateway
from flowloom.gateway.ports import AccessPort, OpenAccess, RouterPort, SingleProviderRouter
from flowloom.gateway.providers.interface import ProviderConfig
from flowloom.gateway.recorder import Recorder
from flowloom.gateway.settings import GatewaySettings
from flowloom.gateway.settlement import Settlement

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowloom.gateway.metrics import GatewayMetrics
    from flowloom.gateway.recorder import ObserveHook
    from flowloom.gateway.routing.model import ConfigChange
    from flowloom.server.state import LedgerRegistry

__all__ = [
    "SPEC_ENV",
    "ServeSpec",
    "app_from_environment",
    "build",
    "build_gateway",
    "build_served",
]

SPEC_ENV = "FLOWLOOM_GATEWAY_SERVE"


def build(
    *,
    database: str,
    config_path: Path | None,
    record: str,
    spool_path: Path | None,
    project: str,
    home: Path | None,
    settings: GatewaySettings | None,
    provider: ProviderConfig | None,
    access_database: str | None,
    telemetry: bool,
    ledgers: LedgerRegistry | None = None,
    origin_prefix: str = "flowloom.local",
    metrics: GatewayMetrics | None = None,
) -> Gateway:
    """A gateway over the ledger database `database` (see build_gateway).

    `ledgers` lets the team server share its own ledgers (same store, same origins and
    signing keys) when it serves the gateway's routes in its process. Otherwise a
    project's log is named '<origin_prefix>/<project>': the team server's prefix (its
    public URL without the scheme) when recording into the server's database.
    `metrics` counts every exchange (the standalone gateway's /metrics).
    """
    from flowloom.config import DEFAULT_MAX_BODY_BYTES, load_key_settings
    from flowloom.ledger.providers import open_key_providers
    from flowloom.server.state import LedgerRegistry
    from flowloom.services import open_store

    if record not in ("fail_closed", "spool"):
        raise ConfigError(f"unknown recording policy {record!r}", hint="use fail_closed or spool")
    if telemetry:
        from flowloom.gateway.otel import require_sdk

        require_sdk(exporter=True)  # before anything is opened
    settings = settings or GatewaySettings(default_project=project)
    home = home or Path.home() / ".local" / "share" / "flowloom"
    closers: list[Any] = []
    providers = open_key_providers(home, load_key_settings())
    keys = providers.signing
    try:
        if ledgers is None:
            store = open_store(database)
            closers.append(store.close)
            ledgers = LedgerRegistry(
                store,
                keys,
                master=providers.master,
                origin=lambda name: f"{origin_prefix}/{name}",
                max_body_bytes=DEFAULT_MAX_BODY_BYTES,
            )
            closers.append(ledgers.close)
        router: RouterPort
        if provider is not None and config_path is None:
            router = SingleProviderRouter(provider)
        else:
            from flowloom.gateway.routing import DEFAULT_POLICY, Router

            router = Router(
                config_path or DEFAULT_POLICY, on_change=_change_recorder(ledgers, settings)
            )
        access: AccessPort
        if access_database == "none":
            access = OpenAccess()
        else:
            from flowloom.gateway.access import Access

            real = Access(
                access_database or database,
                master_key_loader=lambda: providers.envelope(create=True),
                audit=ledgers.audit,
            )
            closers.append(real.close)
            access = real
        observers: list[ObserveHook] = []
        if metrics is not None:
            observers.append(metrics.observe)
        if telemetry:
            from flowloom.gateway.otel import Telemetry, otlp_providers

            otlp = otlp_providers()
            closers.append(otlp.close)
            observers.append(Telemetry(otlp.tracer_provider, otlp.meter_provider).observe)
        observe = _each(observers)
        if spool_path is None and record == "spool":
            spool_path = home / "gateway-outbox"
        recorder = Recorder(
            ledgers.get,
            default_project=settings.default_project,
            mode="spool" if record == "spool" else "fail_closed",
            spool_path=spool_path,
            max_body_bytes=DEFAULT_MAX_BODY_BYTES,
            observe=observe,
            settle=Settlement(access),
        )
        gateway = Gateway(
            router=router,
            access=access,
            recorder=recorder,
            settings=settings,
            closers=closers,
        )
        return gateway
    except BaseException:
        for close in reversed(closers):
            close()
        raise


def build_gateway(
    *,
    database: str,
    config_path: Path | None = None,
    record: str = "fail_closed",
    spool_path: Path | None = None,
    project: str = "gateway",
    home: Path | None = None,
    settings: GatewaySettings | None = None,
    provider: ProviderConfig | None = None,
    access_database: str | None = None,
    telemetry: bool = False,
    origin_prefix: str = "flowloom.local",
) -> Gateway:
    """Wire a gateway over the ledger database `database`.

    Routing comes from `config_path`, else `provider` serves every call, else the default
    policy passes each provider's own model names straight through (routing.DEFAULT_POLICY);
    access from the access tables in `access_database` (default: `database`), or open
    access when `access_database` is "none".
    """
    return build(
        database=database,
        config_path=config_path,
        record=record,
        spool_path=spool_path,
        project=project,
        home=home,
        settings=settings,
        provider=provider,
        access_database=access_database,
        telemetry=telemetry,
        origin_prefix=origin_prefix,
    )


def _change_recorder(
    ledgers: LedgerRegistry, settings: GatewaySettings
) -> Callable[[ConfigChange], None]:
    """Records every load and every rejected reload of the routing policy (config.change)."""

    def record(change: ConfigChange) -> None:
        refs = {
            "setting": "gateway.routing",
            "ok": change.ok,
            "digest": change.digest,
            "previous_digest": change.previous_digest,
            "error": change.error,
            "providers": change.providers,
            "models": change.models,
        }
        ledgers.audit(
            "config.change",
            settings.default_project,
            {
                "actor": {"type": "service", "id": "gateway"},
                "subject": change.path,
                "refs": {k: v for k, v in refs.items() if v is not None},
            },
        )

    return record


def _each(observers: list[ObserveHook]) -> ObserveHook | None:
    """One observe hook calling each of `observers` (None when there are none)."""
    if not observers:
        return None
    if len(observers) == 1:
        return observers[0]

    def observe(exchange: Any, tokens: Any, response: Any) -> None:
        for hook in observers:
            hook(exchange, tokens, response)

    return observe


@dataclass(frozen=True)
class ServeSpec:
    """What `flowloom gateway serve` was told: enough to build its app in any process."""

    database: str
    config_path: str | None = None
    record: str = "fail_closed"
    spool_path: str | None = None
    project: str = "gateway"
    home: str | None = None
    provider_kind: str | None = None
    provider_url: str | None = None
    provider_key_ref: str | None = None
    open_access: bool = False
    telemetry: bool = False
    origin_prefix: str = "flowloom.local"
    metrics: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        return cls(**json.loads(text))


def build_served(spec: ServeSpec) -> Any:
    """The ASGI app `flowloom gateway serve` runs: the gateway, /metrics in front."""
    provider = None
    if spec.provider_kind is not None and spec.provider_url is not None:
        provider = ProviderConfig(
            name=spec.provider_kind,
            kind=spec.provider_kind,  # type: ignore[arg-type]
            base_url=spec.provider_url,
            api_key_ref=spec.provider_key_ref,
        )
    metrics = None
    if spec.metrics:
        from flowloom.gateway.metrics import GatewayMetrics

        metrics = GatewayMetrics()
    gateway = build(
        database=spec.database,
        config_path=Path(spec.config_path) if spec.config_path else None,
        record=spec.record,
        spool_path=Path(spec.spool_path) if spec.spool_path else None,
        project=spec.project,
        home=Path(spec.home) if spec.home else None,
        settings=None,
        provider=provider,
        access_database="none" if spec.open_access else None,
        telemetry=spec.telemetry,
        origin_prefix=spec.origin_prefix,
        metrics=metrics,
    )
    if metrics is None:
        return gateway
    from flowloom.gateway.metrics import MetricsEndpoint

    return MetricsEndpoint(gateway, metrics)


def app_from_environment() -> Any:
    """uvicorn's app factory in each worker process: the app of the spec in SPEC_ENV."""
    import gc
    import sys

    text = os.environ.get(SPEC_ENV)
    if not text:
        raise ConfigError(
            f"{SPEC_ENV} is not set", hint="start workers with flowloom gateway serve"
        )
    app = build_served(ServeSpec.from_json(text))
    sys.setswitchinterval(0.0005)  # as in a single-process gateway (cli/gateway.py)
    gc.collect()
    gc.freeze()
    return app
