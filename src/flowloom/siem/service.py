"""Siem: configure destinations, forward the ledger's security events, send a test event.

Configuration changes are recorded in the ledger (`config.change`, setting
"siem.destination"), secrets sealed by the injected Sealer (the gateway's provider-key
vault). Forwarding reads each log from the destination's cursor, keeps the
security-relevant kinds, sends them in batches and advances the cursor only after the
receiver acknowledged the batch: a crash or an unreachable receiver leaves the cursor
where the last acknowledged batch ended, so the next run sends from there, in order.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from flowloom.errors import InputError, NotFoundError
from flowloom.outbound import OutboundGuard
from flowloom.siem.book import Cursor, Destination, SiemBook
from flowloom.siem.cef import cef
from flowloom.siem.events import SecurityEvent, is_security_kind
from flowloom.siem.ocsf import OcsfMapper
from flowloom.siem.syslog import rfc5424
from flowloom.siem.transports import (
    DeliveryError,
    ElasticBulkTransport,
    HecTransport,
    Record,
    SyslogTransport,
    Transport,
)
from flowloom.store.interface import Store

__all__ = ["DestinationStatus", "ForwardResult", "Sealer", "Siem"]

KINDS = ("syslog", "hec", "elastic")
FORMATS = {"syslog": ("rfc5424", "cef", "ocsf"), "hec": ("ocsf",), "elastic": ("ocsf",)}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_OPTIONS = {"ca_pem", "server_name", "index", "sourcetype", "insecure_skip_verify"}

AuditHook = Callable[[str, str | None, Mapping[str, Any]], None]


class Sealer(Protocol):
    """Encrypts secrets at rest (flowloom.gateway.access.vault.ProviderKeyVault)."""

    def seal(self, name: str, secret: str) -> bytes: ...

    def open(self, name: str, blob: bytes) -> str: ...


@dataclass(frozen=True)
class ForwardResult:
    """What one forwarding pass did for one destination."""

    project: str
    name: str
    delivered: int = 0
    error: str | None = None


@dataclass(frozen=True)
class DestinationStatus:
    destination: Destination
    cursors: Mapping[str, Cursor] = field(default_factory=dict)
    behind: Mapping[str, int] = field(default_factory=dict)
    """Ledger entries (of any kind) each log has past the cursor."""


def _secret_name(project: str, name: str) -> str:
    return f"siem:{project}:{name}"


class Siem:
    """The SIEM feed over one store (every project's log) and its destination book."""

    def __init__(
        self,
        book: SiemBook,
        store: Store,
        *,
        sealer: Sealer,
        audit: AuditHook,
        instance_project: str,
        hostname: str,
        version: str,
        transport_for: Callable[[Destination, str | None], Transport] | None = None,
        batch_size: int = 500,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._outbound = outbound or OutboundGuard()
        """Where destinations may point (flowloom.outbound): checked on save and send."""
        self._book = book
        self._store = store
        self._sealer = sealer
        self._audit = audit
        self._instance = instance_project
        self._hostname = hostname
        self._version = version
        self._ocsf = OcsfMapper(product_version=version)
        self._transport_for = transport_for or self._transport
        self._batch = batch_size

    # -- configuration ----------------------------------------------------------------

    def configure(
        self,
        project: str,
        name: str,
        *,
        kind: str,
        target: str,
        format: str | None = None,
        secret: str | None = None,
        options: Mapping[str, Any] | None = None,
        actor: Mapping[str, Any] | None = None,
    ) -> Destination:
        """Add or change destination `name` of `project`; recorded as config.change.

        `secret` None keeps a stored secret; "" removes it.
        """
        if not _NAME_RE.match(name or ""):
            raise InputError(
                f"{name!r} is not a destination name",
                hint="use lower-case letters, digits, '.', '_' or '-' (e.g. soc-syslog)",
            )
        if kind not in KINDS:
            raise InputError(f"unknown SIEM kind {kind!r}", hint="use " + ", ".join(KINDS))
        fmt = format or FORMATS[kind][0]
        if fmt not in FORMATS[kind]:
            raise InputError(
                f"a {kind} destination cannot send {fmt!r}",
                hint="use " + ", ".join(FORMATS[kind]),
            )
        opts = dict(options or {})
        unknown = set(opts) - _OPTIONS
        if unknown:
            raise InputError(
                f"unknown SIEM option(s): {', '.join(sorted(unknown))}",
                hint="use " + ", ".join(sorted(_OPTIONS)),
            )
        _check_target(kind, target)
        self._outbound.check_url(target, default_port=514)
        if opts.get("ca_pem"):
            _tls_context(str(opts["ca_pem"]), verify=True)  # a bad PEM fails here, not later
        previous = self._book.get(project, name)
        dest = Destination(project, name, kind, fmt, target, opts)
        sealed = self._sealer.seal(_secret_name(project, name), secret) if secret else None
        self._book.put(dest, sealed, keep_secret=secret is None)
        stored = self._book.get(project, name)
        assert stored is not None
        self._record(
            project,
            name,
            "changed" if previous else "added",
            actor,
            {
                "kind": kind,
                "format": fmt,
                "target": target,
                "secret": "kept" if secret is None else ("set" if secret else "removed"),
                "previous_target": previous.target if previous else None,
            },
        )
        return stored

    def remove(self, project: str, name: str, *, actor: Mapping[str, Any] | None = None) -> None:
        if not self._book.delete(project, name):
            raise NotFoundError(f"no SIEM destination {name!r} in {project!r}")
        self._record(project, name, "removed", actor, {})

    def _record(
        self,
        project: str,
        name: str,
        action: str,
        actor: Mapping[str, Any] | None,
        refs: Mapping[str, Any],
    ) -> None:
        meta: dict[str, Any] = {
            "subject": f"siem:{name}",
            "refs": {
                "setting": "siem.destination",
                "destination": name,
                "action": action,
                **{k: v for k, v in refs.items() if v is not None},
            },
        }
        if actor is not None:
            meta["actor"] = dict(actor)
        self._audit("config.change", project, meta)

    def destinations(self, project: str | None = None) -> list[Destination]:
        return self._book.list(project)

    def get(self, project: str, name: str) -> Destination:
        dest = self._book.get(project, name)
        if dest is None:
            raise NotFoundError(
                f"no SIEM destination {name!r} in {project!r}",
                hint="list them with: flowloom siem status",
            )
        return dest

    def status(self, project: str | None = None) -> list[DestinationStatus]:
        out = []
        for dest in self._book.list(project):
            cursors = self._book.cursors(dest.project, dest.name)
            behind = {
                log: self._store.size(log) - (cursors[log].next_index if log in cursors else 0)
                for log in self._logs(dest)
            }
            out.append(DestinationStatus(dest, cursors, behind))
        return out

    # -- delivery ---------------------------------------------------------------------

    def _logs(self, dest: Destination) -> list[str]:
        """The instance's destinations stream every log; a project's, its own."""
        if dest.project == self._instance:
            return sorted(self._store.logs())
        return [dest.project]

    def _secret(self, dest: Destination) -> str | None:
        sealed = self._book.sealed(dest.project, dest.name)
        return self._sealer.open(_secret_name(dest.project, dest.name), sealed) if sealed else None

    def _transport(self, dest: Destination, secret: str | None) -> Transport:
        ca = dest.options.get("ca_pem")
        insecure = bool(dest.options.get("insecure_skip_verify"))
        if dest.kind == "syslog":
            parts = urlsplit(dest.target)
            tls = _tls_context(str(ca) if ca else None, verify=not insecure)
            return SyslogTransport(
                parts.hostname or "",
                int(parts.port or (6514 if parts.scheme == "tls" else 514)),
                tls=tls if parts.scheme == "tls" else None,
                server_name=dest.options.get("server_name"),
                outbound=self._outbound,
            )
        verify: bool | ssl.SSLContext = (
            False if insecure else (_tls_context(str(ca), verify=True) if ca else True)
        )
        if dest.kind == "hec":
            if not secret:
                raise InputError(f"the HEC destination {dest.name!r} has no token")
            return HecTransport(
                dest.target,
                secret,
                sourcetype=str(dest.options.get("sourcetype") or "ocsf"),
                host=self._hostname,
                index=dest.options.get("index"),
                verify=verify,
                outbound=self._outbound,
            )
        return ElasticBulkTransport(
            dest.target,
            str(dest.options.get("index") or "flowloom-security"),
            api_key=secret,
            verify=verify,
            outbound=self._outbound,
        )

    def _record_for(self, dest: Destination, event: SecurityEvent) -> Record:
        if dest.kind != "syslog":
            return (event.uid, self._ocsf.event(event))
        if dest.format == "cef":
            message = cef(event, version=self._version)
        elif dest.format == "ocsf":
            import json

            message = json.dumps(self._ocsf.event(event), separators=(",", ":"), sort_keys=True)
        else:
            message = event.summary()
        return (
            event.uid,
            rfc5424(event, message, hostname=self._hostname, app_name="flowloom"),
        )

    def forward(self, project: str | None = None, name: str | None = None) -> list[ForwardResult]:
        """One pass: every destination (of `project`, or `name`) up to the logs' ends."""
        results = []
        for dest in self._book.list(project):
            if name is not None and dest.name != name:
                continue
            results.append(self._forward_one(dest))
        if name is not None and not results:
            raise NotFoundError(f"no SIEM destination {name!r}")
        return results

    def _forward_one(self, dest: Destination) -> ForwardResult:
        transport = self._transport_for(dest, self._secret(dest))
        cursors = self._book.cursors(dest.project, dest.name)
        delivered = 0
        for log in self._logs(dest):
            start = cursors[log].next_index if log in cursors else 0
            try:
                delivered += self._forward_log(dest, transport, log, start)
            except DeliveryError as exc:
                self._book.failed(dest.project, dest.name, log, str(exc))
                return ForwardResult(dest.project, dest.name, delivered, str(exc))
        return ForwardResult(dest.project, dest.name, delivered)

    def _forward_log(self, dest: Destination, transport: Transport, log: str, start: int) -> int:
        delivered = 0
        end = self._store.size(log)
        while start < end:
            stop = min(end, start + self._batch * 4)
            events: list[SecurityEvent] = []
            scanned = start
            for entry in self._store.entries(log, start, stop):
                scanned = entry.index + 1
                if is_security_kind(entry.kind):
                    events.append(SecurityEvent.from_envelope(log, entry.index, entry.envelope))
                    if len(events) >= self._batch:
                        break
            if scanned == start:
                break
            if events:
                transport.send([self._record_for(dest, e) for e in events])
            self._book.advance(dest.project, dest.name, log, scanned, len(events))
            delivered += len(events)
            start = scanned
        return delivered

    def send_test(self, project: str, name: str) -> SecurityEvent:
        """Send one synthetic `siem.test` event to `name` now (no cursor moves)."""
        dest = self.get(project, name)
        now = datetime.now(UTC)
        event = SecurityEvent(
            log=f"{project}#test",
            index=int(now.timestamp() * 1000),
            kind="siem.test",
            ts=now,
            actor={"type": "service", "id": "flowloom-siem", "name": "FlowLoom SIEM test"},
            subject=f"siem:{name}",
            refs={"destination": name},
        )
        transport = self._transport_for(dest, self._secret(dest))
        transport.send([self._record_for(dest, event)])
        return event

    def format(self, dest: Destination, events: Sequence[SecurityEvent]) -> list[Record]:
        """The records `dest` would receive for `events` (for previews and tests)."""
        return [self._record_for(dest, e) for e in events]


def _check_target(kind: str, target: str) -> None:
    schemes = ("tcp", "tls") if kind == "syslog" else ("http", "https")
    try:
        if any(ord(c) < 33 or ord(c) == 127 for c in target or ""):
            raise ValueError("spaces or control characters")
        parts = urlsplit(target or "")
        port = parts.port
        host = parts.hostname
    except ValueError:
        parts, port, host = urlsplit(""), None, None
    if parts.scheme not in schemes or not host:
        example = "tls://siem.example.org:6514" if kind == "syslog" else "https://host:8088"
        raise InputError(
            f"{target!r} is not a {kind} target",
            hint=f"use {' or '.join(s + '://' for s in schemes)}host:port, e.g. {example}",
        )
    if kind == "syslog" and port is None:
        raise InputError(f"{target!r} names no port", hint="add :514 (tcp) or :6514 (tls)")


def _tls_context(ca_pem: str | None, *, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_pem:
        try:
            context.load_verify_locations(cadata=ca_pem)
        except (ssl.SSLError, ValueError) as exc:
            raise InputError(
                f"the CA certificate is not PEM: {exc}", hint="pass the CA file's PEM text"
            ) from None
    return context
