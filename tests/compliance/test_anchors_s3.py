"""S3 Object Lock anchors against a local S3 endpoint (moto's server, real HTTP on loopback)."""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import socket
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError  # type: ignore[import-untyped]
from moto.server import ThreadedMotoServer

from flowloom.compliance.anchors.book import AnchorBook
from flowloom.compliance.anchors.s3 import S3Anchor, export_and_anchor, make_client, pack_bundle
from flowloom.errors import ConfigError, NotFoundError, RemoteError, VerificationError
from flowloom.ledger.bundle import verify_bundle
from flowloom.ledger.log import Ledger
from flowloom.store.sqlite import SQLiteStore
from tests.support.ledgers import fill, make_ledger


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def client(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return make_client(endpoint_url=endpoint, region="us-east-1", timeout=10)


@pytest.fixture
def bucket(client: Any, request: pytest.FixtureRequest) -> str:
    name = f"locked-{abs(hash(request.node.name)) % 10**8}"
    client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    made = make_ledger(SQLiteStore(str(tmp_path / "ledger.db")), tmp_path / "home")
    fill(made, 5)
    made.record("agent.prompt", body=b"personal", data_subject="alice@example.com")
    yield made
    made.writer.close()
    made.store.close()


def _anchor(ledger: Ledger, client: Any, bucket: str, tmp_path: Path, days: int = 30) -> Any:
    target = S3Anchor(client, bucket=bucket, prefix="logs/", retain_days=days)
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    return export_and_anchor(AnchorBook(ledger), target, work)


def test_bundle_is_uploaded_locked_and_verifies(
    ledger: Ledger, client: Any, bucket: str, tmp_path: Path
) -> None:
    entry = _anchor(ledger, client, bucket, tmp_path)
    record = entry.record
    evidence = record.evidence
    assert record.where == f"s3://{bucket}/{evidence['key']}"
    assert str(evidence["key"]).startswith("logs/flowloom.test_proj/checkpoint-")
    head = client.head_object(Bucket=bucket, Key=evidence["key"], VersionId=evidence["version_id"])
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(days=29) < until - datetime.now(UTC) <= timedelta(days=30)
    assert head["ETag"].strip('"') == evidence["etag"]
    S3Anchor(client, bucket=bucket).verify(record, record.note)

    # The object is the bundle: it verifies offline with the log's vkey.
    data = client.get_object(Bucket=bucket, Key=evidence["key"])["Body"].read()
    assert hashlib.sha256(data).hexdigest() == evidence["sha256"]
    out = tmp_path / "unpacked"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(out, filter="data")
    report = verify_bundle(out, ledger.verifier)
    assert report.ok, [p.line() for p in report.problems]
    assert report.size == record.size
    # Data-subject bodies stay out of storage nobody can erase.
    assert "personal" not in data.decode("latin-1")


def test_bundle_tar_is_deterministic(ledger: Ledger, tmp_path: Path) -> None:
    from flowloom.ledger.bundle import export_bundle

    export_bundle(ledger, tmp_path / "b")
    copy = tmp_path / "c"
    shutil.copytree(tmp_path / "b", copy)
    assert pack_bundle(tmp_path / "b") == pack_bundle(copy)


def test_deleting_the_locked_version_is_refused(
    ledger: Ledger, client: Any, bucket: str, tmp_path: Path
) -> None:
    record = _anchor(ledger, client, bucket, tmp_path).record
    key, version = record.evidence["key"], record.evidence["version_id"]
    with pytest.raises(ClientError) as caught:
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    client.delete_object(Bucket=bucket, Key=key)  # only hides it behind a delete marker
    S3Anchor(client, bucket=bucket).verify(record, record.note)


def test_bucket_without_object_lock_is_refused(ledger: Ledger, client: Any, tmp_path: Path) -> None:
    client.create_bucket(Bucket="plain-bucket")
    size = ledger.size()
    with pytest.raises(ConfigError, match="does not have Object Lock enabled"):
        _anchor(ledger, client, "plain-bucket", tmp_path)
    assert ledger.size() == size  # not even the export event was recorded
    with pytest.raises(NotFoundError, match="does not exist"):
        _anchor(ledger, client, "no-such-bucket", tmp_path)


def test_altered_records_and_unlocked_versions_fail(
    ledger: Ledger, client: Any, bucket: str, tmp_path: Path
) -> None:
    record = _anchor(ledger, client, bucket, tmp_path).record
    anchor = S3Anchor(client, bucket=bucket)
    wrong_hash = replace(record, evidence={**record.evidence, "sha256": "0" * 64})
    with pytest.raises(VerificationError, match="does not match the recorded SHA-256"):
        anchor.verify(wrong_hash, record.note)
    # A later, unlocked version under the same key is not the anchor.
    put = client.put_object(Bucket=bucket, Key=record.evidence["key"], Body=b"replaced")
    swapped = replace(record, evidence={**record.evidence, "version_id": put["VersionId"]})
    with pytest.raises(VerificationError, match="not locked in COMPLIANCE mode"):
        anchor.verify(swapped, record.note)
    later = replace(
        record, evidence={**record.evidence, "retain_until": "2999-01-01T00:00:00.000000Z"}
    )
    with pytest.raises(VerificationError, match="earlier than the recorded"):
        anchor.verify(later, record.note)
    gone = replace(record, evidence={**record.evidence, "version_id": "no-such-version"})
    with pytest.raises((VerificationError, RemoteError)):
        anchor.verify(gone, record.note)


def test_rollback_is_caught_from_the_bucket_alone(client: Any, bucket: str, tmp_path: Path) -> None:
    db, backup, home = tmp_path / "ledger.db", tmp_path / "backup.db", tmp_path / "home"
    ledger = make_ledger(SQLiteStore(str(db)), home)
    fill(ledger, 3)
    ledger.checkpoint()
    ledger.writer.close()
    ledger.store.close()
    shutil.copy(db, backup)
    ledger = make_ledger(SQLiteStore(str(db)), home)
    fill(ledger, 3)
    _anchor(ledger, client, bucket, tmp_path)
    ledger.writer.close()
    ledger.store.close()
    shutil.copy(backup, db)
    ledger = make_ledger(SQLiteStore(str(db)), home)
    try:
        book = AnchorBook(ledger)
        assert book.entries() == []
        scanner = S3Anchor(client, bucket=bucket, prefix="logs/")
        found = list(scanner.scan())
        assert [r.size for r in found] == [7]
        checks = book.check_all(lambda r: None, extra=[("bucket", r) for r in found])
        [check] = checks
        assert not check.ok and "rolled back" in str(check.problem)
    finally:
        ledger.writer.close()
        ledger.store.close()


def test_endpoint_down_is_a_remote_error(ledger: Ledger, tmp_path: Path) -> None:
    down = make_client(endpoint_url=f"http://127.0.0.1:{_free_port()}", region="us-east-1")
    with pytest.raises(RemoteError, match="cannot reach S3"):
        _anchor(ledger, down, "any-bucket", tmp_path)
    assert ledger.size() == 6
