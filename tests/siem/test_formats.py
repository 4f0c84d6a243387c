"""The formats on their own: the shipped OCSF schema is the compiled source, every
selected kind maps to a valid OCSF event, CEF escaping, syslog framing and selection."""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path

import pytest

from flowloom.siem.cef import cef
from flowloom.siem.events import SecurityEvent, is_security_kind
from flowloom.siem.ocsf import OcsfMapper
from flowloom.siem.ocsfschema import compile_bundle
from flowloom.siem.syslog import frame, rfc5424

SOURCE = Path(__file__).parents[3] / "shared" / "specs" / "ocsf-schema"
KINDS = [
    "auth.login",
    "auth.login_failed",
    "auth.logout",
    "auth.reauthenticated",
    "auth.user_created",
    "auth.user_disabled",
    "auth.user_enabled",
    "auth.user_deleted",
    "auth.role_granted",
    "auth.role_revoked",
    "auth.key_created",
    "auth.key_rotated",
    "auth.key_revoked",
    "auth.password_set",
    "auth.team_created",
    "auth.signature_failed",
    "auth.approval_denied",
    "key.generated",
    "key.rotated",
    "override.grant",
    "capture.error",
    "capture.bypass",
    "config.change",
    "signature.apply",
    "verify.failed",
    "siem.test",
]


def _event(kind: str, **refs: object) -> SecurityEvent:
    return SecurityEvent.from_envelope(
        "alpha",
        7,
        {
            "kind": kind,
            "ts": "2026-11-22T02:40:00.123456Z",
            "actor": {"type": "human", "id": "u-1", "name": "Ann | Admin = boss"},
            "subject": "u-2",
            "refs": {"reason": "line\nbreak", **refs},
        },
    )


def test_the_shipped_schema_is_the_compiled_source() -> None:
    if not SOURCE.is_dir():
        message = f"the OCSF schema source is not beside the repository ({SOURCE})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    shipped = resources.files("flowloom.siem").joinpath("schemas", "ocsf.json").read_text()
    assert compile_bundle(SOURCE) == shipped


@pytest.mark.parametrize("kind", KINDS)
def test_every_selected_kind_is_a_valid_ocsf_event(kind: str) -> None:
    assert is_security_kind(kind)
    out = OcsfMapper(product_version="0.1.0").event(_event(kind))  # validates, or raises
    assert out["metadata"]["uid"] == "alpha/7"
    assert out["type_uid"] == out["class_uid"] * 100 + out["activity_id"]


def test_an_invalid_event_is_refused_not_sent() -> None:
    from flowloom.siem.ocsf import SiemError

    mapper = OcsfMapper(product_version="0.1.0")
    mapper._api_activity = lambda event: {"class_uid": 6003}  # type: ignore[method-assign]
    with pytest.raises(SiemError, match="does not validate"):
        mapper.event(_event("override.grant"))


def test_not_selected() -> None:
    for kind in ("agent.prompt", "decision.record", "commit.link", "session.start"):
        assert not is_security_kind(kind)


def test_cef_escapes_header_and_extension() -> None:
    record = cef(_event("auth.login_failed"), version="1|2")
    head, _, extension = record.partition("|7|")
    assert head.startswith("CEF:0|FlowLoom|FlowLoom|1\\|2|auth.login_failed|")
    assert "suser=Ann | Admin \\= boss" in extension
    raw = extension.split("cs2=")[1]
    unescaped = re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), raw)
    assert json.loads(unescaped)["reason"] == "line\nbreak"


def test_syslog_message_and_octet_counting() -> None:
    message = rfc5424(
        _event("auth.login", note='a "quoted" ]'), "hé", hostname="h o", app_name="fl"
    )
    assert message.startswith(b"<110>1 2026-11-22T02:40:00.123456Z ho fl - auth.login [")
    assert message.endswith("\ufeffhé".encode())
    framed = frame(message)
    length, _, rest = framed.partition(b" ")
    assert int(length) == len(rest) == len(message)
