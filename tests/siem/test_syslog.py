"""SIEM over syslog, against a real rsyslog: RFC 5424 over TCP and TLS, CEF, OCSF."""

from __future__ import annotations

import json

import pytest

from flowloom.siem.syslog import SD_ID
from tests.siem.conftest import Env, security_events
from tests.siem.rsyslog import Rsyslog


def _of(rows: list[list[str]], log: str) -> list[list[str]]:
    return [r for r in rows if f'log="{log}"' in r[4]]


def test_rfc5424_over_tcp_reaches_rsyslog_parsed(env: Env, rsyslog: Rsyslog) -> None:
    wanted = security_events(env.ledger("p-tcp"), "tcp")
    siem = env.siem()
    siem.configure("p-tcp", "soc", kind="syslog", target=f"tcp://127.0.0.1:{rsyslog.tcp_port}")
    wanted.append("config.change")  # the configuration itself is a security event
    [result] = siem.forward("p-tcp")
    assert result.error is None and result.delivered == len(wanted)
    rows = _of(rsyslog.lines(len(wanted)), "p-tcp")
    assert [r[3] for r in rows] == wanted  # MSGID = the kind, in ledger order
    facility, severity, app, _, sd, msg = rows[0]
    assert (facility, severity, app) == ("13", "6", "flowloom")
    assert sd.startswith(f"[{SD_ID} log=") and 'kind="auth.login"' in sd
    assert msg.lstrip("\ufeff").startswith("auth.login by Ada Lovelace")
    assert rows[1][1] == "4"  # a failed sign-in is a warning
    # nothing new: a second pass sends nothing
    assert siem.forward("p-tcp")[0].delivered == 0


def test_cef_and_ocsf_over_tls_with_the_receivers_ca(env: Env, rsyslog: Rsyslog) -> None:
    wanted = security_events(env.ledger("p-tls"), "tls")
    siem = env.siem()
    target = f"tls://127.0.0.1:{rsyslog.tls_port}"
    ca = rsyslog.ca.read_text()
    siem.configure(
        "p-tls", "cef", kind="syslog", format="cef", target=target, options={"ca_pem": ca}
    )
    siem.configure(
        "p-tls", "ocsf", kind="syslog", format="ocsf", target=target, options={"ca_pem": ca}
    )
    wanted += ["config.change", "config.change"]
    results = siem.forward("p-tls")
    assert [r.error for r in results] == [None, None]
    rows = _of(rsyslog.lines(2 * len(wanted)), "p-tls")
    cef_rows = [r[5].lstrip("\ufeff") for r in rows if r[5].lstrip("\ufeff").startswith("CEF:0|")]
    ocsf_rows = [json.loads(r[5].lstrip("\ufeff")) for r in rows if "{" in r[5][:3]]
    assert [c.split("|")[4] for c in cef_rows] == wanted
    assert cef_rows[0].startswith("CEF:0|FlowLoom|FlowLoom|0.1.0|auth.login|")
    assert "externalId=p-tls/0" in cef_rows[0]
    assert [o["metadata"]["event_code"] for o in ocsf_rows] == wanted
    classes = {o["metadata"]["event_code"]: o["class_uid"] for o in ocsf_rows}
    assert classes["auth.login"] == 3002
    assert classes["auth.role_granted"] == 3001
    assert classes["override.grant"] == 6003
    assert ocsf_rows[1]["status_id"] == 2  # the failed sign-in


def test_tls_refuses_a_receiver_it_does_not_trust(env: Env, rsyslog: Rsyslog) -> None:
    security_events(env.ledger("p-untrusted"), "untrusted")
    siem = env.siem()
    siem.configure(
        "p-untrusted", "soc", kind="syslog", target=f"tls://127.0.0.1:{rsyslog.tls_port}"
    )
    [result] = siem.forward("p-untrusted")
    assert result.delivered == 0
    assert result.error is not None and "not trusted" in result.error
    [status] = siem.status("p-untrusted")
    assert status.cursors["p-untrusted"].next_index == 0
    assert "not trusted" in (status.cursors["p-untrusted"].last_error or "")


def test_receiver_down_then_back_after_a_restart_loses_nothing(env: Env, rsyslog: Rsyslog) -> None:
    ledger = env.ledger("p-fault")
    siem = env.siem(batch_size=3)
    siem.configure("p-fault", "soc", kind="syslog", target=f"tcp://127.0.0.1:{rsyslog.tcp_port}")
    wanted = ["config.change", *security_events(ledger, "before")]
    assert siem.forward("p-fault")[0].delivered == len(wanted)
    rsyslog.stop()
    try:
        more = security_events(ledger, "while-down")
        [down] = siem.forward("p-fault")
        assert down.delivered == 0 and down.error is not None and "cannot reach" in down.error
        more += security_events(ledger, "still-down")
        assert env.siem().forward("p-fault")[0].error is not None
    finally:
        rsyslog.start()
    # FlowLoom restarted meanwhile: a new Siem over the same database resumes at the cursor
    [back] = env.siem(batch_size=3).forward("p-fault")
    assert back.error is None and back.delivered == len(more)
    rows = _of(rsyslog.lines(len(wanted) + len(more)), "p-fault")
    indices = [int(r[4].split('index="')[1].split('"')[0]) for r in rows]
    assert [r[3] for r in rows] == wanted + more
    assert indices == sorted(indices) and len(set(indices)) == len(indices)


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [
        ("syslog", "udp://127.0.0.1:514", "not a syslog target"),
        ("syslog", "tcp://127.0.0.1", "names no port"),
        ("hec", "tcp://127.0.0.1:8088", "not a hec target"),
        ("kafka", "tcp://127.0.0.1:1", "unknown SIEM kind"),
    ],
)
def test_bad_configuration_is_refused_clearly(
    env: Env, kind: str, target: str, message: str
) -> None:
    from flowloom.errors import InputError

    with pytest.raises(InputError, match=message):
        env.siem().configure("p-bad", "x", kind=kind, target=target)
