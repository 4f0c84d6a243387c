"""A stand-in for AWS KMS's Ed25519 signing keys, over the real KMS JSON API on loopback.

moto (5.2.6, the newest the package index has) has no ECC_NIST_EDWARDS25519 keys, so
the tests talk to this: a small HTTP server speaking the KMS JSON 1.1 protocol
(``X-Amz-Target: TrentService.<Op>``) for the operations FlowLoom's KMS signing uses -
CreateKey, DescribeKey, GetPublicKey, Sign, CreateAlias, UpdateAlias - signing with
real Ed25519 keys held in memory, as KMS documents ED25519_SHA_512 over a RAW message
(pure Ed25519). boto3 is the client, unchanged; request signatures are not checked.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["KmsStandIn", "kms_ed25519"]

_ARN = "arn:aws:kms:eu-west-1:111122223333"


class _Fault(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class KmsStandIn:
    """The keys and aliases of one stand-in KMS, and what it was asked."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.aliases: dict[str, str] = {}
        self.calls: list[str] = []
        self.lock = threading.Lock()
        self.endpoint = ""

    def add_key(self, private: Ed25519PrivateKey) -> str:
        """Put a known key in (as an imported key would be); its ARN."""
        key_id = str(uuid.uuid4())
        arn = f"{_ARN}:key/{key_id}"
        self.keys[key_id] = {"arn": arn, "private": private, "state": "Enabled"}
        return arn

    def _key(self, ref: str) -> dict[str, Any]:
        if ref.startswith(f"{_ARN}:alias/"):
            ref = ref[len(_ARN) + 1 :]
        if ref.startswith("alias/"):
            if ref not in self.aliases:
                raise _Fault("NotFoundException", f"Alias {ref} is not found.")
            ref = self.aliases[ref]
        key_id = ref.rsplit("key/", 1)[-1]
        if key_id not in self.keys:
            raise _Fault("NotFoundException", f"Key '{ref}' does not exist")
        return self.keys[key_id]

    def _meta(self, key: dict[str, Any]) -> dict[str, Any]:
        return {
            "KeyId": key["arn"].rsplit("/", 1)[-1],
            "Arn": key["arn"],
            "KeySpec": "ECC_NIST_EDWARDS25519",
            "KeyUsage": "SIGN_VERIFY",
            "KeyState": key["state"],
            "SigningAlgorithms": ["ED25519_SHA_512", "ED25519_PH_SHA_512"],
        }

    def call(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(op)
            if op == "CreateKey":
                if body.get("KeySpec") != "ECC_NIST_EDWARDS25519":
                    raise _Fault("ValidationException", "only Ed25519 keys here")
                arn = self.add_key(Ed25519PrivateKey.generate())
                return {"KeyMetadata": self._meta(self._key(arn))}
            if op == "DescribeKey":
                return {"KeyMetadata": self._meta(self._key(body["KeyId"]))}
            if op == "GetPublicKey":
                key = self._key(body["KeyId"])
                der = (
                    key["private"]
                    .public_key()
                    .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
                )
                return {
                    "KeyId": key["arn"],
                    "PublicKey": base64.b64encode(der).decode(),
                    "KeySpec": "ECC_NIST_EDWARDS25519",
                    "KeyUsage": "SIGN_VERIFY",
                }
            if op == "Sign":
                key = self._key(body["KeyId"])
                if key["state"] != "Enabled":
                    raise _Fault("DisabledException", f"{key['arn']} is disabled.")
                if (body.get("SigningAlgorithm"), body.get("MessageType", "RAW")) != (
                    "ED25519_SHA_512",
                    "RAW",
                ):
                    raise _Fault("InvalidKeyUsageException", "use ED25519_SHA_512 over RAW")
                message = base64.b64decode(body["Message"])
                if len(message) > 4096:
                    raise _Fault("ValidationException", "Message is longer than 4096 bytes")
                signature = key["private"].sign(message)
                return {
                    "KeyId": key["arn"],
                    "Signature": base64.b64encode(signature).decode(),
                    "SigningAlgorithm": "ED25519_SHA_512",
                }
            if op in ("CreateAlias", "UpdateAlias"):
                name = body["AliasName"]
                if op == "CreateAlias" and name in self.aliases:
                    raise _Fault("AlreadyExistsException", f"{name} already exists")
                if op == "UpdateAlias" and name not in self.aliases:
                    raise _Fault("NotFoundException", f"Alias {name} is not found.")
                self.aliases[name] = self._key(body["TargetKeyId"])["arn"].rsplit("/", 1)[-1]
                return {}
            raise _Fault("UnsupportedOperationException", f"{op} is not in this stand-in")


def _handler(kms: KmsStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            target = self.headers.get("X-Amz-Target", "")
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            try:
                status, answer = 200, kms.call(target.split(".", 1)[-1], body)
            except _Fault as fault:
                status, answer = 400, {"__type": fault.kind, "message": str(fault)}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler


@pytest.fixture(scope="module")
def kms_ed25519() -> Iterator[KmsStandIn]:
    """The stand-in on a loopback port; `.endpoint` is its URL."""
    kms = KmsStandIn()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(kms))
    kms.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield kms
    finally:
        server.shutdown()
        server.server_close()
