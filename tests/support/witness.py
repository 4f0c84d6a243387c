"""A local C2SP tlog-witness over HTTP on loopback, for tests.

It trusts a set of log vkeys, keeps the latest cosigned (size, root) per origin, and
answers POST /add-checkpoint as the spec says: 404 unknown origin, 403 no trusted
signature, 400 old > size or a malformed body, 409 (text/x.tlog.size, its own size)
when old is not its latest size or the same size has another root, 422 when the
consistency proof fails, else 200 with an Ed25519 cosignature/v1 line. The cosignature
is computed here from the spec, not with FlowLoom's verifier code.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from flowloom.errors import FlowLoomError
from flowloom.ledger.checkpoint import Checkpoint
from flowloom.ledger.merkle import verify_consistency
from flowloom.ledger.note import Verifier, open_note
from tests.support.loopback import LoopbackServer, Reply, Request


@dataclass
class LocalWitness:
    """A witness named ``name`` that cosigns checkpoints from the logs in ``trusted``."""

    name: str = "witness.test/w1"
    trusted: list[Verifier] = field(default_factory=list)
    key: Ed25519PrivateKey = field(default_factory=Ed25519PrivateKey.generate)
    state: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    refused: list[int] = field(default_factory=list)
    clock: Any = time.time
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _http: LoopbackServer | None = None

    @property
    def public_key(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def key_id(self) -> bytes:
        data = self.name.encode() + b"\n" + b"\x04" + self.public_key
        return hashlib.sha256(data).digest()[:4]

    @property
    def vkey(self) -> str:
        encoded = base64.b64encode(b"\x04" + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    @property
    def url(self) -> str:
        assert self._http is not None, "start the witness first"
        return self._http.url

    def cosign(self, text: str) -> str:
        timestamp = int(self.clock())
        message = f"cosignature/v1\ntime {timestamp}\n{text}".encode()
        signature = self.key.sign(message)
        blob = self.key_id + timestamp.to_bytes(8, "big") + signature
        return f"\u2014 {self.name} {base64.b64encode(blob).decode()}\n"

    def handle(self, body: bytes) -> tuple[int, str, str]:
        try:
            text = body.decode("utf-8")
            head, sep, note = text.partition("\n\n")
            if not sep:
                return 400, "text/plain", "no blank line\n"
            lines = head.split("\n")
            if not lines[0].startswith("old "):
                return 400, "text/plain", "no old size line\n"
            old = int(lines[0][4:])
            proof = [base64.b64decode(line, validate=True) for line in lines[1:]]
        except (UnicodeDecodeError, ValueError):
            return 400, "text/plain", "malformed request\n"
        try:
            signed_text = note[: note.index("\n\n") + 1]
            checkpoint = Checkpoint.parse(signed_text)
        except (FlowLoomError, ValueError):
            return 400, "text/plain", "malformed checkpoint\n"
        keys = [v for v in self.trusted if v.name == checkpoint.origin]
        if not keys:
            return 404, "text/plain", "unknown origin\n"
        try:
            open_note(note, keys)
        except FlowLoomError:
            return 403, "text/plain", "no trusted signature\n"
        if old > checkpoint.size:
            return 400, "text/plain", "old size is larger than the checkpoint\n"
        with self._lock:  # check and update atomically, as the spec requires
            latest_size, latest_root = self.state.get(checkpoint.origin, (0, b""))
            if old != latest_size:
                self.refused.append(409)
                return 409, "text/x.tlog.size", f"{latest_size}\n"
            if old == checkpoint.size and old and latest_root != checkpoint.root:
                self.refused.append(409)
                return 409, "text/x.tlog.size", f"{latest_size}\n"
            if 0 < old < checkpoint.size:
                try:
                    verify_consistency(old, checkpoint.size, proof, latest_root, checkpoint.root)
                except FlowLoomError:
                    self.refused.append(422)
                    return 422, "text/plain", "consistency proof does not verify\n"
            elif proof:
                return 400, "text/plain", "unexpected proof\n"
            self.state[checkpoint.origin] = (checkpoint.size, checkpoint.root)
        return 200, "text/plain; charset=utf-8", self.cosign(signed_text)

    def start(self) -> LocalWitness:
        self._http = LoopbackServer(self._serve).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.stop()

    def _serve(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/add-checkpoint":
            return Reply.text(404, "not found\n")
        status, ctype, payload = self.handle(request.body)
        return Reply(status, payload.encode(), ctype)
