"""The tile API, followed by an independent tlog-tiles client, and witness cosignatures.

The client (tests/support/tiles_client.py) is written from the C2SP specs and RFC 6962:
it checks the checkpoint's signature with the vkey alone and derives the root, inclusion
and consistency proofs from fetched tiles only.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flowloom.ledger.note import Verifier
from flowloom.server.tlog.witnesses import WitnessSetting
from tests.server.support import OTHER, OWN, World, live_server, make_world
from tests.support import tiles_client as tc
from tests.support.witness import LocalWitness

T = f"/api/v1/projects/{OWN}/tlog"
L = f"/api/v1/projects/{OWN}/ledger"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("tlog")
    built = make_world(str(tmp / "server.db"), tmp / "home")
    yield built
    built.close()


@pytest.fixture(scope="module")
def base(world: World) -> Iterator[str]:
    with live_server(world.server) as url:
        yield url


def _client(base: str, world: World, who: str | None) -> httpx.Client:
    return httpx.Client(base_url=base, headers=world.headers(who) if who else {}, timeout=60)


def _append(http: httpx.Client, count: int) -> None:
    for start in range(0, count, 250):
        events = [
            {"kind": "agent.prompt", "body": f"prompt {i}", "session": "s-1"}
            for i in range(start, min(count, start + 250))
        ]
        reply = http.post(f"{L}/batch", json={"events": events})
        assert reply.status_code == 201, reply.text


def _fetcher(http: httpx.Client) -> tc.Fetch:
    def fetch(path: str) -> bytes:
        reply = http.get(f"{T}/{path}")
        assert reply.status_code == 200, (path, reply.status_code, reply.text)
        return reply.content

    return fetch


def _grown(base: str, world: World) -> None:
    """At least one full tile under a signed checkpoint, whichever test runs first (the
    module's world is shared, and xdist may run these tests in any order)."""
    with _client(base, world, "developer") as http:
        point = http.get(f"{T}/checkpoint")
        if point.status_code == 200 and tc.parse_note(point.content).size >= 256:
            return
        _append(http, 300)
        assert http.post(f"{L}/checkpoint").status_code == 200


def test_an_independent_client_follows_the_log_from_tiles(base: str, world: World) -> None:
    with _client(base, world, "developer") as http:
        _append(http, 300)
        assert http.post(f"{L}/checkpoint").status_code == 200
        vkey = http.get(f"{L}/vkey").text.strip()
        fetch = _fetcher(http)
        first = tc.parse_note(fetch("checkpoint"))
        tc.check_signature(first, vkey)
        _append(http, 400)
        assert http.post(f"{L}/checkpoint").status_code == 200
        second = tc.parse_note(fetch("checkpoint"))
        tc.check_signature(second, vkey)
        assert second.size > first.size > 256

        reader = tc.TileReader(fetch, second.size)
        assert reader.mth(0, second.size) == second.root
        assert reader.mth(0, first.size) == first.root
        assert any(".p/" in path for path in reader.fetched)
        width = second.size // 256  # full level-0 tiles: the level-1 tile's width
        assert f"tile/1/000.p/{width}" in reader.fetched or width < 2

        leaves = tc.entries(fetch, second.size)
        assert [json.loads(e)["kind"] for e in leaves[-3:]] == ["agent.prompt"] * 3
        for index in (0, 1, 255, 256, first.size - 1, second.size - 1):
            proof = reader.inclusion(index, 0, second.size)
            tc.verify_inclusion(index, second.size, tc.leaf(leaves[index]), proof, second.root)
        # Every level-0 hash is the leaf hash of the entry the bundle holds at that position.
        level0 = b"".join(reader._tile(0, n) for n in range((second.size + 255) // 256))
        assert level0 == b"".join(tc.leaf(e) for e in leaves)

        proof = reader.consistency(first.size, 0, second.size)
        tc.verify_consistency(first.size, second.size, first.root, second.root, proof)
        with pytest.raises(AssertionError):
            tc.verify_consistency(first.size, second.size, first.root, b"\x00" * 32, proof)


def test_cache_lifetimes_and_bad_paths(base: str, world: World) -> None:
    _grown(base, world)
    with _client(base, world, "auditor") as http:
        full = http.get(f"{T}/tile/0/000")
        assert full.status_code == 200 and len(full.content) == 256 * 32
        assert full.headers["cache-control"] == "private, max-age=31536000, immutable"
        assert full.headers["content-type"] == "application/octet-stream"
        partial = http.get(f"{T}/tile/0/000.p/7")
        assert partial.content == full.content[: 7 * 32]
        assert partial.headers["cache-control"] == "private, max-age=5"
        bundle = http.get(f"{T}/tile/entries/000")
        assert bundle.headers["cache-control"].endswith("immutable")
        point = http.get(f"{T}/checkpoint")
        assert point.headers["cache-control"] == "private, max-age=5"
        assert point.headers["content-type"].startswith("text/plain")
        for bad in ("tile/0/0", "tile/0/000.p/256", "tile/0/x000/001", "tile/64/000", "tile/a/000"):
            reply = http.get(f"{T}/{bad}")
            assert reply.status_code == 400, (bad, reply.status_code)
            assert "tile" in reply.json()["error"]["message"]
        beyond = http.get(f"{T}/tile/2/000.p/1")
        assert beyond.status_code == 404
        assert "not grown" in beyond.json()["error"]["message"]


def test_publishing_is_role_checked_audited_and_opens_reads(base: str, world: World) -> None:
    _grown(base, world)
    with _client(base, world, None) as anon:
        assert anon.get(f"{T}/checkpoint").status_code == 401
        assert anon.get(f"{T}/tile/0/000").status_code == 401
    with _client(base, world, "developer") as dev:
        refused = dev.put(f"{T}/settings", json={"public": True})
        assert refused.status_code == 403
        assert dev.get(f"{T}/settings").json() == {"public": False}
    with _client(base, world, "admin") as admin:
        assert admin.put(f"{T}/settings", json={"public": "yes please"}).status_code == 422
        done = admin.put(f"{T}/settings", json={"public": True})
        assert done.status_code == 200 and done.json() == {"public": True}
        audit = admin.get(f"/api/v1/projects/{OWN}/audit", params={"limit": 1000}).json()
    changes = [e for e in audit["entries"] if e["kind"] == "auth.project_settings"]
    assert changes and changes[-1]["verified"]
    envelope = changes[-1]["envelope"]
    assert envelope["actor"]["id"] == world.user_ids["admin"]
    assert envelope["refs"]["from"] is False and envelope["refs"]["to"] is True
    try:
        with _client(base, world, None) as anon:
            tile = anon.get(f"{T}/tile/0/000")
            assert tile.status_code == 200
            assert tile.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert anon.get(f"{T}/checkpoint").headers["cache-control"] == "public, max-age=5"
            other = f"/api/v1/projects/{OTHER}/tlog/tile/0/000"
            assert anon.get(other).status_code == 401  # only alpha was published
            assert anon.put(f"{T}/settings", json={"public": False}).status_code == 401
    finally:
        with _client(base, world, "admin") as admin:
            assert admin.put(f"{T}/settings", json={"public": False}).json() == {"public": False}
    with _client(base, world, None) as anon:
        assert anon.get(f"{T}/tile/0/000").status_code == 401


def test_witnesses_cosign_and_the_checkpoint_carries_them(base: str, world: World) -> None:
    ledger = world.server.ledger(OWN)
    trusted = [Verifier.from_vkey(ledger.verifier.vkey)]
    one = LocalWitness(name="witness.test/one", trusted=trusted).start()
    two = LocalWitness(name="witness.test/two", trusted=trusted).start()
    down = LocalWitness(name="witness.test/down", trusted=trusted).start()
    down.stop()
    settings = world.server.settings
    world.server.settings = dataclasses.replace(
        settings,
        witnesses=tuple(WitnessSetting(w.url, w.vkey) for w in (one, two, down)),
    )
    try:
        with _client(base, world, "developer") as http:
            first = http.post(f"{T}/cosignatures")
            assert first.status_code == 200, first.text
            got = first.json()
            assert sorted(c["witness"] for c in got["cosignatures"]) == [one.name, two.name]
            assert [f["witness"] for f in got["failed"]] == [down.name]
            assert "cannot reach" in got["failed"][0]["error"]
            note = tc.parse_note(http.get(f"{T}/checkpoint").content)
            assert note.size == got["size"]
            tc.check_signature(note, http.get(f"{L}/vkey").text)
            stamps = [tc.check_cosignature(note, w.vkey) for w in (one, two)]
            listed = http.get(f"{T}/cosignatures").json()
            assert [c["timestamp"] for c in listed["cosignatures"]] == stamps
            page = http.get(f"/ui/projects/{OWN}/ledger")
            assert page.status_code == 200
            assert one.name in page.text and two.name in page.text

            _append(http, 5)  # the log grows; the witnesses need a consistency proof now
            again = http.post(f"{T}/cosignatures").json()
            assert again["size"] > got["size"] and len(again["cosignatures"]) == 2
            assert one.state[ledger.origin][0] == again["size"]
            assert one.refused == [] and two.refused == []
            tc.check_cosignature(tc.parse_note(http.get(f"{T}/checkpoint").content), two.vkey)
        with _client(base, world, "auditor") as auditor:
            assert auditor.post(f"{T}/cosignatures").status_code == 403
    finally:
        world.server.settings = settings
        one.stop()
        two.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_book_on_both_databases(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from flowloom.auth.schema import make_engine
    from flowloom.server.tlog.book import TlogBook

    url = str(tmp_path / "t.db") if backend == "sqlite" else request.getfixturevalue("pg_url")
    engine = make_engine(url)
    try:
        book = TlogBook(engine)
        TlogBook(engine)  # a second process opening the same database migrates nothing
        assert not book.is_public("p")
        book.set_public("p", True)
        assert book.is_public("p") and not book.is_public("q")
        book.set_public("p", False)
        assert not book.is_public("p")
        root = bytes(range(32))
        book.add_cosignature("p", 7, root, "w/b", "\u2014 w/b AAAA\n", 10)
        book.add_cosignature("p", 7, root, "w/a", "\u2014 w/a AAAA\n", 11)
        book.add_cosignature("p", 7, root, "w/a", "\u2014 w/a BBBB\n", 12)  # newer replaces
        book.add_cosignature("p", 9, root, "w/a", "\u2014 w/a CCCC\n", 13)
        found = book.cosignatures("p", 7, root)
        assert [(c.witness, c.signed_at) for c in found] == [("w/a", 12), ("w/b", 10)]
        assert book.cosignatures("p", 7, bytes(32)) == []
        assert book.latest_size("p", "w/a") == 9 and book.latest_size("p", "w/c") == 0
    finally:
        engine.dispose()


def test_witness_settings_are_checked() -> None:
    from flowloom.errors import ConfigError
    from flowloom.server.tlog.witnesses import parse_witnesses

    good = LocalWitness(name="witness.test/cfg")
    parsed = parse_witnesses([{"url": "https://w.example/", "vkey": good.vkey}])
    assert parsed == (WitnessSetting("https://w.example", good.vkey),)
    assert parsed[0].name == "witness.test/cfg"
    assert parse_witnesses(None) == ()
    log_key = "example.com/log+12345678+" + "A" * 44
    for bad, words in (
        ({"url": "https://w.example"}, "list of tables"),
        ([{"url": "https://w.example"}], "url and vkey"),
        ([{"url": "ftp://w.example", "vkey": good.vkey}], "not an http"),
        ([{"url": "https://w.example", "vkey": log_key}], "witness"),
        ([{"url": "https://a.example", "vkey": good.vkey}] * 2, "share a name"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_witnesses(bad)
        assert words in caught.value.message, caught.value.message


def test_the_documented_witness_table_parses() -> None:
    import re
    import tomllib

    from flowloom.server.tlog.witnesses import parse_witnesses

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text("utf-8")
    [block] = [b for b in re.findall(r"```toml\n(.*?)```", text, re.S) if "witnesses" in b]
    [witness] = parse_witnesses(tomllib.loads(block)["server"]["witnesses"])
    assert witness.name == "witness.example.org/w1"
