"""RFC 3161 time-stamp anchors: a time-stamping authority signs the checkpoint's hash.

The request (RFC 3161 §2.4.1) carries the SHA-256 of the checkpoint note text (origin,
size, root: the part the log signs), a random nonce, and certReq so the TSA includes
its certificate. The reply's token is a CMS SignedData over a TSTInfo; it is checked
here completely before anything is recorded: status granted, the nonce and message
imprint echoed, the signature over the signed attributes, the message digest of the
TSTInfo, the ESS signing-certificate binding (v2 or v1), the timeStamping extended key
usage, genTime inside the certificate's validity, and, when trust anchors are given,
a chain from the TSA certificate to one of them. Without trust anchors the TSA
certificate is pinned: later verification requires the same certificate.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from asn1crypto import cms, core, tsp  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from flowloom.compliance.anchors.interface import AnchorRecord, checkpoint_text, parse_checkpoint
from flowloom.errors import ConfigError, InputError, RemoteError, VerificationError
from flowloom.ledger.event import format_ts

__all__ = [
    "TIMESTAMP_QUERY",
    "TIMESTAMP_REPLY",
    "TimeStampInfo",
    "TimeStampResp",
    "TsaAnchor",
    "build_request",
    "load_trust_anchors",
    "verify_token",
]

TIMESTAMP_QUERY = "application/timestamp-query"
TIMESTAMP_REPLY = "application/timestamp-reply"

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
    "sha224": hashes.SHA224,
    "sha1": hashes.SHA1,
}
_MAX_CHAIN = 5


@dataclass(frozen=True)
class TimeStampInfo:
    """What a verified token says: when, by which certificate, under which policy."""

    gen_time: datetime
    serial: int
    policy: str
    nonce: int | None
    cert_sha256: str
    cert_subject: str


def build_request(digest: bytes, nonce: int) -> bytes:
    """A DER TimeStampReq for a SHA-256 ``digest``, asking for the TSA certificate."""
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return bytes(request.dump())


def load_trust_anchors(paths: Sequence[Path]) -> list[x509.Certificate]:
    """CA certificates (PEM, several per file allowed, or DER) to chain TSA certificates to."""
    anchors: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read CA certificate file {path}: {exc.strerror}") from exc
        try:
            if b"-----BEGIN" in data:
                anchors.extend(x509.load_pem_x509_certificates(data))
            else:
                anchors.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise ConfigError(
                f"{path} holds no readable certificate",
                hint="give a PEM or DER CA certificate",
            ) from exc
    return anchors


class TimeStampResp(core.Sequence):  # type: ignore[misc]
    """RFC 3161 TimeStampResp; the token is OPTIONAL (absent when the status is a refusal)."""

    _fields = [  # noqa: RUF012 (asn1crypto's declaration style)
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def _fail(message: str) -> VerificationError:
    return VerificationError(f"time-stamp token: {message}")


def _attribute(signed_attrs: cms.CMSAttributes, name: str) -> core.Asn1Value | None:
    found = [a for a in signed_attrs if a["type"].native == name]
    if not found:
        return None
    if len(found) > 1 or len(found[0]["values"]) != 1:
        raise _fail(f"the signed attribute {name} must appear once with one value")
    value: core.Asn1Value = found[0]["values"][0]
    return value


def _signer_cert(
    signed_data: cms.SignedData, signer: cms.SignerInfo
) -> tuple[cms.Certificate, list[cms.Certificate]]:
    certs = [c.chosen for c in signed_data["certificates"] if c.name == "certificate"]
    sid = signer["sid"]
    for cert in certs:
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                cert.issuer == wanted["issuer"]
                and cert.serial_number == wanted["serial_number"].native
            ):
                return cert, certs
        elif cert.key_identifier == sid.chosen.native:
            return cert, certs
    raise _fail("the TSA certificate is not in the token (the TSA ignored certReq)")


def _check_signature(
    public_key: object, signature: bytes, data: bytes, signer: cms.SignerInfo, digest: str
) -> None:
    algorithm = signer["signature_algorithm"]
    name = algorithm.signature_algo
    hash_cls = _HASHES[digest]
    try:
        if isinstance(public_key, rsa.RSAPublicKey) and name == "rsassa_pkcs1v15":
            public_key.verify(signature, data, padding.PKCS1v15(), hash_cls())
        elif isinstance(public_key, rsa.RSAPublicKey) and name == "rsassa_pss":
            params = algorithm["parameters"]
            pss_hash = _HASHES.get(params["hash_algorithm"]["algorithm"].native)
            if pss_hash is None:
                raise _fail("unsupported RSA-PSS hash")
            mgf = padding.MGF1(pss_hash())
            salt = params["salt_length"].native
            public_key.verify(signature, data, padding.PSS(mgf, salt), pss_hash())
        elif isinstance(public_key, ec.EllipticCurvePublicKey) and name == "ecdsa":
            public_key.verify(signature, data, ec.ECDSA(hash_cls()))
        elif isinstance(public_key, ed25519.Ed25519PublicKey) and name == "ed25519":
            public_key.verify(signature, data)
        else:
            raise _fail(f"unsupported signature algorithm {name} for this key type")
    except InvalidSignature as exc:
        raise _fail("the TSA signature does not verify (the token was altered)") from exc


def _check_ess(signed_attrs: cms.CMSAttributes, cert_der: bytes) -> None:
    """The signing-certificate attribute binds the signature to this certificate."""
    v2 = _attribute(signed_attrs, "signing_certificate_v2")
    if v2 is not None:
        ids = v2["certs"]
        if not ids:
            raise _fail("the signing-certificate-v2 attribute names no certificate")
        first = ids[0]
        algo = first["hash_algorithm"]["algorithm"].native
        hash_fn = getattr(hashlib, algo, None) if algo in _HASHES else None
        if hash_fn is None:
            raise _fail(f"unsupported ESSCertIDv2 hash {algo}")
        if hash_fn(cert_der).digest() != first["cert_hash"].native:
            raise _fail("the signing-certificate-v2 attribute names a different certificate")
        return
    v1 = _attribute(signed_attrs, "signing_certificate")
    if v1 is None:
        raise _fail("no signing-certificate attribute (RFC 3161 §2.4.2 requires one)")
    ids = v1["certs"]
    if not ids or hashlib.sha1(cert_der).digest() != ids[0]["cert_hash"].native:
        raise _fail("the signing-certificate attribute names a different certificate")


def _check_eku(cert: x509.Certificate) -> None:
    try:
        eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE)
    except x509.ExtensionNotFound as exc:
        raise _fail("the TSA certificate has no extended key usage") from exc
    value = eku.value
    usages = list(value) if isinstance(value, x509.ExtendedKeyUsage) else []
    if usages != [ExtendedKeyUsageOID.TIME_STAMPING] or not eku.critical:
        raise _fail(
            "the TSA certificate's extended key usage must be exactly timeStamping, critical "
            "(RFC 3161 §2.3)"
        )


def _check_chain(
    cert: x509.Certificate, extra: Sequence[x509.Certificate], anchors: Sequence[x509.Certificate]
) -> None:
    current = cert
    for _ in range(_MAX_CHAIN):
        if current in anchors:
            return
        for candidate in [*anchors, *extra]:
            if candidate == current or candidate.subject != current.issuer:
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            if candidate in anchors:
                return
            current = candidate
            break
        else:
            break
    raise _fail("the TSA certificate does not chain to a trusted CA certificate")


def verify_token(
    token: bytes,
    digest: bytes,
    *,
    nonce: int | None = None,
    trust: Sequence[x509.Certificate] = (),
    pinned_cert_sha256: str | None = None,
) -> TimeStampInfo:
    """Check a DER TimeStampToken over the SHA-256 ``digest``; return what it says.

    Raises `VerificationError` naming the first check that fails.
    """
    try:
        info = cms.ContentInfo.load(token)
        if info["content_type"].native != "signed_data":
            raise _fail("it is not CMS SignedData")
        signed_data = info["content"]
        encap = signed_data["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise _fail("its content is not a TSTInfo")
        tst_der = encap["content"].contents
        tst = tsp.TSTInfo.load(tst_der)
        signers = list(signed_data["signer_infos"])
        if len(signers) != 1:
            raise _fail(f"expected one signer, found {len(signers)}")
        signer = signers[0]
        digest_name = signer["digest_algorithm"]["algorithm"].native
        if digest_name not in _HASHES:
            raise _fail(f"unsupported digest algorithm {digest_name}")
        signed_attrs = signer["signed_attrs"]
        if not signed_attrs:
            raise _fail("no signed attributes")
        content_type = _attribute(signed_attrs, "content_type")
        if content_type is None or content_type.native != "tst_info":
            raise _fail("the content-type attribute is not TSTInfo")
        message_digest = _attribute(signed_attrs, "message_digest")
        computed = hashlib.new(digest_name, tst_der).digest()
        if message_digest is None or message_digest.native != computed:
            raise _fail("the message digest does not match the TSTInfo (the token was altered)")
        asn1_cert, asn1_certs = _signer_cert(signed_data, signer)
        cert_der = bytes(asn1_cert.dump())
        _check_ess(signed_attrs, cert_der)
        cert = x509.load_der_x509_certificate(cert_der)
        extra = [x509.load_der_x509_certificate(bytes(c.dump())) for c in asn1_certs]
        # The signature covers the DER of the attributes as a SET OF, not the [0] tag.
        attrs_der = b"\x31" + bytes(signed_attrs.dump())[1:]
        _check_signature(
            cert.public_key(), signer["signature"].native, attrs_der, signer, digest_name
        )
        imprint = tst["message_imprint"]
        if imprint["hash_algorithm"]["algorithm"].native != "sha256":
            raise _fail("the message imprint is not SHA-256")
        if imprint["hashed_message"].native != digest:
            raise _fail("the message imprint is not the checkpoint's hash (wrong checkpoint)")
        token_nonce = tst["nonce"].native
        if nonce is not None and token_nonce != nonce:
            raise _fail("the nonce does not match the request (a replayed reply)")
        gen_time = tst["gen_time"].native
        if not isinstance(gen_time, datetime):
            raise _fail("genTime is missing")
        serial = int(tst["serial_number"].native)
        policy = str(tst["policy"].native)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _fail(f"it is malformed ({type(exc).__name__}: {exc})") from exc
    _check_eku(cert)
    if not cert.not_valid_before_utc <= gen_time <= cert.not_valid_after_utc:
        raise _fail("genTime is outside the TSA certificate's validity period")
    cert_sha256 = hashlib.sha256(cert_der).hexdigest()
    if trust:
        _check_chain(cert, extra, trust)
    elif pinned_cert_sha256 is not None and cert_sha256 != pinned_cert_sha256:
        raise _fail("it was signed by a different TSA certificate than the one recorded")
    return TimeStampInfo(
        gen_time=gen_time.astimezone(UTC),
        serial=serial,
        policy=policy,
        nonce=token_nonce,
        cert_sha256=cert_sha256,
        cert_subject=cert.subject.rfc4514_string(),
    )


def _status_text(status: tsp.PKIStatusInfo) -> str:
    parts = [str(status["status"].native)]
    text = status["status_string"].native
    if text:
        parts.append("; ".join(str(t) for t in text))
    fail = status["fail_info"].native
    if fail:
        parts.append(", ".join(sorted(str(f) for f in fail)))
    return ": ".join(parts)


class TsaAnchor:
    """Anchors checkpoints with an RFC 3161 time-stamping authority at ``url``."""

    type = "tsa"

    def __init__(
        self,
        url: str | None = None,
        *,
        trust: Sequence[x509.Certificate] = (),
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.trust = tuple(trust)
        self.timeout = timeout
        self._transport = transport

    def request(self, digest: bytes, nonce: int) -> bytes:
        """POST a TimeStampReq; return the token of a granted reply (RemoteError otherwise)."""
        if not self.url:
            raise InputError("no time-stamping authority URL", hint="pass --url")
        try:
            with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
                response = client.post(
                    self.url,
                    content=build_request(digest, nonce),
                    headers={"Content-Type": TIMESTAMP_QUERY, "Accept": TIMESTAMP_REPLY},
                )
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"cannot reach the time-stamping authority at {self.url}: "
                f"{type(exc).__name__}: {exc}",
                hint="check the URL and the network, then retry",
            ) from exc
        if response.status_code != 200:
            raise RemoteError(
                f"the time-stamping authority at {self.url} answered HTTP {response.status_code}",
                hint="check the URL; nothing was recorded",
            )
        try:
            reply = TimeStampResp.load(response.content)
            status = reply["status"]
            granted = status["status"].native in ("granted", "granted_with_mods")
            text = _status_text(status)
        except (ValueError, TypeError, KeyError) as exc:
            raise RemoteError(
                f"the time-stamping authority at {self.url} sent something that is not a "
                "TimeStampResp",
                hint="check that the URL is an RFC 3161 endpoint",
            ) from exc
        if not granted:
            raise RemoteError(
                f"the time-stamping authority refused the request ({text})",
                hint="check its policy and the request; nothing was recorded",
            )
        token = reply["time_stamp_token"]
        if isinstance(token, core.Void) or not token.contents:
            raise RemoteError("the time-stamping authority granted the request but sent no token")
        return bytes(token.dump())

    def anchor(self, note: str) -> AnchorRecord:
        checkpoint = parse_checkpoint(note)
        digest = hashlib.sha256(checkpoint_text(note).encode("utf-8")).digest()
        nonce = int.from_bytes(os.urandom(8), "big") >> 1 or 1
        token = self.request(digest, nonce)
        info = verify_token(token, digest, nonce=nonce, trust=self.trust)
        return AnchorRecord(
            type="tsa",
            origin=checkpoint.origin,
            size=checkpoint.size,
            root=checkpoint.root,
            where=self.url or "",
            anchored_at=format_ts(info.gen_time),
            note=note,
            evidence={
                "token": base64.b64encode(token).decode("ascii"),
                "token_sha256": hashlib.sha256(token).hexdigest(),
                "serial": str(info.serial),
                "policy": info.policy,
                "nonce": str(nonce),
                "tsa_cert_sha256": info.cert_sha256,
                "tsa": info.cert_subject,
            },
        )

    def verify(self, record: AnchorRecord, note: str) -> None:
        record.matches(note)
        try:
            token = base64.b64decode(str(record.evidence["token"]), validate=True)
            nonce = int(str(record.evidence["nonce"]))
            pinned = str(record.evidence["tsa_cert_sha256"])
        except (KeyError, ValueError) as exc:
            raise VerificationError("the tsa anchor record has no readable token") from exc
        digest = hashlib.sha256(checkpoint_text(note).encode("utf-8")).digest()
        info = verify_token(token, digest, nonce=nonce, trust=self.trust, pinned_cert_sha256=pinned)
        if format_ts(info.gen_time) != record.anchored_at:
            raise VerificationError("time-stamp token: genTime differs from the recorded time")
