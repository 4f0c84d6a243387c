"""SIEM to Splunk HEC and Elastic bulk (loopback stand-ins of their documented APIs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.siem.conftest import Env, security_events
from tests.siem.standins import ElasticBulk, SplunkHec


@pytest.fixture
def hec() -> Iterator[SplunkHec]:
    server = SplunkHec("hec-token-1")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def elastic() -> Iterator[ElasticBulk]:
    server = ElasticBulk("es-key-1")
    server.start()
    yield server
    server.stop()


def test_hec_gets_validated_ocsf_with_the_sealed_token(env: Env, hec: SplunkHec) -> None:
    wanted = security_events(env.ledger("p-hec"), "hec")
    siem = env.siem()
    dest = siem.configure("p-hec", "splunk", kind="hec", target=hec.url, secret="hec-token-1")
    assert dest.public()["secret"] == "set" and "hec-token-1" not in str(dest.public())
    sealed = env.siem()._book.sealed("p-hec", "splunk")
    assert sealed is not None and b"hec-token-1" not in sealed
    [result] = siem.forward("p-hec")
    assert result.error is None
    kinds = [e["event"]["metadata"]["event_code"] for e in hec.events]
    assert kinds == [*wanted, "config.change"]
    assert {e["sourcetype"] for e in hec.events} == {"ocsf"}
    assert hec.events[0]["event"]["class_uid"] == 3002
    # the recorded configuration names the target, never the token
    changes = [
        e for e in env.store.entries("p-hec", kind="config.change") if b"hec-token-1" in e.envelope
    ]
    assert changes == []


def test_hec_wrong_token_is_an_error_and_the_cursor_stays(env: Env, hec: SplunkHec) -> None:
    security_events(env.ledger("p-hec-bad"), "bad")
    siem = env.siem()
    siem.configure("p-hec-bad", "splunk", kind="hec", target=hec.url, secret="wrong")
    [result] = siem.forward("p-hec-bad")
    assert result.error is not None and "401" in result.error
    assert siem.status("p-hec-bad")[0].cursors["p-hec-bad"].next_index == 0
    siem.configure("p-hec-bad", "splunk", kind="hec", target=hec.url, secret="hec-token-1")
    assert siem.forward("p-hec-bad")[0].error is None
    assert siem.status("p-hec-bad")[0].behind == {"p-hec-bad": 0}


def test_send_test_event(env: Env, hec: SplunkHec) -> None:
    siem = env.siem()
    siem.configure("p-test", "splunk", kind="hec", target=hec.url, secret="hec-token-1")
    event = siem.send_test("p-test", "splunk")
    assert [e["event"]["metadata"]["event_code"] for e in hec.events] == ["siem.test"]
    assert hec.events[0]["event"]["metadata"]["uid"] == event.uid
    assert siem.status("p-test")[0].cursors == {}  # a test moves no cursor


@pytest.mark.parametrize("receiver", ["hec", "elastic"])
def test_receiver_down_then_back_after_a_restart_loses_nothing(
    env: Env, receiver: str, hec: SplunkHec, elastic: ElasticBulk
) -> None:
    project = f"p-fault-{receiver}"
    ledger = env.ledger(project)
    siem = env.siem(batch_size=2)
    if receiver == "hec":
        server: SplunkHec | ElasticBulk = hec
        siem.configure(project, "soc", kind="hec", target=hec.url, secret="hec-token-1")
    else:
        server = elastic
        siem.configure(project, "soc", kind="elastic", target=elastic.url, secret="es-key-1")
    wanted = ["config.change", *security_events(ledger, "before")]
    assert siem.forward(project)[0].delivered == len(wanted)
    server.stop()
    wanted += security_events(ledger, "while-down")
    [down] = siem.forward(project)
    assert down.delivered == 0 and down.error is not None and "cannot reach" in down.error
    server.start()
    [back] = env.siem(batch_size=2).forward(project)  # a restarted FlowLoom
    assert back.error is None
    if isinstance(server, SplunkHec):
        received = [e["event"]["metadata"] for e in server.events]
    else:
        received = [server.docs[k]["metadata"] for k in server.order]
    assert [m["event_code"] for m in received] == wanted
    assert [m["sequence"] for m in received] == sorted(m["sequence"] for m in received)


def test_elastic_repeat_of_a_batch_stores_each_event_once(env: Env, elastic: ElasticBulk) -> None:
    security_events(env.ledger("p-es"), "es")
    siem = env.siem()
    dest = siem.configure("p-es", "es", kind="elastic", target=elastic.url, secret="es-key-1")
    events = [
        __import__("flowloom.siem.events", fromlist=["SecurityEvent"]).SecurityEvent.from_envelope(
            "p-es", e.index, e.envelope
        )
        for e in env.store.entries("p-es")
    ]
    transport = siem._transport(dest, "es-key-1")
    transport.send(siem.format(dest, events[:3]))
    transport.send(siem.format(dest, events[:5]))  # a retry after a lost acknowledgement
    assert len(elastic.docs) == 5
