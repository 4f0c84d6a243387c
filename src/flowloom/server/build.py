"""build_server(settings): the team server's objects wired together, once per process.

The local wiring (store, keys, one project's ledger) is `flowloom.services`; this adds
what only the server has: every project's log, the directory, OIDC, the gateway view.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowloom.config import load_key_settings
from flowloom.ledger.providers import open_key_providers
from flowloom.server.settings import ServerSettings
from flowloom.server.state import LedgerRegistry, ServerState
from flowloom.services import open_store
from flowloom.store.interface import Store

__all__ = ["build_server"]


def build_server(settings: ServerSettings, *, store: Store | None = None) -> ServerState:
    """Wire the team server: one store for every project's log, the directory, keys.

    Opening checks the database: an unreachable PostgreSQL raises StoreUnavailableError
    here (exit code 4) rather than on the first request.
    """
    from flowloom.auth.directory import Directory
    from flowloom.auth.permissions import Authorizer
    from flowloom.server.idempotency import IdempotencyBook
    from flowloom.server.metrics import Metrics

    store = store or open_store(settings.database)
    closers: list[Any] = []
    try:
        providers = open_key_providers(settings.home, load_key_settings())
        keys = providers.signing
        ledgers = LedgerRegistry(
            store,
            keys,
            master=providers.master,
            origin=settings.origin,
            max_body_bytes=settings.max_body_bytes,
            batch_max_entries=settings.batch_max_entries,
        )
        _require_instance_key(ledgers)
        directory = Directory(settings.database, audit=ledgers.audit)
        closers.append(directory.close)
        idempotency = IdempotencyBook(directory.engine)
        oidc = None
        if settings.oidc:
            import httpx

            from flowloom.auth.oidc import OidcClient, OidcSettings

            oidc_settings = OidcSettings.from_mapping(settings.oidc, public_url=settings.public_url)
            http = httpx.Client(timeout=oidc_settings.timeout_seconds)
            closers.append(http.close)
            oidc = OidcClient(oidc_settings, http)
        saml = None
        if settings.saml:
            from flowloom.auth.saml import SamlServiceProvider, SamlSettings

            saml_settings = SamlSettings.from_mapping(settings.saml, public_url=settings.public_url)
            saml = SamlServiceProvider(saml_settings)
        from flowloom.server.gateway_view import GatewayView

        # Opened on first use: the gateway's tables, by default in this very database.
        gateway = GatewayView(
            settings.gateway.database or directory.engine,
            config=settings.gateway.config,
            master_key_loader=lambda: providers.envelope(create=True),
        )
        closers.append(gateway.close)
        state = ServerState(
            settings=settings,
            store=store,
            keys=keys,
            ledgers=ledgers,
            directory=directory,
            authorizer=Authorizer(),
            idempotency=idempotency,
            metrics=Metrics(),
            oidc=oidc,
            saml=saml,
            closers=closers,
            repositories=dict(settings.repositories),
            gateway=gateway,
        )
        from flowloom.server.tlog.book import TlogBook

        state.tlog = TlogBook(directory.engine)
        state.siem = _siem(state, lambda: providers.envelope(create=True))
        from flowloom.auth.scim import Provisioning
        from flowloom.server.deprovision import gateway_cut_off

        state.integrations = _integrations(
            directory.engine, providers, ledgers, closers, settings.outbound
        )
        state.provisioning = Provisioning(directory, cut_off=[gateway_cut_off(state)])
        if settings.ldap:
            from flowloom.auth.ldap import LdapDirectory, LdapSettings

            state.ldap = LdapDirectory(
                LdapSettings.from_mapping(settings.ldap),
                directory,
                cut_off=[gateway_cut_off(state)],
            )
            if state.ldap.settings.sync_minutes:
                from flowloom.auth.ldapsync import PeriodicSync

                loop = PeriodicSync(state.ldap.sync, state.ldap.settings.sync_minutes * 60.0)
                closers.append(loop.start().close)
        state.webhooks = _webhooks(state, providers.envelope)
        closers.append(state.webhooks.close)
        return state
    except BaseException:
        for close in reversed(closers):
            close()
        store.close()
        raise


def _integrations(
    engine: Any, providers: Any, ledgers: LedgerRegistry, closers: list[Any], outbound: Any
) -> Any:
    """Code-host integrations over the directory's database; secrets sealed like the
    gateway's provider keys; a worker thread sends the outbound queue, every connection
    through the outbound guard."""
    from flowloom.gateway.access.vault import ProviderKeyVault
    from flowloom.integrations.delivery import HostClients
    from flowloom.integrations.service import Integrations
    from flowloom.integrations.store import IntegrationStore
    from flowloom.outbound import guarded_client

    store = IntegrationStore(engine, ProviderKeyVault(lambda: providers.envelope(create=True)))
    http = guarded_client(outbound, timeout=30)
    closers.append(http.close)
    integrations = Integrations(
        store, HostClients(http), ledgers.audit, worker=True, outbound=outbound
    )
    closers.append(integrations.close)
    return integrations


def _webhooks(state: ServerState, master: Callable[..., Any]) -> Any:
    """Outbound webhooks over the directory's database; the dispatcher starts with the
    app (flowloom.server.app), so building a server sends nothing."""
    import time

    from flowloom.webhooks.dispatcher import Dispatcher, DispatchSettings
    from flowloom.webhooks.mailer import Mailer, SmtpSettings
    from flowloom.webhooks.secrets import SecretVault
    from flowloom.webhooks.service import Webhooks
    from flowloom.webhooks.store import WebhookStore

    store = WebhookStore(state.directory.engine)
    vault = SecretVault(lambda: master(create=True))
    public = state.settings.public_url.rstrip("/")

    def source_of(project: str) -> str:
        return f"{public}/api/v1/projects/{project}"

    def secret_of(sub_id: str) -> str:
        return vault.open(sub_id, store.sealed_secret(sub_id))

    def url_of(sub: Any) -> str:
        sealed = store.sealed_url(sub.id)  # chat targets: the URL is a credential
        return sub.url if sealed is None else vault.open(sub.id + "/url", sealed)

    def email_of(user_id: str) -> str | None:
        from flowloom.errors import NotFoundError

        try:
            user = state.directory.get_user(user_id)
        except NotFoundError:
            return None
        return None if user.disabled or not user.email else str(user.email)

    dispatcher = Dispatcher(
        store,
        state.ledgers,
        secret_of=secret_of,
        source_of=source_of,
        url_of=url_of,
        public_url=public,
        mailer=Mailer(SmtpSettings.from_environ()),
        email_of=email_of,
        settings=DispatchSettings.from_environ(),
        outbound=state.settings.outbound,
    )
    return Webhooks(
        store,
        vault,
        dispatcher,
        audit=state.audit,
        size_of=lambda project: state.ledger(project).size(),
        source_of=source_of,
        clock=time.time,
        outbound=state.settings.outbound,
    )


def _siem(state: ServerState, master_key_loader: Any) -> Any:
    """The SIEM feed over the server's store, its tables beside the directory's."""
    import socket

    from flowloom import __version__
    from flowloom.auth.permissions import INSTANCE_PROJECT
    from flowloom.gateway.access.vault import ProviderKeyVault
    from flowloom.siem.book import SiemBook
    from flowloom.siem.service import Siem

    return Siem(
        SiemBook(state.directory.engine),
        state.store,
        sealer=ProviderKeyVault(master_key_loader),
        audit=state.audit,
        instance_project=INSTANCE_PROJECT,
        hostname=socket.gethostname(),
        version=__version__,
        outbound=state.settings.outbound,
    )


def _require_instance_key(ledgers: LedgerRegistry) -> None:
    """Refuse to start with a home that lacks the instance log's key (KeyMissingError).

    Every administrative action is recorded there, attested by that key; a server that
    could not record them would act unrecorded. A brand-new instance log has no key yet.
    """
    from flowloom.auth.permissions import INSTANCE_PROJECT

    ledger = ledgers.get(INSTANCE_PROJECT)
    if ledger.current_verifier() is not None:
        ledger.require_signer()
