"""Checkpoint signing keys in AWS KMS: Ed25519 keys (ECC_NIST_EDWARDS25519) that sign there.

A key is generated in KMS and its private half never leaves it; FlowLoom asks KMS to
sign each note body with ``ED25519_SHA_512`` over the RAW message, which is pure
Ed25519 (RFC 8032), so a note signed in KMS is the same bytes a key file would give and
verifies with the public key alone. Keys are found by alias, like a token's labels: the
log's key in use is ``alias/flowloom-log-<h>`` and every key of the log (in use or not)
also ``alias/flowloom-log-<h>-<8 hex key id>``, where ``<h>`` is a hash of the log's
origin (an origin may hold characters an alias may not).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from flowloom.errors import ConfigError, KeyFileError, RemoteError

if TYPE_CHECKING:
    from flowloom.ledger.note import Signer, Verifier

__all__ = ["KmsSigningKeys", "alias_for"]

SIGNING_ALGORITHM = "ED25519_SHA_512"
KEY_SPEC = "ECC_NIST_EDWARDS25519"
_SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")


def alias_for(origin: str, key_id: bytes | None = None) -> str:
    """The alias of `origin`'s key in use, or of its key `key_id`."""
    digest = hashlib.sha256(origin.encode("utf-8")).hexdigest()[:24]
    base = f"alias/flowloom-log-{digest}"
    return base if key_id is None else f"{base}-{key_id.hex()}"


def _raw_public(der: bytes) -> bytes:
    if len(der) != len(_SPKI_PREFIX) + 32 or not der.startswith(_SPKI_PREFIX):
        raise KeyFileError("AWS KMS returned a public key that is not an Ed25519 key")
    return der[len(_SPKI_PREFIX) :]


class _KmsEd25519:
    """An Ed25519 key in KMS, as `flowloom.ledger.note.ExternalKey`."""

    def __init__(self, client: Any, arn: str, public_key: bytes) -> None:
        self._client = client
        self.arn = arn
        self.public_key = public_key
        self.where = f"AWS KMS key {arn}"

    def sign(self, message: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            answer = self._client.sign(
                KeyId=self.arn,
                Message=message,
                MessageType="RAW",
                SigningAlgorithm=SIGNING_ALGORITHM,
            )
        except (BotoCoreError, ClientError) as exc:
            raise RemoteError(f"AWS KMS did not sign with {self.arn}: {exc}") from exc
        return bytes(answer["Signature"])


class KmsSigningKeys:
    """Log signing keys held in AWS KMS (`flowloom.ledger.keyprovider.SigningKeys`)."""

    provider = "kms"

    def __init__(self, client: Any, region: str | None = None) -> None:
        self._client = client
        self._region = region

    @classmethod
    def connect(cls, *, region: str | None, endpoint: str | None) -> KmsSigningKeys:
        """A client from the usual AWS credential chain (environment, profile, role)."""
        import boto3  # type: ignore[import-untyped]

        return cls(boto3.client("kms", region_name=region, endpoint_url=endpoint), region)

    @property
    def location(self) -> str:
        return f"AWS KMS ({self._region or 'default region'})"

    def expected(self, name: str, key_id: bytes) -> str:
        return f"a key aliased {alias_for(name)!r} or {alias_for(name, key_id)!r}"

    def _by_alias(self, name: str, alias: str) -> Signer | None:
        from botocore.exceptions import BotoCoreError, ClientError

        from flowloom.ledger.note import Signer

        try:
            meta = self._client.describe_key(KeyId=alias)["KeyMetadata"]
            if meta.get("KeySpec") != KEY_SPEC or meta.get("KeyUsage") != "SIGN_VERIFY":
                raise ConfigError(
                    f"{alias} in AWS KMS is not an Ed25519 signing key "
                    f"({meta.get('KeySpec')}, {meta.get('KeyUsage')})"
                )
            if meta.get("KeyState") != "Enabled":
                raise ConfigError(f"{alias} in AWS KMS is {meta.get('KeyState')}")
            arn = str(meta["Arn"])
            der = bytes(self._client.get_public_key(KeyId=arn)["PublicKey"])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "NotFoundException":
                return None
            raise RemoteError(f"AWS KMS did not describe {alias}: {exc}") from exc
        except BotoCoreError as exc:
            raise RemoteError(f"AWS KMS cannot be reached: {exc}") from exc
        return Signer(name, _KmsEd25519(self._client, arn, _raw_public(der)))

    def has_signer(self, origin: str) -> bool:
        return self.active(origin) is not None

    def active(self, origin: str) -> Signer | None:
        return self._by_alias(origin, alias_for(origin))

    def signer(self, origin: str) -> tuple[Signer, bool]:
        current = self.active(origin)
        if current is not None:
            return current, False
        signer = self.generate(origin)
        self.activate(signer)
        return signer, True

    def find(self, verifier: Verifier) -> Signer | None:
        signer = self.find_id(verifier.name, verifier.key_id)
        return signer if signer is not None and signer.verifier() == verifier else None

    def find_id(self, name: str, key_id: bytes) -> Signer | None:
        for alias in (alias_for(name, key_id), alias_for(name)):
            signer = self._by_alias(name, alias)
            if signer is not None and signer.key_id == key_id:
                return signer
        return None

    def generate(self, origin: str) -> Signer:
        """A new Ed25519 key made in KMS, aliased by its key id until `activate`."""
        from botocore.exceptions import BotoCoreError, ClientError

        from flowloom.ledger.note import Signer, key_id

        try:
            meta = self._client.create_key(
                KeySpec=KEY_SPEC,
                KeyUsage="SIGN_VERIFY",
                Description=f"FlowLoom checkpoint key for {origin}",
            )["KeyMetadata"]
            arn = str(meta["Arn"])
            public = _raw_public(bytes(self._client.get_public_key(KeyId=arn)["PublicKey"]))
            self._client.create_alias(
                AliasName=alias_for(origin, key_id(origin, public)), TargetKeyId=arn
            )
        except (BotoCoreError, ClientError) as exc:
            raise RemoteError(f"AWS KMS did not create an Ed25519 key: {exc}") from exc
        return Signer(origin, _KmsEd25519(self._client, arn, public))

    def archive(self, signer: Signer) -> None:
        """Nothing to copy: every key is found by its key-id alias already."""

    def activate(self, signer: Signer) -> None:
        """Point the log's alias at `signer`'s key (created on first use)."""
        from botocore.exceptions import BotoCoreError, ClientError

        external = signer.external
        if not isinstance(external, _KmsEd25519):
            raise KeyFileError(f"{signer.name}'s key is not in AWS KMS")
        alias = alias_for(signer.name)
        try:
            if self.active(signer.name) is None:
                self._client.create_alias(AliasName=alias, TargetKeyId=external.arn)
            else:
                self._client.update_alias(AliasName=alias, TargetKeyId=external.arn)
        except (BotoCoreError, ClientError) as exc:
            raise RemoteError(f"AWS KMS did not move {alias}: {exc}") from exc
