"""Whole-log verification: every entry, every checkpoint, every body.

The checker recomputes each leaf hash from the stored envelope, rebuilds the tree and
compares the roots with the signed checkpoints, each checked against the key that was
the log's key at its size (`flowloom.ledger.keyring`): a checkpoint signed by any
other key is a problem that names both keys. When something does not match it
names the entries: an entry whose hash matches no stored leaf was modified or
inserted, one whose hash belongs at another index was moved, a gap is missing
entries. If an attacker rewrote the stored tree hashes too, the signed checkpoints
still bound the damage to the range between two checkpoints. The same core checks a
database (verify_store) and an exported bundle (flowloom.ledger.bundle).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from flowloom.errors import FlowLoomError
from flowloom.ledger import merkle
from flowloom.ledger.checkpoint import Checkpoint, open_checkpoint
from flowloom.ledger.keyring import KeyHistory, key_name, log_keys
from flowloom.ledger.note import Verifier, parse_note
from flowloom.store.interface import Store, StoredBody

__all__ = ["BodyStatus", "Problem", "Progress", "VerifyReport", "audit", "body_ref", "verify_store"]

Progress = Callable[[int, int], None]  # (entries checked, entries in total)

_KIND_KEY = b'"kind":"'
_BODY_KEY = b'"body":"sha256:'
_DIGEST_LEN = len("sha256:") + 64
_PROGRESS_EVERY = 1 << 16


@dataclass(frozen=True)
class Problem:
    """One thing wrong, with the entry index where there is one."""

    index: int | None
    what: str  # modified | missing | inserted | reordered | body mismatch | body missing | ...
    detail: str

    def line(self) -> str:
        where = f"entry {self.index}: " if self.index is not None else ""
        return f"{where}{self.what}: {self.detail}"


@dataclass
class VerifyReport:
    """What a verification looked at and what it found."""

    size: int = 0
    checkpoint: Checkpoint | None = None
    checkpoints_checked: int = 0
    bodies_checked: int = 0
    bodies_unchecked: int = 0
    """Encrypted bodies not checked because this home lacks the master key."""
    key: Verifier | None = None
    """The log's key now (the key its latest checkpoints must be signed by)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


BodyStatus = Mapping[str, bool]  # digest -> commitment holds; absent = not stored


def body_ref(envelope: bytes) -> str | None:
    """The top-level body digest of a canonical envelope, without parsing it.

    In canonical JSON the top-level keys are sorted (actor, body, git, kind, ...), and
    actor and git hold only strings, where quotes are escaped; so a raw "body" key
    before the first raw "kind" key is the top-level one. Envelopes that are not
    canonical fail the hash check anyway.
    """
    kind_at = envelope.find(_KIND_KEY)
    if kind_at < 0:
        return None
    at = envelope.find(_BODY_KEY, 0, kind_at)
    if at < 0:
        return None
    start = at + len(b'"body":"')
    return envelope[start : start + _DIGEST_LEN].decode("ascii", "replace")


def kind_of(envelope: bytes) -> str:
    """The kind of a canonical envelope, without parsing it (see body_ref for why)."""
    at = envelope.find(_KIND_KEY)
    if at < 0:
        return ""
    start = at + len(_KIND_KEY)
    return envelope[start : envelope.find(b'"', start)].decode("ascii", "replace")


def _tombstoned(envelope: bytes) -> list[str]:
    try:
        data = json.loads(envelope)
        bodies = data.get("refs", {}).get("bodies", [])
        return [b for b in bodies if isinstance(b, str)]
    except (ValueError, AttributeError):
        return []


def audit(
    entries: Iterable[tuple[int, bytes, str]],
    *,
    checkpoints: Sequence[Checkpoint],
    stored_leaves: Callable[[int], Iterable[bytes]],
    bodies: BodyStatus | None,
    total: int,
    extra_sizes: Sequence[int] = (),
    progress: Progress | None = None,
) -> tuple[list[Problem], int, dict[int, bytes]]:
    """Check `entries` (index, envelope, kind) against signed checkpoints.

    Returns the problems found, the number of entries seen and the recomputed roots at
    the checkpoint sizes and `extra_sizes`. `stored_leaves(start)` yields the tree's
    leaf hashes from `start`; it is read past the last checkpoint only when a root does
    not match, to name the entries involved.
    """
    problems: list[Problem] = []
    sizes = sorted({c.size for c in checkpoints} | set(extra_sizes))
    recomputed: list[bytes] = []
    append_leaf = recomputed.append
    gaps: list[tuple[int, int]] = []
    body_refs: list[tuple[int, str]] = []
    erased: set[str] = set()
    sha256 = hashlib.sha256
    expected = 0
    # The hot loop: one hash and two byte searches per entry, nothing else.
    for index, envelope, kind in entries:
        if index != expected:
            gaps.append((expected, index))
            recomputed.extend([b""] * (index - expected))
            expected = index
        append_leaf(sha256(b"\x00" + envelope).digest())
        if bodies is not None:
            ref = body_ref(envelope)
            if ref is not None:
                body_refs.append((index, ref))
            if kind == "erasure.tombstone":
                erased.update(_tombstoned(envelope))
        expected += 1
        if progress is not None and not expected & (_PROGRESS_EVERY - 1):
            progress(expected, total)
    count = expected
    if progress is not None:
        progress(count, total)
    roots = {} if gaps else _roots_at(recomputed, [s for s in sizes if s <= count])

    for start, end in gaps:
        problems.append(_missing(start, end, "no such row in the store"))
    tree_size = max((c.size for c in checkpoints), default=0)
    if tree_size > count:
        problems.append(
            _missing(count, tree_size, f"checkpoint {tree_size} signs them but they are gone")
        )

    mismatched = [c for c in checkpoints if c.size <= count and roots.get(c.size) != c.root]
    tail_start = max((c.size for c in checkpoints if c.size <= count), default=0)
    problems.extend(
        _localize(recomputed, stored_leaves, gaps, check_from=0 if mismatched else tail_start)
    )
    entry_problems = {p.index for p in problems if p.index is not None}
    if mismatched and not gaps:
        ordered = sorted(checkpoints, key=lambda c: c.size)
        for cp in mismatched:
            previous = max(
                (c.size for c in ordered if c.size < cp.size and c not in mismatched), default=0
            )
            if not any(i is not None and previous <= i < cp.size for i in entry_problems):
                problems.append(
                    Problem(
                        previous,
                        "modified",
                        f"entries {previous}..{cp.size - 1} do not match signed checkpoint "
                        f"{cp.size} (the stored tree hashes were rewritten as well)",
                    )
                )

    if bodies is not None:
        for index, digest in body_refs:
            state = bodies.get(digest)
            if state is None:
                if digest not in erased:
                    problems.append(Problem(index, "body missing", f"{digest} is not stored"))
            elif not state:
                problems.append(
                    Problem(index, "body mismatch", f"{digest} does not match its commitment")
                )
    problems.sort(key=lambda p: (p.index if p.index is not None else -1, p.what))
    return problems, count, roots


def _roots_at(leaves: list[bytes], sizes: Sequence[int]) -> dict[int, bytes]:
    """Tree roots at each of `sizes`, building every perfect level once."""
    levels = [leaves]
    node = hashlib.sha256(b"\x01")
    while len(levels[-1]) > 1:
        below = levels[-1]
        upper = []
        for i in range(0, len(below) - 1, 2):
            h = node.copy()
            h.update(below[i])
            h.update(below[i + 1])
            upper.append(h.digest())
        levels.append(upper)
    roots: dict[int, bytes] = {}
    for size in sizes:
        nodes = (
            {(level, idx): levels[level][idx] for level, idx in merkle.perfect_nodes(0, size)}
            if size
            else {}
        )
        roots[size] = merkle.range_hash(0, size, nodes) if size else merkle.EMPTY_ROOT
    return roots


def _missing(start: int, end: int, why: str) -> Problem:
    if end - start == 1:
        return Problem(start, "missing", why)
    return Problem(start, "missing", f"entries {start}..{end - 1} ({end - start}): {why}")


def _localize(
    recomputed: list[bytes],
    stored_leaves: Callable[[int], Iterable[bytes]],
    gaps: list[tuple[int, int]],
    *,
    check_from: int,
) -> list[Problem]:
    """Name the entries whose recomputed hash differs from the leaf the tree holds.

    Comparing where each hash sits in the two sequences tells an edit (neither side
    found elsewhere) from an insertion (the rightful entry sits further on), a
    deletion (the rightful entry is gone, a later one moved up) and a reordering.
    """
    in_gap = {i for start, end in gaps for i in range(start, end)}
    tail = list(stored_leaves(check_from))
    suspects = [
        i
        for i in range(check_from, len(recomputed))
        if i not in in_gap
        and (i - check_from >= len(tail) or recomputed[i] != tail[i - check_from])
    ]
    if not suspects:
        return []
    # Something is wrong: now the whole tree is needed to tell where entries belong.
    stored = list(stored_leaves(0)) if check_from else tail
    where_stored = {leaf: i for i, leaf in enumerate(stored)}
    where_entry = {leaf: i for i, leaf in enumerate(recomputed) if leaf}
    problems: list[Problem] = []
    run: list[int] = []  # consecutive entries moved by the same distance

    def flush() -> None:
        if not run:
            return
        first, shift = run[0], where_stored[recomputed[run[0]]] - run[0]
        if len(run) == 1:
            detail = f"this entry belongs at index {first + shift}"
        else:
            detail = (
                f"entries {first}..{run[-1]} are shifted: they belong at "
                f"{first + shift}..{run[-1] + shift}"
            )
        problems.append(Problem(first, "reordered", detail))
        run.clear()

    for i in suspects:
        home = where_stored.get(recomputed[i])
        rightful = stored[i] if i < len(stored) else None
        rightful_at = where_entry.get(rightful) if rightful is not None else None
        if home is not None and (rightful is None or rightful_at is not None):
            if run and (i != run[-1] + 1 or home - i != where_stored[recomputed[run[0]]] - run[0]):
                flush()
            run.append(i)
            continue
        flush()
        if home is None and rightful is None:
            problems.append(Problem(i, "inserted", "entry is not in the tree"))
        elif home is None and rightful_at is not None:
            problems.append(
                Problem(
                    i, "inserted", f"entry is not in the tree; entry {i} now sits at {rightful_at}"
                )
            )
        elif home is None:
            problems.append(Problem(i, "modified", "envelope does not match its leaf hash"))
        else:
            problems.append(
                Problem(i, "missing", f"the tree's entry {i} is gone; entry {home} moved here")
            )
    flush()
    return problems


def body_status(
    bodies: Iterable[StoredBody],
    decrypt: Callable[[StoredBody], bytes | None],
    unchecked: list[str] | None = None,
) -> dict[str, bool]:
    """Check every stored body against its commitment.

    An encrypted body that cannot be decrypted because the master key is not here is
    not a mismatch: its digest goes to `unchecked` (when given) and counts as held.
    """
    from flowloom.errors import KeyMissingError

    status: dict[str, bool] = {}
    sha256 = hashlib.sha256
    for stored in bodies:
        if stored.nonce is None:
            plain: bytes | None = stored.content
        else:
            try:
                plain = decrypt(stored)
            except KeyMissingError:
                if unchecked is None:
                    raise
                unchecked.append(stored.digest)
                status[stored.digest] = True
                continue
            except FlowLoomError:
                plain = None
        digest = stored.digest
        status[digest] = plain is not None and (
            "sha256:" + sha256(stored.salt + plain).hexdigest() == digest
        )
    return status


KeyAt = Callable[[int], Verifier | None]


def _keys_for(history: KeyHistory, trusted: Verifier | None, report: VerifyReport) -> KeyAt:
    """Which key each checkpoint must be signed by: the log's own history when it pins
    its key (a `trusted` key must then be one of them), else `trusted` alone."""
    report.problems.extend(Problem(None, "key", p) for p in history.problems)
    if not history.all:
        report.key = trusted
        return lambda size: trusted
    report.key = history.current
    if trusted is not None and trusted not in history.verifiers:
        pinned = history.all[0]
        report.problems.append(
            Problem(
                None,
                "key",
                f"the trusted key {key_name(trusted)} is not a key of this log: entry "
                f"{pinned.since} pins {pinned.key}",
            )
        )
    return history.at


def _open(note: str, size: int, key_at: KeyAt, what: str) -> Checkpoint:
    """Open `note` with the key it must be signed by; the error names both keys."""
    wanted = key_at(size)
    if wanted is None:
        raise FlowLoomError(f"{what}: no key to check it against (the log pins none; give --vkey)")
    try:
        return open_checkpoint(note, wanted)
    except FlowLoomError as exc:
        try:
            signers = [f"{s.name}+{s.key_id.hex()}" for s in parse_note(note)[1]]
        except FlowLoomError:
            signers = []
        mine = f"{wanted.name}+{wanted.key_id.hex()}"
        if signers and mine not in signers:
            raise FlowLoomError(
                f"{what} is signed by key {', '.join(signers)}, not by the log's key "
                f"{mine} (its key at size {size})"
            ) from exc
        raise FlowLoomError(f"{what}: {exc.diagnostics()}") from exc


def _note_size(note: str) -> int:
    """The tree size a checkpoint note claims (not verified: only to pick its key)."""
    try:
        return Checkpoint.parse(parse_note(note)[0]).size
    except FlowLoomError:
        return 0


def verify_store(
    store: Store,
    log: str,
    verifier: Verifier | None = None,
    *,
    against: str | None = None,
    decrypt: Callable[[StoredBody], bytes | None] | None = None,
    check_bodies: bool = True,
    progress: Progress | None = None,
    upto: int | None = None,
) -> VerifyReport:
    """Verify a whole log in a store; `against` is a checkpoint note kept elsewhere.

    Checkpoints are checked against the log's own key history; `verifier`, a key the
    caller trusts, must be one of its keys (for a log that pins none, it is the key).
    `upto` verifies only the first `upto` entries and the checkpoints over no more (a
    report's snapshot: what later writers append does not change its result).
    """
    report = VerifyReport()
    key_at = _keys_for(log_keys(store, log), verifier, report)
    opened: list[Checkpoint] = []
    for stored in store.checkpoints(log):
        if upto is not None and stored.size > upto:
            continue
        try:
            cp = _open(stored.note, stored.size, key_at, f"checkpoint {stored.size}")
        except FlowLoomError as exc:
            report.problems.append(Problem(None, "checkpoint", exc.message))
            continue
        if cp.size != stored.size or cp.root != stored.root:
            report.problems.append(
                Problem(None, "checkpoint", f"checkpoint row {stored.size} disagrees with its note")
            )
        opened.append(cp)
    external: Checkpoint | None = None
    if against is not None:
        try:
            external = _open(against, _note_size(against), key_at, "--against")
        except FlowLoomError as exc:
            report.problems.append(Problem(None, "checkpoint", exc.message))
    report.checkpoints_checked = len(opened) + (1 if external else 0)
    size = store.size(log) if upto is None else min(upto, store.size(log))
    status = None
    if check_bodies:
        unchecked: list[str] = []
        status = body_status(store.bodies(log), decrypt or (lambda b: None), unchecked)
        report.bodies_unchecked = len(unchecked)
        report.bodies_checked = len(status) - len(unchecked)
    problems, count, roots = audit(
        store.rows(log, 0, upto),
        checkpoints=opened,
        stored_leaves=lambda start: store.level(log, 0, start, upto),
        bodies=status,
        total=size,
        extra_sizes=[external.size] if external is not None else [],
        progress=progress,
    )
    report.problems.extend(problems)
    report.size = count
    if external is not None:
        if external.size > count:
            report.problems.append(
                Problem(
                    None,
                    "rollback",
                    f"the external checkpoint signs {external.size} entries but the store has "
                    f"{count}: the database was rolled back or truncated",
                )
            )
        elif roots.get(external.size) != external.root:
            report.problems.append(
                Problem(
                    None,
                    "fork",
                    f"the external checkpoint signs a different tree at size {external.size} "
                    "than this store holds",
                )
            )
    report.checkpoint = max(opened, key=lambda c: c.size) if opened else None
    return report
