"""Trust in a server's log: the pinned verifier key and the last checkpoint verified.

A client that only sends events would never notice a server that rewrites, truncates or
forks its log. So, per (server URL, project), the client pins the log's verifier key —
on first use, or as given (`--vkey`, FLOWLOOM_SERVER_VKEY) — and keeps the last signed
checkpoint it verified. Every check fetches the latest checkpoint, verifies its
signature with the pinned key, and verifies a consistency proof from the kept size to
the new one. A smaller tree, another root at the same size, a bad signature or a proof
that does not verify raises `HistoryRewrittenError` and leaves an *alarm* in the state:
the kept checkpoint is not replaced, and the outbox sends nothing more to that server
until someone has looked (`flowloom sync --repin`, docs/sync.md).

Data model: one JSON file per (server, project) under `<state dir>/servers/`::

    {"server": url, "project": name, "vkey": "<name>+<id>+<key>", "pinned_at": ts,
     "pinned_by": "tofu" | "given", "checkpoint": "<signed note>", "size": n,
     "checked_at": ts, "checked_epoch": seconds, "alarm": null | {"at": ts, "message": ...},
     "last_error": null | {"at": ts, "message": ...}}

Written atomically (temporary file, fsync, rename). Checking imports `cryptography`
(signatures); reading and writing the state does not.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

from flowloom.errors import InputError, ProofError, SignatureError, VerificationError

__all__ = [
    "HistoryRewrittenError",
    "ServerTrust",
    "TrustCheck",
    "TrustState",
    "check_server",
    "now_ts",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from flowloom.client.api import LedgerApi


def now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class HistoryRewrittenError(VerificationError):
    """The server's log no longer extends the checkpoint this client verified before."""


class TrustState:
    """The kept state for one (server, project); see the module docstring."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @property
    def vkey(self) -> str | None:
        value = self.data.get("vkey")
        return value if isinstance(value, str) and value else None

    @property
    def checkpoint(self) -> str | None:
        value = self.data.get("checkpoint")
        return value if isinstance(value, str) and value else None

    @property
    def size(self) -> int:
        value = self.data.get("size")
        return value if isinstance(value, int) else 0

    @property
    def alarm(self) -> str | None:
        alarm = self.data.get("alarm")
        if isinstance(alarm, dict) and alarm.get("message"):
            return f"{alarm['message']} (since {alarm.get('at', '?')})"
        return None

    @property
    def last_error(self) -> str | None:
        error = self.data.get("last_error")
        if isinstance(error, dict) and error.get("message"):
            return f"{error['message']} (at {error.get('at', '?')})"
        return None


class ServerTrust:
    """Reads and writes the trust state of one (server, project) under `state_dir`."""

    def __init__(self, state_dir: str, server: str, project: str) -> None:
        self.server = server
        self.project = project
        ident = hashlib.sha256(f"{server}\n{project}".encode()).hexdigest()[:24]
        self.path = os.path.join(state_dir, "servers", f"{ident}.json")

    def load(self) -> TrustState:
        try:
            with open(self.path, encoding="utf-8") as fh:
                data = json.load(fh)
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError) as exc:
            raise VerificationError(
                f"the trust state {self.path} cannot be read: {exc}",
                hint="restore it from a backup, or 'flowloom sync --repin' to trust anew",
            ) from None
        if not isinstance(data, dict):
            data = {}
        data.setdefault("server", self.server)
        data.setdefault("project", self.project)
        return TrustState(data)

    def save(self, state: TrustState) -> None:
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(state.data, fh, indent=1, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def note_error(self, message: str | None) -> None:
        """Remember the last failure to talk to the server (None: the last call worked)."""
        state = self.load()
        state.data["last_error"] = {"at": now_ts(), "message": message} if message else None
        self.save(state)

    def repin(self) -> TrustState:
        """Forget the pinned key, kept checkpoint and alarm: the next check trusts anew."""
        state = self.load()
        for key in ("vkey", "pinned_at", "pinned_by", "checkpoint", "size", "alarm"):
            state.data.pop(key, None)
        self.save(state)
        return state


class TrustCheck:
    """What a check found: the sizes before and after, and whether the key was pinned now."""

    __slots__ = ("new_size", "old_size", "pinned", "root_hex", "vkey")

    def __init__(self, old_size: int, new_size: int, root_hex: str, vkey: str, pinned: bool):
        self.old_size = old_size
        self.new_size = new_size
        self.root_hex = root_hex
        self.vkey = vkey
        self.pinned = pinned


def _raise_alarm(trust: ServerTrust, state: TrustState, message: str) -> HistoryRewrittenError:
    state.data["alarm"] = {"at": now_ts(), "message": message}
    trust.save(state)
    return HistoryRewrittenError(
        message,
        hint="the kept checkpoint was not replaced and nothing more is sent; see docs/sync.md "
        "('flowloom sync --repin' once it is explained)",
    )


def check_server(
    api: LedgerApi, trust: ServerTrust, *, given_vkey: str | None = None
) -> TrustCheck:
    """Verify the server's latest checkpoint against the pinned key and the kept one.

    Raises `HistoryRewrittenError` (and records an alarm) when the server's log does not
    extend what was verified before; network and HTTP errors propagate unchanged.
    """
    from flowloom.ledger.checkpoint import open_checkpoint
    from flowloom.ledger.merkle import verify_consistency
    from flowloom.ledger.note import Verifier

    state = trust.load()
    if state.alarm is not None:
        raise HistoryRewrittenError(
            f"an earlier check found that the server rewrote history: {state.alarm}",
            hint="see docs/sync.md; 'flowloom sync --repin' once it is explained",
        )
    pinned_now = False
    vkey = state.vkey
    if vkey is not None and given_vkey is not None and given_vkey != vkey:
        raise _raise_alarm(
            trust, state, f"the given verifier key is not the one pinned for {trust.server}"
        )
    if vkey is None:
        vkey = given_vkey or api.vkey()
        state.data.update(
            vkey=vkey, pinned_at=now_ts(), pinned_by="given" if given_vkey else "tofu"
        )
        pinned_now = True
    verifier = Verifier.from_vkey(vkey)
    note = api.checkpoint()
    try:
        latest = open_checkpoint(note, verifier)
    except (SignatureError, InputError) as exc:
        message = exc.message
        raise _raise_alarm(
            trust,
            state,
            f"the server's checkpoint is not signed by the pinned key {vkey.split('+')[0]}: "
            f"{message}",
        ) from None
    old_size = state.size
    kept = state.checkpoint
    if kept is not None and old_size > 0:
        previous = open_checkpoint(kept, verifier)
        if latest.size < previous.size:
            raise _raise_alarm(
                trust,
                state,
                f"the server rewrote history: its log has {latest.size} entries but it signed "
                f"{previous.size} before (a rollback or truncation)",
            )
        if latest.size == previous.size:
            if latest.root != previous.root:
                raise _raise_alarm(
                    trust,
                    state,
                    f"the server rewrote history: its log at size {latest.size} has another "
                    "root than the one it signed before (a fork)",
                )
        else:
            answer = api.consistency(previous.size, latest.size)
            try:
                if answer.old != previous.size:
                    raise ProofError(f"the proof starts at {answer.old}, not {previous.size}")
                proven = open_checkpoint(answer.note, verifier)
                if proven.size != latest.size or proven.root != latest.root:
                    raise ProofError("the proof is for another checkpoint than the latest")
                verify_consistency(
                    previous.size, latest.size, answer.proof, previous.root, latest.root
                )
            except (ProofError, SignatureError, InputError) as exc:
                message = exc.message
                raise _raise_alarm(
                    trust,
                    state,
                    f"the server rewrote history: its checkpoint {latest.size} is not "
                    f"consistent with checkpoint {previous.size} verified before ({message})",
                ) from None
    state.data.update(
        checkpoint=note,
        size=latest.size,
        checked_at=now_ts(),
        checked_epoch=time.time(),
        last_error=None,
    )
    trust.save(state)
    return TrustCheck(old_size, latest.size, latest.root.hex(), vkey, pinned_now)
