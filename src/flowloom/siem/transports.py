"""Where formatted events go: syslog over TCP/TLS, Splunk HEC, Elastic bulk.

Each transport sends one batch and returns only when the receiver has taken all of it,
raising DeliveryError otherwise, so the caller advances its cursor only on success:
- syslog: TCP has no application acknowledgement, so after the frames the sender
  half-closes (TLS: close_notify) and waits for the receiver to close in turn, which it
  does after reading everything up to the end of the stream;
- Splunk HEC: POST /services/collector/event, `Authorization: Splunk <token>`, the
  events concatenated; 200 with {"code": 0} is success;
- Elastic: POST /_bulk as NDJSON `create` actions with the entry's uid as `_id`, so a
  batch sent twice stores each event once (409 on a repeat counts as delivered).
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from flowloom.errors import RemoteError
from flowloom.outbound import OutboundGuard, OutboundRefusedError, guarded_client
from flowloom.siem.syslog import frame

__all__ = [
    "DeliveryError",
    "ElasticBulkTransport",
    "HecTransport",
    "Record",
    "SyslogTransport",
    "Transport",
]


class DeliveryError(RemoteError):
    """A receiver did not take a batch (down, refused, or answered an error)."""


Record = tuple[str, bytes | Mapping[str, Any]]
"""(uid, payload): syslog payloads are bytes (one message), HTTP payloads JSON objects."""


class Transport(Protocol):
    def send(self, records: Sequence[Record]) -> None:
        """Deliver every record or raise DeliveryError."""
        ...


class SyslogTransport:
    """RFC 5424 messages, octet-counted, over one TCP (or RFC 5425 TLS) connection."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
        timeout: float = 30.0,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._host, self._port = host, port
        self._tls, self._server_name = tls, server_name or host
        self._timeout = timeout
        self._outbound = outbound
        """Checks the resolved address before connecting; None: unchecked (the Siem
        service always gives one)."""

    def send(self, records: Sequence[Record]) -> None:
        data = b"".join(frame(bytes(p)) for _, p in records if isinstance(p, bytes))
        where = f"syslog at {self._host}:{self._port}"
        try:
            if self._outbound is None:
                raw = socket.create_connection((self._host, self._port), timeout=self._timeout)
            else:
                raw = self._outbound.connect(self._host, self._port, self._timeout)
        except OutboundRefusedError as exc:
            raise DeliveryError(f"{where}: {exc} ({exc.hint})") from None
        except OSError as exc:
            raise DeliveryError(f"cannot reach {where}: {exc}") from None
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(raw, server_hostname=self._server_name)
                conn.sendall(data)
                try:
                    plain = conn.unwrap()  # close_notify: the receiver ends its read there
                except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                    return  # it closed after our close_notify: it read everything before
                plain.shutdown(socket.SHUT_WR)
                _drain(plain)
            else:
                raw.sendall(data)
                raw.shutdown(socket.SHUT_WR)
                _drain(raw)
        except ssl.SSLCertVerificationError as exc:
            raise DeliveryError(f"{where}: its certificate is not trusted: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"{where} broke off the delivery: {exc}") from None
        finally:
            raw.close()


def _drain(sock: socket.socket) -> None:
    """Wait for the receiver's end of stream (it has read all we sent)."""
    while sock.recv(4096):
        pass


class _Http:
    def __init__(
        self,
        url: str,
        *,
        verify: bool | ssl.SSLContext = True,
        timeout: float = 30.0,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._verify = verify
        self._timeout = timeout
        self._outbound = outbound

    def post(self, path: str, content: bytes, headers: Mapping[str, str]) -> Any:
        import httpx

        url = self._url + path
        try:
            client = (
                httpx.Client(verify=self._verify, timeout=self._timeout)
                if self._outbound is None
                else guarded_client(self._outbound, verify=self._verify, timeout=self._timeout)
            )
            with client:
                response = client.post(url, content=content, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise DeliveryError(f"cannot reach {url}: {exc}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 300:
            detail = body if body is not None else response.text[:200]
            raise DeliveryError(f"{url} answered {response.status_code}: {detail}")
        return body


class HecTransport:
    """Splunk HTTP Event Collector: JSON events, token in `Authorization: Splunk …`."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        sourcetype: str,
        host: str,
        index: str | None = None,
        verify: bool | ssl.SSLContext = True,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._http = _Http(url, verify=verify, outbound=outbound)
        self._token = token
        self._sourcetype, self._host, self._index = sourcetype, host, index

    def send(self, records: Sequence[Record]) -> None:
        lines = []
        for _, payload in records:
            event = dict(payload) if isinstance(payload, Mapping) else {}
            wrapper: dict[str, Any] = {
                "time": event.get("time", 0) / 1000 if "time" in event else None,
                "host": self._host,
                "source": "flowloom",
                "sourcetype": self._sourcetype,
                "event": event,
            }
            if self._index:
                wrapper["index"] = self._index
            lines.append(json.dumps({k: v for k, v in wrapper.items() if v is not None}))
        body = self._http.post(
            "/services/collector/event",
            "\n".join(lines).encode("utf-8"),
            {"Authorization": f"Splunk {self._token}", "Content-Type": "application/json"},
        )
        if not isinstance(body, Mapping) or body.get("code") != 0:
            raise DeliveryError(f"Splunk HEC did not accept the batch: {body}")


class ElasticBulkTransport:
    """Elasticsearch/OpenSearch `_bulk` with `create` actions keyed by the entry's uid."""

    def __init__(
        self,
        url: str,
        index: str,
        *,
        api_key: str | None,
        verify: bool | ssl.SSLContext = True,
        outbound: OutboundGuard | None = None,
    ) -> None:
        self._http = _Http(url, verify=verify, outbound=outbound)
        self._index = index
        self._api_key = api_key

    def send(self, records: Sequence[Record]) -> None:
        lines = []
        for uid, payload in records:
            doc = dict(payload) if isinstance(payload, Mapping) else {}
            lines.append(json.dumps({"create": {"_index": self._index, "_id": uid}}))
            lines.append(json.dumps(doc))
        headers = {"Content-Type": "application/x-ndjson"}
        if self._api_key:
            headers["Authorization"] = f"ApiKey {self._api_key}"
        body = self._http.post("/_bulk", ("\n".join(lines) + "\n").encode("utf-8"), headers)
        if not isinstance(body, Mapping):
            raise DeliveryError(f"Elastic answered no bulk result: {body}")
        if body.get("errors"):
            for item in body.get("items", []):
                result: Mapping[str, Any] = (
                    next(iter(item.values()), {}) if isinstance(item, Mapping) else {}
                )
                status = int(result.get("status", 0))
                if status >= 300 and status != 409:  # 409: stored by an earlier attempt
                    raise DeliveryError(
                        f"Elastic refused {result.get('_id')}: {result.get('error')}"
                    )
