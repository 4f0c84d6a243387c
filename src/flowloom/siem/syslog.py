"""RFC 5424 syslog messages and RFC 6587 octet-counting frames.

Facility 13 ("log audit"); severity from the event (failures are warnings). The
structured element `flowloom@32473` carries where the entry sits in the ledger (32473
is the enterprise number RFC 5612 reserves for documentation: replace it with your own
in the receiver's parser if you register one). The message is the event's summary, a
CEF record or OCSF JSON, as the destination's format says. TLS transport (RFC 5425)
uses the same octet-counted frames.
"""

from __future__ import annotations

from flowloom.siem.events import SecurityEvent

__all__ = ["SD_ID", "frame", "rfc5424"]

SD_ID = "flowloom@32473"
_FACILITY = 13
_BOM = "\ufeff"


def _sd_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _token(value: str, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, '-' when empty."""
    cleaned = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return cleaned or "-"


def _severity(event: SecurityEvent) -> int:
    return 4 if event.failed else (5 if event.severity >= 5 else 6)  # warning/notice/info


def rfc5424(event: SecurityEvent, message: str, *, hostname: str, app_name: str) -> bytes:
    """The syslog message (no framing) for `event`, with `message` as its MSG part."""
    pri = _FACILITY * 8 + _severity(event)
    stamp = event.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    params = {
        "log": event.log,
        "index": str(event.index),
        "kind": event.kind,
        "actor": event.actor_id,
        "outcome": "failure" if event.failed else "success",
    }
    if event.subject:
        params["subject"] = event.subject
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    header = (
        f"<{pri}>1 {stamp} {_token(hostname, 255)} {_token(app_name, 48)} - "
        f"{_token(event.kind, 32)} {sd}"
    )
    return (header + " " + _BOM + message).encode("utf-8")


def frame(message: bytes) -> bytes:
    """Octet counting (RFC 6587 §3.4.1, RFC 5425 §4.3): 'LEN SP MSG'."""
    return str(len(message)).encode("ascii") + b" " + message
