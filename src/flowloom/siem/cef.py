"""ArcSight Common Event Format (CEF:0) records.

Header fields escape '\\' and '|'; extension values escape '\\', '=' and line breaks,
as the CEF specification requires. The signature id is the ledger kind, so a SIEM can
build rules per kind; `externalId` is '<log>/<index>', the entry's stable id.
"""

from __future__ import annotations

import json

from flowloom.siem.events import SecurityEvent

__all__ = ["cef"]


def _header(value: str) -> str:
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("\r", " ")


def _ext(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def cef(event: SecurityEvent, *, version: str) -> str:
    """The CEF:0 record for `event`."""
    extension = {
        "rt": str(event.epoch_ms),
        "externalId": event.uid,
        "act": event.kind,
        "outcome": "failure" if event.failed else "success",
        "suser": event.actor_name,
        "suid": event.actor_id,
        "cs1Label": "log",
        "cs1": event.log,
        "cn1Label": "index",
        "cn1": str(event.index),
        "msg": event.summary(),
    }
    if event.subject:
        extension["duser"] = event.subject
    if event.refs:
        extension["cs2Label"] = "refs"
        extension["cs2"] = json.dumps(event.refs, sort_keys=True, separators=(",", ":"))
    head = "|".join(
        _header(v) for v in ("CEF:0", "FlowLoom", "FlowLoom", version, event.kind, event.summary())
    )
    body = " ".join(f"{k}={_ext(v)}" for k, v in extension.items())
    return f"{head}|{event.severity}|{body}"
