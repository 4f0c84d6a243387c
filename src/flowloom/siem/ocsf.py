"""OCSF 1.x events (Authentication 3002, Account Change 3001, API Activity 6003), validated.

Sign-ins and sign-outs are Authentication; changes to users, roles, teams and keys are
Account Change; every other selected kind (overrides, capture errors, configuration,
signatures and their failures) is API Activity, the ledger kind as the API operation.
Every event is checked against the compiled schema shipped in `schemas/ocsf.json`
(see ocsfschema.py) before it leaves: an event that does not validate is a bug here,
raised as SiemError rather than sent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from importlib import resources
from typing import Any

from flowloom.errors import EXIT_CONFIG, FlowLoomError
from flowloom.siem.events import SecurityEvent

__all__ = ["OcsfMapper", "SiemError"]


class SiemError(FlowLoomError):
    """A SIEM destination is misconfigured or an event could not be formatted."""

    exit_code = EXIT_CONFIG


_AUTH = {
    "auth.login": (1, "Logon"),
    "auth.login_failed": (1, "Logon"),
    "auth.reauthenticated": (1, "Logon"),
    "auth.logout": (2, "Logoff"),
    "auth.logout_failed": (2, "Logoff"),
}
# Account Change activity ids (OCSF 1.x account_change.json).
_ACCOUNT = (
    ("_created", 1, "Create"),
    ("_enabled", 2, "Enable"),
    ("password_set", 3, "Password Change"),
    ("_disabled", 5, "Disable"),
    ("_deleted", 6, "Delete"),
    ("_revoked", 8, "Detach Policy"),
    ("_granted", 7, "Attach Policy"),
    ("_rotated", 99, "Other"),
)
_API = (("_created", 1, "Create"), ("_deleted", 4, "Delete"), ("change", 3, "Update"))
_SEVERITY = {1: "Informational", 2: "Low", 3: "Medium", 4: "High", 5: "Critical"}


def _ocsf_severity(event: SecurityEvent) -> int:
    return 4 if event.failed else (3 if event.severity >= 5 else 1)


class OcsfMapper:
    """Builds and validates OCSF events; the compiled schema is loaded on first use."""

    def __init__(self, *, product_version: str) -> None:
        self._version = product_version

    @cached_property
    def _schemas(self) -> Mapping[str, Any]:
        text = resources.files("flowloom.siem").joinpath("schemas", "ocsf.json").read_text()
        data: Mapping[str, Any] = json.loads(text)
        return data

    @cached_property
    def _validators(self) -> dict[str, Any]:
        from jsonschema import (  # type: ignore[import-untyped]
            Draft202012Validator,
            FormatChecker,
        )

        return {
            name: Draft202012Validator(schema, format_checker=FormatChecker())
            for name, schema in self._schemas["classes"].items()
        }

    @property
    def schema_version(self) -> str:
        return str(self._schemas["version"])

    def class_of(self, event: SecurityEvent) -> str:
        if event.kind in _AUTH:
            return "authentication"
        if event.kind.startswith(("auth.user", "auth.role", "auth.key", "auth.team", "key.")):
            return "account_change"
        if event.kind in {"auth.password_set", "auth.vkey_created", "auth.vkey_revoked"}:
            return "account_change"
        return "api_activity"

    def event(self, event: SecurityEvent) -> dict[str, Any]:
        """The validated OCSF event for `event`."""
        name = self.class_of(event)
        out: dict[str, Any] = getattr(self, "_" + name)(event)
        errors = sorted(self._validators[name].iter_errors(out), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
            raise SiemError(
                f"the OCSF {name} event for {event.uid} does not validate at {where}: "
                f"{errors[0].message}"
            )
        return out

    def _base(
        self, event: SecurityEvent, class_uid: int, category: tuple[int, str], activity: Any
    ) -> dict[str, Any]:
        activity_id, activity_name = activity
        severity_id = _ocsf_severity(event)
        out: dict[str, Any] = {
            "activity_id": activity_id,
            "activity_name": activity_name,
            "category_uid": category[0],
            "category_name": category[1],
            "class_uid": class_uid,
            "type_uid": class_uid * 100 + activity_id,
            "time": event.epoch_ms,
            "severity_id": severity_id,
            "severity": _SEVERITY[severity_id],
            "status_id": 2 if event.failed else 1,
            "status": "Failure" if event.failed else "Success",
            "message": event.summary(),
            "metadata": {
                "uid": event.uid,
                "version": self.schema_version,
                "log_name": event.log,
                "sequence": event.index,
                "event_code": event.kind,
                "product": {
                    "name": "FlowLoom",
                    "vendor_name": "FlowLoom",
                    "version": self._version,
                },
            },
            "unmapped": {"kind": event.kind, "refs": dict(event.refs)},
        }
        reason = event.refs.get("reason")
        if event.failed and isinstance(reason, str):
            out["status_detail"] = reason
        return out

    def _user(self, event: SecurityEvent) -> dict[str, Any]:
        user: dict[str, Any] = {"name": event.actor_name, "uid": event.actor_id}
        kind = event.actor.get("type")
        if kind in {"human", "agent", "service"}:
            user["type_id"], user["type"] = (1, "User") if kind == "human" else (99, str(kind))
        return user

    def _target(self, event: SecurityEvent) -> dict[str, Any]:
        """The account the event is about (its subject), else the actor."""
        email = event.refs.get("email")
        uid = event.refs.get("user_id") or event.subject
        if uid is None and email is None:
            return self._user(event)
        target: dict[str, Any] = {}
        if uid is not None:
            target["uid"] = str(uid)
        if isinstance(email, str) and email:
            target["name"] = email
        return target

    def _authentication(self, event: SecurityEvent) -> dict[str, Any]:
        out = self._base(event, 3002, (3, "Identity & Access Management"), _AUTH[event.kind])
        out["class_name"] = "Authentication"
        out["user"] = self._target(event)
        out["service"] = {"name": "flowloom"}
        method = event.refs.get("method") or event.refs.get("via")
        if isinstance(method, str):
            out["auth_protocol"] = method
            out["auth_protocol_id"] = 99
        client = event.refs.get("client")
        if isinstance(client, str) and client:
            out["src_endpoint"] = {"name": client}
        if event.actor:
            out["actor"] = {"user": self._user(event)}
        return out

    def _account_change(self, event: SecurityEvent) -> dict[str, Any]:
        activity = next(((a, n) for s, a, n in _ACCOUNT if event.kind.endswith(s)), (99, "Other"))
        out = self._base(event, 3001, (3, "Identity & Access Management"), activity)
        out["class_name"] = "Account Change"
        out["user"] = self._target(event)
        out["actor"] = {"user": self._user(event)}
        return out

    def _api_activity(self, event: SecurityEvent) -> dict[str, Any]:
        activity = next(((a, n) for s, a, n in _API if event.kind.endswith(s)), (99, "Other"))
        out = self._base(event, 6003, (6, "Application Activity"), activity)
        out["class_name"] = "API Activity"
        out["actor"] = {"user": self._user(event)}
        out["api"] = {"operation": event.kind, "service": {"name": "flowloom"}}
        client = event.refs.get("client")
        out["src_endpoint"] = {"name": client if isinstance(client, str) and client else "flowloom"}
        return out
