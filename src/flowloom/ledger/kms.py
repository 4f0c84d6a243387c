"""The master key in AWS KMS: data keys are encrypted by KMS and never see its key.

The configured key id should be an alias (``alias/flowloom-master``): rotation makes a
new symmetric KMS key (or takes `--to KEY`) and points the alias at it, so every process
picks up the new key without a config change. Rows name the key by its ARN; KMS
decrypts a row under whichever key encrypted it. The context is bound as the
encryption context ``{"flowloom": base64(context)}``, which KMS checks on decrypt.

Checkpoint signing keys in KMS are `flowloom.ledger.kmssign`.
"""

from __future__ import annotations

import base64
from typing import Any

from flowloom.errors import ConfigError, KeyFileError, RemoteError

__all__ = ["KmsMasterKey", "KmsMasterKeys"]


def _context(context: bytes) -> dict[str, str]:
    return {"flowloom": base64.b64encode(context).decode("ascii")}


class KmsMasterKey:
    """One KMS key, by ARN."""

    def __init__(self, client: Any, arn: str) -> None:
        self._client = client
        self.arn = arn
        self.ref = "kms:" + arn

    def encrypt(self, plaintext: bytes, context: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            answer = self._client.encrypt(
                KeyId=self.arn, Plaintext=plaintext, EncryptionContext=_context(context)
            )
        except (BotoCoreError, ClientError) as exc:
            raise RemoteError(f"AWS KMS did not encrypt with {self.arn}: {exc}") from exc
        return bytes(answer["CiphertextBlob"])

    def decrypt(self, ciphertext: bytes, context: bytes) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            answer = self._client.decrypt(
                CiphertextBlob=ciphertext, KeyId=self.arn, EncryptionContext=_context(context)
            )
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("InvalidCiphertextException", "IncorrectKeyException"):
                raise KeyFileError(
                    f"master key {self.ref} cannot decrypt this data key: wrong key or damaged row"
                ) from exc
            raise RemoteError(f"AWS KMS did not decrypt with {self.arn}: {exc}") from exc
        except BotoCoreError as exc:
            raise RemoteError(f"AWS KMS did not decrypt with {self.arn}: {exc}") from exc
        return bytes(answer["Plaintext"])


class KmsMasterKeys:
    """The master key in AWS KMS (`flowloom.ledger.keyprovider.MasterKeys`)."""

    provider = "kms"

    def __init__(self, client: Any, key_id: str | None) -> None:
        self._client = client
        self.key_id = key_id

    @classmethod
    def connect(
        cls, key_id: str | None, *, region: str | None, endpoint: str | None
    ) -> KmsMasterKeys:
        """A client from the usual AWS credential chain (environment, profile, role)."""
        import boto3  # type: ignore[import-untyped]

        client = boto3.client("kms", region_name=region, endpoint_url=endpoint)
        return cls(client, key_id)

    @property
    def location(self) -> str:
        return f"AWS KMS ({self.key_id or 'no key configured'})"

    def _describe(self, key_id: str) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            meta = self._client.describe_key(KeyId=key_id)["KeyMetadata"]
        except ClientError as exc:
            raise ConfigError(
                f"AWS KMS has no usable key {key_id!r}: {exc}",
                hint="check [keys] kms_key_id (docs/keys.md)",
            ) from exc
        except BotoCoreError as exc:
            raise RemoteError(f"AWS KMS cannot be reached: {exc}") from exc
        if meta.get("KeyUsage") != "ENCRYPT_DECRYPT" or meta.get("KeyState") != "Enabled":
            raise ConfigError(
                f"KMS key {key_id!r} is not an enabled ENCRYPT_DECRYPT key "
                f"({meta.get('KeyUsage')}, {meta.get('KeyState')})"
            )
        return str(meta["Arn"])

    def active(self, *, create: bool) -> KmsMasterKey:
        if not self.key_id:
            raise ConfigError(
                "the master key is in AWS KMS but no key is named",
                hint="set [keys] kms_key_id or FLOWLOOM_KMS_KEY_ID (an alias, docs/keys.md)",
            )
        return KmsMasterKey(self._client, self._describe(self.key_id))

    def find(self, ref: str) -> KmsMasterKey | None:
        """The key a row names, if it is in the configured key's region and account: a
        row naming a key elsewhere is not trusted to choose where FlowLoom decrypts."""
        if not ref.startswith("kms:arn:"):
            return None
        arn = ref[len("kms:") :]
        home = self.active(create=False).arn
        if arn.split(":key/")[0] != home.split(":key/")[0]:
            return None
        return KmsMasterKey(self._client, arn)

    def legacy(self) -> list[KmsMasterKey]:
        return []

    def rotate(self, to: str | None) -> tuple[KmsMasterKey | None, KmsMasterKey]:
        from botocore.exceptions import BotoCoreError, ClientError

        if not self.key_id or not self.key_id.startswith("alias/"):
            raise ConfigError(
                f"the configured KMS key {self.key_id!r} is not an alias, so a rotation "
                "could not move it",
                hint="create an alias for the key and set kms_key_id to it (docs/keys.md); "
                "KMS's own yearly rotation needs no FlowLoom command",
            )
        old = self.active(create=False)
        try:
            if to is None:
                created = self._client.create_key(
                    KeySpec="SYMMETRIC_DEFAULT",
                    KeyUsage="ENCRYPT_DECRYPT",
                    Description="FlowLoom master key",
                )
                new_arn = str(created["KeyMetadata"]["Arn"])
            else:
                new_arn = self._describe(to)
            if new_arn == old.arn:
                raise ConfigError(f"{self.key_id} already names {new_arn}")
            self._client.update_alias(AliasName=self.key_id, TargetKeyId=new_arn)
        except (BotoCoreError, ClientError) as exc:
            raise RemoteError(f"AWS KMS did not rotate {self.key_id}: {exc}") from exc
        return old, KmsMasterKey(self._client, new_arn)
