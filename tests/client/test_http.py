"""The HTTP client's errors say what happened, against the real server, without the key."""

from __future__ import annotations

import pytest

from flowloom.client.api import LedgerApi, parse_consistency
from flowloom.client.http import HttpClient, ServerRejectedError, ServerUnreachableError
from flowloom.errors import AuthError, PermissionDeniedError, RemoteError
from tests.client.conftest import PROJECT, LiveServer, free_port


def test_errors_by_cause(sqlite_server: LiveServer) -> None:
    _, key = sqlite_server.provision()
    _, auditor = sqlite_server.provision(role="auditor")
    sqlite_server.start()
    event = {"kind": "agent.prompt", "body": "x"}

    with pytest.raises(PermissionDeniedError) as denied:
        LedgerApi(HttpClient(sqlite_server.url, auditor), PROJECT).append_batch([event])
    assert denied.value.exit_code == 8 and "(403)" in denied.value.message

    with pytest.raises(AuthError) as refused:
        LedgerApi(HttpClient(sqlite_server.url, "flk_wrongkey_" + "x" * 40), PROJECT).vkey()
    assert refused.value.exit_code == 7 and "x" * 40 not in refused.value.diagnostics()

    with pytest.raises(ServerRejectedError) as rejected:
        LedgerApi(HttpClient(sqlite_server.url, key), PROJECT).append_batch([{"kind": ""}])
    assert rejected.value.status == 422 and rejected.value.exit_code == 3

    client = HttpClient(sqlite_server.url, key)
    assert key not in repr(client)
    size = len(sqlite_server.entries(key))
    assert LedgerApi(client, PROJECT).append_batch([event]) == [size]


def test_a_closed_port_is_unreachable() -> None:
    client = HttpClient(f"http://127.0.0.1:{free_port()}", "flk_secret_key", timeout=5)
    with pytest.raises(ServerUnreachableError) as caught:
        client.get_text("/healthz")
    assert caught.value.exit_code == 9
    assert "flk_secret_key" not in caught.value.diagnostics()


def test_a_malformed_consistency_proof_is_a_remote_error() -> None:
    with pytest.raises(RemoteError):
        parse_consistency("no proof here")
    with pytest.raises(RemoteError):
        parse_consistency("old 3\n!!notbase64\n\nnote\n")
    answer = parse_consistency("old 2\n" + "A" * 43 + "=\n\norigin\n2\nroot\n")
    assert answer.old == 2 and len(answer.proof) == 1 and answer.note.startswith("origin")
