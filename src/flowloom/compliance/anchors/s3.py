"""S3 Object Lock anchors: the sealed bundle, stored where nobody can delete it in time.

The export bundle (tiles, entries, bodies, manifest and its checkpoint) is packed as a
deterministic tar and uploaded with Object Lock in COMPLIANCE mode and a retain-until
date: until then no account, root included, can delete or overwrite that object
version or shorten its retention (SEC 17a-4(f) style WORM storage). The bucket must
have been created with Object Lock enabled; anchoring refuses any other bucket rather
than uploading something deletable. The record keeps the version id, ETag and SHA-256
of the tar; verification reads the version back and checks its lock, its retention
date, its hash and that its checkpoint is the anchored one.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import tarfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowloom.compliance.anchors.interface import AnchorRecord, parse_checkpoint
from flowloom.errors import (
    ConfigError,
    FlowLoomError,
    InputError,
    NotFoundError,
    RemoteError,
    VerificationError,
)
from flowloom.ledger.event import format_ts

if TYPE_CHECKING:
    from flowloom.compliance.anchors.book import AnchorBook, AnchoredEntry

__all__ = ["S3Anchor", "export_and_anchor", "make_client", "pack_bundle"]

LOCK_MODE = "COMPLIANCE"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_SCAN = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Clock = Callable[[], datetime]


def make_client(
    *, endpoint_url: str | None = None, region: str | None = None, timeout: float = 30.0
) -> Any:
    """A boto3 S3 client with timeouts; credentials come from the usual AWS chain."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    config = Config(
        connect_timeout=min(timeout, 10.0),
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)


def pack_bundle(directory: Path) -> bytes:
    """A deterministic tar of a bundle directory: sorted names, no times or owners."""
    if not (directory / "checkpoint").is_file():
        raise InputError(f"{directory} is not an export bundle (no checkpoint file)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(directory).as_posix())
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _checkpoint_in(tar_bytes: bytes) -> str:
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            member = tar.extractfile("checkpoint")
            if member is None:
                raise KeyError("checkpoint")
            return member.read().decode("utf-8")
    except (tarfile.TarError, KeyError, UnicodeDecodeError) as exc:
        raise VerificationError("the S3 object is not a FlowLoom bundle with a checkpoint") from exc


class S3Anchor:
    """Uploads sealed bundles to ``bucket`` under ``prefix`` with a COMPLIANCE lock."""

    type = "s3"

    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str = "",
        retain_days: int = 2557,
        bundle_dir: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        if retain_days < 1:
            raise InputError("--retain-days must be at least 1")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.retain_days = retain_days
        self.bundle_dir = bundle_dir
        self._clock = clock or (lambda: datetime.now(UTC))

    def _call(self, what: str, **kwargs: Any) -> Any:
        """One S3 call, its failures turned into FlowLoom errors with a next step."""
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        try:
            return getattr(self.client, what)(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", "?"))
            if code in ("NoSuchBucket",):
                raise NotFoundError(
                    f"S3 bucket {self.bucket} does not exist",
                    hint="create it with Object Lock enabled",
                ) from exc
            if code == "ObjectLockConfigurationNotFoundError":
                raise ConfigError(
                    f"S3 bucket {self.bucket} does not have Object Lock enabled; refusing to "
                    "upload an anchor that could be deleted",
                    hint="use a bucket created with Object Lock enabled",
                ) from exc
            if code in ("NoSuchKey", "NoSuchVersion", "404"):
                raise VerificationError(
                    f"S3 object s3://{self.bucket}/{kwargs.get('Key', '')} version "
                    f"{kwargs.get('VersionId', '?')} is gone",
                    hint="a locked version cannot be deleted: check the bucket and the record",
                ) from exc
            raise RemoteError(
                f"S3 {what} on bucket {self.bucket} failed: {code}: {error.get('Message', '')}",
                hint="check the credentials, the bucket and the endpoint",
            ) from exc
        except BotoCoreError as exc:
            raise RemoteError(
                f"cannot reach S3 for bucket {self.bucket}: {exc}",
                hint="check --endpoint-url and the network, then retry",
            ) from exc

    def check_bucket(self) -> None:
        """Refuse a bucket without Object Lock: an anchor there could be deleted."""
        answer = self._call("get_object_lock_configuration", Bucket=self.bucket)
        enabled = answer.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise ConfigError(
                f"S3 bucket {self.bucket} does not have Object Lock enabled; refusing to "
                "upload an anchor that could be deleted",
                hint="use a bucket created with Object Lock enabled",
            )

    def key_for(self, origin: str, size: int, root: bytes) -> str:
        return f"{self.prefix}{_SAFE.sub('_', origin)}/checkpoint-{size:020d}-{root.hex()[:16]}.tar"

    def anchor(self, note: str) -> AnchorRecord:
        if self.bundle_dir is None:
            raise InputError("no bundle to upload", hint="export a bundle first")
        checkpoint = parse_checkpoint(note)
        try:
            bundled = (self.bundle_dir / "checkpoint").read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.bundle_dir} has no readable checkpoint") from exc
        if bundled != note:
            raise InputError("the bundle was cut at another checkpoint than the one to anchor")
        self.check_bucket()
        data = pack_bundle(self.bundle_dir)
        digest = hashlib.sha256(data).digest()
        now = self._clock()
        retain_until = (now + timedelta(days=self.retain_days)).replace(microsecond=0)
        key = self.key_for(checkpoint.origin, checkpoint.size, checkpoint.root)
        answer = self._call(
            "put_object",
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/x-tar",
            ChecksumAlgorithm="SHA256",
            ChecksumSHA256=base64.b64encode(digest).decode("ascii"),
            ObjectLockMode=LOCK_MODE,
            ObjectLockRetainUntilDate=retain_until,
            Metadata={
                "flowloom-origin": checkpoint.origin,
                "flowloom-size": str(checkpoint.size),
                "flowloom-root": checkpoint.root.hex(),
                "flowloom-sha256": digest.hex(),
            },
        )
        version = answer.get("VersionId")
        if not version:
            raise RemoteError(
                f"S3 bucket {self.bucket} returned no version id: versioning is off",
                hint="use a bucket created with Object Lock enabled",
            )
        return AnchorRecord(
            type="s3",
            origin=checkpoint.origin,
            size=checkpoint.size,
            root=checkpoint.root,
            where=f"s3://{self.bucket}/{key}",
            anchored_at=format_ts(now),
            note=note,
            evidence={
                "bucket": self.bucket,
                "key": key,
                "version_id": str(version),
                "etag": str(answer.get("ETag", "")).strip('"'),
                "sha256": digest.hex(),
                "bytes": len(data),
                "mode": LOCK_MODE,
                "retain_until": format_ts(retain_until),
            },
        )

    def verify(self, record: AnchorRecord, note: str) -> None:
        record.matches(note)
        try:
            key = str(record.evidence["key"])
            version = str(record.evidence["version_id"])
            bucket = str(record.evidence["bucket"])
            sha256 = str(record.evidence["sha256"])
            retain = datetime.fromisoformat(str(record.evidence["retain_until"]))
        except (KeyError, ValueError) as exc:
            raise VerificationError("the s3 anchor record is incomplete") from exc
        if bucket != self.bucket:
            raise InputError(f"the record is for bucket {bucket}, not {self.bucket}")
        head = self._call("head_object", Bucket=bucket, Key=key, VersionId=version)
        where = f"s3://{bucket}/{key} version {version}"
        if head.get("ObjectLockMode") != LOCK_MODE:
            raise VerificationError(
                f"{where} is not locked in COMPLIANCE mode (mode {head.get('ObjectLockMode')})",
                hint="it could have been deleted or replaced: treat the anchor as unproven",
            )
        until = head.get("ObjectLockRetainUntilDate")
        if not isinstance(until, datetime) or until < retain - timedelta(seconds=1):
            raise VerificationError(
                f"{where} is retained until {until}, earlier than the recorded {retain}"
            )
        data = self.read(key, version)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise VerificationError(f"{where} does not match the recorded SHA-256")
        if _checkpoint_in(data) != note:
            raise VerificationError(f"{where} holds another checkpoint than the anchored one")

    def read(self, key: str, version: str) -> bytes:
        answer = self._call("get_object", Bucket=self.bucket, Key=key, VersionId=version)
        body = answer["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        return data

    def scan(self) -> Iterator[AnchorRecord]:
        """Every bundle version under the prefix, as records (for rollback checks).

        This reads the bucket, not the ledger: it still finds anchors whose
        `checkpoint.anchor` events a database rollback removed.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": self.prefix}
        seen = 0
        while True:
            page = self._call("list_object_versions", **kwargs)
            for version in page.get("Versions", []):
                key = str(version["Key"])
                if not key.endswith(".tar"):
                    continue
                seen += 1
                if seen > _MAX_SCAN:
                    return
                version_id = str(version["VersionId"])
                data = self.read(key, version_id)
                note = _checkpoint_in(data)
                try:
                    checkpoint = parse_checkpoint(note)
                except FlowLoomError as exc:
                    raise VerificationError(f"s3://{self.bucket}/{key}: {exc.message}") from exc
                modified = version.get("LastModified")
                head = self._call("head_object", Bucket=self.bucket, Key=key, VersionId=version_id)
                until = head.get("ObjectLockRetainUntilDate")
                yield AnchorRecord(
                    type="s3",
                    origin=checkpoint.origin,
                    size=checkpoint.size,
                    root=checkpoint.root,
                    where=f"s3://{self.bucket}/{key}",
                    anchored_at=format_ts(modified) if isinstance(modified, datetime) else "",
                    note=note,
                    evidence={
                        "bucket": self.bucket,
                        "key": key,
                        "version_id": version_id,
                        "etag": str(version.get("ETag", "")).strip('"'),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "bytes": len(data),
                        "mode": str(head.get("ObjectLockMode", "")),
                        "retain_until": format_ts(until if isinstance(until, datetime) else _EPOCH),
                    },
                )
            if not page.get("IsTruncated"):
                return
            kwargs["KeyMarker"] = page.get("NextKeyMarker")
            kwargs["VersionIdMarker"] = page.get("NextVersionIdMarker")


def export_and_anchor(book: AnchorBook, anchor: S3Anchor, workdir: Path) -> AnchoredEntry:
    """Export a sealed bundle of the book's log into ``workdir`` and anchor it in S3.

    The bucket is checked first, so a bucket without Object Lock leaves no export
    event behind. Bodies of data subjects are withheld from the bundle: an object
    under a compliance lock cannot be erased, so it must not hold erasable content.
    """
    from flowloom.ledger.bundle import export_bundle

    anchor.check_bucket()
    bundle = workdir / "bundle"
    export_bundle(book.ledger, bundle, withhold_subject_bodies=True)
    anchor.bundle_dir = bundle
    note = (bundle / "checkpoint").read_text("utf-8")
    return book.anchor(anchor, note)
