"""Upstream provider keys: encrypted at rest, decrypted only by provider_key()."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from flowloom.errors import InputError, KeyFileError, NotFoundError
from flowloom.gateway.access import Access
from flowloom.gateway.access.service import AccessSettings
from flowloom.ledger.keys import KeyStore
from tests.gateway.access.conftest import FakeClock, OpenAccess

SECRET = "sk-ant-api03-THIS-IS-THE-UPSTREAM-SECRET-0123456789"


def _raw_database_text(access: Access, database: str) -> bytes:
    """Every byte the database holds for us: the SQLite files, or every PG row as text."""
    if not database.startswith("postgresql"):
        access.engine.dispose()
        blobs = b""
        for suffix in ("", "-wal", "-shm"):
            path = Path(database + suffix)
            if path.exists():
                blobs += path.read_bytes()
        return blobs
    with access.engine.connect() as conn:
        tables = [
            row[0]
            for row in conn.execute(
                text(
                    "SELECT table_name FROM information_schema.tables"
                    " WHERE table_schema = current_schema()"
                )
            )
        ]
        dump = []
        for table in tables:
            for row in conn.execute(text(f'SELECT t::text FROM "{table}" t')):
                dump.append(str(row[0]))
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                dump.extend(
                    bytes(v).hex() if isinstance(v, (bytes, memoryview)) else str(v) for v in row
                )
    return "\n".join(dump).encode()


def test_the_raw_database_never_holds_a_provider_key(
    open_access: OpenAccess, database: str
) -> None:
    access = open_access()
    access.set_provider_key("anthropic", SECRET)
    access.set_provider_key("openai", SECRET + "-openai")
    assert access.provider_key("anthropic") == SECRET
    access.flush()
    raw = _raw_database_text(access, database)
    assert raw  # the scan did read something
    for needle in (SECRET, "THIS-IS-THE-UPSTREAM", SECRET[-20:]):
        assert needle.encode() not in raw
        assert needle.encode().hex().encode() not in raw
    fresh = open_access()  # another process with the same master key decrypts
    assert fresh.provider_key("openai") == SECRET + "-openai"
    assert fresh.provider_key("missing") is None


def test_a_different_master_key_cannot_decrypt(open_access: OpenAccess) -> None:
    access = open_access()
    access.set_provider_key("anthropic", SECRET)
    stranger = open_access(master_key_loader=lambda: b"\x07" * 32)
    with pytest.raises(KeyFileError) as info:
        stranger.provider_key("anthropic")
    assert SECRET not in info.value.diagnostics()


def test_a_sealed_value_moved_to_another_name_does_not_decrypt(access: Access) -> None:
    access.set_provider_key("anthropic", SECRET)
    access.set_provider_key("openai", "sk-other")
    with access.engine.begin() as conn:
        sealed = conn.execute(
            text("SELECT sealed FROM gateway_provider_keys WHERE name = 'anthropic'")
        ).scalar()
        conn.execute(
            text("UPDATE gateway_provider_keys SET sealed = :s WHERE name = 'openai'"),
            {"s": sealed},
        )
    fresh_reader = Access(
        access.engine,
        master_key_loader=lambda: bytes(range(32)),
        settings=AccessSettings(background=False),
    )
    with pytest.raises(KeyFileError):
        fresh_reader.provider_key("openai")
    fresh_reader.close()


def test_rotation_is_seen_within_the_cache_ttl(open_access: OpenAccess, clock: FakeClock) -> None:
    here, there = open_access(), open_access()
    here.set_provider_key("anthropic", "old-key")
    assert there.provider_key("anthropic") == "old-key"
    here.set_provider_key("anthropic", "new-key")
    assert here.provider_key("anthropic") == "new-key"
    clock.advance(AccessSettings().key_cache_ttl_s)
    assert there.provider_key("anthropic") == "new-key"
    names = [p.name for p in here.list_provider_keys()]
    assert names == ["anthropic"]
    here.delete_provider_key("anthropic")
    assert here.provider_key("anthropic") is None
    with pytest.raises(NotFoundError):
        here.delete_provider_key("anthropic")


def test_names_and_values_are_checked(access: Access) -> None:
    with pytest.raises(InputError):
        access.set_provider_key("Bad Name", SECRET)
    with pytest.raises(InputError):
        access.set_provider_key("anthropic", "   ")


def test_the_key_derives_from_the_keystore_master_key(tmp_path: Path) -> None:
    keystore = KeyStore(tmp_path / "home")
    with Access(
        str(tmp_path / "db.sqlite"),
        master_key_loader=keystore.master_key,
        settings=AccessSettings(background=False),
    ) as access:
        access.set_provider_key("gemini", SECRET)
    with Access(
        str(tmp_path / "db.sqlite"),
        master_key_loader=KeyStore(tmp_path / "home").master_key,
        settings=AccessSettings(background=False),
    ) as again:
        assert again.provider_key("gemini") == SECRET
