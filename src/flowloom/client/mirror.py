"""The mirror: this clone's local copy of the team's record on the server, for reading.

In server mode the server holds the one record; `why`, `search`, `decision show`, the
memory and the MCP tools read it through this copy so that they answer the same for
every teammate, and still answer (from the copy, labelled stale) when the server is out
of reach. Data model: an SQLite ledger file of its own beside the trust state,
``<state>/servers/<id>.mirror.db`` (the same id as the trust state of that server and
project), holding the project's entries verbatim, in the server's order, with their
bodies (plaintext, as the server returns them to this key), plus
``<id>.mirror.json``: when it was last brought up to date, to which size, and the last
error.

A refresh first verifies the server's signed checkpoint against the pinned key and the
kept one (`flowloom.client.trust`), then copies the entries up to that checkpoint and
checks that the copy's Merkle root equals the signed root: the mirror is exactly the
log the server signed, never what an answer merely claimed. A copy that disagrees is
discarded and copied again. The mirror is a cache: deleting it costs a download.
Bodies come with their page (``GET /entries?bodies=true``, with their salts, each
checked against its envelope's commitment); from a server that does not offer that, one
request per body.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowloom.client.http import ServerFailedError, ServerUnreachableError
from flowloom.client.trust import now_ts
from flowloom.errors import NotFoundError, RemoteError, VerificationError
from flowloom.ledger import merkle
from flowloom.ledger.body import digest_of
from flowloom.ledger.canonical import canonicalize
from flowloom.ledger.writer import LogWriter
from flowloom.store.interface import NodeLookup, PendingEntry, StoredBody, StoredCheckpoint

if TYPE_CHECKING:
    from flowloom.client.link import ServerLink
    from flowloom.store.sqlite import SQLiteStore

__all__ = ["Mirror", "MirrorState"]

_PAGE = 1000


@dataclass(frozen=True)
class MirrorState:
    """How current the mirror is: its size, when it last matched the server, why not now."""

    size: int
    refreshed_at: str | None
    error: str | None
    asked: bool = True
    """The server was asked now; False: the copy was recent enough (`fresh_seconds`)."""

    @property
    def stale(self) -> bool:
        """The last attempt to bring it up to date failed: it may lag the server."""
        return self.error is not None

    def label(self, server: str, project: str) -> str | None:
        """The line a reader prints when its answer may be stale (None when current)."""
        if not self.stale and not self.asked:
            return (
                f"flowloom: showing the team record of {project} as of {self.refreshed_at} "
                f"({self.size} entries, checked against {server} then; within fresh_seconds)"
            )
        if not self.stale:
            return None
        when = self.refreshed_at or "never"
        return (
            f"flowloom: showing the team record of {project} as cached from {server} at "
            f"{when} ({self.size} entries): it may be stale ({self.error})"
        )


class Mirror:
    """The local copy of one project's log on one server."""

    def __init__(self, state_dir: str, server: str, project: str) -> None:
        self.server = server
        self.project = project
        ident = hashlib.sha256(f"{server}\n{project}".encode()).hexdigest()[:24]
        base = os.path.join(state_dir, "servers", f"{ident}.mirror")
        self.path = base + ".db"
        self.meta_path = base + ".json"
        self._store: SQLiteStore | None = None

    def _open(self) -> SQLiteStore:
        from flowloom.store.sqlite import SQLiteStore

        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        return SQLiteStore(self.path)

    @property
    def store(self) -> SQLiteStore:
        """The mirror's store, opened on first use (created empty when there is none).

        A refresh may replace it (a copy that had to start again): read it anew."""
        if self._store is None:
            self._store = self._open()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def state(self) -> MirrorState:
        try:
            with open(self.meta_path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        size = data.get("size")
        return MirrorState(
            size=size if isinstance(size, int) else 0,
            refreshed_at=data.get("refreshed_at") if data.get("refreshed_at") else None,
            error=data.get("error") if data.get("error") else None,
        )

    def _save(self, state: MirrorState) -> None:
        os.makedirs(os.path.dirname(self.meta_path), mode=0o700, exist_ok=True)
        tmp = f"{self.meta_path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(
                {"size": state.size, "refreshed_at": state.refreshed_at, "error": state.error},
                fh,
                sort_keys=True,
            )
            fh.write("\n")
        os.replace(tmp, self.meta_path)

    def refresh(self, link: ServerLink, *, max_age: float = 0.0) -> MirrorState:
        """Bring the mirror up to the server's latest signed checkpoint.

        A copy brought up to date without error less than `max_age` seconds ago is
        answered from as it is (`MirrorState.asked` False, its time shown): a burst of
        reads asks the server once. An unreachable or failing server leaves the copy as
        it was and says so in the state (stale); a server whose log does not verify
        raises (its alarm is kept by the trust state, see docs/sync.md), as does a
        refused key.
        """
        import fcntl

        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        # One refresh at a time per mirror (two commands, a hook): each would append
        # the same entries after the other's.
        with open(self.path + ".lock", "a+b") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            recent = self._recent(max_age)
            if recent is not None:
                return recent
            return self._refresh(link)

    def _recent(self, max_age: float) -> MirrorState | None:
        """The state when it was verified without error within `max_age` seconds."""
        from datetime import UTC, datetime

        if max_age <= 0:
            return None
        state = self.state()
        if state.stale or state.refreshed_at is None or not os.path.exists(self.path):
            return None
        try:
            then = datetime.fromisoformat(state.refreshed_at.replace("Z", "+00:00"))
        except ValueError:
            return None
        age = (datetime.now(UTC) - then).total_seconds()
        if not 0 <= age < max_age or self.store.size(self.project) != state.size:
            return None
        return MirrorState(state.size, state.refreshed_at, None, asked=False)

    def _refresh(self, link: ServerLink) -> MirrorState:
        previous = self.state()
        try:
            checked = link.check()
            root = bytes.fromhex(checked.root_hex)
            self._copy(link, checked.new_size, root)
            note = link.trust().load().checkpoint
            if note is not None and checked.new_size > 0:
                self._keep_checkpoint(StoredCheckpoint(checked.new_size, root, note))
        except (ServerUnreachableError, ServerFailedError) as exc:
            size = self.store.size(self.project)
            state = MirrorState(size, previous.refreshed_at, exc.message)
            with contextlib.suppress(OSError):
                self._save(state)
            return state
        state = MirrorState(self.store.size(self.project), now_ts(), None)
        self._save(state)
        return state

    def _copy(self, link: ServerLink, size: int, root: bytes) -> None:
        """Copy entries up to `size`; a copy whose root is not the signed one (the
        server was repinned after an alarm, or the file was edited) is copied anew."""
        if self.store.size(self.project) <= size:
            self._extend(link, size)
            if self._root(size) == root:
                return
        self._discard()
        self._extend(link, size)
        if self._root(size) != root:
            raise VerificationError(
                f"the copy of {self.project} from {self.server} does not match the log the "
                f"server signed at size {size}",
                hint="the server's answers disagree with its own checkpoint; see docs/sync.md",
            )

    def _keep_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        """Keep the server's signed checkpoint over the copy, so proofs of its entries
        are proofs under the server's key (`TeamLedger.verifier`), made offline."""

        def signed(
            size: int, lookup: NodeLookup, latest: StoredCheckpoint | None
        ) -> StoredCheckpoint:
            if size != checkpoint.size or merkle.root_at(size, lookup) != checkpoint.root:
                return latest or checkpoint  # not this copy's: keep what was kept
            return checkpoint

        if self.store.size(self.project) == checkpoint.size:
            self.store.add_checkpoint(self.project, signed)

    def _discard(self) -> None:
        self.close()
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path + suffix)

    def _extend(self, link: ServerLink, size: int) -> None:
        api = link.api(self.project)
        store = self.store
        have = store.size(self.project)
        writer = LogWriter(store, self.project)
        try:
            while have < size:
                rows = api.entries(have, min(_PAGE, size - have), bodies=True)["entries"]
                if not rows:
                    raise RemoteError(
                        f"the server's log ends at {have}, though it signed {size} entries"
                    )
                pending = [self._pending(api, have + i, row) for i, row in enumerate(rows)]
                pending = pending[: size - have]
                writer.append_many(pending)
                have += len(pending)
        finally:
            writer.close()

    def _root(self, size: int) -> bytes:
        store = self.store
        return merkle.root_at(size, lambda ids: store.nodes(self.project, ids))

    def _pending(self, api: Any, index: int, row: Any) -> PendingEntry:
        if not isinstance(row, dict) or row.get("index") != index:
            raise RemoteError(f"the server's page of entries is out of order at {index}")
        envelope = row.get("envelope")
        if not isinstance(envelope, dict):
            raise RemoteError(f"entry {index} from the server has no envelope")
        canonical = canonicalize(envelope)
        leaf = merkle.leaf_hash(canonical)
        if leaf.hex() != row.get("leaf_hash"):
            raise RemoteError(f"entry {index} from the server does not match its leaf hash")
        body: StoredBody | None = None
        digest = envelope.get("body")
        if isinstance(digest, str):
            if "body" in row:
                body = _bulk_body(index, digest, row)
            else:  # an older server: no bodies in its pages, one request each
                try:
                    content = api.body(index)
                except NotFoundError:
                    content = None  # erased, or withheld: the envelope still verifies
                if content is not None:
                    body = StoredBody(digest=digest, salt=b"", content=content)
        kind = str(envelope.get("kind"))
        return PendingEntry(envelope=canonical, leaf_hash=leaf, kind=kind, body=body)


def _bulk_body(index: int, digest: str, row: dict[str, Any]) -> StoredBody | None:
    """The body a page carried for entry `index`, checked against the envelope's
    commitment (its salt comes with it); None when erased or withheld."""
    text, salt_text = row.get("body"), row.get("salt")
    if text is None:
        return None
    try:
        if not isinstance(text, str) or not isinstance(salt_text, str):
            raise ValueError("not text")
        content = base64.b64decode(text, validate=True)
        salt = base64.b64decode(salt_text, validate=True)
    except ValueError:
        raise RemoteError(
            f"the server sent entry {index}'s body in a form it cannot be read in"
        ) from None
    if not hmac.compare_digest(digest_of(salt, content), digest):
        raise RemoteError(
            f"the body of entry {index} from the server does not match its commitment"
        )
    return StoredBody(digest=digest, salt=salt, content=content)
