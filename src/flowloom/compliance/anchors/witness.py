"""Witness anchors: a transparency-log witness cosigns the checkpoint (C2SP tlog-witness).

The log POSTs ``old <size>``, the consistency proof from that size, a blank line and
the signed checkpoint to ``<witness>/add-checkpoint``. The witness checks the log's
signature and the proof against the latest checkpoint it cosigned for the origin, and
answers with cosignature lines (C2SP tlog-cosignature, Ed25519 ``cosignature/v1``: a
signature over ``cosignature/v1\\ntime <t>\\n`` followed by the checkpoint text, key ID
from algorithm byte 0x04). A witness never cosigns a checkpoint inconsistent with what
it saw: a rolled-back or forked log gets 409 Conflict or 422, which is the point.

When the witness says 409 with its own latest size, the client retries once from that
size (with the proof the log produces); a witness ahead of the log means the log was
rolled back.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from flowloom.compliance.anchors.interface import AnchorRecord, checkpoint_text, parse_checkpoint
from flowloom.errors import ConfigError, InputError, RemoteError, VerificationError
from flowloom.ledger.event import format_ts
from flowloom.ledger.note import _b64decode, is_valid_key_name

__all__ = [
    "ALG_COSIGNATURE_V1",
    "Cosignature",
    "CosignatureVerifier",
    "WitnessAnchor",
    "WitnessConflictError",
    "add_checkpoint_body",
]

ALG_COSIGNATURE_V1 = 0x04
"""Signature type byte of Ed25519 cosignature/v1 keys (C2SP tlog-cosignature)."""

MAX_PROOF_LINES = 63
_SIG_PREFIX = "\u2014 "
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_SIG_BYTES = 4 + 8 + 64

ProofSource = Callable[[int, int], Sequence[bytes]]
"""(old size, new size) -> RFC 6962 consistency proof hashes, from the log."""


class WitnessConflictError(VerificationError):
    """The witness has cosigned a tree this checkpoint is not consistent with."""


@dataclass(frozen=True)
class Cosignature:
    """One verified cosignature: who, when (POSIX seconds), and the line as sent."""

    name: str
    key_id: bytes
    timestamp: int
    line: str


class CosignatureVerifier:
    """A witness's Ed25519 cosigning key under its name (vkey with type byte 0x04)."""

    def __init__(self, name: str, public_key: bytes) -> None:
        if not is_valid_key_name(name):
            raise ConfigError(f"invalid witness key name {name!r}")
        if len(public_key) != 32:
            raise ConfigError("a witness Ed25519 public key is 32 bytes")
        self.name = name
        self.public_key = bytes(public_key)
        self.key_id = hashlib.sha256(
            name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + self.public_key
        ).digest()[:4]
        self._key = Ed25519PublicKey.from_public_bytes(self.public_key)

    @classmethod
    def from_vkey(cls, vkey: str) -> CosignatureVerifier:
        """Parse ``<name>+<8 hex key ID>+base64(0x04 || public key)``."""
        name, sep1, rest = vkey.strip().partition("+")
        hex_id, sep2, key64 = rest.partition("+")
        if not (sep1 and sep2) or not _HEX8.fullmatch(hex_id):
            raise ConfigError(
                "malformed witness verifier key", hint="expected <name>+<8 hex id>+<base64 key>"
            )
        raw = _b64decode(key64)
        if raw is None or len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise ConfigError(
                "the witness key is not an Ed25519 cosignature/v1 key (type byte 0x04)",
                hint="ask the witness operator for its cosignature vkey",
            )
        verifier = cls(name, raw[1:])
        if verifier.key_id.hex() != hex_id.lower():
            raise ConfigError("the witness key ID does not match its name and key")
        return verifier

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @staticmethod
    def message(text: str, timestamp: int) -> bytes:
        """The signed message: header, time line, then the whole checkpoint text."""
        return f"cosignature/v1\ntime {timestamp}\n{text}".encode()

    def find(self, lines: str, text: str) -> Cosignature:
        """The verified cosignature by this key among signature ``lines`` over ``text``.

        Lines from other keys are ignored, as the spec requires; raises
        `VerificationError` when this key's line is missing or does not verify.
        """
        for line in lines.splitlines():
            if not line.startswith(_SIG_PREFIX):
                continue
            name, _, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
            raw = _b64decode(sig64)
            if name != self.name or raw is None or raw[:4] != self.key_id:
                continue
            if len(raw) != _SIG_BYTES:
                raise VerificationError(f"witness {self.name}: cosignature has the wrong length")
            timestamp = int.from_bytes(raw[4:12], "big")
            if timestamp >= 1 << 63:
                raise VerificationError(f"witness {self.name}: cosignature time out of range")
            try:
                self._key.verify(raw[12:], self.message(text, timestamp))
            except InvalidSignature as exc:
                raise VerificationError(
                    f"witness {self.name}: the cosignature does not verify",
                    hint="the checkpoint or the cosignature was altered, or the vkey is wrong",
                ) from exc
            return Cosignature(self.name, self.key_id, timestamp, line + "\n")
        raise VerificationError(
            f"no cosignature from witness {self.name}+{self.key_id.hex()}",
            hint="check the witness vkey",
        )


def add_checkpoint_body(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The add-checkpoint request body: old size line, proof lines, blank line, note."""
    if len(proof) > MAX_PROOF_LINES:
        raise InputError(f"a consistency proof has at most {MAX_PROOF_LINES} hashes")
    lines = [f"old {old}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


class WitnessAnchor:
    """Anchors checkpoints by asking a C2SP witness at ``url`` to cosign them."""

    type = "witness"

    def __init__(
        self,
        witness: CosignatureVerifier,
        *,
        url: str | None = None,
        proofs: ProofSource | None = None,
        old_size: int = 0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.witness = witness
        self.url = url.rstrip("/") if url else None
        self._proofs = proofs
        self.old_size = old_size
        self.timeout = timeout
        self._transport = transport

    def _post(self, client: httpx.Client, body: bytes) -> httpx.Response:
        assert self.url is not None
        try:
            return client.post(
                f"{self.url}/add-checkpoint",
                content=body,
                headers={"Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as exc:
            raise RemoteError(
                f"cannot reach the witness at {self.url}: {type(exc).__name__}: {exc}",
                hint="check the URL and the network, then retry",
            ) from exc

    def _proof(self, old: int, size: int) -> Sequence[bytes]:
        if old == 0 or old == size:
            return []
        if self._proofs is None:
            raise InputError("the witness needs a consistency proof and no log was given")
        return self._proofs(old, size)

    def submit(self, note: str) -> str:
        """Submit ``note``; return the cosignature lines (raises on every refusal)."""
        if self.url is None:
            raise InputError("no witness URL", hint="pass --url")
        checkpoint = parse_checkpoint(note)
        old = min(self.old_size, checkpoint.size)
        with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
            for attempt in range(2):
                body = add_checkpoint_body(old, self._proof(old, checkpoint.size), note)
                response = self._post(client, body)
                if response.status_code == 200:
                    return response.text
                if response.status_code == 409:
                    witnessed = _witness_size(response)
                    if witnessed is None or witnessed == old or attempt:
                        raise WitnessConflictError(
                            f"the witness {self.witness.name} refuses checkpoint "
                            f"{checkpoint.size}: it has cosigned a different tree at size "
                            f"{witnessed if witnessed is not None else '?'} (the log was "
                            "forked or rolled back)",
                            hint="compare the log with its anchors: 'flowloom anchor verify'",
                        )
                    if witnessed > checkpoint.size:
                        raise WitnessConflictError(
                            f"the witness {self.witness.name} has cosigned size {witnessed} "
                            f"but this log has only {checkpoint.size}: the database was "
                            "rolled back",
                            hint="restore the missing entries; 'flowloom anchor verify' "
                            "shows the evidence",
                        )
                    old = witnessed
                    continue
                raise self._refusal(response, checkpoint.size, old)
        raise AssertionError("unreachable")  # pragma: no cover

    def _refusal(self, response: httpx.Response, size: int, old: int) -> Exception:
        status = response.status_code
        if status == 422:
            return WitnessConflictError(
                f"the witness {self.witness.name} refuses checkpoint {size}: the log is not "
                f"consistent with the tree of size {old} it cosigned (a fork)",
                hint="compare the log with its anchors: 'flowloom anchor verify'",
            )
        if status == 404:
            return RemoteError(
                f"the witness {self.witness.name} does not know this log's origin",
                hint="ask the witness operator to add the log's vkey",
            )
        if status == 403:
            return RemoteError(
                f"the witness {self.witness.name} does not trust this log's signing key",
                hint="give the witness operator the log's current vkey",
            )
        return RemoteError(
            f"the witness at {self.url} answered HTTP {status}: {response.text.strip()[:200]}",
            hint="nothing was recorded; retry later",
        )

    def anchor(self, note: str) -> AnchorRecord:
        checkpoint = parse_checkpoint(note)
        lines = self.submit(note)
        cosignature = self.witness.find(lines, checkpoint_text(note))
        moment = datetime.fromtimestamp(cosignature.timestamp, UTC)
        return AnchorRecord(
            type="witness",
            origin=checkpoint.origin,
            size=checkpoint.size,
            root=checkpoint.root,
            where=self.url or "",
            anchored_at=format_ts(moment),
            note=note,
            evidence={
                "witness": self.witness.name,
                "vkey": self.witness.vkey,
                "cosignature": cosignature.line,
                "cosignature_sha256": hashlib.sha256(cosignature.line.encode()).hexdigest(),
                "timestamp": cosignature.timestamp,
            },
        )

    def verify(self, record: AnchorRecord, note: str) -> None:
        record.matches(note)
        line = str(record.evidence.get("cosignature", ""))
        if hashlib.sha256(line.encode()).hexdigest() != record.evidence.get("cosignature_sha256"):
            raise VerificationError("witness anchor: the cosignature digest does not match")
        if record.evidence.get("vkey") != self.witness.vkey:
            raise VerificationError(
                f"witness anchor: recorded for witness {record.evidence.get('vkey')}, not "
                f"{self.witness.vkey}",
                hint="pass the vkey of the witness that cosigned it",
            )
        cosignature = self.witness.find(line, checkpoint_text(note))
        if cosignature.timestamp != record.evidence.get("timestamp"):
            raise VerificationError("witness anchor: the cosignature time differs from the record")

    def probe(self, note: str) -> str:
        """Ask the witness whether ``note`` (the log as it is now) fits what it cosigned.

        Submits the checkpoint from its own size, so a witness that cosigned the same
        tree cosigns again and one that saw more or something else answers 409; a
        smaller witness size is then followed up with a consistency proof. Returns
        the cosignature lines; raises `WitnessConflictError` on rollback or fork.
        """
        checkpoint = parse_checkpoint(note)
        self.old_size = checkpoint.size
        return self.submit(note)


def _witness_size(response: httpx.Response) -> int | None:
    text = response.text
    if not text.endswith("\n") or not _DECIMAL.fullmatch(text[:-1]):
        return None
    return int(text[:-1])
