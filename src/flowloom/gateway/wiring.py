"""Wiring one gateway: ledger store, router, access, recorder and telemetry, built once.

Kept apart from the app so that importing the ASGI pipeline does not import SQLAlchemy,
the router's configuration loader or OpenTelemetry; `build()` imports what it uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowloom.errors import ConfigError
from flowloom.gateway.app import Gateway, GatewaySettings
from flowloom.gateway.ports import AccessPort, OpenAccess, RouterPort, SingleProviderRouter
from flowloom.gateway.providers.interface import ProviderConfig
from flowloom.gateway.recorder import Recorder

if TYPE_CHECKING:
    from collections.abc import Callable

    from flowloom.gateway.recorder import ObserveHook
    from flowloom.gateway.routing.model import ConfigChange
    from flowloom.server.state import LedgerRegistry

__all__ = ["build"]


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
) -> Gateway:
    """A gateway over the ledger database `database` (see app.build_gateway).

    `ledgers` lets the team server share its own ledgers (same store, same origins and
    signing keys) when it serves the gateway's routes in its process. Otherwise a
    project's log is named '<origin_prefix>/<project>': the team server's prefix (its
    public URL without the scheme) when recording into the server's database.
    """
    from flowloom.config import DEFAULT_MAX_BODY_BYTES
    from flowloom.ledger.keys import KeyStore
    from flowloom.server.state import LedgerRegistry
    from flowloom.services import open_store

    if record not in ("fail_closed", "spool"):
        raise ConfigError(f"unknown recording policy {record!r}", hint="use fail_closed or spool")
    if telemetry:
        from flowloom.gateway.otel import require_sdk

        require_sdk()  # before anything is opened
    settings = settings or GatewaySettings(default_project=project)
    home = home or Path.home() / ".local" / "share" / "flowloom"
    closers: list[Any] = []
    keys = KeyStore(home)
    try:
        if ledgers is None:
            store = open_store(database)
            closers.append(store.close)
            ledgers = LedgerRegistry(
                store,
                keys,
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
                master_key_loader=keys.master_key,
                audit=ledgers.audit,
            )
            closers.append(real.close)
            access = real
        observe: ObserveHook | None = None
        if telemetry:
            from flowloom.gateway.otel import Telemetry

            observe = Telemetry().observe
        if spool_path is None and record == "spool":
            spool_path = home / "gateway-outbox"
        recorder = Recorder(
            ledgers.get,
            default_project=settings.default_project,
            mode="spool" if record == "spool" else "fail_closed",
            spool_path=spool_path,
            max_body_bytes=DEFAULT_MAX_BODY_BYTES,
            observe=observe,
        )
        gateway = Gateway(
            router=router,
            access=access,
            recorder=recorder,
            settings=settings,
            closers=closers,
        )
        recorder.settle = gateway.settle
        return gateway
    except BaseException:
        for close in reversed(closers):
            close()
        raise


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
