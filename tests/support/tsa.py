"""A local RFC 3161 time-stamping authority over HTTP on loopback, for tests.

It has its own self-signed TSA certificate (or, on request, one issued by its own CA)
with the critical timeStamping extended key usage. It answers TimeStampReq with a CMS
SignedData token (signed attributes with content type, message digest and ESS
signing-certificate-v2), and can misbehave on demand: `mode` = "ok" | "reject" (status
rejection) | "tamper" (a byte of the TSTInfo flipped after signing) | "wrong-imprint"
(stamps another hash) | "wrong-nonce" | "garbage" (not DER) | "http-500".
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import algos, cms, tsp  # type: ignore[import-untyped]
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flowloom.compliance.anchors.tsa import TimeStampResp
from tests.support.loopback import LoopbackServer, Reply, Request

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Authority:
    """A self-signed TSA certificate (the default), or a CA and a TSA certificate it issued.

    When self-signed, ``ca_cert`` is the TSA certificate itself.
    """

    ca_cert: x509.Certificate
    cert: x509.Certificate
    key: PrivateKey

    @classmethod
    def create(
        cls, *, key_kind: str = "ec", eku: bool = True, self_signed: bool = True
    ) -> Authority:
        now = datetime.now(UTC)
        key = _key(key_kind)
        ca_key = key if self_signed else ec.generate_private_key(ec.SECP256R1())
        ca_name = _name("FlowLoom Test TSA" if self_signed else "FlowLoom Test CA")
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=not self_signed, path_length=None), True)
        )
        if self_signed:
            if eku:
                ca_cert = ca_cert.add_extension(
                    x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
                )
            cert = ca_cert.sign(key, hashes.SHA256())
            return cls(cert, cert, key)
        ca = ca_cert.sign(ca_key, hashes.SHA256())
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name("FlowLoom Test TSA"))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
        )
        if eku:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        return cls(ca, builder.sign(ca_key, hashes.SHA256()), key)

    def ca_pem(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM)

    def _sign(self, data: bytes) -> tuple[bytes, str]:
        if isinstance(self.key, rsa.RSAPrivateKey):
            return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256()), "sha256_rsa"
        return self.key.sign(data, ec.ECDSA(hashes.SHA256())), "sha256_ecdsa"

    def token(
        self,
        digest: bytes,
        nonce: int | None,
        *,
        serial: int,
        include_cert: bool = True,
        tamper: bool = False,
    ) -> cms.ContentInfo:
        """A TimeStampToken (CMS SignedData over TSTInfo) for a SHA-256 ``digest``."""
        fields: dict[str, Any] = {
            "version": "v1",
            "policy": "1.3.6.1.4.1.99999.1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "serial_number": serial,
            "gen_time": datetime.now(UTC).replace(microsecond=0),
            "accuracy": {"seconds": 1},
        }
        if nonce is not None:
            fields["nonce"] = nonce
        tst_der = tsp.TSTInfo(fields).dump()
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        asn1_cert = asn1_x509.Certificate.load(cert_der)
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {"type": "message_digest", "values": [hashlib.sha256(tst_der).digest()]},
                {
                    "type": "signing_certificate_v2",
                    "values": [{"certs": [{"cert_hash": hashlib.sha256(cert_der).digest()}]}],
                },
            ]
        )
        signature, algorithm = self._sign(signed_attrs.dump())
        if tamper:
            # Flip a byte of the serial number inside the signed TSTInfo.
            tst_der = tst_der[:-1] + bytes([tst_der[-1] ^ 1])
        signer = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": {
                            "issuer": asn1_cert.issuer,
                            "serial_number": asn1_cert.serial_number,
                        }
                    }
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": algorithm}),
                "signature": signature,
            }
        )
        certificates = [asn1_cert] if include_cert else []
        if include_cert and self.ca_cert != self.cert:
            certificates.append(
                asn1_x509.Certificate.load(self.ca_cert.public_bytes(serialization.Encoding.DER))
            )
        signed_data = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                "encap_content_info": {
                    "content_type": "tst_info",
                    "content": cms.ParsableOctetString(tst_der),
                },
                "certificates": certificates,
                "signer_infos": [signer],
            }
        )
        return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


@dataclass
class LocalTsa:
    """The HTTP front of an `Authority`; `mode` changes how it answers."""

    authority: Authority = field(default_factory=Authority.create)
    mode: str = "ok"
    requests: int = 0
    _http: LoopbackServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._http is not None, "start the TSA first"
        return self._http.url + "/tsr"

    def answer(self, body: bytes) -> tuple[int, str, bytes]:
        with self._lock:
            self.requests += 1
            serial = self.requests
        if self.mode == "http-500":
            return 500, "text/plain", b"broken\n"
        if self.mode == "garbage":
            return 200, "application/timestamp-reply", b"not a time-stamp response"
        try:
            request = tsp.TimeStampReq.load(body)
            imprint = request["message_imprint"]["hashed_message"].native
            nonce = request["nonce"].native
            cert_req = bool(request["cert_req"].native)
        except ValueError:
            reply = TimeStampResp(
                {"status": {"status": "rejection", "fail_info": {"bad_data_format"}}}
            )
            return 200, "application/timestamp-reply", reply.dump()
        if self.mode == "reject":
            reply = TimeStampResp(
                {
                    "status": {
                        "status": "rejection",
                        "status_string": ["policy not accepted"],
                        "fail_info": {"unaccepted_policy"},
                    }
                }
            )
            return 200, "application/timestamp-reply", reply.dump()
        if self.mode == "wrong-imprint":
            imprint = hashlib.sha256(b"something else").digest()
        if self.mode == "wrong-nonce" and nonce is not None:
            nonce += 1
        token = self.authority.token(
            imprint, nonce, serial=serial, include_cert=cert_req, tamper=self.mode == "tamper"
        )
        reply = TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})
        return 200, "application/timestamp-reply", reply.dump()

    def start(self) -> LocalTsa:
        self._http = LoopbackServer(self._serve).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()

    def _serve(self, request: Request) -> Reply:
        if request.method != "POST":
            return Reply.text(405, "POST a timestamp query\n")
        if request.headers.get("Content-Type") != "application/timestamp-query":
            return Reply.text(415, "wrong content type\n")
        status, ctype, payload = self.answer(request.body)
        return Reply(status, payload, ctype)
