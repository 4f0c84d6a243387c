"""Trust in the server's log: the pinned key and consistency with the kept checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flowloom.client.link import ServerLink
from flowloom.client.trust import HistoryRewrittenError
from flowloom.errors import VerificationError
from flowloom.events import outbox as spool
from flowloom.sinks.server import send_outbox
from tests.client.conftest import LiveServer
from tests.client.test_outbox import TS, prompt, spool_prompts


def test_the_first_check_pins_the_key_and_later_ones_prove_consistency(
    server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = server.provision()
    server.start()
    link = link_factory(server, key)
    first = link.check()
    assert first.pinned and first.old_size == 0
    state = link.trust().load()
    assert state.vkey == first.vkey and state.data["pinned_by"] == "tofu"
    assert state.size == first.new_size
    spool_prompts(link, "one", "two")
    assert send_outbox(link).error is None
    second = link.check()
    assert not second.pinned
    assert (second.old_size, second.new_size) == (first.new_size, first.new_size + 2)
    third = link.check()  # nothing new: the same tree
    assert third.old_size == third.new_size == second.new_size


def _history_rewritten_at_the_same_address(
    server: LiveServer, other_database: str, tmp_path: Path
) -> LiveServer:
    """Stop `server` and start another history at its address, with its signing keys."""
    server.stop()
    rewritten = LiveServer(tmp_path, other_database, port=server.port)
    return rewritten


def test_a_server_that_lost_entries_is_caught(
    server: LiveServer,
    other_database: str,
    link_factory: Callable[..., ServerLink],
    tmp_path: Path,
) -> None:
    _, key = server.provision()
    server.start()
    link = link_factory(server, key)
    spool_prompts(link, *[f"p{i}" for i in range(5)])
    assert send_outbox(link).error is None
    kept = link.check()
    other = _history_rewritten_at_the_same_address(server, other_database, tmp_path)
    try:
        _, other_key = other.provision()
        other.start()
        rolled_back = link_factory(other, other_key)
        with pytest.raises(HistoryRewrittenError, match="rewrote history") as caught:
            rolled_back.check()
        assert caught.value.exit_code == 1
        assert "rollback or truncation" in caught.value.message
        state = rolled_back.trust().load()
        assert state.size == kept.new_size  # the kept checkpoint was not replaced
        assert state.alarm is not None
        # nothing more is sent to it, and nothing is lost
        spool_prompts(rolled_back, "held back")
        report = send_outbox(rolled_back)
        assert isinstance(report.error, HistoryRewrittenError)
        assert report.remaining == 1
        with pytest.raises(HistoryRewrittenError, match="earlier check"):
            rolled_back.check()
        # once explained, the user trusts the server anew
        rolled_back.trust().repin()
        assert rolled_back.check().pinned
        assert send_outbox(rolled_back).error is None
    finally:
        other.stop()


def test_a_server_that_forked_its_history_is_caught_even_when_it_grew(
    sqlite_server: LiveServer,
    link_factory: Callable[..., ServerLink],
    tmp_path: Path,
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    spool_prompts(link, "original")
    assert send_outbox(link).error is None
    kept = link.check()
    other = _history_rewritten_at_the_same_address(
        sqlite_server, str(tmp_path / "forked.db"), tmp_path
    )
    try:
        _, other_key = other.provision()
        other.start()
        forked = link_factory(other, other_key)
        # the other history is longer than the kept checkpoint, but does not extend it
        side = ServerLink(
            server_url=other.url,
            api_key=other_key,
            project=forked.project,
            state_dir=str(tmp_path / "another-clone"),
        )
        spool.write(side.spool_dir, "claude-code", [prompt(f"x{i}") for i in range(8)], TS)
        assert send_outbox(side).error is None
        with pytest.raises(HistoryRewrittenError, match="not consistent") as caught:
            forked.check()
        assert f"checkpoint {kept.new_size}" in caught.value.message
        assert forked.trust().load().size == kept.new_size
    finally:
        other.stop()


def test_the_same_size_with_another_root_is_caught(
    sqlite_server: LiveServer,
    link_factory: Callable[..., ServerLink],
    tmp_path: Path,
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    kept = link.check()
    other = _history_rewritten_at_the_same_address(
        sqlite_server, str(tmp_path / "same-size.db"), tmp_path
    )
    try:
        _, other_key = other.provision()
        other.start()
        forked = link_factory(other, other_key)
        missing = kept.new_size - len(other.entries(other_key))
        assert missing >= 0
        if missing:  # grow the other history to the kept size, with other entries
            side = ServerLink(
                server_url=other.url,
                api_key=other_key,
                project=forked.project,
                state_dir=str(tmp_path / "another-clone"),
            )
            spool.write(side.spool_dir, "claude-code", [prompt("y")] * missing, TS)
            assert send_outbox(side).error is None
        assert len(other.entries(other_key)) == kept.new_size
        with pytest.raises(HistoryRewrittenError, match="another root") as caught:
            forked.check()
        assert f"size {kept.new_size}" in caught.value.message
    finally:
        other.stop()


def test_a_given_key_is_pinned_and_a_wrong_one_refused(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink], tmp_path: Path
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    vkey = link_factory(sqlite_server, key).api().vkey()
    given = link_factory(sqlite_server, key, vkey=vkey).check()
    assert given.pinned and given.vkey == vkey

    from flowloom.ledger.note import Signer

    impostor = Signer.generate(vkey.split("+")[0]).verifier().vkey
    stranger = ServerLink(
        server_url=sqlite_server.url,
        api_key=key,
        project="acme",
        state_dir=str(tmp_path / "stranger"),
        given_vkey=impostor,
    )
    with pytest.raises(VerificationError, match="not signed by the pinned key"):
        stranger.check()
    assert stranger.trust().load().alarm is not None


def test_an_unreadable_trust_state_is_an_error_not_a_fresh_start(
    sqlite_server: LiveServer, link_factory: Callable[..., ServerLink]
) -> None:
    _, key = sqlite_server.provision()
    sqlite_server.start()
    link = link_factory(sqlite_server, key)
    link.check()
    Path(link.trust().path).write_text("{broken")
    with pytest.raises(VerificationError, match="cannot be read"):
        link.check()
